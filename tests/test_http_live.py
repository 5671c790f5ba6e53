"""HTTP/1.1 on a live server: persistent connections, pipelining, 100-continue, HEAD and bodiless
statuses, Date/Server, and the test project's Django views served end to end.
"""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime

import pytest

from tests.client import Connection, get, request
from tests.test_wsgi import CONFORMANCE, chunked, raw, read_to_eof

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(start_module_server):
    """The PEP 3333 conformance app, one worker."""
    return start_module_server("-w", "1", settings=CONFORMANCE)


@pytest.fixture(scope="module")
def django_server(start_module_server):
    """The test project's Django views, one worker."""
    return start_module_server("-w", "1")


def connect(server) -> Connection:
    return Connection("127.0.0.1", server.port)


def remote_port(response) -> str:
    return json.loads(response.body)["REMOTE_PORT"]


# Persistent connections


def test_keep_alive_serves_two_requests_on_one_connection(server):
    with connect(server) as conn:
        conn.send(raw("GET", "/environ/first"))
        first = conn.read_response()
        conn.send(raw("POST", "/environ/second", b"body two"))
        second = conn.read_response()
        assert not conn.is_closed(timeout=0.2)
    assert first.header("Connection") is None  # HTTP/1.1 default: persistent
    env1, env2 = json.loads(first.body), json.loads(second.body)
    assert (env1["PATH_INFO"], env2["PATH_INFO"]) == ("/environ/first", "/environ/second")
    assert env2["_body"] == "body two"
    assert env1["REMOTE_PORT"] == env2["REMOTE_PORT"]


def test_pipelined_requests_get_their_responses_in_order(server):
    with connect(server) as conn:
        conn.send(
            raw("GET", "/environ/one")
            + raw("POST", "/input?mode=read", b"pipelined body")
            + raw("GET", "/no-length")
            + raw("GET", "/environ/four")
        )
        responses = [conn.read_response() for _ in range(4)]
    assert json.loads(responses[0].body)["PATH_INFO"] == "/environ/one"
    assert responses[1].body == b"pipelined body"
    assert responses[2].body == b"a" * 10 + b"b" * 10 + b"c" * 10
    assert json.loads(responses[3].body)["PATH_INFO"] == "/environ/four"
    assert remote_port(responses[0]) == remote_port(responses[3])


def test_pipelined_request_after_connection_close_is_not_served(server):
    with connect(server) as conn:
        conn.send(raw("GET", "/environ/last", headers=("Connection: close",)) + raw("GET", "/pid"))
        first = conn.read_response()
        rest = read_to_eof(conn)
    assert json.loads(first.body)["PATH_INFO"] == "/environ/last"
    assert first.header("Connection") == "close"
    assert rest == b""


def test_connection_close_request_gets_connection_close_and_is_closed(server):
    with connect(server) as conn:
        conn.send(raw("GET", "/one-chunk", headers=("Connection: close",)))
        response = conn.read_response()
        assert conn.is_closed()
    assert response.status == 200
    assert response.header("Connection") == "close"
    assert response.body == b"one chunk body"


def test_http10_without_keep_alive_is_closed_after_the_response(server):
    with connect(server) as conn:
        conn.send(raw("GET", "/one-chunk", version="HTTP/1.0"))
        response = conn.read_response()
        assert conn.is_closed()
    assert response.status == 200
    assert response.body == b"one chunk body"
    assert response.header("Connection") == "close"


def test_http10_keep_alive_with_a_known_length_stays_open(server):
    keep = ("Connection: keep-alive",)
    with connect(server) as conn:
        conn.send(raw("GET", "/environ/a", headers=keep, version="HTTP/1.0"))
        first = conn.read_response()
        conn.send(raw("GET", "/environ/b", headers=keep, version="HTTP/1.0"))
        second = conn.read_response()
    assert first.header("Connection") == "keep-alive"
    assert first.header("Content-Length") == str(len(first.body))
    assert json.loads(second.body)["PATH_INFO"] == "/environ/b"
    assert remote_port(first) == remote_port(second)


def test_http10_keep_alive_without_a_length_is_closed(server):
    with connect(server) as conn:
        conn.send(
            raw("GET", "/generator?n=3", headers=("Connection: keep-alive",), version="HTTP/1.0")
        )
        data = read_to_eof(conn)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"\r\nConnection: close" in head
    assert b"Transfer-Encoding" not in head
    assert body == b"gen-0;gen-1;gen-2;"


