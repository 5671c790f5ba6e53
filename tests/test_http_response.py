"""The response side without sockets: http.response_framing case by case, and environ_key.

Each case: (method, version, status, the app's Content-Length, the length the server knows,
keep-alive allowed) → (the head's last lines, framing, body length, persists), with its source.
The live counterparts are in tests/test_wsgi.py and tests/test_http_edge_live.py.
"""

from __future__ import annotations

import pytest

from django_prodserve.server.http import (
    CHUNKED,
    EMPTY_BODY,
    FIXED,
    NO_BODY,
    UNTIL_CLOSE,
    Request,
    environ_key,
    health_response,
    response_framing,
)

END = b"\r\n"
CLOSE = b"Connection: close\r\n\r\n"
KEEP_1_0 = b"Connection: keep-alive\r\n\r\n"
TE = b"Transfer-Encoding: chunked\r\n"

# fmt: off
CASES = [
    # id, (method, version, code, length, known, keep_alive), (end, framing, length, persists), source
    ("app-length", ("GET", "1.1", 200, 5, None, True), (END, FIXED, 5, True), "RFC 9112 §6.3 ¶5"),
    ("app-length-wins-over-known", ("GET", "1.1", 200, 5, 9, True), (END, FIXED, 5, True),
     "the app's length is the one announced; wsgi truncates or closes on a mismatch"),
    ("known-length", ("GET", "1.1", 200, None, 9, True),
     (b"Content-Length: 9\r\n" + END, FIXED, 9, True), "RFC 9110 §8.6"),
    ("known-empty", ("GET", "1.1", 200, None, 0, True),
     (b"Content-Length: 0\r\n" + END, FIXED, 0, True), "RFC 9110 §8.6"),
    ("streamed-1.1", ("GET", "1.1", 200, None, None, True), (TE + END, CHUNKED, None, True),
     "RFC 9112 §7.1"),
    ("streamed-1.0", ("GET", "1.0", 200, None, None, True), (CLOSE, UNTIL_CLOSE, None, False),
     "RFC 9112 §6.3 ¶8: no chunked in HTTP/1.0, the close ends the body"),
    ("1.0-keep-alive", ("GET", "1.0", 200, 5, None, True), (KEEP_1_0, FIXED, 5, True),
     "RFC 9112 §9.3: HTTP/1.0 persists only when the response says keep-alive"),
    ("1.0-close", ("GET", "1.0", 200, 5, None, False), (CLOSE, FIXED, 5, False), "RFC 9112 §9.3"),
    ("close-1.1", ("GET", "1.1", 200, 5, None, False), (CLOSE, FIXED, 5, False),
     "RFC 9112 §9.6: the server says it closes"),
    ("streamed-close", ("POST", "1.1", 200, None, None, False), (TE + CLOSE, CHUNKED, None, False),
     "chunked still frames the body when the connection then closes"),
    ("204", ("GET", "1.1", 204, None, None, True), (END, NO_BODY, None, True),
     "RFC 9110 §15.3.5: no content, no framing"),
    ("304-with-length", ("GET", "1.1", 304, 5, None, True), (END, NO_BODY, 5, True),
     "RFC 9110 §15.4.5, §8.6: the length GET would have, no body"),
    ("204-known-ignored", ("GET", "1.1", 204, None, 0, True), (END, NO_BODY, None, True),
     "RFC 9110 §8.6: no Content-Length in a 204"),
    ("head-known", ("HEAD", "1.1", 200, None, 12, True),
     (b"Content-Length: 12\r\n" + END, NO_BODY, 12, True),
     "RFC 9110 §9.3.2: GET's head, without the body"),
    ("head-streamed-1.1", ("HEAD", "1.1", 200, None, None, True), (END, NO_BODY, None, True),
     "RFC 9110 §9.3.2: no body, so nothing to frame"),
    ("head-streamed-1.0", ("HEAD", "1.0", 200, None, None, True), (KEEP_1_0, NO_BODY, None, True),
     "no body to end with a close: HTTP/1.0 keep-alive holds"),
]
# fmt: on


@pytest.mark.parametrize(("given", "expected"), [c[1:3] for c in CASES], ids=[c[0] for c in CASES])
def test_response_framing(given, expected):
    assert response_framing(*given) == expected


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("X-Request-ID", "HTTP_X_REQUEST_ID"),
        ("content-type", "CONTENT_TYPE"),
        ("Content-Length", "CONTENT_LENGTH"),
        ("Host", "HTTP_HOST"),
        ("X_Forwarded_For", ""),  # would pose as X-Forwarded-For
        ("X-Forwarded_For", ""),
        ("", ""),
    ],
)
def test_environ_key_is_one_rule_for_wsgi_proxy_and_logs(name, key):
    assert environ_key(name) == key


@pytest.mark.parametrize(
    ("method", "version", "keep_alive", "ok", "tail", "persists"),
    [
        ("GET", "1.1", True, True, b"Content-Length: 3\r\n\r\nok\n", True),
        ("GET", "1.1", False, True, b"Connection: close\r\n\r\nok\n", False),
        ("GET", "1.0", True, True, b"Connection: keep-alive\r\n\r\nok\n", True),
        ("HEAD", "1.1", True, True, b"Content-Length: 3\r\n\r\n", True),
        ("GET", "1.1", True, False, b"Connection: close\r\n\r\nstopping\n", False),
    ],
    ids=["1.1", "close", "1.0-keep-alive", "head", "stopping"],
)
def test_the_health_response_is_framed_like_any_other(
    method, version, keep_alive, ok, tail, persists
):
    req = Request(method, b"/-/health", version, [], EMPTY_BODY, keep_alive)
    response, keep = health_response(req, ok)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n" if ok else b"HTTP/1.1 503 Service")
    assert (response.endswith(tail), keep) == (True, persists)
