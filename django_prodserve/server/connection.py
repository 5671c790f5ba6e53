"""A client connection: its socket, its parser, its state (one field), and the writes of a
response (non-blocking sends that wait for room when the client reads slowly)."""

from __future__ import annotations

import enum
import os
import ssl
import time

from . import http, wsgi
from .poller import write_waiter
from .portable import HAS_SENDFILE
from .wsgi import ClientLost, ClientTimedOut

WOULD_BLOCK = (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError)


class State(enum.Enum):
    """Where a connection is in its life: one field, which the loop reads to know what to do."""

    PREAMBLE = "a PROXY protocol header comes first (cleartext, before any TLS)"
    HANDSHAKE = "the TLS handshake is under way"
    PLAIN = "reading requests in cleartext: the loop's fast path"
    TLS = "reading requests through TLS"
    BUSY = "a thread other than the loop's has it: no event of it may reach the loop"
    QUEUED = "pipelined requests wait after its turn: served on the loop's next turn, unread"
    LINGERING = "answered an error and half-closed: what still arrives is dropped"


# Module names for the hot path: a global load, not an attribute lookup on the Enum.
PREAMBLE, HANDSHAKE, PLAIN, TLS, BUSY, QUEUED, LINGERING = State


class Connection:
    """One client socket, its parser and its state; the `send`/`sendfile` side of wsgi.handle()."""

    __slots__ = (
        "sock",
        "fd",
        "parser",
        "remote_addr",
        "remote_port",
        "environ_base",
        "keep_alive",
        "last_active",
        "write_timeout",
        "trusted",
        "preamble",
        "tls",
        "state",
        "served",
        "_poller",
        "current",
        "exchange",
        "thread",
        "aged",
        "aged_at",
        "stalled",
    )

    def __init__(self, sock, addr, listener, worker) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.parser = http.RequestParser(worker.limits)
        if isinstance(addr, tuple):
            self.remote_addr, self.remote_port = addr[0], str(addr[1])
        else:
            self.remote_addr, self.remote_port = "", ""
        self.environ_base = wsgi.connection_environ(
            listener.environ_base, self.remote_addr, self.remote_port
        )
        self.keep_alive = worker.keepalive > 0
        self.last_active = time.monotonic()
        self.write_timeout = worker.config.timeout or None
        self.trusted = self.remote_addr in worker.forwarded.trust
        self.tls = listener.ssl_context is not None
        self.preamble = b""  # the PROXY header's bytes so far (State.PREAMBLE)
        if worker.proxy_trust and self.remote_addr in worker.proxy_trust:
            self.state = PREAMBLE
        else:
            self.state = HANDSHAKE if self.tls else PLAIN
        self.served = False  # keepalive bounds the wait between requests, not for the first
        self._poller = None
        self.current: http.Request | None = None  # the request in the app
        self.exchange = None  # its response's state (wsgi.Exchange), for an abort's answer
        self.thread: int | None = None  # the thread serving it, when not the loop's
        # The request the watchdog last saw in the app, and since when (handoff.Watchdog).
        self.aged: http.Request | None = None
        self.aged_at = 0.0
        self.stalled = False  # waiting for the client to read: on the write timeout, not hung

    def send(self, data: bytes) -> None:
        try:
            sent = self.sock.send(data)
        except WOULD_BLOCK:
            sent = 0
        except OSError as exc:
            raise ClientLost(exc) from exc
        if sent != len(data):
            view = memoryview(data)[sent:]
            while view:
                self.wait_writable()
                try:
                    view = view[self.sock.send(view) :]
                except WOULD_BLOCK:
                    continue
                except OSError as exc:
                    raise ClientLost(exc) from exc

    def reading(self) -> None:
        """Back to reading requests, after a handshake, a PROXY header or a thread's request."""
        self.state = TLS if self.tls else PLAIN

    def wait_writable(self) -> None:
        """The socket buffer is full: wait for room, up to the timeout, then give up on the client.

        Meanwhile the request is not hung (see Watchdog): a client that reads slowly or not at
        all costs this thread up to write_timeout per stall, never the worker."""
        if self._poller is None:
            self._poller = write_waiter(self.fd)
        self.stalled = True
        try:
            ready = self._poller(self.write_timeout)
        finally:
            self.stalled = False
            self.aged = None  # the client reads, or is given up on: not a hung request
        if not ready:
            raise ClientTimedOut(f"read nothing of the response for {self.write_timeout:g}s")

    def sendfile(self, fd: int, offset: int, count: int, ex: wsgi.Exchange) -> None:
        """Send `count` bytes of the file from `offset`, counting them into ex.sent as they go
        (the access log's size when the client stops reading midway)."""
        end = offset + count
        if self.tls or not HAS_SENDFILE:  # the kernel can't encrypt for us; Windows has none
            os.lseek(fd, offset, os.SEEK_SET)  # Windows has no pread either
            while offset < end:
                data = os.read(fd, min(end - offset, 262144))
                if not data:
                    raise ConnectionError("file shrank while it was being sent")
                self.send(data)
                offset += len(data)
                ex.sent += len(data)
            return
        while offset < end:
            try:
                sent = os.sendfile(self.fd, fd, offset, end - offset)
            except BlockingIOError:
                self.wait_writable()
                continue
            except ConnectionError as exc:
                raise ClientLost(exc) from exc
            if sent == 0:
                raise ConnectionError("file shrank while it was being sent")
            offset += sent
            ex.sent += sent
