"""A plain WSGI app that exercises PEP 3333 corner by corner, for the server's conformance tests.

It dispatches on the first segment of PATH_INFO. It runs in one worker, so module globals (the
close() counter) are shared by every request of a test module.
"""

import json
import os
import sys
import tempfile
from io import BytesIO
from urllib.parse import parse_qs

TEXT = [("Content-Type", "text/plain")]

#: How many times a response iterable's close() ran: /close-count reports it.
CLOSED = 0

#: Files /file serves, by size, made on first use.
_files: dict[int, str] = {}


def file_bytes(size: int) -> bytes:
    """The content of /file?size=N; the tests compute the same bytes."""
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def _query(environ) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _json(start_response, data, status="200 OK"):
    body = json.dumps(data).encode()
    start_response(status, [("Content-Type", "application/json")])
    return [body]


def environ_view(environ, start_response):
    """The str-valued environ, every key's type, the wsgi.* flags and the body read whole."""
    data = {k: v for k, v in environ.items() if isinstance(v, str)}
    stream = environ["wsgi.input"]
    errors = environ["wsgi.errors"]
    data["_types"] = {k: type(v).__name__ for k, v in environ.items()}
    data["_wsgi"] = {
        "version": list(environ["wsgi.version"]),
        "version_type": type(environ["wsgi.version"]).__name__,
        "multithread": environ["wsgi.multithread"],
        "multiprocess": environ["wsgi.multiprocess"],
        "run_once": environ["wsgi.run_once"],
        "input_methods": sorted(
            m for m in ("read", "readline", "readlines", "__iter__") if hasattr(stream, m)
        ),
        "errors_methods": sorted(
            m for m in ("write", "writelines", "flush") if callable(getattr(errors, m, None))
        ),
        "file_wrapper_callable": callable(environ.get("wsgi.file_wrapper")),
    }
    data["_body"] = stream.read().decode("latin-1")
    return _json(start_response, data)


def input_view(environ, start_response):
    """Read wsgi.input one way (?mode=read|read-n|readline|readline-n|readlines|iter) and echo it.

    Headers describe the pieces the reads returned; the body is their concatenation.
    """
    query = _query(environ)
    mode = query.get("mode", "read")
    n = int(query.get("n", "1000"))
    stream = environ["wsgi.input"]
    pieces: list[bytes] = []
    if mode == "read":
        pieces.append(stream.read())
    elif mode == "read-n":
        for _ in range(10_000_000):
            data = stream.read(n)
            if not data:
                break
            pieces.append(data)
    elif mode == "readline":
        for _ in range(10_000_000):
            line = stream.readline()
            if not line:
                break
            pieces.append(line)
    elif mode == "readline-n":
        for _ in range(10_000_000):
            line = stream.readline(n)
            if not line:
                break
            pieces.append(line)
    elif mode == "readlines":
        pieces.extend(stream.readlines())
    elif mode == "iter":
        pieces.extend(stream)
    else:
        start_response("400 Bad Request", TEXT)
        return [b"unknown mode"]
    pieces = [p for p in pieces if p] or []
    body = b"".join(pieces)
    after = stream.read()
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("X-Pieces", str(len(pieces))),
            ("X-Max-Piece", str(max(map(len, pieces), default=0))),
            ("X-All-Bytes", str(all(type(p) is bytes for p in pieces))),
            ("X-Lines-End-In-Newline", str(all(p.endswith(b"\n") for p in pieces[:-1]))),
            ("X-After-EOF", repr(after)),
            ("X-Input-Rolled", str(getattr(stream, "_rolled", None))),
        ],
    )
    return [body]


def write_view(environ, start_response):
    """The legacy write() callable, then the returned iterable (?tail=1: a one-item list)."""
    write = start_response("200 OK", TEXT)
    write(b"one,")
    write(b"two,")
    if _query(environ).get("tail") == "1":
        return [b"three"]
    return [b"three,", b"four"]