def test_idle_keep_alive_connection_is_closed_after_the_timeout(start_server):
    quick = start_server("127.0.0.1:0", "-w", "1", "--keep-alive", "1", settings=CONFORMANCE)
    with connect(quick) as conn:
        conn.send(raw("GET", "/one-chunk"))
        assert conn.read_response().status == 200
        started = time.monotonic()
        assert conn.is_closed(timeout=5)
    assert time.monotonic() - started < 4


# Expect: 100-continue


def test_expect_100_continue_is_answered_before_the_body_is_sent(server):
    body = b"sent only after 100 Continue"
    with Connection("127.0.0.1", server.port, timeout=5) as conn:
        head = raw("POST", "/input?mode=read", body, ("Expect: 100-continue",))[: -len(body)]
        conn.send(head)
        interim = conn.read_response()
        assert (interim.version, interim.status) == ("HTTP/1.1", 100)
        assert interim.raw_head == b"HTTP/1.1 100 Continue"
        conn.send(body)
        final = conn.read_response()
        conn.send(raw("GET", "/one-chunk"))
        after = conn.read_response()
    assert final.status == 200
    assert final.body == body
    assert after.body == b"one chunk body"


@pytest.mark.parametrize(
    "request_bytes",
    [
        raw("POST", "/input?mode=read", headers=("Expect: 100-continue", "Content-Length: 0")),
        raw("POST", "/input?mode=read", b"x" * 10, ("Expect: 100-continue",), "HTTP/1.0"),
    ],
    ids=["empty-body", "http10"],
)
def test_no_100_continue_for_an_empty_body_or_http10(server, request_bytes):
    with connect(server) as conn:
        conn.send(request_bytes)
        # Had the server sent a 100, it would precede the final response on the wire.
        response = conn.read_response()
    assert response.status == 200
    assert response.body == request_bytes.partition(b"\r\n\r\n")[2]


# HEAD, 204, 304


@pytest.mark.parametrize("path", ["/head", "/one-chunk", "/generator?n=1"])
def test_head_has_the_get_headers_and_no_body(server, path):
    get_response = get(server.port, path)
    with connect(server) as conn:
        conn.send(raw("HEAD", path) + raw("GET", "/one-chunk"))
        head = conn.read_response("HEAD")
        # No body bytes followed the HEAD head: the next response starts right after it.
        after = conn.read_response()
    assert head.status == get_response.status == 200
    assert head.header("Content-Length") == get_response.header("Content-Length")
    assert head.header("Content-Length") is not None
    assert head.header("Content-Type") == get_response.header("Content-Type")
    assert after.body == b"one chunk body"


def test_head_of_an_unknown_length_body_is_not_chunked(server):
    with connect(server) as conn:
        conn.send(raw("HEAD", "/no-length") + raw("GET", "/one-chunk"))
        head = conn.read_response("HEAD")
        after = conn.read_response()
    assert head.status == 200
    assert head.header("Transfer-Encoding") is None
    assert after.body == b"one chunk body"


@pytest.mark.parametrize("code", [204, 304])
@pytest.mark.parametrize("app_body", ["0", "1"], ids=["no-app-body", "app-body"])
def test_204_and_304_have_no_body_and_no_transfer_encoding(server, code, app_body):
    with connect(server) as conn:
        conn.send(raw("GET", f"/status/{code}?body={app_body}") + raw("GET", "/one-chunk"))
        response = conn.read_response()
        after = conn.read_response()
    assert response.status == code
    assert response.header("X-Status") == str(code)
    assert response.header("Transfer-Encoding") is None
    if code == 204:
        assert response.header("Content-Length") is None
    assert after.body == b"one chunk body"  # nothing was sent between the two heads


# Date and Server


def test_responses_carry_one_date_and_one_server_header(server):
    response = get(server.port, "/one-chunk")
    dates = [v for k, v in response.headers if k.lower() == "date"]
    servers = [v for k, v in response.headers if k.lower() == "server"]
    assert len(dates) == 1 and len(servers) == 1
    assert dates[0].endswith(" GMT")
    date = parsedate_to_datetime(dates[0])
    assert abs(date.timestamp() - time.time()) < 60
    assert servers[0].strip() != ""


