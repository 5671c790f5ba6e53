"""PEP 3333 against a live server: the environ it builds, wsgi.input, start_response, write(),
result iterables and their close(), file_wrapper, and how app errors turn into responses.

The app is testproject/testproject/conformance.py, served by one real worker over loopback.
"""

from __future__ import annotations

import json
import socket
import struct

import pytest

from testproject.conformance import file_bytes
from tests.client import Connection, get, request
from tests.conftest import wait_until

CONFORMANCE = "testproject.settings_conformance"
INPUT_MODES = ["read", "read-n", "readline", "readline-n", "readlines", "iter"]
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(start_module_server):
    return start_module_server("-w", "1", settings=CONFORMANCE)


def raw(
    method: str,
    target: str,
    body: bytes = b"",
    headers: tuple[str, ...] = (),
    version: str = "HTTP/1.1",
    length: bool = True,
) -> bytes:
    """A request's bytes; Content-Length is added for a body unless length=False."""
    lines = [f"{method} {target} {version}", "Host: localhost", *headers]
    if body and length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*chunks: bytes, trailer: str = "") -> bytes:
    """A chunked request body: each chunk with a size line, then the last chunk and a trailer."""
    out = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks)
    return out + b"0\r\n" + trailer.encode("latin-1") + b"\r\n"


def environ_of(server, raw_request: bytes) -> dict:
    response = request(server.port, raw_request)
    assert response.status == 200, response
    return json.loads(response.body)


def read_to_eof(conn: Connection) -> bytes:
    """Everything the server sends until it closes (bounded by the socket timeout)."""
    data, conn.buffer = conn.buffer, b""
    while True:
        try:
            chunk = conn.sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def close_count(server) -> int:
    return int(get(server.port, "/close-count").body)


def lines_body(size: int) -> bytes:
    """Lines of varied lengths, at least `size` bytes, the last one without a newline."""
    parts, total, i = [], 0, 0
    while total < size:
        line = b"line %07d %s\n" % (i, b"x" * (i % 97))
        parts.append(line)
        total += len(line)
        i += 1
    parts.append(b"tail without newline")
    return b"".join(parts)


# The environ


def test_environ_has_every_required_key_with_the_right_type(server):
    with Connection("127.0.0.1", server.port) as conn:
        client_port = conn.sock.getsockname()[1]
        conn.send(
            raw("POST", "/environ/x?a=1", b"payload", ("Content-Type: text/plain; charset=utf-8",))
        )
        env = json.loads(conn.read_response().body)
    types = env["_types"]
    for key in (
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "CONTENT_TYPE",
        "CONTENT_LENGTH",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "REMOTE_ADDR",
        "REMOTE_PORT",
        "wsgi.url_scheme",
        "HTTP_HOST",
    ):
        assert types.get(key) == "str", (key, types.get(key))
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/environ/x"
    assert env["QUERY_STRING"] == "a=1"
    assert env["CONTENT_TYPE"] == "text/plain; charset=utf-8"
    assert env["CONTENT_LENGTH"] == "7"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(client_port)
    assert env["HTTP_HOST"] == "localhost"
    assert env["wsgi.url_scheme"] == "http"
    assert env["_body"] == "payload"
    for key in ("wsgi.input", "wsgi.errors", "wsgi.file_wrapper"):
        assert key in types
    for key in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"):
        assert types[key] == "bool", key
    flags = env["_wsgi"]
    assert flags["version"] == [1, 0] and flags["version_type"] == "tuple"
    # One worker, one thread: nothing else runs the app at the same time.
    assert (flags["multithread"], flags["multiprocess"], flags["run_once"]) == (False, False, False)
    assert flags["input_methods"] == ["__iter__", "read", "readline", "readlines"]
    assert flags["errors_methods"] == ["flush", "write", "writelines"]
    assert flags["file_wrapper_callable"] is True


def test_environ_server_protocol_follows_the_request_version(server):
    env = environ_of(server, raw("GET", "/environ", version="HTTP/1.0"))
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert env["REQUEST_METHOD"] == "GET"


def test_environ_wsgi_flags_follow_workers_and_threads(start_server):
    busy = start_server("127.0.0.1:0", "-w", "2", "--threads", "2", settings=CONFORMANCE)
    env = json.loads(get(busy.port, "/environ").body)
    assert env["_wsgi"]["multithread"] is True
    assert env["_wsgi"]["multiprocess"] is True
    assert env["_wsgi"]["run_once"] is False


