"""Static files in production: `prodserve --serve-static` over real sockets, WhiteNoise as the
alternative, the wrapper's rules one by one, and the system check.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.test import override_settings

from django_prodserve import checks, static
from django_prodserve.conf import resolve
from django_prodserve.management.commands.prodserve import Command
from tests.client import Connection, get, request
from tests.conftest import MANAGE, ROOT, Server, server_environ, wait_until

MiB = 1024 * 1024
APP_JS = b"console.log('served by prodserve');\n" * 40
BIG = random.Random(8).randbytes(3 * MiB + 123)  # past any socket buffer: sendfile loops
SECRET = b"the secret outside STATIC_ROOT"
GZ = gzip.compress(APP_JS)
BR = b"not really brotli, but the server only picks the file"
NESTED_GZ = gzip.compress(b"a { color: red }\n")
PLAIN_STORAGE = "django.contrib.staticfiles.storage.StaticFilesStorage"


@dataclass
class Tree:
    root: Path
    src: Path
    manifest: dict[str, str]


def collect(base: Path, storage: str | None = None) -> Tree:
    """Sources → `manage.py collectstatic` → STATIC_ROOT, plus what a deploy step would add:
    precompressed siblings, and symlinks in and out of the root."""
    src, root = base / "src", base / "static"
    (src / "dir").mkdir(parents=True)
    (src / "app.js").write_bytes(APP_JS)
    (src / "big.bin").write_bytes(BIG)
    (src / "empty.txt").write_bytes(b"")
    (src / "dir" / "nested.css").write_bytes(b"a { color: red }\n")
    (src / "héllo wörld.txt").write_bytes(b"unicode name")
    (src / "lib.0123456789ab.js").write_bytes(b"hashed-looking name")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "testproject.settings_static"}
    env.update(TESTPROJECT_STATIC_ROOT=str(root), TESTPROJECT_STATIC_SRC=str(src))
    if storage:
        env["TESTPROJECT_STATIC_STORAGE"] = storage
    subprocess.run(
        [sys.executable, str(MANAGE), "collectstatic", "--noinput", "-v0"], check=True, env=env
    )
    (root / "app.js.gz").write_bytes(GZ)
    (root / "app.js.br").write_bytes(BR)
    (root / "dir" / "nested.css.gz").write_bytes(NESTED_GZ)
    (base / "secret.txt").write_bytes(SECRET)
    (base / "outside").mkdir()
    (base / "outside" / "file.txt").write_bytes(SECRET)
    (root / "leak.txt").symlink_to(base / "secret.txt")
    (root / "outdir").symlink_to(base / "outside", target_is_directory=True)
    (root / "alias.js").symlink_to("app.js")
    manifest_file = root / "staticfiles.json"
    manifest = json.loads(manifest_file.read_text())["paths"] if manifest_file.exists() else {}
    return Tree(root, src, manifest)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Tree:
    """Collected with ManifestStaticFilesStorage: hashed copies and a staticfiles.json."""
    return collect(tmp_path_factory.mktemp("manifest"))


@pytest.fixture(scope="module")
def start(project_db):
    """start(tree, settings, *args, storage=None) -> a ready one-worker Server for this module."""
    servers: list[Server] = []

    def start(tree: Tree, settings: str, *args: str, storage: str | None = None) -> Server:
        env = server_environ()
        env.update(
            TESTPROJECT_DB=str(project_db),
            PYTHONUNBUFFERED="1",
            DJANGO_SETTINGS_MODULE=settings,
            TESTPROJECT_STATIC_ROOT=str(tree.root),
            TESTPROJECT_STATIC_SRC=str(tree.src),
        )
        if storage:
            env["TESTPROJECT_STATIC_STORAGE"] = storage
        server = Server(["127.0.0.1:0", "-w", "1", *args], env, ROOT)
        servers.append(server)
        return server.wait_ready()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def server(start, tree) -> Server:
    return start(tree, "testproject.settings_static", "--serve-static", "--static-max-age", "120")


def head(port: int, path: str, headers: str = "") -> object:
    raw = f"HEAD {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n".encode()
    return request(port, raw, method="HEAD")


# Serving


def test_a_collected_file_is_served_with_its_type_length_and_validators(server):
    response = get(server.port, "/static/app.js")
    assert response.status == 200
    assert response.body == APP_JS
    assert response.header("Content-Type") == "text/javascript; charset=utf-8"
    assert response.header("Content-Length") == str(len(APP_JS))
    assert response.header("Accept-Ranges") == "bytes"
    assert response.header("ETag").startswith('"')
    assert response.header("Last-Modified").endswith(" GMT")
    assert response.header("Content-Encoding") is None


def test_a_large_file_goes_out_byte_exact_through_sendfile(server):
    response = get(server.port, "/static/big.bin")
    assert response.header("Content-Type") == "application/octet-stream"
    assert response.header("Content-Length") == str(len(BIG))
    assert response.body == BIG


def test_an_empty_file_and_a_percent_encoded_utf8_name_are_served(server):
    empty = get(server.port, "/static/empty.txt")
    assert (empty.status, empty.body, empty.header("Content-Length")) == (200, b"", "0")
    unicode = get(server.port, "/static/h%C3%A9llo%20w%C3%B6rld.txt")
    assert (unicode.status, unicode.body) == (200, b"unicode name")


def test_head_sends_the_get_headers_without_a_body_and_keeps_the_connection(server):
    with Connection("127.0.0.1", server.port) as conn:
        conn.send(b"HEAD /static/big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        response = conn.read_response("HEAD")
        conn.send(b"GET /static/app.js HTTP/1.1\r\nHost: localhost\r\n\r\n")
        after = conn.read_response()
    assert response.status == 200
    assert response.header("Content-Length") == str(len(BIG))
    assert response.header("ETag") == get(server.port, "/static/big.bin").header("ETag")
    assert after.body == APP_JS  # no stray body bytes were sent after the HEAD response


def test_other_requests_still_reach_django(server):
    assert get(server.port, "/hello/").body == b"Hello, world!"
    missing = get(server.port, "/static/missing.js")
    assert missing.status == 404 and b"Not Found" in missing.body


def test_methods_other_than_get_and_head_on_a_file_are_405(server):
    response = request(
        server.port, b"POST /static/app.js HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
    )
    assert response.status == 405
    assert response.header("Allow") == "GET, HEAD"
    assert response.body == b""


# Caching


def test_names_hashed_by_the_manifest_are_immutable_for_a_year(server, tree):
    hashed = tree.manifest["app.js"]
    response = get(server.port, f"/static/{hashed}")
    assert response.body == APP_JS
    assert response.header("Cache-Control") == "public, max-age=31536000, immutable"


def test_unhashed_names_get_the_static_max_age_even_when_they_look_hashed(server, tree):
    # With a manifest, only names in it count: lib.0123456789ab.js is a source name here.
    assert "lib.0123456789ab.js" in tree.manifest
    for path in ("/static/app.js", "/static/lib.0123456789ab.js"):
        assert get(server.port, path).header("Cache-Control") == "public, max-age=120"


def test_without_a_manifest_the_hash_pattern_decides(start, tmp_path_factory):
    plain = collect(tmp_path_factory.mktemp("plain"), PLAIN_STORAGE)
    assert not plain.manifest
    server = start(plain, "testproject.settings_static", "--serve-static", storage=PLAIN_STORAGE)
    hashed = get(server.port, "/static/lib.0123456789ab.js")
    assert hashed.header("Cache-Control") == "public, max-age=31536000, immutable"
    assert get(server.port, "/static/app.js").header("Cache-Control") == "public, max-age=60"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ("If-None-Match: {etag}", 304),
        ("If-None-Match: W/{etag}", 304),
        ('If-None-Match: "other", {etag}', 304),
        ("If-None-Match: *", 304),
        ('If-None-Match: "other"', 200),
        ("If-Modified-Since: {last_modified}", 304),
        ("If-Modified-Since: Thu, 01 Jan 2037 00:00:00 GMT", 304),
        ("If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT", 200),
        ("If-Modified-Since: not a date", 200),
        # RFC 9110 §13.2.2: a failing If-None-Match wins over a passing If-Modified-Since.
        ('If-None-Match: "other"\r\nIf-Modified-Since: {last_modified}', 200),
        ("If-None-Match: {etag}\r\nIf-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT", 304),
    ],
)
def test_conditional_requests(server, headers, status):
    fresh = get(server.port, "/static/app.js")
    filled = headers.format(etag=fresh.header("ETag"), last_modified=fresh.header("Last-Modified"))
    response = get(server.port, "/static/app.js", filled + "\r\n")
    assert response.status == status
    if status == 304:
        assert response.body == b"" and response.header("Content-Length") is None
        assert response.header("ETag") == fresh.header("ETag")
        assert response.header("Cache-Control") == fresh.header("Cache-Control")
    else:
        assert response.body == APP_JS


def test_a_304_leaves_the_connection_usable(server):
    etag = get(server.port, "/static/app.js").header("ETag")
    with Connection("127.0.0.1", server.port) as conn:
        conn.send(
            f"GET /static/app.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n".encode()
        )
        assert conn.read_response().status == 304
        conn.send(b"GET /static/empty.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.read_response().status == 200


# Ranges

SIZE = len(BIG)


@pytest.mark.parametrize(
    ("spec", "first", "stop"),
    [
        ("bytes=0-0", 0, 1),
        ("bytes=0-99", 0, 100),
        ("bytes=1000000-2000000", 1000000, 2000001),
        ("bytes=3000000-", 3000000, SIZE),
        ("bytes=-500", SIZE - 500, SIZE),
        ("bytes=-99999999", 0, SIZE),
        (f"bytes={SIZE - 10}-{SIZE + 1000}", SIZE - 10, SIZE),
        ("BYTES = 5 - 9", 5, 10),
    ],
)
def test_a_single_range_is_206_with_exactly_those_bytes(server, spec, first, stop):
    response = get(server.port, "/static/big.bin", f"Range: {spec}\r\n")
    assert response.status == 206
    assert response.header("Content-Range") == f"bytes {first}-{stop - 1}/{SIZE}"
    assert response.header("Content-Length") == str(stop - first)
    assert response.body == BIG[first:stop]


@pytest.mark.parametrize(
    "spec",
    [
        "bytes=0-1,5-6",
        "bytes=5-1",
        "items=0-1",
        "bytes=-",
        "bytes=abc",
        "bytes=0-1;x",
        "bytes=0-" + "9" * 5000,  # issue 18 #11: int() refused it, a 500 and a traceback
        "bytes=" + "1" * 5000 + "-",
    ],
    ids=lambda spec: spec[:16],
)
def test_ranges_we_do_not_serve_get_the_whole_file(server, spec):
    response = get(server.port, "/static/app.js", f"Range: {spec}\r\n")
    assert (response.status, response.body) == (200, APP_JS)
    assert response.header("Content-Range") is None


@pytest.mark.parametrize("spec", [f"bytes={len(APP_JS)}-", "bytes=99999-99999", "bytes=-0"])
def test_an_unsatisfiable_range_is_416_with_the_size(server, spec):
    response = get(server.port, "/static/app.js", f"Range: {spec}\r\n")
    assert response.status == 416
    assert response.header("Content-Range") == f"bytes */{len(APP_JS)}"
    assert response.body == b""


def test_if_range_applies_the_range_only_while_the_file_is_unchanged(server):
    fresh = get(server.port, "/static/app.js")
    for validator in (fresh.header("ETag"), fresh.header("Last-Modified")):
        ranged = get(
            server.port, "/static/app.js", f"Range: bytes=0-3\r\nIf-Range: {validator}\r\n"
        )
        assert (ranged.status, ranged.body) == (206, APP_JS[:4])
    stale = get(server.port, "/static/app.js", 'Range: bytes=0-3\r\nIf-Range: "old"\r\n')
    assert (stale.status, stale.body) == (200, APP_JS)


def test_head_ignores_range(server):
    response = head(server.port, "/static/app.js", "Range: bytes=0-3\r\n")
    assert response.status == 200
    assert response.header("Content-Length") == str(len(APP_JS))


# Precompressed siblings


@pytest.mark.parametrize(
    ("accept", "coding", "body"),
    [
        ("gzip, deflate, br", "br", BR),
        ("gzip", "gzip", GZ),
        ("x-gzip", "gzip", GZ),
        ("br;q=0, gzip", "gzip", GZ),
        ("br;q=0.2, gzip;q=0.8", "gzip", GZ),
        ("*", "br", BR),
        ("*;q=0", None, APP_JS),
        ("identity", None, APP_JS),
        ("deflate", None, APP_JS),
        (None, None, APP_JS),
    ],
)
def test_precompressed_siblings_follow_accept_encoding(server, accept, coding, body):
    headers = f"Accept-Encoding: {accept}\r\n" if accept is not None else ""
    response = get(server.port, "/static/app.js", headers)
    assert response.status == 200
    assert response.header("Content-Encoding") == coding
    assert response.header("Vary") == "Accept-Encoding"
    assert response.header("Content-Type") == "text/javascript; charset=utf-8"
    assert response.header("Content-Length") == str(len(body))
    assert response.body == body


def test_each_variant_has_its_own_etag_and_ranges_apply_to_it(server):
    plain = get(server.port, "/static/app.js")
    gz = get(server.port, "/static/app.js", "Accept-Encoding: gzip\r\n")
    assert plain.header("ETag") != gz.header("ETag")
    revalidated = get(
        server.port,
        "/static/app.js",
        f"Accept-Encoding: gzip\r\nIf-None-Match: {gz.header('ETag')}\r\n",
    )
    assert revalidated.status == 304 and revalidated.header("Vary") == "Accept-Encoding"
    ranged = get(server.port, "/static/app.js", "Accept-Encoding: gzip\r\nRange: bytes=0-9\r\n")
    assert (ranged.status, ranged.body) == (206, GZ[:10])
    assert ranged.header("Content-Encoding") == "gzip"


def test_only_the_siblings_that_exist_are_offered(server):
    response = get(server.port, "/static/dir/nested.css", "Accept-Encoding: br, gzip\r\n")
    assert (response.header("Content-Encoding"), response.body) == ("gzip", NESTED_GZ)
    no_sibling = get(server.port, "/static/empty.txt", "Accept-Encoding: br, gzip\r\n")
    assert no_sibling.header("Vary") is None and no_sibling.header("Content-Encoding") is None


def test_a_gz_file_asked_for_by_name_is_sent_as_gzip_data(server):
    response = get(server.port, "/static/app.js.gz", "Accept-Encoding: gzip\r\n")
    assert response.body == GZ
    assert response.header("Content-Type") == "application/gzip"
    assert response.header("Content-Encoding") is None


# Never outside STATIC_ROOT

ESCAPES = [
    "/static/../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/..%2fsecret.txt",
    "/static/%2e%2e%2fsecret.txt",
    "/static/dir/..%2f..%2fsecret.txt",
    "/static/dir/%2e%2e/%2e%2e/secret.txt",
    "/static/..%5csecret.txt",
    "/static/dir%5c..%5c..%5csecret.txt",
    "/static/%c0%ae%c0%ae/secret.txt",
    "/static/app.js%00.png",
    "/static/%00",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/leak.txt",
    "/static/outdir/file.txt",
    "/static/./app.js",
    "/static/dir/",
    "/static/dir",
    "/static/",
    "/static",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_paths_that_leave_the_root_or_name_no_file_are_404(server, path):
    response = get(server.port, path)
    assert response.status == 404
    assert SECRET not in response.body
    assert response.header("ETag") is None  # Django's 404, not a file


@pytest.mark.parametrize("target", [b"/static/..\\secret.txt", b"/static/app.js\x00.png"])
def test_raw_backslashes_and_nul_bytes_never_serve_a_file(server, target):
    response = request(server.port, b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert response.status in (400, 404)
    assert SECRET not in response.body and response.body != APP_JS


def test_a_symlink_that_stays_inside_the_root_is_followed(server):
    assert get(server.port, "/static/alias.js").body == APP_JS


def test_served_files_are_closed_after_each_response(server, tree):
    (worker,) = server.worker_pids()
    etag = get(server.port, "/static/big.bin").header("ETag")
    for _ in range(20):
        assert get(server.port, "/static/big.bin").body == BIG
        assert get(server.port, "/static/app.js", "Range: bytes=1-2\r\n").status == 206
        assert get(server.port, "/static/app.js", "Accept-Encoding: gzip\r\n").body == GZ
        assert get(server.port, "/static/app.js", f"If-None-Match: {etag}\r\n").status == 200
        assert head(server.port, "/static/big.bin").status == 200

    def static_files_open() -> list[str]:
        fd_dir = f"/proc/{worker}/fd"
        targets = []
        for fd in os.listdir(fd_dir):
            try:
                targets.append(os.readlink(f"{fd_dir}/{fd}"))
            except FileNotFoundError:
                pass
        return [t for t in targets if t.startswith(str(tree.root.parent))]

    assert wait_until(lambda: not static_files_open(), timeout=5), static_files_open()


# WhiteNoise, the alternative


def test_whitenoise_middleware_serves_the_same_files_under_prodserve(start, tree):
    pytest.importorskip("whitenoise", reason="whitenoise is not installed (pip install whitenoise)")
    server = start(tree, "testproject.settings_whitenoise")
    hashed = get(server.port, f"/static/{tree.manifest['app.js']}")
    assert (hashed.status, hashed.body) == (200, APP_JS)
    assert "immutable" in hashed.header("Cache-Control")
    assert get(server.port, "/static/big.bin").body == BIG
    ranged = get(server.port, "/static/big.bin", "Range: bytes=1000000-1000099\r\n")
    assert (ranged.status, ranged.body) == (206, BIG[1000000:1000100])
    gz = get(server.port, "/static/app.js", "Accept-Encoding: gzip\r\n")
    assert (gz.header("Content-Encoding"), gz.body) == ("gzip", GZ)
    etag = hashed.header("ETag")
    assert (
        get(server.port, f"/static/{tree.manifest['app.js']}", f"If-None-Match: {etag}\r\n").status
        == 304
    )
    assert get(server.port, "/hello/").body == b"Hello, world!"


def test_serve_static_serves_what_whitenoise_storage_compressed(start, tmp_path_factory):
    pytest.importorskip("whitenoise", reason="whitenoise is not installed (pip install whitenoise)")
    storage = "whitenoise.storage.CompressedManifestStaticFilesStorage"
    compressed = collect(tmp_path_factory.mktemp("whitenoise"), storage)
    server = start(compressed, "testproject.settings_static", "--serve-static", storage=storage)
    response = get(
        server.port, f"/static/{compressed.manifest['app.js']}", "Accept-Encoding: gzip\r\n"
    )
    assert response.header("Content-Encoding") == "gzip"
    assert response.header("Cache-Control") == "public, max-age=31536000, immutable"
    assert gzip.decompress(response.body) == APP_JS


# The wrapper in-process: its rules, and what a non-static request costs


@pytest.mark.parametrize(
    ("header", "size", "span"),
    [
        ("bytes=0-9", 100, (0, 10)),
        ("bytes=90-", 100, (90, 100)),
        ("bytes=-10", 100, (90, 100)),
        ("bytes=50-500", 100, (50, 100)),
        ("bytes=100-", 100, (100, 100)),  # unsatisfiable: start >= stop
        ("bytes=-0", 100, (100, 100)),
        ("bytes=0-", 0, (0, 0)),
        ("bytes=9-0", 100, None),
        ("bytes=0-1,3-4", 100, None),
        ("bytes=-", 100, None),
        ("octets=0-1", 100, None),
    ],
)
def test_byte_range_rules(header, size, span):
    assert static._byte_range(header, size) == span


@pytest.mark.parametrize(
    ("header", "codings"),
    [
        ("", []),
        ("gzip, br", ["br", "gzip"]),
        ("gzip;q=1.0, br;q=0.9", ["gzip", "br"]),
        ("br;q=0", []),
        ("*, gzip;q=0", ["br"]),
        ("gzip;q=oops", []),
        ("GZIP", ["gzip"]),
    ],
)
def test_accept_encoding_rules(header, codings):
    assert static._accepted_codings(header) == codings


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("app.js", "app.js"),
        ("dir/nested.css", "dir/nested.css"),
        ("h\xc3\xa9llo.txt", "héllo.txt"),  # PATH_INFO carries UTF-8 bytes as latin-1
        ("..", None),
        ("dir/../app.js", None),
        ("./app.js", None),
        ("/etc/passwd", None),
        ("dir//x", None),
        ("dir/", None),
        ("", None),
        ("a\\b", None),
        ("a\x00b", None),
        ("\xc0\xae\xc0\xae", None),  # overlong UTF-8 for "..": not UTF-8 at all
    ],
)
def test_file_name_rules(raw, name):
    assert static._file_name(raw) == name


def test_a_non_static_request_reaches_the_app_untouched(tmp_path, monkeypatch):
    """No filesystem access and no copy: the app gets the very environ and start_response."""
    seen = []

    def app(environ, start_response):
        seen.append((environ, start_response))
        return [b"app"]

    wrapper = static.wrap(static.StaticFiles(app, str(tmp_path), "/static/", 60, None))
    monkeypatch.setattr(os, "lstat", lambda *a: pytest.fail("a non-static request hit the disk"))
    environ, start_response = {"PATH_INFO": "/hello/", "REQUEST_METHOD": "GET"}, object()
    assert wrapper(environ, start_response) == [b"app"]
    assert seen == [(environ, start_response)] and seen[0][0] is environ


def loaded_app(tmp_path, debug: bool, cli: dict):
    options = {"use_static_handler": True, "insecure_serving": False}
    config, _, problems = resolve({}, {}, cli)
    assert not problems
    with override_settings(DEBUG=debug, STATIC_ROOT=str(tmp_path)):
        return Command.wsgi_loader(options, config)()


def test_serve_static_wraps_the_app_unless_debug_serves_static_already(tmp_path):
    plain = loaded_app(tmp_path, False, {})
    assert loaded_app(tmp_path, False, {"serve_static": True}).__wrapped__ is plain
    assert isinstance(loaded_app(tmp_path, True, {"serve_static": True}), StaticFilesHandler)
    assert not hasattr(plain, "__wrapped__")


# The system check


def static_check_ids() -> list[str]:
    return [
        m.id for m in checks.check_settings(None) if m.id in ("prodserve.E020", "prodserve.W020")
    ]


def test_check_flags_serve_static_without_static_root(tmp_path):
    with override_settings(PRODSERVE={"serve_static": True}, STATIC_ROOT=None):
        messages = [m for m in checks.check_settings(None) if m.id == "prodserve.E020"]
        assert messages and "collectstatic" in messages[0].hint
    with override_settings(PRODSERVE={"serve_static": True}, STATIC_ROOT=str(tmp_path / "none")):
        messages = [m for m in checks.check_settings(None) if m.id == "prodserve.W020"]
        assert messages and "collectstatic" in messages[0].hint
    with override_settings(PRODSERVE={"serve_static": True}, STATIC_ROOT=str(tmp_path)):
        assert static_check_ids() == []
    with override_settings(PRODSERVE={}, STATIC_ROOT=None):
        assert static_check_ids() == []


def test_check_sees_the_serve_static_flag(tmp_path):
    with override_settings(PRODSERVE={}, STATIC_ROOT=str(tmp_path / "none")):
        with checks.command_line({"serve_static": True}):
            assert static_check_ids() == ["prodserve.W020"]