# The Django test project


def test_django_hello_view(django_server):
    response = get(django_server.port, "/hello/")
    assert response.status == 200
    assert response.body == b"Hello, world!"
    assert response.header("Content-Length") == "13"
    assert response.header("Content-Type").startswith("text/plain")


def test_django_head_has_the_length_and_no_body(django_server):
    with connect(django_server) as conn:
        conn.send(raw("HEAD", "/hello/") + raw("GET", "/hello/"))
        head = conn.read_response("HEAD")
        after = conn.read_response()
    assert head.status == 200
    assert head.header("Content-Length") == "13"
    assert after.body == b"Hello, world!"


def test_django_json_view(django_server):
    response = get(django_server.port, "/json/")
    assert response.status == 200
    assert response.header("Content-Type") == "application/json"
    assert json.loads(response.body) == {"message": "Hello, world!", "items": [1, 2, 3]}


def test_django_db_view_renders_the_seeded_items(django_server):
    response = get(django_server.port, "/db/")
    assert response.status == 200
    assert b"<h1>20 items</h1>" in response.body
    assert b"<td>Item 20</td>" in response.body


@pytest.mark.parametrize("size", [256, MiB + MiB // 2], ids=["small", "spooled"])
def test_django_upload_echoes_the_posted_bytes(django_server, size):
    body = bytes(range(256)) * (size // 256)
    response = request(
        django_server.port,
        raw("POST", "/upload/", body, ("Content-Type: application/octet-stream",)),
    )
    assert response.status == 200
    assert response.body == body


def test_django_upload_receives_a_chunked_request_body(django_server):
    pieces = [b"chunked ", b"upload ", b"to django"]
    response = request(
        django_server.port,
        raw(
            "POST",
            "/upload/",
            chunked(*pieces),
            ("Transfer-Encoding: chunked", "Content-Type: application/octet-stream"),
            length=False,
        ),
    )
    assert response.status == 200
    assert response.body == b"".join(pieces)


def test_django_upload_with_expect_100_continue(django_server):
    body = b"expecting" * 100
    with Connection("127.0.0.1", django_server.port, timeout=5) as conn:
        conn.send(raw("POST", "/upload/", body, ("Expect: 100-continue",))[: -len(body)])
        assert conn.read_response().status == 100
        conn.send(body)
        response = conn.read_response()
    assert response.status == 200
    assert response.body == body


def test_django_streaming_response_is_chunked(django_server):
    response = get(django_server.port, "/stream/?n=5")
    assert response.status == 200
    assert response.header("Transfer-Encoding") == "chunked"
    assert response.header("Content-Length") is None
    assert response.body == b"".join(f"chunk {n}\n".encode() for n in range(5))


def test_django_file_download_sends_the_exact_bytes(django_server):
    response = get(django_server.port, "/download/?mb=2")
    assert response.status == 200
    assert response.header("Content-Length") == str(2 * MiB)
    assert response.body == bytes(range(256)) * 4096 * 2


def test_django_view_error_gives_500_and_the_worker_survives(django_server):
    pids = django_server.worker_pids()
    mark = django_server.mark()
    response = get(django_server.port, "/error/")
    assert response.status == 500
    django_server.wait_for(r"boom from the error view", start=mark)
    assert get(django_server.port, "/hello/").body == b"Hello, world!"
    assert django_server.worker_pids() == pids


def test_after_an_error_the_server_drains_instead_of_resetting(server):
    """Lingering close (RFC 9112 §9.6): after the 400 the server half-closes and reads what the
    client still sends, so the client's upload meets no reset (which could destroy the 400 on a
    real network before the client reads it)."""
    with connect(server) as conn:
        conn.send(b"POST /environ HTTP/1.1\r\nHost: localhost\r\nContent-Length: x\r\n\r\n")
        response = conn.read_response()
        assert (response.status, response.header("Connection")) == (400, "close")
        assert conn.is_closed()  # half-closed: our side sees EOF
        for _ in range(3):  # a closed socket would answer the first with a reset, failing these
            conn.send(b"x" * 65536)
            time.sleep(0.05)  # the scenario: an upload still trickling in; nothing to wait on
