"""PEP 3333: a `Request` in, the app called, its response written through the connection.

The connection object (see worker.Connection) supplies `send(bytes)`, `sendfile(file, offset, count)`
and the peer's address; everything about WSGI itself lives here.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import sys
from urllib.parse import unquote_to_bytes

from . import http
from .http import CHUNKED, EMPTY_BODY, NO_BODY, Request, response_framing

error_log = logging.getLogger("django_prodserve.error")

HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
    )
)


class FileWrapper:
    """wsgi.file_wrapper: the worker hands regular files to os.sendfile, iterates anything else."""

    __slots__ = ("filelike", "blksize")

    def __init__(self, filelike, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self):
        read, size = self.filelike.read, self.blksize
        while data := read(size):
            yield data

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


def base_environ(
    server_name: str, server_port: str, multithread: bool, multiprocess: bool, scheme: str = "http"
) -> dict:
    """The keys every request of one listening socket shares; copied per connection.

    SERVER_PROTOCOL, QUERY_STRING and wsgi.input hold the common case; build_environ() replaces
    them when a request differs.
    """
    return {
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "wsgi.input": EMPTY_BODY,
        "SERVER_SOFTWARE": "prodserve",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.input_terminated": True,
    }


# Header name → environ key, computed once per distinct name; "" marks a dropped name.
_header_keys: dict[bytes, str] = {
    b"Content-Type": "CONTENT_TYPE",
    b"Content-Length": "CONTENT_LENGTH",
}


def _header_key(name: bytes) -> str:
    key = http.environ_key(name.decode("latin-1"))
    if len(_header_keys) < 1024:
        _header_keys[name] = key
    return key


def connection_environ(base: dict, remote_addr: str, remote_port: str) -> dict:
    """The keys every request of one connection shares: its listener's, and the peer."""
    environ = base.copy()
    environ["REMOTE_ADDR"] = remote_addr
    environ["REMOTE_PORT"] = remote_port
    return environ


def build_environ(base: dict, req: Request) -> dict:
    """The environ of one request; `base` comes from connection_environ()."""
    environ = base.copy()
    target = req.target
    environ["REQUEST_METHOD"] = req.method
    environ["RAW_URI"] = raw = target.decode("latin-1")
    # Int operands: `b"%" in path` would first try the bytes as an int, at several times the cost.
    if target[0] == 0x2F and 0x3F not in target and 0x25 not in target:
        environ["PATH_INFO"] = raw  # origin-form without query or escapes: the common case
        authority = None
    else:
        authority = _split_target(environ, target)
    if req.version == "1.0":
        environ["SERVER_PROTOCOL"] = "HTTP/1.0"
    keys = _header_keys
    for name, value in req.headers:
        key = keys.get(name)
        if key is None:
            key = _header_key(name)
        if not key or key in environ:
            _repeated_or_dropped(environ, key, value)
        else:
            environ[key] = value.decode("latin-1")
    if authority is not None:
        environ["HTTP_HOST"] = authority  # RFC 9112 §3.2.2: the target's authority wins over Host
    if req.body is not EMPTY_BODY:
        body = environ["wsgi.input"] = req.body
        if "CONTENT_LENGTH" not in environ:
            # A chunked body, already decoded and buffered: give its length, since apps (Django
            # among them) read CONTENT_LENGTH bytes and ignore wsgi.input_terminated.
            environ["CONTENT_LENGTH"] = str(body.seek(0, 2))
            body.seek(0)
    return environ


def _split_target(environ: dict, target: bytes) -> str | None:
    """PATH_INFO and QUERY_STRING of a target with a query, %-escapes or not in origin-form;
    returns the authority of an absolute-form target."""
    path, _, query = target.partition(b"?")
    authority = None
    if path[:1] != b"/":
        path, authority = _origin_path(path)
    if 0x25 in path:
        path = unquote_to_bytes(path)
    environ["PATH_INFO"] = path.decode("latin-1")
    environ["QUERY_STRING"] = query.decode("latin-1")
    return authority


