"""HTTP/1.1 on the wire, without sockets: bytes in, `Request`s or a `ProtocolError` out.

llhttp (through httptools) does the RFC 9112 grammar, strictly. It already answers 400 to: methods
it does not know (a custom token method too: it reports no position, so we cannot cheaply tell
one from garbage for a 501), HTAB or trailing space in the request line, a target with CTLs,
spaces or non-ASCII, a version that is not HTTP/DIGIT.DIGIT, bare CR or LF in the head or in chunk
framing, header names that are not tokens, whitespace before a colon, obs-fold, NUL and CTLs in
values, a Content-Length that is not 1*DIGIT, repeats or overflows, Content-Length together with
Transfer-Encoding, `chunked` not last or twice, chunk sizes that are not bare hex or overflow,
chunk data not followed by CRLF.

This module adds the rest (see docs/http-edge.md; tests/http_corpus.py has a case for each rule):
limits (414, 431, 413), exactly one valid Host, HTTP/1.0 and 1.1 only (505), request-target forms,
Transfer-Encoding exactly `chunked`, bounded chunk framing, no CONNECT and no protocol switch. A
plain request pays for a length-dispatched look at header names, a set lookup for its Host and two
byte tests on its target; everything else runs on rare paths.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from tempfile import SpooledTemporaryFile

import httptools

#: Caps that stay even where a limit setting is 0 ("unlimited"), so memory stays bounded.
HARD_LIMIT_REQUEST_LINE = 65536
HARD_LIMIT_FIELDS = 32768
HARD_LIMIT_FIELD_SIZE = 65536
#: Bodies up to this size stay in memory; larger ones spool to a temporary file.
BODY_IN_MEMORY = 1024 * 1024
#: Bytes of one unfinished request head held free of charge; beyond them, what the connection
#: holds is charged to the worker's head budget (HEAD_BUDGET). Browsers send a few KiB; nginx
#: refuses heads over 32 KiB by default.
HEAD_FREE = 64 * 1024
#: Bytes of unfinished request heads beyond HEAD_FREE each that one worker holds at once: the
#: limits allow ~800 KiB per head, so a thousand clients each sending most of one would otherwise
#: hold ~800 MiB of memory per worker. Past it, the head that would pass it gets 503.
HEAD_BUDGET = 64 * 1024 * 1024
#: Framing bytes one chunk may take for free: up to 16 hex digits and its two CRLFs. Anything
#: more (extensions, padding zeros, the trailer section) may add up to what a request head may.
CHUNK_FRAMING = 20

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class ProtocolError(Exception):
    """The client broke HTTP: answer with `status` and close the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class BudgetSpent(ProtocolError):
    """503: the worker holds as much as `budget` allows. Not the client's fault, and a crowd
    gets many at once: logged through the budget, once a minute at most, not per request."""

    def __init__(self, budget: BodyBudget) -> None:
        super().__init__(503, f"the worker holds as many {budget.what} as it may")
        self.budget = budget


#: While a budget keeps refusing, one log line per this many seconds says how many it refused.
REFUSALS_LOGGED_EVERY = 60.0


class BodyBudget:
    """Bytes of unfinished request bodies (or large heads) one worker may hold at once, in
    memory and spool files together, shared by all its parsers: limit_request_body bounds one
    upload, this bounds a crowd of slow ones, so they cannot fill the disk or the memory."""

    __slots__ = ("left", "total", "what", "setting", "_refused", "_said_at")

    def __init__(self, total: int, what: str = "request bodies", setting: str = "") -> None:
        self.left = total
        self.total = total
        self.what = what
        self.setting = f", {setting}" if setting else ""  # the setting that sets it, if one does
        self._refused = 0
        self._said_at: float | None = None

    def refusal(self, now: float) -> str | None:
        """Count a 503 this budget caused. The line to log, if any: the first refusal's, then
        at most one every REFUSALS_LOGGED_EVERY seconds with the count since the last."""
        self._refused += 1
        if self._said_at is not None and now - self._said_at < REFUSALS_LOGGED_EVERY:
            return None
        count, self._refused = self._refused, 0
        since, self._said_at = self._said_at, now
        if since is None or count == 1:
            return (
                f"Refused a request with 503: the worker holds as many {self.what} as it may "
                f"({self.total:,} bytes{self.setting}); said at most once a minute while it lasts"
            )
        return (
            f"Refused {count} requests with 503 in the last {now - since:.0f} s: the worker "
            f"holds as many {self.what} as it may ({self.total:,} bytes{self.setting})"
        )


