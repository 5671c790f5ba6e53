"""A generation's master: forks the workers, keeps their number, aborts the silent ones, stops them.

It runs in a fresh interpreter that imported the project (supervisor.py starts one per generation
in production; reloader.py one per change with --reload), so its workers serve the code on disk.
It never accepts a client. Signals arrive through a wakeup pipe (each byte a signal number), so the
loop is a plain `select` on one fd with a timeout for the periodic checks.
"""

from __future__ import annotations

import gc
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..logs import reopen_files
from ..metrics import with_master_metrics
from . import reload_child
from .heartbeat import Heartbeat
from .hooks import Hooks
from .portable import wake_pipe
from .worker import BOOT_ERROR, Worker, fork_worker, send_signal

error_log = logging.getLogger("django_prodserve.error")

HANDLED = (
    signal.SIGCHLD,
    signal.SIGHUP,
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
#: Seconds a worker gets between SIGABRT (log your traceback) and SIGKILL.
ABORT_GRACE = 5.0
#: Workers dying this many times in a row before they boot: give up instead of respawning forever.
MAX_BOOT_FAILURES = 5
#: Environment variable carrying listening fds to a re-executed master (SIGUSR2).
LISTEN_FDS_ENV = "PRODSERVE_LISTEN_FDS"


@dataclass
class WorkerProcess:
    pid: int
    slot: int
    spawned: float
    generation: int
    booted: bool = False
    stopping: bool = False
    aborted_at: float | None = None


def set_title(role: str, config) -> None:
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(f"{config.proc_name or 'prodserve'}: {role}")


class Master:
    def __init__(
        self,
        config,
        listeners=(),
        app=None,
        load_app=None,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        """`announce`, in a generation (supervisor.py), takes the Ready line instead of the log."""
        self.config = config
        self.listeners = list(listeners)
        self.app = app
        self.load_app = load_app
        self.hooks = with_master_metrics(config, Hooks(config))  # Hooks itself when metrics are off
        self.num_workers = config.workers
        self.workers: dict[int, WorkerProcess] = {}
        self.heartbeat = Heartbeat()
        self.generation = 0
        self.stop_deadline: float | None = None
        self.exit_code = 0
        self.ready = False
        self.boot_failures = 0
        self.spawn_after = 0.0
        self.announce = announce
        #: A generation (supervisor.py) or a --reload server: its supervisor's pid.
        supervised = announce is not None or reload_child.state() is not None
        self.supervisor = os.getppid() if supervised else None

    def run(self) -> int:
        """Serve until stopped; the return value is the process exit status."""
        set_title("master" if self.announce is None else "generation", self.config)
        self.wake_r, self.wake_w = wake_pipe()
        for signum in HANDLED:
            signal.signal(signum, _noop)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        # Everything imported so far (Django, settings, models; the app when preloaded) moves to
        # the permanent generation: the workers' collector never writes to those pages, so they
        # stay shared after fork (measured: 22 → 12 MiB per worker with preload_app).
        gc.freeze()
        try:
            while self.workers or self.stop_deadline is None:
                now = time.monotonic()
                if self.stop_deadline is None:
                    self.spawn_missing(now)
                for signum in self._wait(0.1 if not self.ready else 1.0):
                    self.on_signal(signum)
                self.reap()
                now = time.monotonic()
                if self.stop_deadline is None:
                    self.check_boot()
                    self.check_timeouts(now)
                elif now > self.stop_deadline:
                    self.kill_all(signal.SIGKILL)
                    self.stop_deadline = float("inf")
        finally:
            for listener in self.listeners:
                listener.sock.close()
            signal.set_wakeup_fd(-1)
            self.hooks("on_exit", self)
        if self.speaks_for_itself():
            error_log.info("Shutdown complete")
        return self.exit_code

    def _wait(self, timeout: float) -> bytes:
        try:
            ready, _, _ = select.select([self.wake_r], [], [], timeout)
        except InterruptedError:
            return b""
        if not ready:
            return b""
        try:
            return os.read(self.wake_r, 1024)
        except BlockingIOError:
            return b""

    # signals

    def on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # reaped below; also how a retiring worker wakes us
        stopping = self.stop_deadline is not None
        if signum == signal.SIGTERM:
            self.stop(graceful=True, why="SIGTERM")
        elif signum in (signal.SIGINT, signal.SIGQUIT):
            self.stop(graceful=False, why=signal.Signals(signum).name)
        elif stopping:
            return
        elif signum == signal.SIGHUP:
            error_log.info("SIGHUP: starting new workers, then stopping the old ones gracefully")
            self.generation += 1
            self.num_workers = self.num_workers or self.config.workers
            self.ready = False
        elif signum == signal.SIGTTIN:
            self.num_workers += 1
            error_log.info("SIGTTIN: %d workers", self.num_workers)
        elif signum == signal.SIGTTOU and self.num_workers > 1:
            self.num_workers -= 1
            error_log.info("SIGTTOU: %d workers", self.num_workers)
            self.trim()
        elif signum == signal.SIGWINCH:
            error_log.info("SIGWINCH: stopping all workers gracefully; SIGHUP starts them again")
            self.num_workers = 0
            self.trim()
        elif signum == signal.SIGUSR1:
            reopen_files()
            self.kill_all(signal.SIGUSR1)

    def speaks_for_itself(self) -> bool:
        """Whether stopping is ours to log: under a supervisor (a generation, a --reload server)
        that is still there, the supervisor says it, once."""
        return self.supervisor is None or os.getppid() != self.supervisor

    def stop(self, graceful: bool, why: str) -> None:
        if self.stop_deadline is not None and graceful:
            return
        log = error_log.info if self.speaks_for_itself() else error_log.debug
        if graceful:
            log("%s: stopping gracefully (up to %ss)", why, self.config.graceful_timeout)
            self.stop_deadline = time.monotonic() + self.config.graceful_timeout
            sig = signal.SIGTERM
        else:
            log("%s: stopping now", why)
            self.stop_deadline = time.monotonic() + 1.0
            sig = signal.SIGQUIT
        # The workers' copies of the listening sockets stay open until they have accepted what
        # is already in the backlog (worker._drain); the master's own copies go now.
        for listener in self.listeners:
            listener.sock.close()
        for worker in self.workers.values():
            self.stop_worker(worker, sig)

    # workers

    def current(self) -> list[WorkerProcess]:
        """Workers of the newest generation that are not on their way out."""
        return [
            w for w in self.workers.values() if w.generation == self.generation and not w.stopping
        ]

    def spawn_missing(self, now: float) -> None:
        if now < self.spawn_after:
            return
        for _ in range(self.num_workers - len(self.current())):
            self.spawn()

    def spawn(self) -> None:
        used = {worker.slot for worker in self.workers.values()}
        slot = next(n for n in range(self.heartbeat.slots) if n not in used)
        stamp = self.heartbeat.reset(slot)
        record = WorkerProcess(0, slot, stamp, self.generation)
        self.hooks("pre_fork", self, record)
        pid = fork_worker()
        if pid:
            record.pid = pid
            self.workers[pid] = record
            self.heartbeat.set_pid(slot, pid)
            self.publish_workers()
            # Every start, replacements included (gunicorn logs the same): after a crash or a
            # timeout abort the operator sees which pid took over.
            error_log.info("Booting worker with pid %d", pid)
            return
        # child
        try:
            signal.set_wakeup_fd(-1)
            os.close(self.wake_r)
            os.close(self.wake_w)
            record.pid = os.getpid()
            set_title("worker", self.config)
            worker = Worker(
                self.config,
                self.listeners,
                self.app,
                self.load_app,
                self.heartbeat,
                slot,
                self.hooks,
            )
            self.hooks("post_fork", self, worker)
            worker.run()
        finally:
            os._exit(1)

    def stop_worker(self, worker: WorkerProcess, sig: int) -> None:
        worker.stopping = True
        self.heartbeat.set_pid(worker.slot, 0)  # no sibling hands it clients any more
        send_signal(worker.pid, sig)

    def publish_workers(self) -> None:
        """What workers read in the shared mapping to share clients (worker.accept_one)."""
        span = 1 + max((w.slot for w in self.workers.values()), default=-1)
        self.heartbeat.set_workers(len(self.workers), span)

    def kill_all(self, sig: int) -> None:
        for pid in list(self.workers):
            send_signal(pid, sig)

    def trim(self) -> None:
        """Stop the oldest workers beyond the wanted number."""
        current = sorted(self.current(), key=lambda w: w.spawned)
        for worker in current[: max(0, len(current) - self.num_workers)]:
            self.stop_worker(worker, signal.SIGTERM)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue  # not a worker (we may be PID 1 and inherit orphans): reaped, done
            self.heartbeat.set_pid(worker.slot, 0)
            self.publish_workers()
            self.hooks("worker_exit", self, worker)
            if self.stop_deadline is None and not worker.stopping:
                self.worker_died(worker, code)

    def worker_died(self, worker: WorkerProcess, code: int) -> None:
        """An unplanned exit: respawn, backing off when workers die before they boot."""
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        if code == BOOT_ERROR and not worker.booted:
            error_log.error("Worker %d failed to boot: stopping (fix the error above)", worker.pid)
            self.exit_code = 1
            self.stop(graceful=False, why="boot failure")
            return
        if worker.booted:
            self.boot_failures = 0
            error_log.warning("Worker %d exited (%s); starting a new one", worker.pid, how)
            return
        self.boot_failures += 1
        if self.boot_failures >= MAX_BOOT_FAILURES:
            error_log.error(
                "%d workers in a row died before booting (last: %s): giving up",
                self.boot_failures,
                how,
            )
            self.exit_code = 1
            self.stop(graceful=False, why="repeated boot failures")
            return
        delay = min(0.1 * 2**self.boot_failures, 5.0)
        error_log.warning(
            "Worker %d died before booting (%s); retrying in %.1fs", worker.pid, how, delay
        )
        self.spawn_after = time.monotonic() + delay

    def check_boot(self) -> None:
        """Mark workers booted once they beat; retire the old generation once the new one is up."""
        for worker in self.workers.values():
            if not worker.booted and self.heartbeat.last(worker.slot) > worker.spawned:
                worker.booted = True
                self.boot_failures = 0
                error_log.debug("Worker %d ready", worker.pid)
            if not worker.stopping and self.heartbeat.retiring(worker.slot):
                worker.stopping = True  # it stops by itself; its replacement starts now
                self.heartbeat.set_pid(worker.slot, 0)
        if self.ready:
            return
        current = self.current()
        if len(current) >= self.num_workers and all(w.booted for w in current):
            self.ready = True
            for worker in list(self.workers.values()):
                if worker.generation != self.generation and not worker.stopping:
                    self.stop_worker(worker, signal.SIGTERM)
            pids = " ".join(str(w.pid) for w in current)
            message = f"Ready: {len(current)} worker(s), pids {pids}"
            if self.announce is not None:
                self.announce(message)  # the supervisor logs it, runs when_ready, tells systemd
            else:
                error_log.log(
                    logging.DEBUG if reload_child.announced() else logging.INFO, "%s", message
                )
                if self.generation == 0:
                    self.hooks("when_ready", self)
                    notify_systemd(b"READY=1")

    def check_timeouts(self, now: float) -> None:
        timeout = self.config.timeout
        if not timeout:
            return
        for worker in list(self.workers.values()):
            if worker.aborted_at is not None:
                if now - worker.aborted_at > ABORT_GRACE:
                    send_signal(worker.pid, signal.SIGKILL)
                continue
            silent = now - self.heartbeat.last(worker.slot)
            if silent > timeout:
                error_log.error(
                    "Worker %d silent for %.1fs (timeout %ss): aborting it; its traceback follows",
                    worker.pid,
                    silent,
                    timeout,
                )
                worker.aborted_at = now
                worker.stopping = True
                send_signal(worker.pid, signal.SIGABRT)


def notify_systemd(message: bytes) -> None:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET, if systemd gave one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message, address)
    except OSError as exc:
        error_log.warning("Could not notify systemd: %s", exc)


def _noop(signum, frame) -> None:
    """Signals are read from the wakeup fd; the handler only has to exist."""