def generator_view(environ, start_response):
    """A generator app: start_response runs on the first next(), not when the app is called."""
    count = int(_query(environ).get("n", "3"))
    start_response("200 OK", [*TEXT, ("X-Generated", "lazily")])
    for i in range(count):
        yield b"gen-%d;" % i


def exc_info_view(environ, start_response):
    """start_response, then again with exc_info before any body: the second status wins."""
    start_response("200 OK", [*TEXT, ("X-First", "yes")])
    try:
        raise ValueError("replaced before the body")
    except ValueError:
        start_response("500 Internal Server Error", [*TEXT, ("X-Second", "yes")], sys.exc_info())
    return [b"the error page"]


def exc_info_late_view(environ, start_response):
    """Body sent, then start_response(exc_info): that call must raise, so the rest never goes."""
    start_response("200 OK", TEXT)
    yield b"first;"
    yield b"second;"
    try:
        raise RuntimeError("late failure after the body started")
    except RuntimeError:
        start_response("500 Internal Server Error", TEXT, sys.exc_info())
    yield b"never sent"


def double_start_view(environ, start_response):
    """start_response twice without exc_info: an app error."""
    start_response("200 OK", TEXT)
    start_response("201 Created", TEXT)
    return [b"should not be sent"]


class Closing:
    """A response iterable with close(); ?fail=1 raises after the chunks, ?size= makes them big."""

    def __init__(self, chunks: list[bytes], fail: bool) -> None:
        self.chunks = chunks
        self.fail = fail

    def __iter__(self):
        yield from self.chunks
        if self.fail:
            raise RuntimeError("iteration failure inside a closing iterable")

    def close(self) -> None:
        global CLOSED
        CLOSED += 1


def close_view(environ, start_response):
    query = _query(environ)
    size = int(query.get("size", "0"))
    count = int(query.get("count", "2"))
    chunks = [b"x" * size for _ in range(count)] if size else [b"closing-1;", b"closing-2;"]
    start_response("200 OK", TEXT)
    return Closing(chunks, query.get("fail") == "1")


def close_count_view(environ, start_response):
    start_response("200 OK", TEXT)
    return [str(CLOSED).encode()]


def raise_view(environ, start_response):
    raise RuntimeError("conformance boom")


def raise_in_iter_view(environ, start_response):
    """Fails on the first next(), before start_response: the server must answer 500."""
    raise RuntimeError("conformance boom in the iterable")
    yield b"unreachable"  # pragma: no cover


def pid_view(environ, start_response):
    start_response("200 OK", TEXT)
    return [str(os.getpid()).encode()]


def errors_view(environ, start_response):
    """Write a marker line to wsgi.errors, which must reach the server's log."""
    marker = _query(environ).get("marker", "wsgi-errors-marker")
    environ["wsgi.errors"].write(f"{marker}\n")
    environ["wsgi.errors"].flush()
    start_response("200 OK", TEXT)
    return [b"logged"]


def length_mismatch_view(environ, start_response):
    """Content-Length: 10, body shorter (?mode=short, 6 bytes) or longer (?mode=long, 20)."""
    query = _query(environ)
    body = b"abcdef" if query.get("mode") == "short" else b"0123456789ABCDEFGHIJ"
    start_response("200 OK", [*TEXT, ("Content-Length", "10")])
    if query.get("chunks") == "2":
        half = len(body) // 2
        return [body[:half], body[half:]]
    return [body]


def no_length_view(environ, start_response):
    """Several chunks and no Content-Length: chunked on HTTP/1.1, close-delimited on 1.0."""
    start_response("200 OK", TEXT)
    return [b"a" * 10, b"", b"b" * 10, b"c" * 10]


def file_view(environ, start_response):
    """environ['wsgi.file_wrapper'] over a regular file (?size=, ?offset= seeks first) or
    ?kind=bytesio (not a file: the server must iterate it)."""
    query = _query(environ)
    size = int(query.get("size", "100000"))
    offset = int(query.get("offset", "0"))
    if query.get("kind") == "bytesio":
        filelike = BytesIO(file_bytes(size))
    else:
        if size not in _files:
            fd, path = tempfile.mkstemp(prefix=f"prodserve-conformance-{size}-")
            with os.fdopen(fd, "wb") as f:
                f.write(file_bytes(size))
            _files[size] = path
        filelike = open(_files[size], "rb")  # noqa: SIM115 - the server closes it
    filelike.seek(offset)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](filelike, 8192)