@dataclass(frozen=True)
class Limits:
    request_line: int = 8190
    fields: int = 100
    field_size: int = 8190
    body: int = 10 * 1024 * 1024  # 0 = unlimited
    tmp_dir: str | None = None  # where bodies over BODY_IN_MEMORY spool (None: the system's)
    buffered: BodyBudget | None = None  # the worker's, shared by its parsers (None: unlimited)
    heads: BodyBudget = field(  # the worker's
        default_factory=lambda: BodyBudget(HEAD_BUDGET, "large unfinished request heads")
    )

    @classmethod
    def from_config(cls, config) -> Limits:
        """A worker's limits (each worker makes its own, so the body budget is per worker)."""
        total = config.limit_buffered_bodies
        return cls(
            request_line=config.limit_request_line or HARD_LIMIT_REQUEST_LINE,
            fields=config.limit_request_fields or HARD_LIMIT_FIELDS,
            field_size=config.limit_request_field_size or HARD_LIMIT_FIELD_SIZE,
            body=config.limit_request_body,
            tmp_dir=config.worker_tmp_dir,
            buffered=BodyBudget(total, setting="limit_buffered_bodies") if total else None,
        )


class Request:
    """One complete request; the body is fully read before the app sees it."""

    __slots__ = ("method", "target", "version", "headers", "body", "keep_alive")

    def __init__(self, method, target, version, headers, body, keep_alive):
        self.method: str = method
        self.target: bytes = target
        self.version: str = version  # "1.0" or "1.1"
        self.headers: list[tuple[bytes, bytes]] = headers
        self.body = body  # a readable binary file positioned at 0
        self.keep_alive: bool = keep_alive