def _repeated_or_dropped(environ: dict, key: str, value: bytes) -> None:
    """A header seen before is joined to it (RFC 9110 §5.3); a dropped name ("") is skipped."""
    if key:
        separator = "; " if key == "HTTP_COOKIE" else ", "
        environ[key] += separator + value.decode("latin-1")


def _origin_path(path: bytes) -> tuple[bytes, str | None]:
    """Absolute-form (http://host/p) → (its path, its authority); '*' stays as is."""
    if path == b"*":
        return path, None
    url = http.httptools.parse_url(path)
    authority = None
    if url.host:
        authority = url.host.decode("latin-1")
        if ":" in authority:  # an IPv6 literal, which httptools gives without its brackets
            authority = f"[{authority}]"
        if url.port:
            authority += f":{url.port}"
    return url.path or b"/", authority


# (name, value) → what the pair adds to a response head, for headers passed through as they are:
# b"name: value\r\n", or for Content-Length (line, length). Apps reuse most of their headers, so
# each pair is validated and encoded once; cleared when full (Set-Cookie churn, varied lengths).
_header_lines: dict[tuple[str, str], bytes | tuple[bytes, int]] = {}
# status → (code, b"HTTP/1.1 status\r\n"), for the statuses apps use; start_response validates
# each once.
_statuses: dict[str, tuple[int, bytes]] = {}


class Exchange:
    """One request's response state: start_response, write(), the head, the body framing."""

    __slots__ = (
        "conn",
        "req",
        "status",
        "status_line",
        "headers",
        "head_sent",
        "keep_alive",
        "chunked",
        "length",
        "sent",
        "code",
        "bodyless",
    )

    def __init__(self, conn, req: Request) -> None:
        self.conn = conn
        self.req = req
        self.status: str | None = None
        self.headers: list | tuple = ()  # what access-log atoms read if the app never answers
        self.head_sent = False
        self.chunked = False
        self.length: int | None = None
        self.sent = 0
        self.code = 0
        self.bodyless = False
        self.keep_alive = req.keep_alive and conn.keep_alive

    def start_response(self, status: str, headers: list, exc_info=None):
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() was already called")
        known = _statuses.get(status) if type(status) is str else None
        if known is None:
            known = _status(status)
        self.code, self.status_line = known
        self.status = status
        self.headers = headers
        return self.write

    def head(self, body_length: int | None) -> bytes:
        """Serialise the status line and headers and choose the body framing.

        body_length is the body's size when the server knows it (a one-chunk body, a file).
        """
        lines = [self.status_line]
        append = lines.append
        cache = _header_lines
        length = None
        own = None
        code = self.code
        for pair in self.headers:
            line = cache.get(pair) if type(pair) is tuple else None
            if line is None:
                line = self._uncached(pair)
                if type(line) is list:  # not cacheable: [] dropped, [line, "d" or "s"] own field
                    if line:
                        append(line[0])
                        own = line[1] if own is None else own + line[1]
                    continue
            if type(line) is tuple:
                line, size = line
                if length is not None:
                    # RFC 9110 §8.6: repeated equal lengths are one; different ones, no length.
                    if size != length:
                        raise ValueError(f"two Content-Lengths, {length} and {size}")
                    continue
                length = size
                if code < 200 or code == 204:  # RFC 9110 §8.6: MUST NOT send one
                    continue
            append(line)
        if own is None:
            append(http.date_and_server())
        else:
            if "d" not in own:
                append(http.date_header())
            if "s" not in own:
                append(http.SERVER_HEADER)
        req = self.req
        end, framing, self.length, self.keep_alive = response_framing(
            req.method, req.version, code, length, body_length, self.keep_alive
        )
        append(end)
        if framing == NO_BODY:  # both False until then; the common case stores neither
            self.bodyless = True
        elif framing == CHUNKED:
            self.chunked = True
        self.head_sent = True
        return b"".join(lines)

    def _uncached(self, pair) -> bytes | tuple[bytes, int] | list:
        """Validate a header pair the cache does not know; returns what the cache would hold, or
        a list for what it must not: [] for a dropped (hop-by-hop) field, [line, "d"] for the
        app's own Date, [line, "s"] for its own Server."""
        name, value = pair
        if type(name) is not str or type(value) is not str:
            raise TypeError(f"WSGI header {name!r}: {value!r} must be a pair of str")
        lower = name.lower()
        if lower == "content-length":
            if not (value.isdigit() and value.isascii()):
                raise ValueError(f"invalid Content-Length {value!r}")
            length = int(value)
            entry = (b"Content-Length: %d\r\n" % length, length)
        else:
            if _NOT_FIELD_VALUE.search(value) or not _token(name):
                raise ValueError(f"invalid character in WSGI header {name!r}: {value!r}")
            if lower in HOP_BY_HOP:
                # The server owns the connection (PEP 3333); an app asking to close is obeyed.
                if lower == "connection" and "close" in value.lower():
                    self.keep_alive = False
                return []
            entry = f"{name}: {value}\r\n".encode("latin-1")
            if lower == "date" or lower == "server":
                # The app's own Date or Server replaces ours (each is a single field); never
                # cached, since head() must learn of it every time.
                return [entry, lower[0]]
        if len(_header_lines) >= 4096:
            _header_lines.clear()
        _header_lines[tuple(pair)] = entry
        return entry

    def write(self, data: bytes) -> None:
        """The legacy write() callable, and the body writer for every chunk after the first."""
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if type(data) is not bytes:
            data = bytes(data)
        out = b"" if self.head_sent else self.head(None)
        if data and not self.bodyless:
            data = self._frame(data)
            out = out + data if out else data
        if out:
            self.conn.send(out)

    def _frame(self, data: bytes) -> bytes:
        if self.chunked:
            self.sent += len(data)
            return b"%x\r\n%b\r\n" % (len(data), data)
        if self.length is not None:
            room = self.length - self.sent
            if len(data) > room:
                error_log.warning("app sent more than its Content-Length; truncated")
                data = data[:room]
                self.keep_alive = False
        self.sent += len(data)
        return data

    def finish(self) -> None:
        if not self.head_sent:
            self.conn.send(self.head(0))
        elif self.chunked:
            self.conn.send(b"0\r\n\r\n")
        elif self.length is not None and self.sent < self.length and not self.bodyless:
            error_log.warning("app sent less than its Content-Length; closing the connection")
            self.keep_alive = False


