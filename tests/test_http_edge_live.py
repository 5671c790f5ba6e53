"""The HTTP edge against a live server: smuggling pairs, pipelining, keep-alive, 100-continue,
limits, and one worker that stays healthy through all of it.

Two servers for the module (app inline, app on threads), each with one worker and an access log
of "<pid> <request line> <status>":
- "the smuggled request never ran" is read off the access log: each one asks for ?smuggled=...;
- "the same worker" is its pid, before and after.
The sans-I/O rules behind these live in tests/http_corpus.py and tests/test_http_edge.py.
"""

from __future__ import annotations

import json
import os
import random
import select
import socket
import struct
import time
import uuid

import pytest

from tests.client import Connection, Response, request
from tests.conftest import wait_until
from tests.http_corpus import ACCEPT, REJECT

LOCALHOST = b"Host: localhost\r\n"
SMUGGLED = b"GET /environ/?smuggled=1 HTTP/1.1\r\n" + LOCALHOST + b"\r\n"
UPLOAD = b"POST /upload/ HTTP/1.1\r\n" + LOCALHOST


@pytest.fixture(scope="module", params=["1", "4"], ids=["inline", "threads"])
def server(request, start_module_server):
    """The app runs inline in the event loop, or on a pool of threads: both paths, every test."""
    return start_module_server(
        "-w", "1", "--threads", request.param, "--limit-request-body", "1000",
        "--access-logfile", "-", "--access-logformat", "%(p)s %(r)s %(s)s",
    )  # fmt: skip


def log_after(server, mark: int) -> list[str]:
    """What the server logged since `mark`, once its worker has served a request made after it.

    One worker serves connections in order, so a line the earlier exchange caused (an access
    line for a smuggled request, a traceback) is in the log before this request's line.
    """
    token = uuid.uuid4().hex
    probe = f"GET /hello/?after={token} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    assert request(server.port, probe.encode()).status == 200
    server.wait_for(rf"GET /hello/\?after={token} HTTP/1\.1 200", start=mark)
    return server.output.split("\n")[mark:]


def assert_clean(lines: list[str]) -> None:
    assert not [line for line in lines if "smuggled" in line or "Traceback" in line]


def exchange(server, raw: bytes, responses: int) -> tuple[list[Response], bool]:
    """Send raw in one write; read that many responses; then whether the server closed."""
    with Connection(server.host, server.port) as conn:
        conn.send(raw)
        got = [conn.read_response() for _ in range(responses)]
        return got, conn.is_closed(timeout=0.5)


def smuggle_te(header_lines: bytes, length: bool = True) -> bytes:
    """SMUGGLED after a chunked body's end, with a Content-Length that covers it (CL.TE)."""
    body = b"0\r\n\r\n" + SMUGGLED
    cl = b"Content-Length: %d\r\n" % len(body) if length else b""
    return UPLOAD + header_lines + cl + b"\r\n" + body