class RequestParser:
    """Feed it bytes; complete requests queue up in `ready`, in order (pipelining).

    After a request whose keep_alive is False, further bytes are ignored (RFC 9112 §9.6).
    """

    # Slots: llhttp calls back into these methods several times per request, and slot access
    # is the interpreter's fastest attribute path.
    __slots__ = (
        "limits",
        "ready",
        "continue_pending",
        "in_progress",
        "version",
        "_parser",
        "_max_line",
        "_max_fields",
        "_max_field_size",
        "_max_head",
        "_url",
        "_headers",
        "_request_headers",
        "_hosts",
        "_head_bytes",
        "_head_charged",
        "_head_check",
        "_in_head",
        "_framing",
        "_length",
        "_te",
        "_expect",
        "_body",
        "_body_size",
        "_chunks",
        "_wire",
    )

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.ready: deque[Request] = deque()
        #: Set when a request asked for 100-continue; the connection sends CONTINUE and clears it.
        self.continue_pending = False
        self._parser = httptools.HttpRequestParser(self)
        self._parser.set_dangerous_leniencies(
            # RFC 9112 §9.6: after a request that closes the connection, what follows is ignored;
            # llhttp would otherwise fail the whole read, the request before it included.
            lenient_data_after_close=True,
            # Any HTTP/DIGIT.DIGIT reaches on_headers_complete, which answers 505 (RFC 9110
            # §15.6.6) to all but 1.0 and 1.1; llhttp would say 400 to 1.2 or 3.0.
            lenient_version=True,
        )
        self._max_line = limits.request_line
        self._max_fields = limits.fields
        self._max_field_size = limits.field_size
        self._max_head = limits.request_line + limits.fields * (limits.field_size + 4) + 4
        self._head_check = min(self._max_head, HEAD_FREE)  # the head size feed() looks closer at
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._hosts = 0
        self._head_bytes = 0
        self._head_charged = 0  # of _head_bytes, what HEAD_BUDGET holds for this head
        self._in_head = True
        self.in_progress = False
        self._reset_framing()

    def _reset_framing(self) -> None:
        """What only requests with a body or Expect use: reset only after one of those."""
        self._framing = False
        self._length: int | None = None
        self._te: bytes | None = None
        self._expect = False
        self._body = None
        self._body_size = 0

    def feed(self, data: bytes) -> None:
        """Parse more bytes. Raises ProtocolError; after one, the parser is unusable."""
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self._head_check:
                self._charge_head()
        elif self._te is not None:
            self._count_chunk_framing(len(data))
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._end_at_upgrade()
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, ProtocolError):
                raise exc.__context__ from None
            if isinstance(exc.__context__, _ConnectionEnds):
                return
            raise ProtocolError(400, str(exc)) from None
        except httptools.HttpParserError as exc:
            raise ProtocolError(400, str(exc)) from None

    def _charge_head(self) -> None:
        """A large head: bound it, and charge what it holds beyond HEAD_FREE to the worker."""
        if self._head_bytes > self._max_head:
            raise ProtocolError(431, "request head too large")
        if self._head_bytes <= HEAD_FREE:
            return
        heads = self.limits.heads
        size = self._head_bytes - HEAD_FREE - self._head_charged
        heads.left -= size
        self._head_charged += size
        if heads.left < 0:
            raise BudgetSpent(heads)

    def _release_head(self) -> None:
        """A head complete or abandoned: what it held leaves the worker's head budget."""
        self.limits.heads.left += self._head_charged
        self._head_charged = 0

    def head_started_earlier(self, last_read: int) -> bool:
        """Is a request head incomplete that began before the last `last_read` bytes fed?

        A connection bounds a whole head by one timeout, like nginx's client_header_timeout, so
        such a read does not restart it: a head sent a line at a time cannot hold a connection
        for ever (issue 18 #6).
        """
        # Not in_progress, which starts at the target: empty lines and a method sent a byte at a
        # time are part of the head too.
        return self._in_head and self._head_bytes > last_read

    def close(self) -> None:
        """The connection ends: close the body being read and those of requests not served.

        Also breaks the parser ↔ llhttp reference cycle, which otherwise kept a half-received
        body's spool file open until the next garbage collection (issue 18 #3).
        """
        if self._body is not None:
            self._body.close()
        self._release_body()
        if self._head_charged:
            self._release_head()
        while self.ready:
            self.ready.popleft().body.close()
        self._stop_reading()

    def _count_chunk_framing(self, size: int) -> None:
        """Bound what a chunked body sends besides data (RFC 9112 §7.1.1, §7.1.2 leave it open).

        llhttp skips chunk extensions without a callback, so a client could send them forever.
        Every byte fed before this read belongs to the unfinished body; the read that carried the
        head is not counted, so a client gets at most one read beyond the budget.
        """
        if self._wire - self._body_size > self._chunks * CHUNK_FRAMING + self._max_head:
            raise ProtocolError(400, "too many bytes of chunk extensions or trailers")
        self._wire += size

    def _end_at_upgrade(self) -> None:
        """llhttp stops after a CONNECT or Upgrade request (already queued) and parses no further.

        We switch no protocol (RFC 9110 §7.8 lets a server ignore Upgrade): the request is served
        as plain HTTP, then the connection closes. CONNECT asks a proxy for a tunnel (RFC 9110
        §9.3.6): 501. httptools skips the body of an upgrade request, so one with a body gets 501
        rather than reaching the app without it.
        """
        request = self.ready[-1]
        if request.method == "CONNECT":
            self.ready.pop()
            raise ProtocolError(501, "CONNECT is not supported")
        for name, value in request.headers:
            lower = name.lower()
            if lower == b"transfer-encoding" or (lower == b"content-length" and int(value)):
                self.ready.pop()
                raise ProtocolError(501, "a request body with Upgrade is not supported")
        request.keep_alive = False
        self._stop_reading()

    def _stop_reading(self) -> None:
        """The connection ends with the request just queued: later bytes are not requests."""
        self._parser = _IGNORE_REST
        self._in_head = False

    # llhttp callbacks

    def on_url(self, url: bytes) -> None:
        self.in_progress = True
        self._url += url
        if len(self._url) > self._max_line:
            raise ProtocolError(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        if len(headers) >= self._max_fields:
            raise ProtocolError(431, "too many header fields")
        size = len(name)
        if size + len(value) > self._max_field_size:
            raise ProtocolError(431, "header field too large")
        if value and value[-1] in b" \t":  # an int operand: a byte test, no substring search
            # RFC 9110 §5.5: trailing whitespace is not part of the value (llhttp strips only
            # the leading).
            value = value.rstrip(b" \t")
        # Only names of these lengths can matter to us: lower-case just those.
        if size == 4:
            if name.lower() == b"host":
                self._hosts += 1
                if value not in _valid_hosts:
                    _check_host(value)
        elif size == 14:
            if name.lower() == b"content-length":
                self._length = int(value)  # llhttp has checked: digits, and only one
                self._framing = True
        elif size == 17:
            if name.lower() == b"transfer-encoding":
                self._te = value if self._te is None else self._te + b"," + value
                self._framing = True
        elif size == 6 and name[0] in b"Ee" and name.lower() == b"expect":  # not Accept, Cookie
            self._expect = value.lower() == b"100-continue"
            self._framing = True
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        self.version = version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise ProtocolError(505, f"HTTP version {version} not supported")
        # RFC 9112 §3.2: HTTP/1.1 needs exactly one Host, any version at most one (and on_header
        # has checked its value).
        if self._hosts != 1 and (version == "1.1" or self._hosts > 1):
            raise ProtocolError(400, "exactly one Host header is required")
        url = self._url
        # RFC 9112 §3.2: no request-target form has a fragment (llhttp would accept "#...").
        # An int operand: `b"#" in url` tries it as an int first, at ten times the cost.
        if 0x23 in url:
            raise ProtocolError(400, "fragment in the request target")
        if url[0] != 0x2F:  # not origin-form: rare
            _check_target_form(parser.get_method(), url)
        self._in_head = False
        if self._head_charged:
            self._release_head()
        # Anything llhttp reports after this is a chunked trailer: counted against the limits,
        # never merged into the request's headers (a trailer must not pose as a header).
        self._request_headers = self._headers
        self._headers = []
        if self._framing:
            self._head_framing(version)

    def _head_framing(self, version: str) -> None:
        """Body framing and Expect, checked once the head is complete."""
        if self._te is not None:
            _check_transfer_encoding(self._te, version)
            self._chunks = 0
            self._wire = 0
        length = self._length
        if length is not None:
            if self.limits.body and length > self.limits.body:
                raise ProtocolError(413, "request body too large")
            buffered = self.limits.buffered
            if buffered is not None and length > buffered.left:  # before any 100 Continue
                raise BudgetSpent(buffered)
            if length > BODY_IN_MEMORY:
                self._body = SpooledTemporaryFile(BODY_IN_MEMORY, dir=self.limits.tmp_dir)
        if self._expect and version == "1.1" and length != 0:
            self.continue_pending = True

    def on_chunk_header(self) -> None:
        self._chunks += 1

    def on_body(self, chunk: bytes) -> None:
        size = len(chunk)
        self._body_size += size
        buffered = self.limits.buffered
        if buffered is not None:
            buffered.left -= size  # given back by _release_body, when the body is complete
            if buffered.left < 0:
                raise BudgetSpent(buffered)
        if self.limits.body and self._body_size > self.limits.body:
            raise ProtocolError(413, "request body too large")
        if self._body is None:
            self._body = SpooledTemporaryFile(BODY_IN_MEMORY, dir=self.limits.tmp_dir)
        self._body.write(chunk)

    def on_message_complete(self) -> None:
        body = EMPTY_BODY
        if self._framing:
            if self._body is not None:
                body = self._body
                body.seek(0)
            if self._headers:
                # A chunked body's trailer section, which on_header collected: dropped here, or
                # it would open the next request's headers (issue 18 #1).
                self._headers = []
            self._release_body()
            self._reset_framing()
            self.continue_pending = False
        parser = self._parser
        method = parser.get_method()
        version = self.version
        keep_alive = parser.should_keep_alive()
        self.ready.append(
            Request(
                _METHODS.get(method) or method.decode("ascii"),
                self._url,
                version,
                self._request_headers,
                body,
                keep_alive,
            )
        )
        self._url = b""
        self._hosts = 0
        self._head_bytes = 0
        self._in_head = True
        self.in_progress = False
        if not keep_alive or version == "1.0":
            self._end_if_closing(keep_alive)

    def _release_body(self) -> None:
        """A body complete (the app's now) or abandoned leaves the worker's budget."""
        if self._body_size and self.limits.buffered is not None:
            self.limits.buffered.left += self._body_size
            self._body_size = 0

    def _end_if_closing(self, keep_alive: bool) -> None:
        """RFC 9112 §9.6: no request after one that ends the connection.

        llhttp skips the rest of the read itself (lenient_data_after_close), except after an
        HTTP/1.0 request with both "keep-alive" and "close", which llhttp lets persist and RFC
        9112 §9.3 does not: that one is marked here, and llhttp stopped by an exception.
        """
        if keep_alive:
            request = self.ready[-1]
            if not _asks_to_close(request.headers):
                return
            request.keep_alive = False
            self._stop_reading()
            raise _ConnectionEnds
        self._stop_reading()


class _ConnectionEnds(Exception):
    """Raised from a callback to stop llhttp after a request that ends the connection."""


class _IgnoreRest:
    """Stands in for llhttp once the connection is to end: later bytes are not requests."""

    def feed_data(self, data: bytes) -> None:
        pass


_IGNORE_REST = _IgnoreRest()


_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}

