"""Serving from fresh interpreters: the process that ran the command keeps the sockets; children serve.

That process ran django.setup() and the system checks (which import the URLconf, so the views), so
it holds the project's code as it was when it started: anything forked from it serves that code.
So after the first, every generation of workers (`Supervisor`) is a fresh interpreter running the
same command line with the listening sockets inherited (PRODSERVE_LISTEN_FDS): it imports the
project from disk, runs a `Master` that forks and supervises its workers, and reports on a status
pipe once they are all up. SIGHUP starts the next generation and, once that one is ready, stops the
old one gracefully: the master's pid, pidfile and sockets stay, and a request never meets a closed
socket. `--reload` (reloader.py) runs its server interpreters with the same `spawn()` and `Child`,
from reload_child.py's bootstrap."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils import autoreload

from ..logs import reopen_files
from . import portable
from .hooks import Hooks
from .master import ABORT_GRACE, HANDLED, LISTEN_FDS_ENV, _noop, notify_systemd, set_title

error_log = logging.getLogger("django_prodserve.error")

#: How a generation learns it is one: {"status": write fd, "parent": pid, "number": n}.
GENERATION_ENV = "PRODSERVE_GENERATION"
#: Hooks that belong to the master the operator sees, not to each generation's own master.
MASTER_HOOKS = ("on_starting", "when_ready", "pre_exec", "on_exit")
#: Signals that concern the workers of the generation that serves, passed on to it.
FORWARDED = (signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH)


# the shared lifecycle: one child interpreter on inherited sockets


class Forked:
    """A first server or generation forked from the supervisor: as much of subprocess.Popen as
    Child needs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


@dataclass(eq=False)
class Child:
    """One server process: parked (a --reload standby), booting, serving, or on its way out."""

    proc: subprocess.Popen | Forked
    control: int | None  # write end, until it is told what to do (--reload only)
    status: int  # read end of what it reports
    word: bytes = b""
    failed: bool = False
    ready: bool = False
    stop_by: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def retire(self, sig: int, grace: float) -> None:
        """Ask it to stop with `sig`; past `grace` seconds the loop kills it (kill_overdue)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
        self.stop_by = time.monotonic() + grace


@functools.cache
def logical_cwd() -> str:
    """The directory the operator started us in, as they named it (first call: at start).

    A shell keeps symlinks in $PWD (`cd /srv/app/current`) while getcwd() names the directory the
    link pointed to then. A deploy switches `current -> releases/N`; each new generation and a new
    master start in this path, so they resolve the link afresh and serve the new release (gunicorn
    does the same)."""
    cwd = os.getcwd()
    pwd = os.environ.get("PWD", "")
    with contextlib.suppress(OSError):
        if os.path.isabs(pwd) and os.path.samefile(pwd, cwd):
            return pwd
    return cwd


def spawn(
    command: Sequence[str],
    fds: Sequence[int],
    env_for: Callable[[int], dict[str, str]],
    keep: Sequence[int] = (),
) -> Child:
    """Start `command` with the listening sockets `fds` (PRODSERVE_LISTEN_FDS), a status pipe and
    the fds in `keep`; `env_for(status fd)` adds to our environment what tells it its role."""
    status_r, status_w = os.pipe()
    try:
        proc = subprocess.Popen(
            command,
            cwd=logical_cwd(),
            env={**os.environ, **env_for(status_w), LISTEN_FDS_ENV: ",".join(map(str, fds))},
            pass_fds=(*fds, status_w, *keep),
        )
    finally:
        os.close(status_w)
    os.set_blocking(status_r, False)
    return Child(proc, None, status_r)


def kill_overdue(children: Sequence[Child], now: float) -> None:
    """SIGKILL the children still running past their stop_by; again a second later if need be."""
    for child in children:
        if child.stop_by is not None and now > child.stop_by:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
            child.stop_by = now + 1.0


def next_deadline(children: Sequence[Child], *more: float | None) -> float | None:
    """Seconds until the earliest stop_by (or other deadline); None when there is none."""
    deadlines = [child.stop_by for child in children if child.stop_by is not None]
    deadlines += [deadline for deadline in more if deadline is not None]
    return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None


def drain(fd: int) -> bytes:
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 4096):
            data += chunk
    return data


def describe_exit(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"


# inside a generation


@dataclass
class Generation:
    """What a generation's command got from the supervisor (GENERATION_ENV)."""

    status: int
    parent: int
    number: int
    checks: bool  # run the system checks (unless --skip-checks) before serving

    def adjust(self, config):
        """The generation's config: the pidfile and the master's hooks stay with the supervisor."""
        return dataclasses.replace(config, pidfile=None, **dict.fromkeys(MASTER_HOOKS))

    def ready(self, message: str) -> None:
        """Every worker is up: the supervisor logs `message` and retires the old generation."""
        os.write(self.status, b"r" + message.encode() + b"\n")


def generation() -> Generation | None:
    """Set when this process is a generation started by a Supervisor: it then serves on the
    inherited sockets, skips checks and banner, and dies with the supervisor (it drains first)."""
    state = os.environ.pop(GENERATION_ENV, None)
    if state is None:
        return None
    current = Generation(**json.loads(state))
    portable.die_with_parent(current.parent)
    return current