# (id, raw: an attack followed by SMUGGLED, the one status it gets, source)
ATTACKS = [
    ("cl-te", smuggle_te(b"Transfer-Encoding: chunked\r\n"), 400, "RFC 9112 §6.1; CL.TE"),
    ("te-cl", UPLOAD + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
     + b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n", 400,
     "RFC 9112 §6.1; TE.CL, CVE-2024-6827"),
    ("te-te-x-chunked", smuggle_te(b"Transfer-Encoding: xchunked\r\n"), 400, "TE.TE"),
    ("te-te-space-before-colon", smuggle_te(b"Transfer-Encoding : chunked\r\n"), 400,
     "TE.TE; RFC 9112 §5.1"),
    ("te-te-second-line", smuggle_te(b"Transfer-Encoding: chunked\r\nTransfer-encoding: x\r\n"),
     400, "TE.TE; CVE-2024-1135"),
    ("te-te-vtab", smuggle_te(b"Transfer-Encoding:\x0bchunked\r\n"), 400, "TE.TE; CVE-2019-16789"),
    ("te-te-obs-fold", smuggle_te(b"Transfer-Encoding:\r\n chunked\r\n"), 400,
     "TE.TE; RFC 9112 §5.2"),
    ("te-te-bare-lf", smuggle_te(b"X: y\nTransfer-Encoding: chunked\r\n"), 400,
     "TE.TE; CVE-2019-16785"),
    ("te-te-chunked-then-identity",
     smuggle_te(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", length=False),
     400, "CVE-2024-1135; gunicorn invalid/chunked_08"),
    ("te-te-empty-element", smuggle_te(b"Transfer-Encoding: ,chunked\r\n", length=False), 400,
     "CVE-2024-6827"),
    ("te-identity-chunked", smuggle_te(b"Transfer-Encoding: identity, chunked\r\n", length=False),
     501, "RFC 9112 §6.1"),
    ("cl-cl", UPLOAD + b"Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED)
     + SMUGGLED, 400, "RFC 9110 §8.6; gunicorn invalid/021"),
    ("cl-plus", UPLOAD + b"Content-Length: +0\r\n\r\n" + SMUGGLED, 400, "CVE-2022-24761"),
    ("chunk-size-0x", UPLOAD + b"Transfer-Encoding: chunked\r\n\r\n0x0\r\n\r\n" + SMUGGLED, 400,
     "CVE-2022-24761"),
    ("chunk-terminator", UPLOAD + b"Transfer-Encoding: chunked\r\n\r\n1\r\nZXX0\r\n\r\n"
     + SMUGGLED, 400, "CVE-2025-43859"),
    ("chunk-ext-bare-lf", UPLOAD + b"Transfer-Encoding: chunked\r\n\r\n2;\nxx\r\n0\r\n\r\n"
     + SMUGGLED, 400, "CVE-2025-55315"),
    ("http10-te-and-cl", b"POST /upload/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED, 400, "RFC 9112 §6.1; gunicorn chunked_05"),
    ("bad-first-request", b"GET /hello/ HTTP/1.1\r\n" + LOCALHOST + b"Bad Header\r\n\r\n"
     + SMUGGLED, 400, "CVE-2024-49768 (waitress)"),
    ("upgrade-with-body", UPLOAD + b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED, 501, "RFC 9110 §7.8"),
    ("connect", b"CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n" + SMUGGLED, 501,
     "RFC 9110 §9.3.6"),
    ("absolute-form-bad-port", b"GET http://localhost:99999/ HTTP/1.1\r\n" + LOCALHOST
     + b"\r\n" + SMUGGLED, 400, "RFC 3986 §3.2.3 (crashed the worker in wsgi._origin_path)"),
    ("host-twice", b"GET /hello/ HTTP/1.1\r\n" + LOCALHOST + b"Host: evil.example\r\n\r\n"
     + SMUGGLED, 400, "RFC 9112 §3.2"),
    ("version-1.2", b"GET /hello/ HTTP/1.2\r\n" + LOCALHOST + b"\r\n" + SMUGGLED, 505,
     "RFC 9110 §15.6.6"),
    ("target-too-long", b"GET /hello/?" + b"a" * 9000 + b" HTTP/1.1\r\n" + LOCALHOST + b"\r\n"
     + SMUGGLED, 414, "limit_request_line 8190"),
    ("field-too-large", b"GET /hello/ HTTP/1.1\r\n" + LOCALHOST + b"X: " + b"a" * 9000
     + b"\r\n\r\n" + SMUGGLED, 431, "limit_request_field_size 8190"),
    ("body-too-large", UPLOAD + b"Content-Length: 1001\r\n\r\n" + SMUGGLED, 413,
     "limit_request_body 1000"),
    ("chunked-body-too-large", UPLOAD + b"Transfer-Encoding: chunked\r\n\r\n"
     + (b"258\r\n" + b"x" * 600 + b"\r\n") * 2 + SMUGGLED, 413, "limit_request_body 1000"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "status"), [a[1:3] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_attack_gets_one_error_a_close_and_the_smuggled_request_never_runs(server, raw, status):
    [pid] = server.worker_pids()
    mark = server.mark()
    [response], closed = exchange(server, raw, 1)
    assert (response.status, response.header("Connection"), closed) == (status, "close", True)
    lines = log_after(server, mark)
    assert_clean(lines)
    [logged] = [line for line in lines if "Bad request from 127.0.0.1: " in line]
    assert "INFO" in logged
    assert server.worker_pids() == [pid]


# Accepted, and still nothing smuggled


@pytest.mark.parametrize(
    "first",
    [
        b"GET /environ/?n=1 HTTP/1.1\r\n" + LOCALHOST + b"Connection: close\r\n\r\n",
        b"GET /environ/?n=1 HTTP/1.0\r\n\r\n",
        b"GET /environ/?n=1 HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
        b"GET /environ/?n=1 HTTP/1.1\r\n" + LOCALHOST + b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n\r\n",
    ],
    ids=["http11-close", "http10", "http10-keep-alive-and-close", "upgrade-ignored"],
)
def test_nothing_after_a_request_that_ends_the_connection_runs(server, first):
    """RFC 9112 §9.6; CVE-2024-49768. Upgrade is served as plain HTTP (RFC 9110 §7.8)."""
    mark = server.mark()
    [response], closed = exchange(server, first + SMUGGLED, 1)
    assert (response.status, response.header("Connection"), closed) == (200, "close", True)
    assert b'"QUERY_STRING": "n=1"' in response.body
    assert_clean(log_after(server, mark))


@pytest.mark.parametrize("path", [b"/upload/", b"/hello/"], ids=["read-by-the-app", "unread"])
def test_a_body_that_looks_like_a_request_is_only_data(server, path):
    """RFC 9112 §6.3: the body is read whole before the app runs, read or not by it."""
    mark = server.mark()
    first = b"POST " + path + b" HTTP/1.1\r\n" + LOCALHOST
    first += b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED
    then = b"GET /environ/?n=2 HTTP/1.1\r\n" + LOCALHOST + b"\r\n"
    [one, two], closed = exchange(server, first + then, 2)
    assert (one.status, two.status, closed) == (200, 200, False)
    assert one.body == (SMUGGLED if path == b"/upload/" else b"Hello, world!")
    assert b'"QUERY_STRING": "n=2"' in two.body
    assert_clean(log_after(server, mark))


def test_pipelined_requests_are_answered_in_order(server):
    raw = (
        b"GET /environ/?n=1 HTTP/1.1\r\n" + LOCALHOST + b"\r\n"
        + UPLOAD + b"Transfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n"
        + UPLOAD + b"Content-Length: 3\r\n\r\ndef"
        + b"GET /environ/?n=4 HTTP/1.1\r\n" + LOCALHOST + b"\r\n"
    )  # fmt: skip
    responses, closed = exchange(server, raw, 4)
    assert [r.status for r in responses] == [200] * 4 and not closed
    assert b'"QUERY_STRING": "n=1"' in responses[0].body
    assert (responses[1].body, responses[2].body) == (b"abc", b"def")
    assert b'"QUERY_STRING": "n=4"' in responses[3].body


def test_chunked_trailers_never_reach_the_environ(server):
    raw = (
        b"POST /environ/ HTTP/1.1\r\n" + LOCALHOST + b"Transfer-Encoding: chunked\r\n\r\n"
        b"2\r\nhi\r\n0\r\nX-Trailer: 1\r\nHost: evil.example\r\n\r\n"
    )
    [response], _ = exchange(server, raw, 1)
    assert response.status == 200
    assert b"X_TRAILER" not in response.body and b"evil" not in response.body
    assert b'"_body": "hi"' in response.body


def test_chunked_trailers_never_reach_the_next_request_on_the_connection(server):
    """A trailer section must not become the next request's headers (issue 18 #1): behind a
    proxy that forwards trailers and reuses upstream connections, that would be cross-user."""
    raw = (
        UPLOAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-Injected: x\r\n"
        b"Cookie: sessionid=attacker\r\nAuthorization: Basic YWRtaW46eA==\r\nHost: evil\r\n\r\n"
        b"GET /environ/ HTTP/1.1\r\n" + LOCALHOST + b"Cookie: mine=1\r\n\r\n"
    )
    [upload, response], closed = exchange(server, raw, 2)
    assert (upload.status, upload.body, response.status, closed) == (200, b"hi", 200, False)
    environ = json.loads(response.body)
    assert "HTTP_X_INJECTED" not in environ and "HTTP_AUTHORIZATION" not in environ
    assert (environ["HTTP_COOKIE"], environ["HTTP_HOST"]) == ("mine=1", "localhost")


def test_absolute_form_authority_wins_over_the_host_header(server):
    """RFC 9112 §3.2.2: the origin server ignores Host and uses the target's authority."""
    raw = b"GET http://localhost/environ/?a=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    [response], _ = exchange(server, raw, 1)
    assert response.status == 200
    assert b'"HTTP_HOST": "localhost"' in response.body
    assert b'"PATH_INFO": "/environ/"' in response.body


# Expect: 100-continue (RFC 9110 §10.1.1)


def test_100_continue_is_sent_before_the_body_is(server):
    with Connection(server.host, server.port) as conn:
        conn.send(UPLOAD + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        interim = conn.read_response()
        assert (interim.status, interim.raw_head) == (100, b"HTTP/1.1 100 Continue")
        conn.send(b"hello")
        response = conn.read_response()
    assert (response.status, response.body) == (200, b"hello")


def test_a_too_large_body_is_refused_instead_of_continued(server):
    [response], closed = exchange(
        server, UPLOAD + b"Expect: 100-continue\r\nContent-Length: 1001\r\n\r\n", 1
    )
    assert (response.status, closed) == (413, True)


def test_http10_expectation_is_ignored(server):
    """RFC 9110 §10.1.1: a 100-continue expectation in HTTP/1.0 MUST be ignored."""
    with Connection(server.host, server.port, timeout=0.5) as conn:
        conn.send(b"POST /upload/ HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        with pytest.raises(TimeoutError):
            conn.read_response()
        conn.sock.settimeout(5)
        conn.send(b"ok")
        response = conn.read_response()
    assert (response.status, response.body) == (200, b"ok")


# Keep-alive (RFC 9112 §9.3)


def test_http11_connection_persists_by_default(server):
    with Connection(server.host, server.port) as conn:
        for n in range(3):
            conn.send(b"GET /hello/?n=%d HTTP/1.1\r\n" % n + LOCALHOST + b"\r\n")
            response = conn.read_response()
            assert response.status == 200 and response.header("Connection") is None


def test_http10_keep_alive_persists_when_the_length_is_known(server):
    with Connection(server.host, server.port) as conn:
        for _ in range(2):
            conn.send(b"GET /hello/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = conn.read_response()
            assert (response.status, response.header("Connection")) == (200, "keep-alive")
            assert response.version == "HTTP/1.1"


def test_http10_keep_alive_closes_when_the_length_is_unknown(server):
    """No chunked coding in HTTP/1.0: a streamed body ends with the connection."""
    with Connection(server.host, server.port) as conn:
        conn.send(b"GET /stream/?n=3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        response = conn.read_response()
    assert (response.status, response.header("Connection")) == (200, "close")
    assert response.body == b"chunk 0\nchunk 1\nchunk 2\n"


# The connection ends early


def test_a_truncated_chunked_body_never_reaches_the_app(server):
    mark = server.mark()
    with Connection(server.host, server.port) as conn:
        conn.send(b"POST /upload/?smuggled=truncated HTTP/1.1\r\n" + LOCALHOST)
        conn.send(b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n")
        conn.sock.shutdown(socket.SHUT_WR)
        assert conn.sock.recv(1) == b""
    assert_clean(log_after(server, mark))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_connections_reset_at_any_point_leave_nothing_behind(server):
    """CVE-2024-49769 (waitress kept sockets of clients that vanished early)."""
    [pid] = server.worker_pids()
    before = open_fds(pid)
    stages = [b"", b"GET /hel", b"GET /hello/ HTTP/1.1\r\n" + LOCALHOST, UPLOAD + b"Content-Le"]
    for n in range(40):
        sock = socket.create_connection((server.host, server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if stages[n % 4]:
            sock.sendall(stages[n % 4])
        sock.close()  # linger 0: a reset, not a FIN
    assert wait_until(lambda: open_fds(pid) <= before)
    assert request(server.port, b"GET /hello/ HTTP/1.1\r\n" + LOCALHOST + b"\r\n").status == 200
    assert server.worker_pids() == [pid]


# Socket-level fuzz: bounded, seeded, every connection fresh


def mutate(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(data) + 1)
        edit = rng.randrange(4)
        if edit == 0:
            data[at:at] = bytes(rng.choice(b"\r\n\t \x00:;,0fx-") for _ in range(rng.randint(1, 3)))
        elif edit == 1:
            del data[at : at + rng.randint(1, 4)]
        elif edit == 2 and at < len(data):
            data[at] = rng.randrange(256)
        else:
            data[at:at] = data[at : at + rng.randint(1, 40)]
    return bytes(data)


def answer_or_close(server, raw: bytes) -> bytes:
    """All the server sends for raw on a fresh connection that we half-close after sending."""
    sock = socket.create_connection((server.host, server.port), timeout=5)
    received = b""
    try:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        while data := sock.recv(65536):
            received += data
    except (ConnectionResetError, BrokenPipeError):
        pass  # the server closed on an error while bytes were still in flight
    finally:
        sock.close()
    return received


def test_socket_fuzz_gets_responses_or_closes_and_the_worker_survives(server):
    [pid] = server.worker_pids()
    mark = server.mark()
    rng = random.Random(9112)
    seeds = [case.raw.replace(b"example.com", b"localhost") for case in (*REJECT, *ACCEPT)]
    deadline = time.monotonic() + 60
    for n in range(200):
        if n % 5 == 0:
            raw = rng.randbytes(rng.randint(1, 300))
        else:
            raw = mutate(rng, rng.choice(seeds))
        received = answer_or_close(server, raw)
        assert received == b"" or received.startswith(b"HTTP/1.1 "), (raw, received[:200])
        assert time.monotonic() < deadline
    assert not [line for line in log_after(server, mark) if "crashed" in line]
    assert server.worker_pids() == [pid]


# Request bodies: the default limit, and spool files that never outlive their request


def spooled_files(pid: int, directory) -> list[str]:
    """The worker's open files in the spool directory (deleted as soon as made: still open)."""
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return [link for link in links if link.startswith(str(directory))]


def test_a_spooled_body_is_closed_when_its_client_disconnects_mid_upload(start_server, tmp_path):
    """Issue 18 #3: the parser ↔ llhttp reference cycle kept the file open until a gc run."""
    server = start_server("-w", "1", "--worker-tmp-dir", str(tmp_path))
    [pid] = server.worker_pids()
    with Connection(server.host, server.port) as conn:
        conn.send(
            b"POST /no-such-url/ HTTP/1.1\r\n" + LOCALHOST + b"Content-Length: 8000000\r\n\r\n"
        )
        conn.send(b"x" * 2_000_000)  # over BODY_IN_MEMORY: on disk
        assert wait_until(lambda: spooled_files(pid, tmp_path), timeout=5)
    assert wait_until(lambda: not spooled_files(pid, tmp_path), timeout=5)


def test_a_spooled_body_is_closed_when_its_request_ends(start_server, tmp_path):
    server = start_server("-w", "1", "--worker-tmp-dir", str(tmp_path))
    [pid] = server.worker_pids()
    body = b"y" * 2_000_000
    with Connection(server.host, server.port) as conn:
        conn.send(UPLOAD + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        assert conn.read_response().body == body
        # Closed once the worker is done with the request, the connection still open, idle.
        assert wait_until(lambda: not spooled_files(pid, tmp_path), timeout=5)


def test_the_default_body_limit_refuses_a_huge_upload_before_100_continue(start_server):
    """Issue 18 #3: limit_request_body defaulted to unlimited, and a 5 GB upload got a 100."""
    server = start_server("-w", "1")
    raw = UPLOAD + b"Expect: 100-continue\r\nContent-Length: 5000000000\r\n\r\n"
    [response], closed = exchange(server, raw, 1)
    assert (response.status, closed) == (413, True)


def test_a_request_line_of_8000_octets_is_served_by_default(start_server):
    """RFC 9112 §3: recipients SHOULD support request lines of at least 8000 octets (the old
    default, gunicorn's 4094, answered 414)."""
    server = start_server("-w", "1")
    line = b"GET /hello/?" + b"a" * (8000 - len(b"GET /hello/? HTTP/1.1")) + b" HTTP/1.1"
    assert len(line) == 8000
    [response], _ = exchange(server, line + b"\r\n" + LOCALHOST + b"\r\n", 1)
    assert response.status == 200


# The worker's side of the edge: ordering, errors after good requests, timeouts, descriptors


def test_a_100_continue_waits_for_the_responses_before_it(server):
    """Issue 18 #12: a GET and a POST asking 100-continue in one packet; the 100 went out first,
    so the client took it for the GET's response."""
    with Connection(server.host, server.port) as conn:
        conn.send(
            b"GET /environ/?n=1 HTTP/1.1\r\n" + LOCALHOST + b"\r\n"
            + UPLOAD + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )  # fmt: skip
        first = conn.read_response()
        assert (first.status, b'"QUERY_STRING": "n=1"' in first.body) == (200, True)
        assert conn.read_response().status == 100
        conn.send(b"hello")
        assert conn.read_response().body == b"hello"


def test_a_good_request_before_garbage_in_one_read_is_answered_first(server):
    """The request that parsed is answered, then the 400 for what follows it, then the close."""
    raw = b"GET /environ/?n=1 HTTP/1.1\r\n" + LOCALHOST + b"\r\n" + b"\x00garbage\r\n\r\n"
    [good, bad], closed = exchange(server, raw, 2)
    assert (good.status, bad.status, closed) == (200, 400, True)
    assert b'"QUERY_STRING": "n=1"' in good.body


def test_the_health_path_honours_connection_close(start_server):
    server = start_server("-w", "1", "--health-check-path", "/-/health")
    with Connection(server.host, server.port) as conn:
        conn.send(b"GET /-/health HTTP/1.1\r\n" + LOCALHOST + b"Connection: close\r\n\r\n")
        response = conn.read_response()
        assert (response.status, response.header("Connection")) == (200, "close")
        assert conn.is_closed()


@pytest.mark.parametrize(
    ("first", "trickle"),
    [(b"GET /hello/ HTTP/1.1\r\n", b"X-Slow: 1\r\n"), (b"", b"\r\n")],
    ids=["header-lines", "empty-lines-before-it"],
)
def test_a_head_sent_a_little_at_a_time_is_bounded_as_a_whole(start_server, first, trickle):
    """Issue 18 #6: each read restarted the timeout, so a slowloris sending a header line every
    second held its slot for ever; the whole head now gets `timeout` (nginx's
    client_header_timeout bounds it the same way): a 408 once a request line is in, else a
    close."""
    server = start_server("-w", "1", "--timeout", "3")
    with Connection(server.host, server.port, timeout=0.5) as conn:
        conn.send(first)
        start = time.monotonic()
        ended = None
        while ended is None and time.monotonic() - start < 10:
            try:
                conn.send(trickle)
                ended = conn.read_response().status
            except TimeoutError:
                pass
            except (ConnectionError, OSError):
                ended = "closed"
        assert ended == (408 if first else "closed")
        assert time.monotonic() - start < 6  # 3 s, the once-a-second check, slack for load


def worker_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_the_worker_backs_off_and_logs_once(start_server):
    """Issue 18 #5: at EMFILE, accept() failed in a loop at 100% CPU, a log line each time.
    Now the worker stops accepting until a connection closes (or a second passes)."""
    server = start_server("-w", "1", launcher=("prlimit", "--nofile=64"))
    [pid] = server.worker_pids()
    mark = server.mark()
    clients = [socket.create_connection((server.host, server.port)) for _ in range(80)]
    try:
        assert wait_until(lambda: "accept() failed" in "\n".join(server.lines[mark:]), timeout=5)
        before = worker_cpu_seconds(pid)
        time.sleep(2)  # the spin, if any, is measured over a stretch of time: nothing to wait on
        assert worker_cpu_seconds(pid) - before < 0.5
        failures = [line for line in server.lines[mark:] if "accept() failed" in line]
        assert len(failures) <= 3, failures[:5]
    finally:
        for client in clients:
            client.close()
    response = request(server.port, b"GET /hello/ HTTP/1.1\r\n" + LOCALHOST + b"\r\n")
    assert response.status == 200 and server.worker_pids() == [pid]


def test_a_crowd_of_uploads_is_bounded_per_worker_and_the_budget_comes_back(start_server):
    """limit_request_body bounds one upload; limit_buffered_bodies the sum a worker holds, so
    slow uploads cannot fill the disk. Past it, 503 (temporary); finished bodies give it back."""
    server = start_server("-w", "1", "--limit-buffered-bodies", "3000000")
    head = UPLOAD + b"Content-Length: 2500000\r\n\r\n"
    with Connection(server.host, server.port) as one, Connection(server.host, server.port) as two:
        one.send(head + b"x" * 2_000_000)
        two.send(head + b"x" * 2_000_000)
        # 4 MB held at once: whichever the worker reads last is over, and only that one.
        [over], _, _ = select.select([one.sock, two.sock], [], [], 10)
        refused, kept = (one, two) if over is one.sock else (two, one)
        assert (refused.read_response().status, refused.is_closed()) == (503, True)
        [too_big], _ = exchange(server, UPLOAD + b"Content-Length: 3000001\r\n\r\n", 1)
        assert too_big.status == 503  # refused from its length, before any body is sent
        kept.send(b"y" * 500_000)
        assert kept.read_response().status == 200
    body = b"z" * 2_500_000
    [again], _ = exchange(server, head + body, 1)
    assert again.status == 200  # the budget came back
    [said] = [line for line in server.output.splitlines() if "with 503" in line]  # once for two
    assert "limit_buffered_bodies" in said


def test_a_crowd_of_large_unfinished_heads_is_bounded_per_worker(start_server):
    """Each head may be up to ~800 KiB (the default limits); a crowd of clients each sending most
    of one must not make the worker hold that much per connection. Past the worker's budget for
    large heads (HEAD_BUDGET beyond HEAD_FREE each), 503 and close; the others are served, and
    the budget comes back."""
    server = start_server("-w", "1")
    (pid,) = server.worker_pids()
    mark = server.mark()
    field = b"X-Big: " + b"a" * 8000 + b"\r\n"
    partial = b"GET /hello/ HTTP/1.1\r\n" + LOCALHOST + field * 75  # ~600 KB, no end of head
    clients = [Connection(server.host, server.port) for _ in range(160)]  # ~96 MB in all
    try:
        for client in clients:
            client.send(partial)
        refused = []

        def some_refused() -> bool:
            readable, _, _ = select.select([c.sock for c in clients], [], [], 0)
            refused[:] = [c for c in clients if c.sock in readable]
            return bool(refused)

        assert wait_until(some_refused, timeout=20), "no client refused: heads are unbounded"
        response = refused[0].read_response()
        assert response.status == 503
        assert len(refused) < 60  # the budget holds ~120 such heads
        for client in clients:
            if client not in refused:
                client.send(b"\r\n")
                assert client.read_response().status in (200, 503)
        # Many refused, one line: the worker's limit, said once a minute at most.
        server.wait_for(r"WARNING\] Refused a request with 503: .* large unfinished request heads")
        since = server.lines[mark:]
        assert [line for line in since if "with 503" in line or "Bad request" in line] == [
            next(line for line in since if "with 503" in line)
        ]
    finally:
        for client in clients:
            client.close()
    with Connection(server.host, server.port) as again:
        again.send(partial + b"\r\n")
        assert again.read_response().status == 200  # the budget came back
    assert server.worker_pids() == [pid]