def _status(status) -> tuple[int, bytes]:
    """Validate a WSGI status ('200 OK'): (its code, its status line), cached."""
    if type(status) is not str or _STATUS.fullmatch(status) is None:
        raise ValueError(f"invalid WSGI status {status!r}")
    known = int(status[:3]), http.status_line(status)
    if len(_statuses) < 256:
        _statuses[status] = known
    return known


#: RFC 9112 §4 status-line after the version: status-code SP [reason-phrase], the reason being
#: HTAB, SP, VCHAR and obs-text. Only 2xx-5xx: a 1xx is interim (RFC 9110 §15.2), and one sent
#: as the response would pair the client's next response with this request (issue 18 #8).
_STATUS = re.compile(r"[2-5][0-9]{2} [\t\x20-\x7e\x80-\xff]*")
#: RFC 9110 §5.5: a field value is HTAB, SP, VCHAR and obs-text; CR, LF, NUL and the other
#: controls are refused (gunicorn answers 500 too), and nothing beyond latin-1 can be sent.
_NOT_FIELD_VALUE = re.compile(r"[^\t\x20-\x7e\x80-\xff]")


def _token(name: str) -> bool:
    """RFC 9110 field-name: a non-empty token."""
    return bool(name) and name.isascii() and not _NOT_TOKEN.intersection(name)


_NOT_TOKEN = frozenset('\x00\t\n\r "(),/:;<=>?@[\\]{}\x7f') | frozenset(map(chr, range(32)))


