"""A worker process: one event loop (server/poller.py) owns the listening sockets and every client connection.

Reads are non-blocking and feed the sans-I/O parser; only complete requests reach the app, inline
(threads == 1) or on a thread pool. The loop beats a heartbeat the master watches.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import signal
import socket
import ssl
import sys
import threading
import traceback
from collections import deque
from queue import SimpleQueue
from time import monotonic

from ..logs import reopen_files
from ..metrics import request_observer
from . import http, proxy, wsgi
from .connection import BUSY, HANDSHAKE, LINGERING, PLAIN, PREAMBLE, QUEUED, TLS, Connection
from .handoff import (
    WORKER_SIGNALS,
    LoopLost,
    Takeover,
    Watchdog,
    answer_aborted,
    leave_signals_to_main_thread,
)
from .heartbeat import Heartbeat
from .poller import DISARMED, READABLE, READABLE_ONCE, new_poller
from .portable import resident_memory, wake_pipe
from .sharing import ACCEPT_BATCH, SHARE_WAIT, Sharing

error_log = logging.getLogger("django_prodserve.error")

RECV_SIZE = 65536
#: Requests of one connection's pipeline served inline per turn of the loop; the rest wait for
#: its next turn, after the other connections' events. One read can hold ~1,500 small requests:
#: served at once, they held every other client of the worker ~100 ms (Django hello).
PIPELINE_TURN = 8
#: What read_special gives on_readable for a queued pipeline's turn: no bytes, requests ready.
NEXT_TURN = b"next turn"
#: Seconds between accepts while this worker is busy serving and clients still wait (see
#: accept_one): leaves siblings time to take their share of a burst.
ACCEPT_PACE = 0.001
#: Wakes a sibling whose turn it is to take waiting clients (sharing.py); ignored by default, so
#: harmless to any process.
NUDGE = signal.SIGURG
#: On a graceful stop, seconds at least that a connection with no request under way is kept open
#: (its keep-alive timeout when longer): a just-accepted client has its first request on the way.
FIRST_REQUEST_GRACE = 1.0
#: Seconds a connection is read and drained after an error response, before it is closed.
LINGER = 2.0
#: Exit status of a worker whose app failed to import: the master stops instead of respawning.
BOOT_ERROR = 3


class Listener:
    """A bound listening socket, the environ keys its requests share, its TLS context if any."""

    __slots__ = ("sock", "fd", "environ_base", "address", "ssl_context")

    def __init__(self, sock, environ_base, address, ssl_context=None) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.environ_base = environ_base
        self.address = address
        self.ssl_context = ssl_context


class RequestThreads:
    """--threads N: N threads serving the connections the loop hands them, in arrival order.

    A bare queue: ThreadPoolExecutor's future, work item and idle semaphore per request were
    CPU spent on nothing we use.
    """

    def __init__(self, count: int, serve) -> None:
        queue: SimpleQueue[Connection] = SimpleQueue()
        self.submit = queue.put
        for n in range(count):
            thread = threading.Thread(
                target=self._run, args=(queue.get, serve), name=f"prodserve_{n}", daemon=True
            )
            thread.start()

    @staticmethod
    def _run(get, serve) -> None:
        leave_signals_to_main_thread()
        while True:
            serve(get())


class Worker:
    def __init__(
        self, config, listeners, app, load_app, heartbeat: Heartbeat, slot: int, hooks
    ) -> None:
        self.config = config
        self.hooks = hooks
        self.listeners = {listener.fd: listener for listener in listeners}
        self.app = app
        self.load_app = load_app
        self.heartbeat = heartbeat
        self.slot = slot
        self.limits = http.Limits.from_config(config)
        self.keepalive = config.keepalive
        self.master_pid = os.getppid()
        self.connections: dict[int, Connection] = {}
        self.accepting = True
        self.accept_failing = False  # accept() ran out of descriptors: see out_of_descriptors
        self.stopping = False
        self.requests = 0
        self.max_requests = config.max_requests
        if self.max_requests:
            self.max_requests += random.randint(0, config.max_requests_jitter)
        self.retire_at = None
        if config.max_worker_lifetime:
            jitter = random.uniform(0, config.max_worker_lifetime_jitter)
            self.retire_at = monotonic() + config.max_worker_lifetime + jitter
        self.max_rss = config.max_worker_memory * 1024 * 1024
        self.health = config.health_check_path and config.health_check_path.encode("ascii")
        self.forwarded = proxy.ForwardedHeaders(
            proxy.Trust(config.forwarded_allow_ips),
            config.secure_scheme_headers,
            config.forwarded_headers,
        )
        self.proxy_trust = (
            proxy.Trust(config.proxy_allow_ips) if config.proxy_protocol != "off" else None
        )
        self.pool = None
        self.next_accept = 0.0
        self.sharing = Sharing(heartbeat, slot)
        self.nudged = False
        self.finished: deque[Connection] = deque()
        self.queued: deque[Connection] = deque()  # pipelines waiting for their next turn
        self.wake_pending = False
        self.next_tick = monotonic() + 1.0  # the master sees the boot's beat first
        self.backlog: Listener | None = None  # may have clients waiting: see accept_one
        self.events = iter(())  # what the last poll returned and the loop has not handled yet
        self.takeover: Takeover | None = None
        self.watchdog: Watchdog | None = None
        self.deadline: float | None = None
        self.observer = request_observer(config)  # None: no access log, no metrics

    # process setup

    def run(self) -> None:
        """Boot (import the app unless preloaded), then serve until told to stop. Never returns."""
        self._install_signals()
        drop_privileges(self.config.user, self.config.group)
        if self.app is None:
            try:
                self.app = self.load_app()
            except BaseException:
                error_log.error("The app failed to load:\n%s", traceback.format_exc())
                _exit(BOOT_ERROR)
        self.heartbeat.beat(self.slot)
        self.poller = new_poller(self.config.event_loop)
        for fd in self.listeners:
            self.poller.register_listener(fd)
        self.poller.register(self.wake_r, READABLE)
        if self.config.threads > 1:
            self.pool = RequestThreads(self.config.threads, self.process_threaded)
        elif self.config.spare_threads:
            self.takeover = Takeover(self.config.spare_threads, self.poller.modify, self.own_loop)
        if self.pool is not None or self.takeover is not None:
            # Requests may run on several threads: liveness is their age, not the loop's beat.
            self.watchdog = Watchdog(self, self.takeover)
            self.watchdog.start()
        self.own_loop()

    def own_loop(self) -> None:
        """A thread's life while it may own the loop: run it; when a takeover took it (LoopLost),
        park as a spare until promoted. The thread that finds the loop drained ends the process."""
        while True:
            if self.takeover is not None:
                self.takeover.own()
            try:
                self.loop()
            except LoopLost:
                self.takeover.park()
                continue
            except BaseException:
                error_log.exception("Worker %d crashed", os.getpid())
                self.exit(1)
            self.exit(0)

    def exit(self, code: int) -> None:
        _exit(code)

    def wake(self) -> None:
        """Make the loop look at its state now (another thread or a signal handler changed it)."""
        try:
            os.write(self.wake_w, b"w")
        except BlockingIOError:
            pass  # full: it wakes anyway

    def _install_signals(self) -> None:
        self.wake_r, self.wake_w = wake_pipe()
        for signum in (
            signal.SIGHUP,
            signal.SIGTTIN,
            signal.SIGTTOU,
            signal.SIGWINCH,
            signal.SIGUSR2,
        ):
            signal.signal(signum, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, self._graceful)
        signal.signal(signal.SIGINT, self._fast)
        signal.signal(signal.SIGQUIT, self._fast)
        signal.signal(signal.SIGABRT, self._abort)
        signal.signal(signal.SIGUSR1, self._reopen_logs)
        signal.signal(NUDGE, self._nudge)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)  # held since fork_worker

    def _graceful(self, signum, frame) -> None:
        self.stopping = True
        self.wake()  # the loop may be on another thread, past the wakeup fd's byte already

    def _fast(self, signum, frame) -> None:
        self.hooks("worker_int", self)
        _exit(0)

    def _abort(self, signum, frame) -> None:
        """The master says we are stuck: say where, every thread, answer, then die."""
        serving = [c for c in list(self.connections.values()) if c.current is not None]
        what = (
            ", ".join(f"{c.current.method} {c.current.target.decode('latin-1')}" for c in serving)
            or "no request"
        )
        stacks = []
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        for ident, stack in sys._current_frames().items():
            stacks.append(
                f'Thread "{names.get(ident, ident)}":\n' + "".join(traceback.format_stack(stack))
            )
        error_log.error(
            "Worker %d timed out (no heartbeat for %ss) while serving %s. Stacks:\n%s",
            os.getpid(),
            self.config.timeout,
            what,
            "\n".join(stacks),
        )
        for conn in serving:
            answer_aborted(conn, conn.current)
        self.hooks("worker_abort", self)
        _exit(1)

    def _reopen_logs(self, signum, frame) -> None:
        reopen_files()

    def _nudge(self, signum, frame) -> None:
        self.nudged = True  # a busier sibling leaves waiting clients to us (see sharing.py)
        if self.takeover is not None:
            self.wake()  # the loop may be on another thread, past the wakeup fd's byte already

    # the loop

    def loop(self) -> None:
        """The event loop, on whichever thread owns it; returns once drained on a stop.

        A thread that takes the loop over starts with the events its previous owner's poll
        returned and had not handled yet (self.events).
        """
        connections = self.connections
        listeners = self.listeners
        poll = self.poller.poll
        modify = self.poller.modify
        threaded = self.pool is not None
        events = self.events
        backlog = self.backlog  # kept on the worker too, for the loop's next owner
        while True:
            for fd, _ in events:
                conn = connections.get(fd)
                if conn is not None:
                    if conn.state is BUSY:  # a hang-up the disarming let through once
                        continue
                    self.on_readable(conn)
                    if threaded and conn.state is not BUSY and connections.get(fd) is conn:
                        modify(fd, READABLE_ONCE)  # still the loop's: wait for more
                    if backlog is not None and not self.stopping:  # draining closes them
                        backlog = self.backlog = self.accept_paced(backlog)
                elif fd in listeners:
                    backlog = self.backlog = self.accept_one(listeners[fd])
                elif self.on_wake() and self.accepting and not self.stopping:
                    for listener in listeners.values():  # nudged: clients wait for us
                        backlog = self.backlog = self.accept_one(listener) or backlog
            if backlog is not None and self.sharing.deferred_until and not self.stopping:
                backlog = self.backlog = self.accept_paced(backlog)  # the sibling's time is up?
            if self.queued:
                self.next_turns()
            now = monotonic()
            if now >= self.next_tick:
                self.next_tick = now + 1.0
                self.tick(now)
            if self.stopping and not self._drain():
                return
            timeout = SHARE_WAIT if self.sharing.deferred_until else 1.0
            events = self.events = iter(poll(0.0 if self.queued else timeout))

    def tick(self, now: float) -> None:
        """Once a second: heartbeat, orphan check, recycling limits, idle connections."""
        if self.watchdog is None:  # else the watchdog beats: the loop may wait on a request
            self.heartbeat.beat(self.slot)
        if os.getppid() != self.master_pid:
            error_log.warning("Worker %d: master died, exiting", os.getpid())
            _exit(0)
        if self.accept_failing and not self.accepting and not self.stopping:
            self.resume_accepting()  # out of descriptors a second ago: try again
        if self.retire_at is not None and now > self.retire_at:
            self.retire(f"reached max_worker_lifetime ({self.config.max_worker_lifetime}s)")
        if self.max_rss and (rss := resident_memory()) > self.max_rss:
            self.retire(
                f"RSS {rss // 1048576} MiB over max_worker_memory "
                f"({self.config.max_worker_memory} MiB)"
            )
        idle_limit = self.keepalive
        request_limit = self.config.timeout or None
        # Draining, a client yet to send its first request is held no longer than an idle one.
        first_limit = max(idle_limit, FIRST_REQUEST_GRACE) if self.stopping else request_limit
        for conn in list(self.connections.values()):
            if conn.state is BUSY:
                continue
            if conn.state is LINGERING:
                if now - conn.last_active > LINGER:
                    self.close(conn)
                continue
            if conn.parser.in_progress:
                limit = request_limit
            else:
                limit = idle_limit if conn.served else first_limit
            if limit is not None and now - conn.last_active > limit:
                if conn.parser.in_progress:
                    self.fail(conn, 408)
                elif not _has_pending(conn):  # else its request came meanwhile: the loop reads it
                    self.close(conn)

    def retire(self, reason: str) -> None:
        """Recycle: finish what is in flight, exit; the master starts a replacement right away."""
        if self.stopping:
            return
        error_log.info("Worker %d %s: recycling", os.getpid(), reason)
        self.stopping = True
        self.heartbeat.retire(self.slot)
        send_signal(self.master_pid, signal.SIGCHLD)  # wakes the master to read the flag now

    def accept_one(self, listener: Listener) -> Listener | None:
        """The loop's accept: one client per wakeup, then to the back of the wakeup queue.

        Workers share each listening socket, and with EPOLLEXCLUSIVE the kernel wakes the
        first idle worker in the socket's queue, always the same one: accepting the whole
        backlog, it would take every client of a burst (a load balancer opening its pool, wrk's
        50 connections) while its siblings sleep, and keep-alive keeps it that way.
        Re-registering the socket after an accept moves this worker behind its siblings, so
        the next client wakes another one. Returns the listener when it gave a client (more
        may wait): the loop then accepts one more after a request it serves, at most one per
        ACCEPT_PACE, until none waits. One per batch of ready clients was too slow for a busy
        worker (a 2.7 ms view, 50 clients: p99 1.4 s); one per request, too fast for its
        siblings to get a share of a burst. Measured on the template+ORM page, 2 workers, 50
        clients: p99 200-255 ms (gunicorn sync 120-180 ms). Django hello, 50 keep-alive
        clients: both workers busy in 3 of 3 runs (1 of 3 without rotation), 1.5x the req/s.
        Which worker takes the waiting clients is Sharing's call.
        """
        return self.take_turn(listener, monotonic(), rotate=True)

    def accept_paced(self, listener: Listener) -> Listener | None:
        """One more client from a backlog, at most one per ACCEPT_PACE (see accept_one);
        None once none waits."""
        now = monotonic()
        if now < self.next_accept:
            return listener
        self.next_accept = now + ACCEPT_PACE
        return self.take_turn(listener, now)

    def take_turn(self, listener: Listener, now: float, rotate: bool = False) -> Listener | None:
        """Accept what Sharing says is this worker's; the listener while clients may still wait."""
        turn = self.sharing.turn(now, len(self.connections), lambda n: self.accept(listener, n))
        if turn.nudge:
            send_signal(turn.nudge, NUDGE)
        if rotate and turn.taken and turn.more and self.accepting:  # behind the siblings
            self.poller.unregister(listener.fd)
            self.poller.register_listener(listener.fd)
        return listener if turn.more else None

    def accept(self, listener: Listener, batch: int = ACCEPT_BATCH) -> int:
        """Accept up to `batch` clients; returns how many."""
        limit = self.config.worker_connections
        for count in range(batch):
            if len(self.connections) >= limit:
                if self.accepting and not self.stopping:
                    self.pause_accepting()
                return count
            try:
                sock, addr = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return count
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:  # that client left while it waited
                    continue
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS):
                    self.out_of_descriptors(exc)
                    return count
                raise
            self.accept_failing = False
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if listener.ssl_context is not None:
                sock = listener.ssl_context.wrap_socket(
                    sock, server_side=True, do_handshake_on_connect=False
                )
            conn = Connection(sock, addr, listener, self)
            self.connections[conn.fd] = conn
            self.poller.register(conn.fd, READABLE if self.pool is None else READABLE_ONCE)
            self.heartbeat.set_connections(self.slot, len(self.connections))
        return batch

    def out_of_descriptors(self, exc: OSError) -> None:
        """The listener stays readable, so accepting again at once would spin (issue 18 #5): stop
        accepting, as nginx does, until a connection closes or the next tick; log once."""
        if not self.accept_failing:
            error_log.warning("accept() failed: %s; pausing accepts for up to 1 s", exc)
            self.accept_failing = True
        if self.accepting and not self.stopping:
            self.pause_accepting()

    def on_readable(self, conn: Connection) -> None:
        if conn.state is PLAIN:
            try:
                data = conn.sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
        else:
            data = self.read_special(conn)
            if data is None:
                return
        if not data:
            self.close(conn)
            return
        parser = conn.parser
        if data is not NEXT_TURN:
            try:
                parser.feed(data)
            except http.ProtocolError as exc:
                self.refuse(conn, exc)
                return
            if parser.continue_pending and not parser.ready:  # else after them (see process)
                parser.continue_pending = False
                try:
                    conn.send(http.CONTINUE)
                except OSError:
                    self.close(conn)
                    return
        if parser.ready:  # inline, not a method: a call costs ~1% of a bare hello
            if self.pool is not None:
                # The event disarmed it (READABLE_ONCE): no event, not even a hang-up, makes
                # this thread race the pool thread on the socket until on_wake re-arms it.
                conn.state = BUSY
                self.pool.submit(conn)
            elif self.takeover is None:
                if not self.process(conn):
                    self.end(conn)
            else:
                takeover = self.takeover
                claims = takeover.claims  # this owner's: see Takeover
                claims.append(conn)
                if takeover.dozing:
                    takeover.rouse()
                keep = self.process(conn)
                try:
                    claims.pop()
                except IndexError:  # a spare took the loop over meanwhile: not ours any more
                    self.hand_back(conn, keep)
                    raise LoopLost from None
                if not keep:
                    self.end(conn)
        elif not parser.head_started_earlier(len(data)):
            # A new request, or more of a body: its timeout runs from this read (process()
            # stamps the rest); a head runs on the timeout of its first read.
            conn.last_active = monotonic()

    def refuse(self, conn: Connection, exc: http.ProtocolError) -> None:
        """The parser refused the client's bytes: log, answer what came before, then the error."""
        if isinstance(exc, http.BudgetSpent):  # the worker's limit, not the client's fault
            if line := exc.budget.refusal(monotonic()):
                error_log.warning(line)
        else:
            error_log.info(
                "Bad request from %s: %s (%d)",
                conn.remote_addr or "unix socket",
                exc.reason,
                exc.status,
            )
        parser = conn.parser
        if parser.ready:  # requests complete before the error are answered first
            parser.continue_pending = False
            if not self.process(conn):
                self.close(conn)
                return
        self.fail(conn, exc.status)

    def queue(self, conn: Connection) -> None:
        """A pipeline had its turn (PIPELINE_TURN requests) and has more: it waits for the
        loop's next turn, after the other connections' events, and is not read meanwhile."""
        conn.state = QUEUED
        self.queued.append(conn)
        self.poller.modify(conn.fd, DISARMED)

    def next_turns(self) -> None:
        """Each queued pipeline's next turn, through on_readable (see read_special). One at a
        time off the queue: if a spare takes the loop over meanwhile (LoopLost), it finds the
        rest still queued."""
        queued = self.queued
        connections = self.connections
        for _ in range(len(queued)):
            conn = queued.popleft()
            if conn.state is QUEUED and connections.get(conn.fd) is conn:  # else served or gone
                self.on_readable(conn)

    def read_special(self, conn: Connection) -> bytes | None:
        """Read a connection whose state is not PLAIN: HTTP bytes to parse, b"" at the end, or
        None when there is nothing to parse yet (a TLS handshake or PROXY preamble under way)
        or ever (lingering after an error: what arrives is dropped)."""
        if conn.state is QUEUED:  # its next turn (or a hang-up the disarming let through)
            conn.reading()
            if self.pool is None:  # a thread's connection is re-armed when handed back
                self.poller.modify(conn.fd, READABLE)  # queue() disarms it again if need be
            return NEXT_TURN
        if conn.state is PREAMBLE and conn.tls and not self.read_tls_preamble(conn):
            return None
        if conn.state is HANDSHAKE and not self.handshake(conn):
            return None
        try:
            data = conn.sock.recv(RECV_SIZE)
            if conn.tls:
                while conn.sock.pending():  # decrypted bytes epoll cannot see
                    data += conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            return None
        except OSError:
            return b""
        if not data:
            return b""
        if conn.state is LINGERING:
            return None  # what arrives after an error is dropped
        if conn.state is PREAMBLE:
            known = len(conn.preamble)
            consumed = self.read_preamble(conn, data)
            if consumed is None:
                return None
            data = data[consumed - known :]
            if not data:
                return None
        return data

    def handshake(self, conn: Connection) -> bool:
        """Advance a TLS handshake without blocking the loop; True once it is done."""
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLWantWriteError:
            try:
                conn.wait_writable()
            except wsgi.ClientLost:
                self.close(conn)
            return False
        except OSError as exc:  # ssl.SSLError included: a bad client, not our problem
            error_log.info("TLS handshake with %s failed: %s", conn.remote_addr, exc)
            self.close(conn)
            return False
        conn.reading()
        return True

    def read_tls_preamble(self, conn: Connection) -> bool:
        """HAProxy's send-proxy writes the PROXY header in clear before the TLS handshake: peek
        at the raw socket and take no more than the header, so that OpenSSL reads the
        ClientHello behind it. True once the header is read."""
        try:
            data = socket.socket.recv(conn.sock, RECV_SIZE, socket.MSG_PEEK)  # not TLS's recv
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:
            self.close(conn)
            return False
        known = len(conn.preamble)
        consumed = self.read_preamble(conn, data)
        if self.connections.get(conn.fd) is not conn:
            return False  # a bad header: closed (no TLS session to answer it in)
        socket.socket.recv(conn.sock, len(data) if consumed is None else consumed - known)
        return consumed is not None

    def read_preamble(self, conn: Connection, data: bytes) -> int | None:
        """Parse a PROXY protocol header from conn.preamble + data: how many of those bytes it
        takes, or None while incomplete or after an error (answered)."""
        data = conn.preamble + data
        try:
            result = proxy.read_proxy_header(data, self.config.proxy_protocol)
        except http.ProtocolError as exc:
            error_log.info("Bad PROXY header from %s: %s", conn.remote_addr, exc.reason)
            self.fail(conn, exc.status)
            return None
        if result is None:
            conn.preamble = data
            return None
        consumed, client = result
        conn.preamble = b""
        if conn.tls:
            conn.state = HANDSHAKE  # the PROXY header came before the ClientHello
        else:
            conn.reading()
        if client is not None:
            conn.remote_addr, conn.remote_port = client
            conn.environ_base = wsgi.connection_environ(conn.environ_base, *client)
            conn.trusted = conn.remote_addr in self.forwarded.trust
        else:  # a client the proxy does not name: its forwarded headers are its own (#10)
            conn.trusted = False
        return consumed

    def process(self, conn: Connection) -> bool:
        """Serve the complete requests the connection has, in order: all of them, or on the
        loop's thread PIPELINE_TURN of them, queuing the rest (see queue). False: close it."""
        parser = conn.parser
        ready = parser.ready
        turn = PIPELINE_TURN
        while ready:
            req = ready.popleft()
            if req.target == self.health:
                response, keep_alive = http.health_response(req, not self.stopping)
                conn.send(response)
                if not keep_alive:
                    return False
                continue
            try:
                environ = wsgi.build_environ(conn.environ_base, req)
                self.forwarded.apply(environ, conn.trusted)
            except http.ProtocolError as exc:  # the proxy's headers contradict each other
                error_log.info("Bad request from %s: %s", conn.remote_addr, exc.reason)
                conn.send(http.error_response(exc.status))
                return False
            except Exception:
                # The parser should have refused whatever gets here; never let it kill the worker.
                error_log.exception("Could not build the environ of %r", req.target[:200])
                conn.send(http.error_response(400))
                return False
            if self.stopping and not ready:  # the last request the client sent before the stop
                conn.keep_alive = False
            conn.current = req
            if self.observer is None:
                try:
                    ex = wsgi.handle(self.app, conn, req, environ)
                except OSError:
                    ex = None  # the client went away mid-response
            else:
                ex = self.observed(conn, req, environ)
            conn.current = conn.exchange = None  # nor keep its body's spool file open
            self.requests += 1
            if self.requests == self.max_requests:
                self.retire(f"served {self.requests} requests")
            if ex is None or not ex.keep_alive:
                return False
            if ready and turn:  # pipelined: more requests came in the same read
                turn -= 1
                if not turn:
                    break
        conn.last_active = monotonic()
        conn.served = True
        if ready:  # the turn ended: the rest waits for the connection's next one
            if conn.state is not BUSY:  # else on_wake queues it, once handed back
                self.queue(conn)
        elif parser.continue_pending:  # a request behind those just answered (issue 18 #12)
            parser.continue_pending = False
            try:
                conn.send(http.CONTINUE)
            except OSError:
                return False
        return True

    def observed(self, conn: Connection, req: http.Request, environ: dict):
        """wsgi.handle() for a worker that logs access lines or records metrics."""
        start = self.observer.begin()
        try:
            ex = wsgi.handle(self.app, conn, req, environ)
        except OSError:
            ex = None  # the client went away mid-response
        self.observer.end(environ, ex, start)
        return ex

    def process_threaded(self, conn: Connection) -> None:
        """Pool side: serve, then hand the connection back to the loop's thread."""
        conn.thread = threading.get_ident()
        try:
            keep = self.process(conn)
        except BaseException:
            error_log.exception("Unexpected error in a request thread")
            keep = False
        self.hand_back(conn, keep)

    def hand_back(self, conn: Connection, keep: bool) -> None:
        """A thread other than the loop's is done with the connection: the loop, which owns the
        poller, re-arms it (or closes it when not `keep`)."""
        if not keep:
            conn.keep_alive = False
        self.finished.append(conn)
        if not self.wake_pending:  # one wakeup for all the connections finished meanwhile
            self.wake_pending = True
            os.write(self.wake_w, b"c")

    def on_wake(self) -> bool:
        """Signals and finished threads woke the loop; True when a sibling nudged us."""
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        # After the pipe is empty and before `finished` is: a thread that finishes from here on
        # writes again, and one that found the flag up has its connection in `finished` already.
        self.wake_pending = False
        while self.finished:
            conn = self.finished.popleft()
            conn.reading()
            conn.thread = None
            if not conn.keep_alive:
                self.end(conn)
                if self.connections.get(conn.fd) is not conn:
                    continue
            elif conn.parser.ready:  # a pipeline's turn on a thread ended with requests left
                self.queue(conn)
                continue
            # Kept or lingering. Handed over by a takeover, it was READABLE (inline): again.
            self.poller.modify(conn.fd, READABLE if self.pool is None else READABLE_ONCE)
        nudged, self.nudged = self.nudged, False
        return nudged

    def fail(self, conn: Connection, status: int) -> None:
        """A protocol error: the error response, then a lingering close (RFC 9112 §9.6).

        Closing at once with the client's bytes still unread makes the kernel send a reset, which
        can destroy our response before the client reads it. So: half-close, then read and drop
        what still arrives, for up to LINGER seconds (see tick), before closing.
        """
        try:
            conn.send(http.error_response(status))
        except OSError:
            self.close(conn)
            return
        self.linger(conn)

    def end(self, conn: Connection) -> None:
        """Close after a response that ends the connection (`Connection: close`).

        A draining worker says `Connection: close` to a client that did not ask for it, and that
        may have sent its next request before reading it: closing with those bytes unread would
        make the kernel reset the connection, which can destroy the response. So linger (see
        fail); the client, told `close`, sends its unanswered requests again (RFC 9112 §9.3.1).
        """
        if self.stopping and _has_pending(conn):
            self.linger(conn)
        else:
            self.close(conn)

    def linger(self, conn: Connection) -> None:
        """Half-close, then read and drop what arrives for up to LINGER seconds (tick)."""
        try:
            if conn.tls:
                raise OSError("no lingering on TLS")  # shutdown() would end the TLS session
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close(conn)
            return
        conn.parser.close()
        conn.state = LINGERING
        conn.last_active = monotonic()

    def close(self, conn: Connection) -> None:
        if self.connections.pop(conn.fd, None) is None:
            return
        self.heartbeat.set_connections(self.slot, len(self.connections))
        if conn.parser is not None:
            conn.parser.close()  # a half-received body's spool file with it
        try:
            self.poller.unregister(conn.fd)
        except (OSError, ValueError):
            pass
        conn.sock.close()
        if not self.accepting and not self.stopping:
            self.resume_accepting()

    def pause_accepting(self) -> None:
        """At worker_connections: leave new clients in the backlog (for another worker)."""
        self.accepting = False
        for fd in self.listeners:
            self.poller.unregister(fd)

    def resume_accepting(self) -> None:
        self.accepting = True
        for fd in self.listeners:
            self.poller.register_listener(fd)

    def _drain(self) -> bool:
        """Graceful stop. True while work remains.

        Connections already in the listen backlog were promised service: accept them before
        closing the listeners (closing would reset them, gunicorn#3397). A kept-alive connection
        is not closed under its client, which may be sending its next request as we close
        (issue 16): that request is answered, with `Connection: close` (process). One that stays
        idle is closed at its keep-alive timeout (tick), as it would be without the stop. At
        graceful_timeout the worker exits; a request begun or unread by then gets a 503 first.
        """
        for fd, listener in list(self.listeners.items()):
            if self.accepting:
                self.poller.unregister(fd)
            while self.accept(listener) == ACCEPT_BATCH:
                pass
            listener.sock.close()
            del self.listeners[fd]
        now = monotonic()
        if self.deadline is None:
            self.deadline = now + self.config.graceful_timeout
        aborted = self.watchdog.aborted if self.watchdog is not None else None
        if now > self.deadline:
            for conn in self.connections.values():
                if conn.state in (PLAIN, TLS, QUEUED) and (
                    conn.parser.in_progress or conn.parser.ready or _has_pending(conn)
                ):
                    try:
                        conn.sock.send(http.error_response(503))
                    except OSError:
                        pass
            return False
        return any(conn is not aborted for conn in self.connections.values())