# The rules below run only on rare paths.

#: RFC 9110 §5.6.2 token.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: RFC 9110 §7.2 Host = uri-host [ ":" port ], RFC 3986 §3.2.2: an IP-literal in brackets or a
#: reg-name (unreserved, pct-encoded, sub-delims; may be empty), then digits for the port.
_HOST = re.compile(
    rb"(?:\[[0-9A-Za-z._~:!$&'()*+,;=-]+\]|(?:[0-9A-Za-z._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*)"
    rb"(?::[0-9]*)?"
)
#: Host values already found valid: a server sees few, so the check runs once for each.
_valid_hosts: set[bytes] = set()


def _check_host(host: bytes) -> None:
    """RFC 9112 §3.2: a Host header field with an invalid value gets 400."""
    if _HOST.fullmatch(host.rstrip(b" \t")) is None:
        raise ProtocolError(400, "invalid Host header")
    if len(_valid_hosts) < 256:
        _valid_hosts.add(host)


def _check_target_form(method: bytes, target: bytes) -> None:
    """A target that is not origin-form (RFC 9112 §3.2.2-§3.2.4); llhttp let it through."""
    if target[:1] == b"*":
        # RFC 9112 §3.2.4: asterisk-form is "*" alone, and only for a server-wide OPTIONS.
        if target != b"*" or method != b"OPTIONS":
            raise ProtocolError(400, "asterisk-form target is for OPTIONS only")
    elif method != b"CONNECT":  # authority-form; CONNECT itself gets 501 (_end_at_upgrade)
        _check_absolute_form(target)