# production: the supervisor


class Supervisor:
    """The master the operator sees: pid, pidfile, sockets and signals; generations serve.

    HUP starts a generation; the one before it gets SIGTERM once the new one is ready, and drains
    for `graceful_timeout`. A new generation that cannot boot leaves the old one serving; one that
    dies after serving (kill -9, OOM) is replaced, as a master replaces a worker. TTIN,
    TTOU and WINCH go to the serving generation, USR1 to every process, TERM/INT/QUIT to all.
    USR2 starts a new master (same command line, same sockets), as before generations.
    """

    def __init__(self, config, serve_first: Callable[[Generation], None]) -> None:
        """`serve_first(generation)`: what the first generation, a fork of this process, runs."""
        self.config = config
        self.serve_first = serve_first
        self.listeners: list = []  # bound by the command after on_starting
        self.hooks = Hooks(config)
        self.command = [str(arg) for arg in autoreload.get_child_arguments()]
        self.children: list[Child] = []
        self.serving: Child | None = None  # the newest generation that is ready
        self.number = 0
        self.stopping = False
        self.exit_code = 0
        self.new_master: int | None = None
        logical_cwd()  # now, while $PWD still names the directory we run in

    def run(self) -> int:
        """Serve through generations until stopped; the return value is the exit status."""
        set_title("master", self.config)
        self.fds = [listener.sock.fileno() for listener in self.listeners]
        self.fork_first() if portable.CAN_FORK else self.start()
        self.wake_r, self.wake_w = portable.wake_pipe()
        for signum in HANDLED:
            signal.signal(signum, _noop)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        write_pidfile(self.config.pidfile)
        try:
            while self.children or not self.stopping:
                self.step()
        finally:
            self.close_listeners()
            signal.set_wakeup_fd(-1)
            self.hooks("on_exit", self)
            remove_pidfiles(self.config.pidfile)
        error_log.info("Shutdown complete")
        return self.exit_code

    def step(self) -> None:
        fds = [self.wake_r, *(child.status for child in self.children)]
        readable = select.select(fds, [], [], next_deadline(self.children))[0]
        if self.wake_r in readable:
            for signum in drain(self.wake_r):
                self.on_signal(signum)
        for child in list(self.children):
            if child.status in readable:
                self.on_status(child, drain(child.status))
        self.reap()
        kill_overdue(self.children, time.monotonic())

    def fork_first(self) -> Child:
        """The first generation is a fork of this process, made before its signal handlers: it
        serves the code this process imported and checked a moment ago, the code on disk, and a
        start costs no second interpreter (bench/boot.py: ~0.7 s less on a Wagtail site). Every
        later generation is a fresh interpreter (start()), as one forked from here would serve
        the code of the first start."""
        self.number += 1
        status_r, status_w = os.pipe()
        pid = os.fork()
        if pid:
            os.close(status_w)
            os.set_blocking(status_r, False)
            error_log.info("Starting generation %d (pid %d)", self.number, pid)
            child = Child(Forked(pid), None, status_r)
            self.children.append(child)
            return child
        code = 1
        try:
            os.close(status_r)
            generation = Generation(status_w, os.getppid(), self.number, checks=False)
            portable.die_with_parent(generation.parent)
            self.serve_first(generation)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()  # what manage.py prints for a command that raises
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def start(self) -> Child:
        """A new generation in a fresh interpreter: the same command line, our sockets."""
        self.number += 1

        def env_for(status: int) -> dict[str, str]:
            state = {
                "status": status,
                "parent": os.getpid(),
                "number": self.number,
                # The first generation serves the code this process checked; the next ones check
                # the code on disk themselves, so a broken deploy fails their boot, not requests.
                "checks": self.number > 1,
            }
            return {GENERATION_ENV: json.dumps(state)}

        child = spawn(self.command, self.fds, env_for)
        self.children.append(child)
        error_log.info("Starting generation %d (pid %d)", self.number, child.pid)
        return child

    # signals

    def on_signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            self.stop(signum)
        elif signum == signal.SIGUSR1:
            reopen_files()
            for child in self.children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signum)  # its master reopens its files and tells its workers
        elif self.stopping or signum == signal.SIGCHLD:
            return
        elif signum == signal.SIGHUP:
            self.reload()
        elif signum in FORWARDED and self.serving is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.serving.pid, signum)
        elif signum == signal.SIGUSR2:
            self.start_new_master()

    def reload(self) -> None:
        """SIGHUP: a new generation from the code on disk. The ones before it serve until it is
        ready (one still booting may already serve: its workers accept as soon as they are up)."""
        error_log.info("SIGHUP: starting a new generation; the current one serves until it is up")
        self.start()

    def stop(self, signum: int, say: bool = True) -> None:
        """TERM: every generation drains (graceful_timeout); INT, QUIT: they stop now."""
        if self.stopping and signum == signal.SIGTERM:
            return
        graceful = signum == signal.SIGTERM
        how = f"gracefully (up to {self.config.graceful_timeout}s)" if graceful else "now"
        if say:
            error_log.info("%s: stopping %s", signal.Signals(signum).name, how)
        self.stopping = True
        # The generations' workers accept what already waits in the backlog before they close
        # their copies (worker._drain); ours are not needed for that.
        self.close_listeners()
        grace = self.config.graceful_timeout if graceful else 1.0
        for child in self.children:
            child.retire(signum, grace + ABORT_GRACE)

    def close_listeners(self) -> None:
        for listener in self.listeners:
            listener.sock.close()

    # generations

    def on_status(self, child: Child, data: bytes) -> None:
        if not data.startswith(b"r") or child.stop_by is not None:
            return
        child.ready = True
        error_log.info("%s", data[1:].decode().strip())  # "Ready: N worker(s), pids ..."
        first, self.serving = self.serving is None, child
        for old in self.children[: self.children.index(child)]:
            if old.stop_by is None:
                error_log.info(
                    "Generation pid %d serves; stopping pid %d gracefully", child.pid, old.pid
                )
                old.retire(signal.SIGTERM, self.config.graceful_timeout + ABORT_GRACE)
        if first:
            self.hooks("when_ready", self)
            notify_systemd(b"READY=1")

    def reap(self) -> None:
        """Wait for any child: generations, a new master, and orphans when we are PID 1."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            if pid == self.new_master:
                self.new_master_exited(code)
            child = next((child for child in self.children if child.pid == pid), None)
            if child is not None:
                child.proc.returncode = code  # reaped here: Popen must not wait for it again
                self.children.remove(child)
                os.close(child.status)
                self.exited(child, code)

    def exited(self, child: Child, code: int) -> None:
        how = describe_exit(code)
        if child.stop_by is not None or self.stopping:
            if not self.stopping:
                error_log.info("Generation pid %d has stopped", child.pid)
            return  # retired
        if child is self.serving:
            self.serving = None
        if any(other.stop_by is None for other in self.children):
            if child.ready:
                error_log.error("Generation pid %d exited (%s)", child.pid, how)
            else:
                error_log.error(
                    "SIGHUP: the new generation (pid %d) exited before it was ready (%s): the "
                    "previous one keeps serving the code it loaded. Fix the error above, then "
                    "send SIGHUP again.",
                    child.pid,
                    how,
                )
            return
        if child.ready:
            # It served, then died (killed, out of memory, its master gave up): as a master does
            # for a worker, start another on the same sockets. If that one cannot boot either,
            # the branch below stops us.
            error_log.error("Generation pid %d exited (%s): starting a new one", child.pid, how)
            self.start()
            return
        # No generation serves and this one could not boot: stop with its status, as a master
        # whose workers cannot boot always did, and leave restarting to the service manager.
        error_log.error(
            "Generation pid %d exited before it was ready (%s): stopping", child.pid, how
        )
        self.exit_code = code if code > 0 else 1
        self.stop(signal.SIGTERM, say=False)

    # zero-downtime upgrade (SIGUSR2)

    def start_new_master(self) -> None:
        """Start a new master from the code on disk, handing it our listening sockets.

        Both masters serve until the operator stops the old one (TERM, or WINCH then TERM).
        """
        if self.new_master is not None:
            error_log.warning("SIGUSR2 ignored: new master %d is still running", self.new_master)
            return
        pid = os.fork()
        if pid:
            self.new_master = pid
            error_log.info("SIGUSR2: started new master %d", pid)
            move_pidfile(self.config.pidfile, oldbin(self.config.pidfile))
            return
        try:
            signal.set_wakeup_fd(-1)
            for fd in self.fds:
                os.set_inheritable(fd, True)
            self.hooks("pre_exec", self)
            os.chdir(logical_cwd())
            os.execve(
                self.command[0],
                self.command,
                {**os.environ, LISTEN_FDS_ENV: ",".join(map(str, self.fds))},
            )
        finally:
            os._exit(1)

    def new_master_exited(self, code: int) -> None:
        error_log.warning(
            "New master %d exited (%s); this master carries on",
            self.new_master,
            describe_exit(code),
        )
        self.new_master = None
        move_pidfile(oldbin(self.config.pidfile), self.config.pidfile)


# pidfile


def oldbin(pidfile: str | None) -> str | None:
    """Where the pidfile moves while a new master started by SIGUSR2 runs (nginx's name)."""
    return pidfile and pidfile + ".oldbin"


def write_pidfile(path: str | None) -> None:
    if path:
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\n")


def move_pidfile(old: str | None, new: str | None) -> None:
    if old and new:
        try:
            os.replace(old, new)
        except FileNotFoundError:
            write_pidfile(new)


def remove_pidfiles(pidfile: str | None) -> None:
    """Remove the pidfile and its .oldbin where they still name this process."""
    for path in filter(None, (pidfile, oldbin(pidfile))):
        try:
            with open(path) as f:
                if int(f.read().strip() or 0) == os.getpid():
                    os.unlink(path)
        except (FileNotFoundError, ValueError):
            pass