def _has_pending(conn: Connection) -> bool:
    """Has the client sent bytes we have not read? (EOF and errors count as no.) Peeks at the
    raw socket: TLS's recv takes no flags, and a TLS record is bytes sent all the same."""
    try:
        return bool(socket.socket.recv(conn.sock, 1, socket.MSG_PEEK))
    except OSError:
        return False


def drop_privileges(user: str | None, group: str | None) -> None:
    """Switch to the configured group, then user (after the master bound the sockets)."""
    if group is not None:
        import grp

        os.setgid(int(group) if group.isdigit() else grp.getgrnam(group).gr_gid)
    if user is not None:
        import pwd

        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        if group is None:
            os.setgid(entry.pw_gid)
        os.initgroups(entry.pw_name, os.getgid())
        os.setuid(entry.pw_uid)


def fork_worker() -> int:
    """os.fork() for a new worker, the signals it handles held (blocked) in the child until its
    handlers are in place (Worker._install_signals). Else one that came first ran the master's
    no-op handler and was lost: a worker told to stop while it booted (in post_fork, say) served
    on until graceful_timeout killed it."""
    parent = os.getpid()
    signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
    try:
        return os.fork()
    finally:
        if os.getpid() == parent:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)


def send_signal(pid: int, sig: int) -> None:
    """os.kill that shrugs at a process already gone (the master's and the workers')."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _exit(code: int) -> None:
    """Leave without running the master's atexit handlers or flushing its inherited buffers twice."""
    for handler in logging.getLogger("django_prodserve").handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