def _check_absolute_form(target: bytes) -> None:
    """RFC 9112 §3.2.2: an http(s) URI whose authority then replaces Host (wsgi.py does that)."""
    try:
        url = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        raise ProtocolError(400, "invalid absolute-form target") from None
    if (url.schema or b"").lower() not in (b"http", b"https"):
        raise ProtocolError(400, "absolute-form target is not an http(s) URI")
    if not url.host:  # RFC 9110 §4.2.1: an http URI with an empty host MUST be rejected
        raise ProtocolError(400, "absolute-form target without a host")
    if url.userinfo is not None:  # RFC 9110 §4.2.4: userinfo SHOULD be treated as an error
        raise ProtocolError(400, "userinfo in the request target")


def _asks_to_close(headers: list[tuple[bytes, bytes]]) -> bool:
    """RFC 9112 §9.3: "close" ends the connection even beside "keep-alive", which llhttp lets win
    in HTTP/1.0."""
    for name, value in headers:
        if name.lower() == b"connection":
            if b"close" in (option.strip(b" \t").lower() for option in value.split(b",")):
                return True
    return False


def _check_transfer_encoding(value: bytes, version: str) -> None:
    """Transfer-Encoding must be exactly `chunked`, in any case, with optional whitespace.

    - In HTTP/1.0 the framing is faulty (RFC 9112 §6.1): 400.
    - Not a list of tokens (empty elements, odd bytes): 400, since a proxy in front may read it
      another way and frame by Content-Length (CVE-2024-6827, CVE-2019-16789).
    - `chunked` not last or twice: the length cannot be determined (RFC 9112 §6.3): 400.
    - Another coding before `chunked` (gzip, identity, …): we decode none (RFC 9112 §6.1): 501.
    """
    if version == "1.0":
        raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
    codings = [coding.strip(b" \t").lower() for coding in value.split(b",")]
    if not all(_TOKEN.fullmatch(coding) for coding in codings):
        raise ProtocolError(400, "malformed Transfer-Encoding")
    if codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        raise ProtocolError(400, "chunked must be the final transfer coding, once")
    if len(codings) > 1:
        raise ProtocolError(501, f"transfer coding {codings[0].decode()} is not implemented")


