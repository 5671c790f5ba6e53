"""Views the tests, the demo and the benchmarks use."""

import json
import os
import tempfile
import time

from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from .models import Item


def hello(request):
    return HttpResponse(b"Hello, world!", content_type="text/plain")


def json_view(request):
    return JsonResponse({"message": "Hello, world!", "items": [1, 2, 3]})


def db_page(request):
    return render(request, "demo/items.html", {"items": list(Item.objects.all()[:20])})


@csrf_exempt
def upload(request):
    """Echo the request body, so tests can check what the server decoded."""
    return HttpResponse(request.body, content_type="application/octet-stream")


def slow(request):
    time.sleep(float(request.GET.get("s", "1")))
    return HttpResponse(b"slow done", content_type="text/plain")


def stream(request):
    count = int(request.GET.get("n", "3"))
    return StreamingHttpResponse(f"chunk {n}\n".encode() for n in range(count))


_downloads: dict[int, str] = {}


def download(request):
    """A FileResponse of N MB, so the server can hand it to os.sendfile."""
    mb = int(request.GET.get("mb", "1"))
    if mb not in _downloads:
        fd, path = tempfile.mkstemp(prefix=f"prodserve-download-{mb}mb-")
        with os.fdopen(fd, "wb") as f:
            block = bytes(range(256)) * 4096
            for _ in range(mb):
                f.write(block)
        _downloads[mb] = path
    return FileResponse(open(_downloads[mb], "rb"), content_type="application/octet-stream")


def orphan(request):
    """Leave a grandchild behind, as a library that daemonizes would: it becomes PID 1's to reap."""
    child = os.fork()
    if child == 0:
        if os.fork() == 0:
            time.sleep(0.2)
        os._exit(0)
    os.waitpid(child, 0)
    return HttpResponse(b"orphaned", content_type="text/plain")


def error(request):
    raise RuntimeError("boom from the error view")


@csrf_exempt
def environ_dump(request):
    """The WSGI environ as JSON (strings only), for conformance tests."""
    env = {k: v for k, v in request.environ.items() if isinstance(v, str)}
    env["_body"] = request.body.decode("latin-1")
    return HttpResponse(json.dumps(env), content_type="application/json")