def test_path_info_is_percent_decoded_into_a_latin1_string(server):
    env = environ_of(server, raw("GET", "/environ/caf%C3%A9/a%20b+c?q=caf%C3%A9"))
    # The UTF-8 bytes of 'café', each byte one latin-1 character (PEP 3333 "bytes-as-str").
    assert env["PATH_INFO"] == "/environ/caf\u00c3\u00a9/a b+c"
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/environ/café/a b+c"


def test_query_string_is_passed_raw_and_empty_when_absent(server):
    env = environ_of(server, raw("GET", "/environ?name=caf%C3%A9&x=a+b&x=%2F&empty="))
    assert env["QUERY_STRING"] == "name=caf%C3%A9&x=a+b&x=%2F&empty="
    assert environ_of(server, raw("GET", "/environ"))["QUERY_STRING"] == ""


def test_absolute_form_target_gives_the_path_and_the_host(server):
    env = environ_of(server, raw("GET", "http://example.com:8080/environ/abs?k=v"))
    assert env["PATH_INFO"] == "/environ/abs"
    assert env["QUERY_STRING"] == "k=v"
    assert env["HTTP_HOST"] == "example.com:8080"


def test_repeated_headers_are_joined_with_a_comma_and_cookies_with_a_semicolon(server):
    env = environ_of(
        server,
        raw(
            "GET",
            "/environ",
            headers=("X-Multi: a", "Cookie: one=1", "x-multi: b", "X-MULTI: c", "Cookie: two=2"),
        ),
    )
    assert env["HTTP_X_MULTI"] == "a, b, c"
    assert env["HTTP_COOKIE"] == "one=1; two=2"


