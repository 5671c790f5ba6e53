"""The sans-I/O request parser, rule by rule: raw bytes in → requests or a status out."""

import pytest

from django_prodserve.server.http import (
    HEAD_FREE,
    REFUSALS_LOGGED_EVERY,
    BodyBudget,
    BudgetSpent,
    Limits,
    ProtocolError,
    RequestParser,
    error_response,
)


def parse(raw: bytes, limits: Limits | None = None, pieces: int = 1):
    """Feed raw bytes (optionally split into pieces) and return the complete requests."""
    parser = RequestParser(limits or Limits())
    step = max(1, len(raw) // pieces)
    for start in range(0, len(raw), step):
        parser.feed(raw[start : start + step])
    return list(parser.ready), parser


def status_of(raw: bytes, limits: Limits | None = None) -> int:
    with pytest.raises(ProtocolError) as info:
        parse(raw, limits)
    return info.value.status


@pytest.mark.parametrize("pieces", [1, 3, 1000])
def test_simple_get_parses_whole_or_byte_by_byte(pieces):
    raw = b"GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"
    [req], parser = parse(raw, pieces=pieces)
    assert (req.method, req.target, req.version) == ("GET", b"/a/b?x=1", "1.1")
    assert req.headers == [(b"Host", b"example.com"), (b"Accept", b"*/*")]
    assert req.keep_alive is True
    assert req.body.read() == b""
    assert parser.in_progress is False


def test_pipelined_requests_come_out_in_order():
    raw = (
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    reqs, _ = parse(raw)
    assert [r.target for r in reqs] == [b"/1", b"/2", b"/3"]
    assert reqs[1].body.read() == b"abc"
    assert [r.keep_alive for r in reqs] == [True, True, False]


@pytest.mark.parametrize("pieces", [1, 7, 1000])
def test_chunked_body_is_decoded(pieces):
    raw = (
        b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"
    )
    [req], _ = parse(raw, pieces=pieces)
    assert req.body.read() == b"hello, world"


def test_large_body_spools_to_a_file_and_reads_back_whole():
    body = bytes(range(256)) * 8192  # 2 MiB
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    [req], _ = parse(raw, pieces=40)
    assert req.body.read() == body


def test_http10_defaults_to_close_and_needs_no_host():
    [req], _ = parse(b"GET / HTTP/1.0\r\n\r\n")
    assert req.version == "1.0" and req.keep_alive is False
    [req], _ = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert req.keep_alive is True


def test_expect_100_continue_is_flagged_until_the_body_arrives():
    parser = RequestParser(Limits())
    parser.feed(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert parser.continue_pending is True and not parser.ready
    parser.continue_pending = False
    parser.feed(b"ok")
    assert parser.ready[0].body.read() == b"ok"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),  # two Hosts
        (b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\n"
            b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
        (b"G\x00T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ],
)
def test_malformed_requests_get_the_right_status(raw, status):
    assert status_of(raw) == status


def test_limits_give_414_431_and_413():
    small = Limits(request_line=20, fields=3, field_size=30, body=10)
    assert status_of(b"GET /" + b"a" * 30 + b" HTTP/1.1\r\nHost: a\r\n\r\n", small) == 414
    many = b"".join(b"X-%d: 1\r\n" % n for n in range(4))
    assert status_of(b"GET / HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n", small) == 431
    assert status_of(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 40 + b"\r\n\r\n", small) == 431
    assert status_of(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", small) == 413
    chunked = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n" + b"x" * 11
    assert status_of(chunked + b"\r\n0\r\n\r\n", small) == 413


def test_an_endless_header_line_is_cut_off_before_it_completes():
    parser = RequestParser(Limits(request_line=100, fields=10, field_size=100))
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: ")
    with pytest.raises(ProtocolError) as info:
        for _ in range(100):
            parser.feed(b"v" * 100)
    assert info.value.status == 431


def test_error_response_is_complete_and_closes():
    raw = error_response(431)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"\r\nConnection: close" in head
    assert b"\r\nContent-Length: %d" % len(body) in head


def test_chunked_trailers_never_become_request_headers():
    raw = (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\nx\r\n0\r\nX-Trailer: 1\r\nHost: evil\r\n\r\n"
    )
    [req], _ = parse(raw)
    assert req.headers == [(b"Host", b"a"), (b"Transfer-Encoding", b"chunked")]
    assert req.body.read() == b"x"


def test_chunked_trailers_never_become_the_next_requests_headers():
    raw = (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\nx\r\n0\r\nCookie: sessionid=attacker\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    [_, req], _ = parse(raw)
    assert req.headers == [(b"Host", b"a")]


def test_large_unfinished_heads_share_a_worker_budget_that_comes_back():
    """Each head's bytes beyond HEAD_FREE are charged to the worker while it is unfinished, so a
    crowd of clients each sending most of a large head holds a bounded total; a head complete or
    abandoned gives its charge back."""
    budget = BodyBudget(2 * HEAD_FREE)
    limits = Limits(heads=budget)
    field = b"X-Big: " + b"a" * 8000 + b"\r\n"
    large = b"GET / HTTP/1.1\r\nHost: a\r\n" + field * (HEAD_FREE // len(field) + 12)
    one, two = RequestParser(limits), RequestParser(limits)
    one.feed(large)
    assert 0 < budget.left < 2 * HEAD_FREE
    with pytest.raises(ProtocolError) as info:
        two.feed(large + field * 20)
    assert info.value.status == 503
    two.close()
    one.feed(b"\r\n")
    assert budget.left == 2 * HEAD_FREE and one.ready[0].method == "GET"
    small = RequestParser(limits)
    small.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n")
    assert budget.left == 2 * HEAD_FREE  # a head within HEAD_FREE costs the worker nothing


def test_the_worker_s_body_budget_is_shared_and_given_back():
    budget = BodyBudget(10)
    limits = Limits(buffered=budget)
    head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n"
    one = RequestParser(limits)
    one.feed(head + b"abc")
    assert budget.left == 7
    RequestParser(limits).feed(head + b"abcdef")
    assert budget.left == 7  # a complete body is the app's: given back
    chunked = RequestParser(limits)
    with pytest.raises(ProtocolError) as info:
        chunked.feed(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678"
        )
    assert info.value.status == 503
    chunked.close()  # the connection ends: what it held comes back
    one.feed(b"def")
    assert budget.left == 10
    with pytest.raises(ProtocolError) as info:
        RequestParser(limits).feed(head.replace(b"6", b"11"))
    assert info.value.status == 503  # refused from the Content-Length, before any 100 Continue
    assert isinstance(info.value, BudgetSpent) and info.value.budget is budget


def test_a_spent_budget_is_logged_once_then_at_most_once_a_minute_with_a_count():
    """A crowd refused with 503 must not write a line per request (resource exhaustion: back
    off and log once); the worker logs what refusal() returns, on a clock given to it."""
    budget = BodyBudget(3_000_000, setting="limit_buffered_bodies")
    first = budget.refusal(100.0)
    assert first is not None and "limit_buffered_bodies" in first and "3,000,000" in first
    assert [budget.refusal(100.0 + i) for i in range(1, 50)] == [None] * 49
    later = budget.refusal(100.0 + REFUSALS_LOGGED_EVERY)
    assert later is not None and later.startswith("Refused 50 requests with 503 in the last 60 s")
    assert budget.refusal(100.0 + REFUSALS_LOGGED_EVERY + 1) is None
    quiet_then_one = budget.refusal(10_000.0)
    assert quiet_then_one is not None and quiet_then_one.startswith("Refused 2 requests")