class _EmptyBody:
    """wsgi.input of a request without a body: one shared object, since nothing can change it."""

    __slots__ = ()

    def read(self, size: int = -1) -> bytes:
        return b""

    def readline(self, size: int = -1) -> bytes:
        return b""

    def readlines(self, hint: int = -1) -> list[bytes]:
        return []

    def __iter__(self):
        return iter(())

    def close(self) -> None:
        pass


EMPTY_BODY = _EmptyBody()


def environ_key(name: str) -> str:
    """The WSGI environ key of a header field name (RFC 3875 §4.1.18, PEP 3333): 'X-Request-ID'
    → 'HTTP_X_REQUEST_ID'; Content-Type and Content-Length go without the prefix.

    '' for none: an empty name, or one with '_', whose field the server drops, since
    'X_Forwarded_For' would map to the key of 'X-Forwarded-For' (nginx drops them too).
    """
    if not name or "_" in name:
        return ""
    key = name.upper().replace("-", "_")
    return key if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH" else "HTTP_" + key


# Response heads

#: How a response body is delimited (RFC 9112 §6.3): see response_framing.
NO_BODY = 0  # HEAD, 1xx, 204, 304: nothing the app returns is sent
FIXED = 1  # Content-Length
CHUNKED = 2
UNTIL_CLOSE = 3  # HTTP/1.0 without a length: closing the connection ends the body

_TRANSFER_CHUNKED = b"Transfer-Encoding: chunked\r\n"
_END_CLOSE = b"Connection: close\r\n\r\n"
_END_KEEP_ALIVE_1_0 = b"Connection: keep-alive\r\n\r\n"


