"""Threads around the event loop: a spare takes the loop over from a long request, and a watchdog
keeps liveness by request age.

With one thread (the default) the app runs inline in the loop thread: the cheapest path. But a
long request would stall every other keep-alive connection of the worker. So a watchdog thread
looks every CHECK seconds at what the loop's thread is doing: when the same request has been in
the app since its previous look, a spare thread takes the event loop over, and the thread in the
app finishes its request on its own, hands the connection back and parks as the next spare (Go's
runtime does the same with a goroutine blocked in a syscall). Fast requests pay one deque append
and pop for it, no clock read and no syscall.

Once requests can run on more than one thread (this, or --threads), the loop's heartbeat no longer
says anything about them, so the watchdog beats the heartbeat and times requests out by age.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable

from . import http
from .connection import BUSY
from .poller import DISARMED

error_log = logging.getLogger("django_prodserve.error")

#: Seconds between the watchdog's looks at the loop's thread: a request takes the loop with it
#: for one to two of these. Measured: see docs/architecture.md ("Long requests").
CHECK = 0.001
#: A worker that served BUSY_SERVED requests or more since the previous look is busy with fast
#: ones: the watchdog looks every BUSY_CHECK instead. Each look takes the GIL, and on a
#: saturated machine 1000 looks a second cost ~10% of a bare hello's CPU, 250 cost ~2%.
BUSY_CHECK = 0.004
BUSY_SERVED = 4
#: Looks in a row with no request in the app after which the watchdog dozes until the loop's
#: thread claims one, unless the worker is busy (BUSY_SERVED): a worker between requests then
#: costs two wakeups per request instead of one per CHECK (an idle worker, none at all).
DOZE_AFTER = 1


#: The signals a worker handles. Python runs handlers in the main thread only, and only once it
#: runs bytecode; the kernel delivers a signal to any thread that does not block it. A main
#: thread parked as a spare would never learn of a signal another thread caught, so every other
#: thread blocks these: the kernel then interrupts the main thread, wherever it waits.
WORKER_SIGNALS = frozenset(
    getattr(signal, name)
    for name in ("SIGTERM", "SIGINT", "SIGQUIT", "SIGABRT", "SIGUSR1", "SIGURG", "SIGCHLD")
    if hasattr(signal, name)
)


def leave_signals_to_main_thread() -> None:
    """Called first in every thread a worker starts (threads it starts inherit the mask)."""
    if hasattr(signal, "pthread_sigmask"):  # not on Windows, where no signal reaches a thread
        signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)


class LoopLost(Exception):
    """Raised in the thread whose request outlived a takeover: it no longer owns the loop."""


class Takeover:
    """Who owns the event loop, and the spare threads that can take it over.

    The loop's thread claims each connection it serves inline: it appends it to `claims` and
    pops it after. A deque holding at most that one connection makes that pop and the
    watchdog's takeover the same atomic pop, so exactly one of them wins: the loop's thread, and
    it goes on with the loop, or the watchdog, and the loop's thread raises LoopLost. The new
    owner gets a new deque, so the old one's late pop cannot take the new owner's claim.
    """

    def __init__(self, spares: int, modify: Callable[[int, int], None], run: Callable[[], None]):
        self.claims: deque = deque()
        self.limit = 1 + spares  # threads that may serve: the loop's plus the spares
        self.threads = 1
        self.parked: list[threading.Lock] = []  # one lock per parked spare, held until promoted
        self.modify = modify  # the poller's
        self.run = run  # a thread's life: own the loop until LoopLost, park, again
        self.owner = 0  # the thread running the loop (own())
        self.seen = None  # (connection, requests served) at the previous look
        self.quiet = 0  # looks in a row that found no request in the app
        self.dozing = False
        self.alarm = threading.Lock()  # held; a dozing watchdog waits to acquire it
        self.alarm.acquire()

    def watch(self, served: int) -> None:
        """One look: take the loop over if the same request has been in the app since the last."""
        claims = self.claims
        conn = claims[0] if claims else None
        seen, self.seen = self.seen, (conn, served)
        if conn is None:
            self.quiet += 1
            return
        self.quiet = 0
        if seen != (conn, served):
            return
        if not self.parked and self.threads >= self.limit:
            return  # every thread is in a long request: the loop waits, as inline
        try:
            conn = claims.pop()  # maybe the next request's, if the loop's thread just moved on
        except IndexError:
            return  # it just finished
        self.claims = deque()
        self.seen = None
        # The connection is its thread's until it hands it back: no event of it may reach the
        # next owner (pipelined bytes or a hang-up would make two threads read one socket).
        conn.state = BUSY
        conn.thread = self.owner
        self.modify(conn.fd, DISARMED)
        if self.parked:
            self.parked.pop().release()
        else:
            self.threads += 1
            threading.Thread(target=self.run, name=f"prodserve_{self.threads}", daemon=True).start()

    def own(self) -> None:
        """The calling thread runs the loop now (the first owner, a promoted or a new spare)."""
        self.owner = threading.get_ident()

    def doze(self, timeout: float) -> None:
        """Wait until the loop's thread claims a connection (see rouse), up to `timeout`."""
        self.dozing = True
        if not self.claims:  # after raising the flag: a claim from here on rouses us
            self.alarm.acquire(timeout=timeout)
        self.dozing = False
        self.quiet = 0

    def rouse(self) -> None:
        """The loop's thread claimed a connection while the watchdog dozes: look again."""
        self.dozing = False
        try:
            self.alarm.release()
        except RuntimeError:
            pass  # a rouse the watchdog has not consumed yet: one is enough

    def park(self) -> None:
        """Wait, as a spare, until the watchdog hands this thread the loop."""
        lock = threading.Lock()
        lock.acquire()
        self.parked.append(lock)
        lock.acquire()