class ClientLost(ConnectionError):
    """A write to the client failed: it closed the connection, or read nothing for the write
    timeout. The client's doing, not the app's: handle() logs it in one line, no traceback."""


class ClientTimedOut(ClientLost):
    """The client took no byte of the response for `timeout` seconds."""


def handle(app, conn, req: Request, environ: dict) -> Exchange:
    """Run the app for one request and write its whole response; return the exchange."""
    # On the connection too: a worker aborting a hung request answers 500 if no head left yet.
    ex = conn.exchange = Exchange(conn, req)
    try:
        result = app(environ, ex.start_response)
    except Exception:
        error_log.exception("Error handling request %s %s", req.method, environ.get("RAW_URI"))
        _app_failed(conn, ex)
        return ex
    try:
        if type(result) is list and len(result) == 1 and ex.status is not None and not ex.head_sent:
            # The common case, one chunk: head and body in one send, with a known length.
            body = result[0]
            size = len(body)
            head = ex.head(size)
            if ex.bodyless:
                conn.send(head)
            elif ex.length == size:  # framed by our length or the app's matching one
                ex.sent = size
                conn.send(head + body)
            else:
                conn.send(head + ex._frame(body))
                ex.finish()
        elif type(result) is FileWrapper and not ex.head_sent:
            if not _sendfile(conn, ex, result):
                _write_body(conn, ex, iter(result))
        else:
            _write_body(conn, ex, iter(result))
    except ClientLost as exc:
        ex.keep_alive = False
        log = error_log.warning if isinstance(exc, ClientTimedOut) else error_log.debug
        uri = environ.get("RAW_URI")
        log("Client %s, %s %s: %s; connection closed", conn.remote_addr, req.method, uri, exc)
    except Exception:
        error_log.exception("Error handling request %s %s", req.method, environ.get("RAW_URI"))
        _app_failed(conn, ex)
    finally:
        close = None if type(result) is list else getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                error_log.exception(
                    "Error closing the response of %s %s", req.method, environ.get("RAW_URI")
                )
                ex.keep_alive = False
    return ex


def _write_body(conn, ex: Exchange, it) -> None:
    """Send the body, the head riding with its first chunk; a one-chunk body gets a length.

    A generator app may call start_response on its first next(), so the head waits for it.
    """
    first = None
    for chunk in it:
        if chunk:
            first = chunk
            break
    if ex.status is None:
        raise AssertionError("the app returned without calling start_response()")
    if first is None:
        ex.finish()
        return
    if not ex.head_sent:
        second = next(it, None)
        while second is not None and not second:
            second = next(it, None)
        if second is None:
            head = ex.head(len(first))
            conn.send(head if ex.bodyless else head + ex._frame(first))
            ex.finish()
            return
        ex.write(first)
        first = second
    ex.write(first)
    for chunk in it:
        if chunk:
            ex.write(chunk)
    ex.finish()


def _sendfile(conn, ex: Exchange, wrapper: FileWrapper) -> bool:
    """Send a regular file with os.sendfile; False when the file can't take that path."""
    filelike = wrapper.filelike
    try:
        fd = filelike.fileno()
        info = os.fstat(fd)
        offset = filelike.tell()
    except (AttributeError, OSError, ValueError):
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    available = max(info.st_size - offset, 0)
    conn.send(ex.head(available))
    if ex.bodyless:
        return True
    count = min(ex.length, available)
    conn.sendfile(fd, offset, count, ex)
    if count < ex.length:
        error_log.warning("file shorter than its Content-Length; closing the connection")
        ex.keep_alive = False
    return True


def _app_failed(conn, ex: Exchange) -> None:
    """The app raised. A response not started becomes a 500; a started one can only be cut
    short by closing (chunked without its last chunk, or short of its length), never followed
    by a second head inside its body."""
    ex.keep_alive = False
    if not ex.head_sent:
        ex.code = 500
        conn.send(http.error_response(500))