def response_framing(
    method: str, version: str, code: int, length: int | None, known: int | None, keep_alive: bool
) -> tuple[bytes, int, int | None, bool]:
    """How a response head ends, how its body is framed, and whether the connection persists:
    RFC 9112 §6.3 and §9.3, decided here and nowhere else.

    `length` is the app's own Content-Length, `known` the body's size where the server knows it
    (a one-chunk body, a file), `keep_alive` whether the request and the server let the
    connection persist. Returns (the head's last lines: a framing field the app did not give,
    Connection where it differs from the version's default, the empty line; the framing; the
    body's length or None; whether the connection persists).
    """
    if code < 200 or code == 204 or code == 304:  # RFC 9110 §15.2, §15.3.5, §15.4.5: no content
        framing, add = NO_BODY, b""
    elif length is not None:
        framing, add = FIXED, b""
    elif known is not None:
        framing, add, length = FIXED, b"Content-Length: %d\r\n" % known, known
    elif method == "HEAD":  # no body to delimit, so no framing to announce
        framing, add = NO_BODY, b""
    elif version == "1.1":
        framing, add = CHUNKED, _TRANSFER_CHUNKED
    else:  # HTTP/1.0 has no chunked coding (RFC 9112 §7): the close delimits the body
        framing, add, keep_alive = UNTIL_CLOSE, b"", False
    if method == "HEAD":  # RFC 9110 §9.3.2: GET's head, without the body
        framing = NO_BODY
    if not keep_alive:
        end = _END_CLOSE
    elif version == "1.0":  # RFC 9112 §9.3: HTTP/1.0 persists only when the response says so
        end = _END_KEEP_ALIVE_1_0
    else:
        end = b"\r\n"
    return (add + end if add else end), framing, length, keep_alive


def status_line(status: str) -> bytes:
    """'200 OK' → b'HTTP/1.1 200 OK\\r\\n' (wsgi caches what apps send; see wsgi._status)."""
    return b"HTTP/1.1 " + status.encode("latin-1") + b"\r\n"


SERVER_HEADER = b"Server: prodserve\r\n"
# [the second it is for, the Date line, the Date and Server lines]
_date = [0.0, b"", b""]


def date_and_server() -> bytes:
    """Our Date and Server header lines, as one (what most responses carry), recomputed at most
    once a second."""
    now = time.time()
    if not _date[0] <= now < _date[0] + 1.0:  # a new second, or the clock was set back
        _new_second(now)
    return _date[2]


def date_header() -> bytes:
    """b'Date: <RFC 9110 IMF-fixdate>\\r\\n' alone, for a response with the app's own Server."""
    date_and_server()
    return _date[1]


def _new_second(now: float) -> None:
    second = int(now)
    line = b"Date: " + formatdate(second, usegmt=True).encode("ascii") + b"\r\n"
    _date[:] = [float(second), line, line + SERVER_HEADER]


def health_response(request: Request, ok: bool) -> tuple[bytes, bool]:
    """The health check path's answer, made without the app: 200 while serving, 503 (and a
    close) once a graceful stop began. Returns it and whether the connection persists."""
    body = b"ok\n" if ok else b"stopping\n"
    code = 200 if ok else 503
    end, framing, _, keep_alive = response_framing(
        request.method, request.version, code, len(body), None, ok and request.keep_alive
    )
    head = b"".join(
        (
            status_line(f"{code} {HTTPStatus(code).phrase}"),
            date_and_server(),
            b"Content-Type: text/plain\r\nCache-Control: no-store\r\n",
            b"Content-Length: %d\r\n" % len(body),
            end,
        )
    )
    return (head if framing == NO_BODY else head + body), keep_alive


def error_response(status: int) -> bytes:
    """A complete short plain-text response that closes the connection."""
    phrase = HTTPStatus(status).phrase
    body = f"{status} {phrase}\n".encode("ascii")
    return b"".join(
        (
            status_line(f"{status} {phrase}"),
            date_and_server(),
            b"Content-Type: text/plain; charset=utf-8\r\n",
            b"Content-Length: %d\r\n" % len(body),
            b"Connection: close\r\n\r\n",
            body,
        )
    )