def status_view(environ, start_response):
    """/status/<code>[?body=1]: that status; with ?body=1 the app wrongly returns a body too."""
    code = int(environ["PATH_INFO"].split("/")[2])
    reason = {204: "No Content", 304: "Not Modified"}.get(code, "Whatever")
    start_response(f"{code} {reason}", [("X-Status", str(code))])
    if _query(environ).get("body") == "1":
        return [b"this body ", b"must not be sent"]
    return []


def head_view(environ, start_response):
    """The same headers for GET and HEAD, an explicit Content-Length, a two-chunk body."""
    body = b"head-body-" * 10
    start_response("200 OK", [*TEXT, ("Content-Length", str(len(body)))])
    return [body[:50], body[50:]]


def one_chunk_view(environ, start_response):
    """A one-item list without Content-Length: the server knows the length."""
    start_response("200 OK", TEXT)
    return [b"one chunk body"]


def app_close_view(environ, start_response):
    """The app asks for the connection to close (a hop-by-hop header the server owns)."""
    start_response("200 OK", [*TEXT, ("Connection", "close")])
    return [b"closing"]


def app_date_view(environ, start_response):
    """The app sets its own Date and Server: the response must still carry one of each."""
    start_response(
        "200 OK",
        [*TEXT, ("Date", "Tue, 01 Jan 2030 00:00:00 GMT"), ("Server", "conformance-app")],
    )
    return [b"dated"]


def bad_header_view(environ, start_response):
    """A header value with CR LF in it: response splitting the server must refuse (500)."""
    start_response("200 OK", [*TEXT, ("X-Injected", "a\r\nSet-Cookie: evil=1")])
    return [b"must not be sent"]


def custom_head_view(environ, start_response):
    """?status= and ?name=&value= as the app's status and one header: what the server must
    refuse (control characters, malformed or interim statuses) gets a 500 instead."""
    query = _query(environ)
    headers = [*TEXT]
    if "name" in query:
        headers.append((query["name"], query.get("value", "")))
    start_response(query.get("status", "200 OK"), headers)
    return [b"custom head body"]


def two_lengths_view(environ, start_response):
    """Two Content-Length headers (?same=1: equal): different ones cannot both be true."""
    second = "4" if _query(environ).get("same") == "1" else "5"
    start_response("200 OK", [*TEXT, ("Content-Length", "4"), ("Content-Length", second)])
    return [b"four"]


def write_then_raise_view(environ, start_response):
    """Part of a body through write(), then an exception: the response can only be cut short."""
    write = start_response("200 OK", TEXT)
    write(b"partial")
    raise RuntimeError("conformance boom after write")


ROUTES = {
    "environ": environ_view,
    "input": input_view,
    "write": write_view,
    "generator": generator_view,
    "exc-info": exc_info_view,
    "exc-info-late": exc_info_late_view,
    "double-start": double_start_view,
    "close": close_view,
    "close-count": close_count_view,
    "raise": raise_view,
    "raise-in-iter": raise_in_iter_view,
    "pid": pid_view,
    "errors": errors_view,
    "length-mismatch": length_mismatch_view,
    "no-length": no_length_view,
    "file": file_view,
    "status": status_view,
    "head": head_view,
    "one-chunk": one_chunk_view,
    "app-close": app_close_view,
    "app-date": app_date_view,
    "bad-header": bad_header_view,
    "custom-head": custom_head_view,
    "two-lengths": two_lengths_view,
    "write-then-raise": write_then_raise_view,
}


def application(environ, start_response):
    segment = environ["PATH_INFO"].split("/")[1] if environ["PATH_INFO"].startswith("/") else ""
    view = ROUTES.get(segment)
    if view is None:
        start_response("404 Not Found", TEXT)
        return [b"no such conformance path"]
    return view(environ, start_response)