def test_header_names_with_underscores_are_dropped(server):
    env = environ_of(
        server,
        raw(
            "GET",
            "/environ",
            headers=(
                "X_Forwarded_For: 6.6.6.6",
                "X-Forwarded-For: 1.2.3.4",
                "X-Forwarded_For: 7.7.7.7",
                "Some_Header: dropped",
            ),
        ),
    )
    assert env["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"
    assert not any("SOME" in key for key in env)


def test_content_type_and_length_come_without_the_http_prefix(server):
    env = environ_of(server, raw("PUT", "/environ", b"abc", ("Content-Type: application/x-test",)))
    assert env["CONTENT_TYPE"] == "application/x-test"
    assert env["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["REQUEST_METHOD"] == "PUT"


# Request bodies: chunked, wsgi.input


def test_chunked_request_body_is_decoded(server):
    pieces = [b"first chunk;", b"x" * 5000, b"\r\n not a boundary \r\n", b"last"]
    # A chunk extension on the first size line and a trailer field after the last chunk.
    body = chunked(*pieces, trailer="X-Trailer: t\r\n").replace(b"\r\n", b";name=value\r\n", 1)
    env = environ_of(
        server, raw("POST", "/environ", body, ("Transfer-Encoding: chunked",), length=False)
    )
    expected = b"".join(pieces)
    assert env["_body"].encode("latin-1") == expected
    # Absent, or else the decoded length: never the framed size.
    assert env.get("CONTENT_LENGTH") in (None, str(len(expected)))
    # A trailer field must not pose as a request header.
    assert "HTTP_X_TRAILER" not in env


def test_chunked_request_body_over_1mib_is_spooled_and_read_back_whole(server):
    pieces = [bytes([i]) * 300_000 for i in range(5)]
    response = request(
        server.port,
        raw(
            "POST",
            "/input?mode=read",
            chunked(*pieces),
            ("Transfer-Encoding: chunked",),
            length=False,
        ),
    )
    assert response.status == 200
    assert response.body == b"".join(pieces)
    assert response.header("X-Input-Rolled") == "True"


def check_input_echo(response, body: bytes, mode: str) -> None:
    assert response.status == 200
    assert response.body == body
    assert response.header("X-All-Bytes") == "True"
    assert response.header("X-After-EOF") == "b''"
    lines = body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)
    if mode in ("readline", "readlines", "iter"):
        assert int(response.header("X-Pieces")) == lines
        assert response.header("X-Lines-End-In-Newline") == "True"
    elif mode in ("read-n", "readline-n"):
        assert int(response.header("X-Max-Piece")) <= 100
        assert int(response.header("X-Pieces")) >= len(body) // 100


@pytest.mark.parametrize("mode", INPUT_MODES)
def test_wsgi_input_reads_a_small_body(server, mode):
    body = lines_body(5000)
    response = request(server.port, raw("POST", f"/input?mode={mode}&n=100", body))
    check_input_echo(response, body, mode)
    assert response.header("X-Input-Rolled") != "True"


@pytest.mark.parametrize("mode", INPUT_MODES)
def test_wsgi_input_reads_a_body_over_1mib_spooled_to_a_file(server, mode):
    body = lines_body(MiB + MiB // 2)
    response = request(server.port, raw("POST", f"/input?mode={mode}&n=100", body))
    check_input_echo(response, body, mode)
    assert response.header("X-Input-Rolled") == "True"


@pytest.mark.parametrize("mode", INPUT_MODES)
def test_wsgi_input_is_empty_without_a_body(server, mode):
    response = get(server.port, f"/input?mode={mode}")
    assert response.status == 200
    assert response.body == b""
    assert response.header("X-Pieces") == "0"
    assert response.header("X-After-EOF") == "b''"


def test_unread_request_body_does_not_break_keep_alive(server):
    with Connection("127.0.0.1", server.port) as conn:
        conn.send(raw("POST", "/pid", b"ignored body " * 1000))
        first = conn.read_response()
        conn.send(raw("GET", "/environ/next"))
        second = conn.read_response()
    assert first.status == 200
    assert json.loads(second.body)["PATH_INFO"] == "/environ/next"


# start_response, write(), result iterables


def test_write_callable_output_comes_before_the_returned_iterable(server):
    response = get(server.port, "/write")
    assert response.status == 200
    assert response.body == b"one,two,three,four"
    assert response.header("Transfer-Encoding") == "chunked"


def test_write_callable_then_a_one_item_list_sends_one_head(server):
    with Connection("127.0.0.1", server.port) as conn:
        conn.send(raw("GET", "/write?tail=1"))
        response = conn.read_response()
        # The connection must still be in sync: a second request gets its own response.
        conn.send(raw("GET", "/one-chunk"))
        after = conn.read_response()
    assert response.status == 200
    assert response.body == b"one,two,three"
    assert after.status == 200 and after.body == b"one chunk body"


@pytest.mark.parametrize(
    ("count", "framing"), [(3, "chunked"), (1, "length"), (0, "length")], ids=["3", "1", "0"]
)
def test_generator_app_may_call_start_response_on_first_iteration(server, count, framing):
    response = get(server.port, f"/generator?n={count}")
    assert response.status == 200
    assert response.header("X-Generated") == "lazily"
    assert response.body == b"".join(b"gen-%d;" % i for i in range(count))
    if framing == "chunked":
        assert response.header("Transfer-Encoding") == "chunked"
    else:
        assert response.header("Content-Length") == str(len(response.body))


def test_start_response_with_exc_info_before_the_body_replaces_the_status(server):
    response = get(server.port, "/exc-info")
    assert response.status == 500
    assert response.body == b"the error page"
    assert response.header("X-Second") == "yes"
    assert response.header("X-First") is None


def test_start_response_with_exc_info_after_the_body_started_raises_and_closes(server):
    mark = server.mark()
    with Connection("127.0.0.1", server.port) as conn:
        conn.send(raw("GET", "/exc-info-late"))
        data = read_to_eof(conn)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"6\r\nfirst;\r\n" in data and b"7\r\nsecond;\r\n" in data
    # start_response raised inside the app: nothing after it, no final chunk, connection closed.
    assert b"never sent" not in data
    assert not data.endswith(b"0\r\n\r\n")
    server.wait_for(r"RuntimeError: late failure after the body started", start=mark)


def test_start_response_twice_without_exc_info_is_an_error(server):
    response = get(server.port, "/double-start")
    assert response.status == 500
    assert b"should not be sent" not in response.body


def test_close_of_the_result_is_called_after_the_response(server):
    before = close_count(server)
    response = get(server.port, "/close")
    assert response.body == b"closing-1;closing-2;"
    assert close_count(server) == before + 1


def test_close_of_the_result_is_called_for_head(server):
    before = close_count(server)
    response = request(server.port, raw("HEAD", "/close"), method="HEAD")
    assert response.status == 200
    assert close_count(server) == before + 1


def test_close_of_the_result_is_called_when_iteration_fails(server):
    before = close_count(server)
    mark = server.mark()
    with Connection("127.0.0.1", server.port) as conn:
        conn.send(raw("GET", "/close?fail=1"))
        data = read_to_eof(conn)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"closing-1;" in data and not data.endswith(b"0\r\n\r\n")
    server.wait_for(r"RuntimeError: iteration failure inside a closing iterable", start=mark)
    assert close_count(server) == before + 1


def test_close_of_the_result_is_called_when_the_client_disconnects(server):
    before = close_count(server)
    with Connection("127.0.0.1", server.port) as conn:
        conn.send(raw("GET", "/close?size=1048576&count=64"))
        head = conn._read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        # Reset rather than close, so the server's next send fails at once.
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # A spare thread may answer the count while the aborted request's thread is still on its
    # way out (issue 15): poll until close() has run.
    assert wait_until(lambda: close_count(server) == before + 1, timeout=5)


# App errors


def test_app_exception_gives_500_and_the_same_worker_serves_on(server):
    pid = int(get(server.port, "/pid").body)
    mark = server.mark()
    response = get(server.port, "/raise")
    assert response.status == 500
    assert response.header("Connection") == "close"
    assert b"conformance boom" not in response.body  # no traceback leaks to the client
    server.wait_for(r"Traceback \(most recent call last\)", start=mark)
    server.wait_for(r"RuntimeError: conformance boom$", start=mark)
    assert int(get(server.port, "/pid").body) == pid
    assert server.worker_pids() == [pid]


def test_exception_on_the_first_iteration_gives_500(server):
    mark = server.mark()
    response = get(server.port, "/raise-in-iter")
    assert response.status == 500
    server.wait_for(r"RuntimeError: conformance boom in the iterable", start=mark)
    assert get(server.port, "/one-chunk").status == 200


def test_header_value_with_crlf_is_refused_with_500(server):
    response = get(server.port, "/bad-header")
    assert response.status == 500
    assert response.header("Set-Cookie") is None
    assert response.header("X-Injected") is None
    assert b"must not be sent" not in response.body


@pytest.mark.parametrize(
    "query",
    [
        "status=200+OK%00x",
        "status=200OK",
        "status=2000+OK",
        "status=20+OK",
        "status=600+Nope",
        "status=200+O%0BK",
        "name=X-A&value=v%00w",
        "name=X-A&value=v%01w",
        "name=X-A&value=v%7Fw",
        "name=X-A&value=v%C4%80w",  # U+0100: not latin-1
        "name=X%00A&value=v",
    ],
)
def test_control_characters_or_a_malformed_status_from_the_app_get_500(server, query):
    """Issue 18 #7: sent unchanged before; gunicorn answers 500 (RFC 9112 §4, RFC 9110 §5.5)."""
    with Connection(server.host, server.port) as conn:
        conn.send(raw("GET", f"/custom-head?{query}"))
        response = conn.read_response()
        assert (response.status, response.header("Connection")) == (500, "close")
        assert b"custom head body" not in response.body and conn.is_closed()


def test_an_interim_status_from_the_app_is_never_sent_as_the_final_response(server):
    """Issue 18 #8: a '100 Continue' went out as the response and the connection stayed open,
    so the client took the next request's 200 as this one's."""
    with Connection(server.host, server.port) as conn:
        conn.send(raw("GET", "/custom-head?status=100+Continue") + raw("GET", "/one-chunk"))
        response = conn.read_response()
        assert (response.status, response.header("Connection")) == (500, "close")
        assert read_to_eof(conn) == b""


@pytest.mark.parametrize(("same", "status"), [("0", 500), ("1", 200)], ids=["differ", "equal"])
def test_two_content_lengths_from_the_app_are_refused_unless_equal(server, same, status):
    """Issue 18 #8: both were sent. RFC 9110 §8.6: equal ones are one length, sent once."""
    response = get(server.port, f"/two-lengths?same={same}")
    assert response.status == status
    if status == 200:
        assert (response.header("Content-Length"), response.body) == ("4", b"four")


def test_an_app_s_content_length_is_not_sent_with_a_204(server):
    """RFC 9110 §8.6: a server MUST NOT send Content-Length in a 1xx or 204 response (Django's
    CommonMiddleware sets 'Content-Length: 0' on every response, 204s included)."""
    with Connection(server.host, server.port) as conn:
        conn.send(raw("GET", "/custom-head?status=204+No+Content&name=Content-Length&value=0"))
        response = conn.read_response()
        assert (response.status, response.header("Content-Length")) == (204, None)
        conn.send(raw("GET", "/one-chunk"))
        assert conn.read_response().body == b"one chunk body"  # no stray body in between


def test_a_started_response_that_fails_is_cut_short_never_followed_by_another_head(server):
    """An app that write()s and then raises: the client must see a truncated response (no last
    chunk) and a close, not a 500's head spliced into the chunked body."""
    with Connection(server.host, server.port) as conn:
        conn.send(raw("GET", "/write-then-raise"))
        data = read_to_eof(conn)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding: chunked" in head
    assert body == b"7\r\npartial\r\n" and b"HTTP/1.1" not in body


def test_wsgi_errors_writes_reach_the_server_log(server):
    mark = server.mark()
    response = get(server.port, "/errors?marker=conformance-errors-7f3a")
    assert response.body == b"logged"
    server.wait_for(r"conformance-errors-7f3a", start=mark)


# Response framing


@pytest.mark.parametrize("chunks", ["1", "2"])
def test_body_shorter_than_content_length_closes_the_connection(server, chunks):
    with Connection("127.0.0.1", server.port) as conn:
        conn.send(raw("GET", f"/length-mismatch?mode=short&chunks={chunks}"))
        data = read_to_eof(conn)
    head, _, body = data.partition(b"\r\n\r\n")
    head += b"\r\n"
    assert b"Content-Length: 10\r\n" in head
    # The client can tell the body is incomplete only because the connection closed early.
    assert body == b"abcdef"


@pytest.mark.parametrize("chunks", ["1", "2"])
def test_body_longer_than_content_length_is_truncated_and_closes(server, chunks):
    with Connection("127.0.0.1", server.port) as conn:
        conn.send(raw("GET", f"/length-mismatch?mode=long&chunks={chunks}"))
        data = read_to_eof(conn)
    head, _, body = data.partition(b"\r\n\r\n")
    head += b"\r\n"
    assert b"Content-Length: 10\r\n" in head
    assert body == b"0123456789"


def test_one_item_list_gets_a_content_length(server):
    response = get(server.port, "/one-chunk")
    assert response.header("Content-Length") == str(len(b"one chunk body"))
    assert response.header("Transfer-Encoding") is None
    assert response.body == b"one chunk body"


def test_several_chunks_without_length_are_chunked_on_http11(server):
    with Connection("127.0.0.1", server.port) as conn:
        conn.send(raw("GET", "/no-length"))
        response = conn.read_response()
        assert not conn.is_closed(timeout=0.2)
    assert response.header("Transfer-Encoding") == "chunked"
    assert response.header("Content-Length") is None
    assert response.body == b"a" * 10 + b"b" * 10 + b"c" * 10


def test_several_chunks_without_length_are_close_delimited_on_http10(server):
    with Connection("127.0.0.1", server.port) as conn:
        conn.send(raw("GET", "/no-length", headers=("Connection: keep-alive",), version="HTTP/1.0"))
        data = read_to_eof(conn)
    head, _, body = data.partition(b"\r\n\r\n")
    head += b"\r\n"
    assert b"Transfer-Encoding" not in head and b"Content-Length" not in head
    assert b"Connection: close\r\n" in head
    assert body == b"a" * 10 + b"b" * 10 + b"c" * 10


@pytest.mark.parametrize("size", [1, 100_000, 3 * MiB])
def test_file_wrapper_sends_the_file_with_its_length(server, size):
    response = get(server.port, f"/file?size={size}")
    assert response.status == 200
    assert response.header("Content-Length") == str(size)
    assert response.header("Transfer-Encoding") is None
    assert response.body == file_bytes(size)


def test_file_wrapper_sends_from_the_files_current_position(server):
    response = get(server.port, "/file?size=100000&offset=1000")
    assert response.header("Content-Length") == "99000"
    assert response.body == file_bytes(100_000)[1000:]


def test_file_wrapper_over_a_non_file_object_is_iterated(server):
    response = get(server.port, "/file?size=50000&kind=bytesio")
    assert response.status == 200
    assert response.body == file_bytes(50_000)


def test_file_wrapper_keeps_the_connection_usable(server):
    with Connection("127.0.0.1", server.port) as conn:
        conn.send(raw("GET", "/file?size=100000") + raw("GET", "/one-chunk"))
        first = conn.read_response()
        second = conn.read_response()
    assert first.body == file_bytes(100_000)
    assert second.body == b"one chunk body"


def test_head_of_a_file_wrapper_response_has_the_get_content_length(server):
    with Connection("127.0.0.1", server.port) as conn:
        conn.send(raw("HEAD", "/file?size=100000"))
        head = conn.read_response("HEAD")
        conn.send(raw("GET", "/one-chunk"))
        after = conn.read_response()
    assert head.status == 200
    assert head.header("Content-Length") == "100000"
    assert after.body == b"one chunk body"


def test_app_connection_close_header_is_obeyed(server):
    with Connection("127.0.0.1", server.port) as conn:
        conn.send(raw("GET", "/app-close"))
        response = conn.read_response()
        assert conn.is_closed()
    assert response.body == b"closing"
    assert response.header("Connection") == "close"


def test_app_date_and_server_headers_are_not_duplicated(server):
    response = get(server.port, "/app-date")
    assert response.body == b"dated"
    assert len([v for k, v in response.headers if k.lower() == "date"]) == 1
    assert len([v for k, v in response.headers if k.lower() == "server"]) == 1