class Watchdog:
    """A daemon thread: takeovers every CHECK seconds (inline workers), and once a second the
    heartbeat and the age of every request in the app."""

    def __init__(self, worker, takeover: Takeover | None) -> None:
        self.worker = worker
        self.takeover = takeover
        self.exit_at: float | None = None  # a hung request's worker leaves by then at the latest
        self.aborted = None  # the connection of the hung request, still its thread's

    def start(self) -> None:
        threading.Thread(target=self._run, name="prodserve_watchdog", daemon=True).start()

    def _run(self) -> None:
        leave_signals_to_main_thread()  # and to the spares, which this thread starts
        worker = self.worker
        takeover = self.takeover
        next_second = 0.0
        sleep = time.sleep
        monotonic = time.monotonic
        interval = CHECK
        served = 0
        while True:
            if takeover is None:
                sleep(1.0)
            elif takeover.quiet < DOZE_AFTER or interval == BUSY_CHECK:  # busy: the next
                sleep(interval)  # claim comes within microseconds, rousing would cost more
                before, served = served, worker.requests
                interval = BUSY_CHECK if served - before >= BUSY_SERVED else CHECK
                takeover.watch(served)
            else:
                takeover.doze(max(next_second - monotonic(), 0.0))
                served = worker.requests  # what it served while the watchdog dozed is no load
                takeover.watch(served)  # roused by a claim: its first look, now
            now = monotonic()
            if now >= next_second:
                next_second = now + 1.0
                self.every_second(now)

    def every_second(self, now: float) -> None:
        worker = self.worker
        worker.heartbeat.beat(worker.slot)
        if self.exit_at is not None and now > self.exit_at:
            error_log.error("Worker %d: graceful_timeout over after a hung request", os.getpid())
            worker.exit(1)
        timeout = worker.config.timeout
        if not timeout or self.exit_at is not None:
            return
        for conn in list(worker.connections.values()):
            req = conn.current
            if req is None or conn.stalled:  # stalled: on its write timeout (wait_writable)
                conn.aged = None  # nor keep a finished request (its body's spool file) alive
                continue
            if conn.aged is not req:  # a new request, or one that made progress (wait_writable)
                conn.aged, conn.aged_at = req, now
            elif now - conn.aged_at > timeout:
                self.abort(conn, req, now)
                return

    def abort(self, conn, req: http.Request, now: float) -> None:
        """A hung request: its stack and request line, a 500 to its client if nothing was sent,
        then the worker is replaced; the other requests get graceful_timeout."""
        worker = self.worker
        thread = conn.thread  # None: the loop's own thread is in the app
        if thread is None and self.takeover is not None:
            thread = self.takeover.owner
        frame = sys._current_frames().get(thread)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)\n"
        error_log.error(
            "Worker %d: %s %s ran longer than timeout (%ss); replacing the worker. "
            "Stack of the thread serving it:\n%s",
            os.getpid(),
            req.method,
            req.target.decode("latin-1"),
            worker.config.timeout,
            stack,
        )
        answer_aborted(conn, req)
        self.aborted = conn
        self.exit_at = now + worker.config.graceful_timeout
        worker.retire("had a hung request")
        worker.wake()


def answer_aborted(conn, req: http.Request) -> None:
    """Tell the client of an aborted request: a 500 if no byte of the response left yet, then
    shut the socket, so the thread still in the app fails on its first write and stops there."""
    ex = conn.exchange
    try:
        if ex is None or ex.req is not req or not ex.head_sent:
            conn.sock.send(http.error_response(500))
        conn.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
