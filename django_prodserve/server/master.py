"""The master process: owns the listening sockets, forks workers, keeps their number, stops them.

It never accepts a client. Signals arrive through a wakeup pipe (each byte a signal number), so the
loop is a plain `select` on one fd with a timeout for the periodic checks.
"""

from __future__ import annotations

import gc
import logging
import os
import select
import signal
import time
from dataclasses import dataclass

from ..logs import reopen_files
from .heartbeat import Heartbeat
from .worker import BOOT_ERROR, Worker

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
)
#: Seconds a worker gets between SIGABRT (log your traceback) and SIGKILL.
ABORT_GRACE = 5.0


@dataclass
class WorkerProcess:
    pid: int
    slot: int
    spawned: float
    booted: bool = False
    stopping: bool = False
    aborted_at: float | None = None


def set_title(role: str, config) -> None:
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    name = config.proc_name or "prodserve"
    setproctitle(f"{name}: {role}")


class Master:
    def __init__(self, config, listeners, app=None, load_app=None) -> None:
        self.config = config
        self.listeners = listeners
        self.app = app
        self.load_app = load_app
        self.num_workers = config.workers
        self.workers: dict[int, WorkerProcess] = {}
        self.heartbeat = Heartbeat()
        self.stop_deadline: float | None = None
        self.exit_code = 0
        self.ready = False

    def run(self) -> int:
        """Serve until stopped; the return value is the process exit status."""
        set_title("master", self.config)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for signum in HANDLED:
            signal.signal(signum, _noop)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        if self.app is not None:
            gc.freeze()  # keep the preloaded app's pages shared after fork (no refcount writes)
        try:
            self.spawn_missing()
            while self.workers or self.stop_deadline is None:
                for signum in self._wait(0.1 if not self.ready else 1.0):
                    self.on_signal(signum)
                self.reap()
                now = time.monotonic()
                if self.stop_deadline is None:
                    self.spawn_missing()
                    self.check_boot()
                    self.check_timeouts(now)
                elif now > self.stop_deadline:
                    self.kill_all(signal.SIGKILL)
                    self.stop_deadline = now + 1e9
        finally:
            for listener in self.listeners:
                listener.sock.close()
            signal.set_wakeup_fd(-1)
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
            return
        name = signal.Signals(signum).name
        if signum == signal.SIGTERM:
            self.stop(graceful=True, why=name)
        elif signum in (signal.SIGINT, signal.SIGQUIT):
            self.stop(graceful=False, why=name)
        elif signum == signal.SIGHUP and self.stop_deadline is None:
            error_log.info("SIGHUP: starting new workers, stopping the old ones gracefully")
            self.ready = False
            for worker in self.workers.values():
                self.stop_worker(worker, signal.SIGTERM)
        elif signum == signal.SIGTTIN:
            self.num_workers += 1
            error_log.info("SIGTTIN: %d workers", self.num_workers)
        elif signum == signal.SIGTTOU and self.num_workers > 1:
            self.num_workers -= 1
            error_log.info("SIGTTOU: %d workers", self.num_workers)
            self.trim()
        elif signum == signal.SIGUSR1:
            reopen_files()
            self.kill_all(signal.SIGUSR1)

    def stop(self, graceful: bool, why: str) -> None:
        if self.stop_deadline is not None and graceful:
            return
        if graceful:
            error_log.info("%s: stopping gracefully (up to %ss)", why, self.config.graceful_timeout)
            self.stop_deadline = time.monotonic() + self.config.graceful_timeout
            sig = signal.SIGTERM
        else:
            error_log.info("%s: stopping now", why)
            self.stop_deadline = time.monotonic() + 1.0
            sig = signal.SIGQUIT
        for listener in self.listeners:
            listener.sock.close()
        for worker in self.workers.values():
            self.stop_worker(worker, sig)

    # workers

    def spawn_missing(self) -> None:
        current = [w for w in self.workers.values() if not w.stopping]
        for _ in range(self.num_workers - len(current)):
            self.spawn()

    def spawn(self) -> None:
        used = {worker.slot for worker in self.workers.values()}
        slot = next(n for n in range(self.heartbeat.slots) if n not in used)
        self.heartbeat.beat(slot)
        spawned = self.heartbeat.last(slot)
        pid = os.fork()
        if pid:
            self.workers[pid] = WorkerProcess(pid, slot, spawned)
            error_log.debug("Booting worker %d", pid)
            return
        # child
        try:
            signal.set_wakeup_fd(-1)
            os.close(self.wake_r)
            os.close(self.wake_w)
            set_title("worker", self.config)
            Worker(self.config, self.listeners, self.app, self.load_app, self.heartbeat, slot).run()
        finally:
            os._exit(1)

    def stop_worker(self, worker: WorkerProcess, sig: int) -> None:
        worker.stopping = True
        _kill(worker.pid, sig)

    def kill_all(self, sig: int) -> None:
        for pid in list(self.workers):
            _kill(pid, sig)

    def trim(self) -> None:
        """Stop the oldest workers beyond the wanted number."""
        current = sorted(
            (w for w in self.workers.values() if not w.stopping), key=lambda w: w.spawned
        )
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
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue  # not ours (we may be PID 1): reaped, nothing more to do
            code = os.waitstatus_to_exitcode(status)
            if code == BOOT_ERROR and not worker.booted:
                error_log.error("Worker %d failed to boot: stopping (fix the error above)", pid)
                self.exit_code = 1
                self.stop(graceful=False, why="boot failure")
            elif not worker.stopping and self.stop_deadline is None:
                how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
                log = error_log.info if code == 0 else error_log.warning
                log("Worker %d exited (%s); starting a new one", pid, how)

    def check_boot(self) -> None:
        """Mark workers booted once they beat; say 'ready' once every wanted worker is."""
        for worker in self.workers.values():
            if not worker.booted and self.heartbeat.last(worker.slot) > worker.spawned:
                worker.booted = True
                error_log.debug("Worker %d ready", worker.pid)
        if not self.ready:
            current = [w for w in self.workers.values() if not w.stopping]
            if len(current) >= self.num_workers and all(w.booted for w in current):
                self.ready = True
                error_log.info(
                    "Ready: %d worker(s), pids %s",
                    len(current),
                    " ".join(str(w.pid) for w in current),
                )

    def check_timeouts(self, now: float) -> None:
        timeout = self.config.timeout
        if not timeout:
            return
        for worker in list(self.workers.values()):
            if worker.aborted_at is not None:
                if now - worker.aborted_at > ABORT_GRACE:
                    _kill(worker.pid, signal.SIGKILL)
                continue
            silent = now - self.heartbeat.last(worker.slot)
            if silent > timeout:
                error_log.error(
                    "Worker %d silent for %.1fs (timeout %ss): aborting it",
                    worker.pid,
                    silent,
                    timeout,
                )
                worker.aborted_at = now
                worker.stopping = True
                _kill(worker.pid, signal.SIGABRT)


def _noop(signum, frame) -> None:
    """Signals are read from the wakeup fd; the handler only has to exist."""


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
