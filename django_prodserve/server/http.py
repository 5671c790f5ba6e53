"""HTTP/1.1 on the wire, without sockets: bytes in, `Request`s or a `ProtocolError` out.

llhttp (through httptools) does the RFC 9112 grammar; this module adds the server's own rules:
size limits, one Host, the version, body buffering, and the heads of responses.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
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

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class ProtocolError(Exception):
    """The client broke HTTP: answer with `status` and close the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    request_line: int = 4094
    fields: int = 100
    field_size: int = 8190
    body: int = 0  # 0 = unlimited

    @classmethod
    def from_config(cls, config) -> Limits:
        return cls(
            request_line=config.limit_request_line or HARD_LIMIT_REQUEST_LINE,
            fields=config.limit_request_fields or HARD_LIMIT_FIELDS,
            field_size=config.limit_request_field_size or HARD_LIMIT_FIELD_SIZE,
            body=config.limit_request_body,
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
    """Feed it bytes; complete requests queue up in `ready`, in order (pipelining)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.ready: deque[Request] = deque()
        #: Set when a request asked for 100-continue; the connection sends CONTINUE and clears it.
        self.continue_pending = False
        self._parser = httptools.HttpRequestParser(self)
        self._max_line = limits.request_line
        self._max_fields = limits.fields
        self._max_field_size = limits.field_size
        self._max_head = limits.request_line + limits.fields * (limits.field_size + 4) + 4
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._hosts = 0
        self._length: int | None = None
        self._expect = False
        self._body = None
        self._body_size = 0
        self._head_bytes = 0
        self._in_head = True
        self.in_progress = False

    def feed(self, data: bytes) -> None:
        """Parse more bytes. Raises ProtocolError; after one, the parser is unusable."""
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head:
                raise ProtocolError(431, "request head too large")
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No protocol switching here: the request is served, then the connection closes.
            if self.ready:
                self.ready[-1].keep_alive = False
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, ProtocolError):
                raise exc.__context__ from None
            raise ProtocolError(400, f"bad request: {exc}") from None
        except httptools.HttpParserError as exc:
            raise ProtocolError(400, f"bad request: {exc}") from None

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
        # Only names of these lengths can matter to us: lower-case just those.
        if size == 4:
            if name.lower() == b"host":
                self._hosts += 1
        elif size == 14:
            if name.lower() == b"content-length":
                self._length = int(value)  # llhttp has checked: digits, and only one
        elif size == 6 and name.lower() == b"expect":
            self._expect = value.lower() == b"100-continue"
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.version = version = self._parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise ProtocolError(505, f"HTTP version {version} not supported")
        if self._hosts != 1 and (version == "1.1" or self._hosts > 1):
            raise ProtocolError(400, "exactly one Host header is required")
        self._in_head = False
        # Anything llhttp reports after this is a chunked trailer: counted against the limits,
        # never merged into the request's headers (a trailer must not pose as a header).
        self._request_headers = self._headers
        self._headers = []
        length = self._length
        if length is not None:
            if self.limits.body and length > self.limits.body:
                raise ProtocolError(413, "request body too large")
            if length > BODY_IN_MEMORY:
                self._body = SpooledTemporaryFile(max_size=BODY_IN_MEMORY)
        if self._expect and version == "1.1" and length != 0:
            self.continue_pending = True

    def on_body(self, chunk: bytes) -> None:
        self._body_size += len(chunk)
        if self.limits.body and self._body_size > self.limits.body:
            raise ProtocolError(413, "request body too large")
        if self._body is None:
            self._body = SpooledTemporaryFile(max_size=BODY_IN_MEMORY)
        self._body.write(chunk)

    def on_message_complete(self) -> None:
        body = self._body
        if body is None:
            body = EMPTY_BODY
        else:
            body.seek(0)
        parser = self._parser
        method = parser.get_method()
        self.ready.append(
            Request(
                _METHODS.get(method) or method.decode("ascii"),
                self._url,
                self.version,
                self._request_headers,
                body,
                parser.should_keep_alive(),
            )
        )
        self.continue_pending = False
        self._reset()


_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}


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


EMPTY_BODY = _EmptyBody()


# Response heads


def status_line(status: str) -> bytes:
    """'200 OK' → b'HTTP/1.1 200 OK\\r\\n', cached: apps reuse a handful of statuses."""
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 " + status.encode("latin-1") + b"\r\n"
        if len(_STATUS_LINES) < 256:
            _STATUS_LINES[status] = line
    return line


_STATUS_LINES: dict[str, bytes] = {}
_date_cache = [0, b""]


def date_header() -> bytes:
    """b'Date: <RFC 9110 IMF-fixdate>\\r\\n', recomputed at most once a second."""
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = b"Date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
    return _date_cache[1]


def error_response(status: int, server: bytes) -> bytes:
    """A complete short plain-text response that closes the connection."""
    phrase = HTTPStatus(status).phrase
    body = f"{status} {phrase}\n".encode("ascii")
    return b"".join(
        (
            status_line(f"{status} {phrase}"),
            date_header(),
            server,
            b"Content-Type: text/plain; charset=utf-8\r\n",
            b"Content-Length: %d\r\n" % len(body),
            b"Connection: close\r\n\r\n",
            body,
        )
    )
