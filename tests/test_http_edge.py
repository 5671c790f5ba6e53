"""The HTTP edge without sockets: the corpus case by case, whole and byte by byte, then fuzzing.

Live counterparts (smuggling pairs, pipelining, 100-continue, worker health after errors, a
socket-level fuzz) are in tests/test_http_edge_live.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from django_prodserve.server import wsgi
from django_prodserve.server.http import Limits, ProtocolError, RequestParser
from tests.http_corpus import ACCEPT, CHUNKED, KNOWN_GAPS, REJECT, Parsed

STEPS = pytest.mark.parametrize("step", [None, 1], ids=["whole", "bytewise"])


DEFAULTS = Limits()
#: Limits under which a head, and so chunk extensions and trailers, may take 5138 bytes.
SMALL = Limits(request_line=4094, fields=10, field_size=100)


def feed(raw: bytes, limits: Limits = DEFAULTS, pieces: list[int] | None = None) -> RequestParser:
    """Feed raw in pieces of the given sizes (the rest in one piece), as a connection would."""
    parser = RequestParser(limits)
    start = 0
    for size in pieces or ():
        parser.feed(raw[start : start + size])
        start += size
    parser.feed(raw[start:])
    return parser


def bytewise(raw: bytes) -> list[int]:
    return [1] * len(raw)


def requests_of(parser: RequestParser) -> tuple[Parsed, ...]:
    return tuple(
        Parsed(r.method, r.target, r.body.read(), r.keep_alive, r.version) for r in parser.ready
    )


def status_of(raw: bytes, limits: Limits = DEFAULTS, pieces: list[int] | None = None) -> int:
    with pytest.raises(ProtocolError) as info:
        feed(raw, limits, pieces)
    reason = info.value.reason
    assert reason and "\n" not in reason and len(reason) < 200  # one concise log line
    return info.value.status


@STEPS
@pytest.mark.parametrize("case", REJECT, ids=lambda case: case.id)
def test_rejected_with_the_exact_status(case, step):
    limits = Limits(**(case.limits or {}))
    pieces = bytewise(case.raw) if step else None
    assert status_of(case.raw, limits, pieces) == case.status


@STEPS
@pytest.mark.parametrize("case", ACCEPT, ids=lambda case: case.id)
def test_accepted_as_exactly_these_requests(case, step):
    parser = feed(case.raw, pieces=bytewise(case.raw) if step else None)
    assert requests_of(parser) == case.requests
    assert parser.in_progress is False


@pytest.mark.xfail(strict=True, reason="llhttp accepts it and reports no raw request line")
@pytest.mark.parametrize("case", KNOWN_GAPS, ids=lambda case: case.id)
def test_known_llhttp_leniencies(case):
    assert status_of(case.raw) == case.status


@pytest.mark.parametrize("case", ACCEPT, ids=lambda case: case.id)
def test_every_accepted_request_makes_a_wsgi_environ(case):
    for req in feed(case.raw).ready:
        environ = wsgi.build_environ(
            wsgi.connection_environ(wsgi.base_environ("h", "80", False, True), "::1", "1"), req
        )
        assert environ["PATH_INFO"].startswith(("/", "*"))


@pytest.mark.parametrize(
    ("target", "host", "path"),
    [
        (b"http://example.com/a?b=1", "example.com", "/a"),  # RFC 9112 §3.2.2
        (b"https://[::1]:8443/x", "[::1]:8443", "/x"),
        (b"HTTP://EXAMPLE.COM", "EXAMPLE.COM", "/"),
    ],
)
def test_absolute_form_authority_replaces_the_host_header(target, host, path):
    raw = b"GET " + target + b" HTTP/1.1\r\nHost: evil.example.net\r\n\r\n"
    [req] = feed(raw).ready
    environ = wsgi.build_environ(
        wsgi.connection_environ(wsgi.base_environ("h", "80", False, True), "::1", "1"), req
    )
    assert (environ["HTTP_HOST"], environ["PATH_INFO"]) == (host, path)


@pytest.mark.parametrize(
    ("raw", "version"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "1.1"),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", "1.0"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "1.1"),
    ],
    ids=["connection-close", "http10-keep-alive-and-close", "upgrade"],
)
def test_nothing_after_a_request_that_ends_the_connection_is_parsed(raw, version):
    """RFC 9112 §9.6, however the parser learns that the connection ends."""
    parser = feed(raw)
    for _ in range(200):  # more junk than a head may hold
        parser.feed(b"\x00 junk that is not HTTP \r\n" * 200)
    assert requests_of(parser) == (Parsed("GET", b"/", keep_alive=False, version=version),)


# Chunked framing is bounded per request, however it is split into reads.


@pytest.mark.parametrize(
    ("start", "endless"), [(b"5;ext=", b"v"), (b"", b"0")], ids=["extension", "size-padding"]
)
def test_endless_chunk_extension_or_size_padding_is_cut_off(start, endless):
    parser = RequestParser(SMALL)
    parser.feed(CHUNKED + start)
    with pytest.raises(ProtocolError) as info:
        for _ in range(7):  # 5138 bytes allowed, plus the read that goes past them
            parser.feed(endless * 1000)
    assert info.value.status == 400


def test_many_small_chunks_with_extensions_fit_the_framing_budget():
    parser = RequestParser(SMALL)
    parser.feed(CHUNKED)
    for _ in range(5000):
        parser.feed(b"1;e=1\r\nx\r\n")
    parser.feed(b"0\r\nX-Checksum: 1\r\n\r\n")
    [req] = parser.ready
    assert req.body.read() == b"x" * 5000


def test_truncated_chunked_body_is_never_a_request():
    parser = feed(CHUNKED + b"5\r\nhello\r\n0\r\n")  # EOF here: the last CRLF never came
    assert not parser.ready and parser.in_progress


# Expect: 100-continue (RFC 9110 §10.1.1: MAY answer 417 to others, MUST ignore it in HTTP/1.0)


H11 = b"POST / HTTP/1.1\r\nHost: a\r\n"


@pytest.mark.parametrize(
    ("head", "pending"),
    [
        (H11 + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n", True),
        (H11 + b"Expect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n", True),
        (H11 + b"Expect: 100-continue\r\nContent-Length: 0\r\n\r\n", False),
        (H11 + b"Expect: something-else\r\nContent-Length: 2\r\n\r\n", False),
        (b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", False),
    ],
)
def test_100_continue_is_asked_for_only_when_a_body_is_awaited(head, pending):
    assert feed(head).continue_pending is pending


def test_a_too_large_body_is_refused_before_100_continue():
    head = b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n"
    assert status_of(head, Limits(body=10)) == 413


# Fuzzing. Inputs stay far below every limit, so how bytes are split into reads must not change
# the outcome; and whatever the parser accepts must be safe to hand to the WSGI layer.

SEEDS = [case.raw for case in (*REJECT, *ACCEPT, *KNOWN_GAPS)]
#: Bytes that matter to HTTP framing, more likely than random ones to reach a rule.
NOISE = st.sampled_from(b"\r\n\t \x00\x0b\x7f\x80\xff:;,=\"'#*/?@[]%+-_0123456789aAfFxX")


@st.composite
def mutated_requests(draw) -> bytes:
    raw = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        edit = draw(st.sampled_from(("insert", "delete", "replace", "repeat")))
        if edit == "insert":
            raw[at:at] = draw(st.lists(NOISE, min_size=1, max_size=3))
        elif edit == "delete":
            del raw[at : at + draw(st.integers(1, 4))]
        elif edit == "replace" and at < len(raw):
            raw[at] = draw(NOISE)
        else:
            raw[at:at] = raw[at : at + draw(st.integers(1, 40))]
    return bytes(raw)


def outcome(raw: bytes, pieces: list[int] | None = None):
    """The parser's verdict: the error status, or the requests and whether one is pending."""
    try:
        parser = feed(raw, pieces=pieces)
    except ProtocolError as exc:
        return exc.status
    for req in parser.ready:
        wsgi.build_environ(
            wsgi.connection_environ(wsgi.base_environ("h", "80", False, True), "::1", "1"), req
        )
    return requests_of(parser), parser.in_progress


READS = st.lists(st.integers(1, 64), max_size=12)
FUZZ = settings(max_examples=300, deadline=500)


@FUZZ
@given(st.binary(max_size=600), READS)
def test_random_bytes_raise_nothing_but_protocol_errors(raw, pieces):
    outcome(raw, pieces)


@FUZZ
@given(mutated_requests(), READS)
def test_mutated_requests_parse_the_same_however_they_are_split(raw, pieces):
    assert outcome(raw, pieces) == outcome(raw)


@pytest.mark.parametrize(
    "raw",
    [
        # Found by the fuzz test above: an HTTP/0.9-style line whose target ends in HTTP/1.1.
        b"\rPOST /uploHTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET  HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET   HTTP/1.0\r\nHost: a\r\n\r\n",
    ],
)
def test_the_version_is_the_one_llhttp_parses_whether_the_line_comes_whole_or_split(raw):
    """A shortcut that read the version off the request line got these wrong when fed whole."""
    assert outcome(raw, [1]) == outcome(raw)
    assert outcome(raw, [len(raw) - 3]) == outcome(raw)
