"""`--reload`: the supervisor. It keeps the listening sockets, watches the project with watchfiles
and serves from a fresh interpreter (reload_child.py) that it replaces after every change.

Why a fresh interpreter and not fork(): this process ran django.setup() (manage.py does that before
any command), so it holds the code as it was. Why the sockets stay here: a request that arrives
during a restart waits in the backlog instead of being refused. Why it never exits on the app's
errors: a child that cannot boot serves its traceback, and any exit just waits for the next change.
A child's lifecycle (spawn on the inherited sockets, status pipe, retire, kill when overdue) is
supervisor.py's, which production's HUP generations use too.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import select
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from django.utils import autoreload

from .portable import wake_pipe
from .reload_child import BOOTSTRAP, CHILD_ENV, STOP_GRACE, report_path, serve_forked
from .supervisor import Child, Forked, describe_exit, drain, kill_overdue, next_deadline, spawn
from .watch import FileWatch, Registrations, Watcher

error_log = logging.getLogger("django_prodserve.error")

#: The next standbys start this long after a server is up and checked, off its first requests' path.
STANDBY_DELAY = 0.25
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
GO = b"go"


def child_command() -> list[str]:
    """runserver's child command line (autoreload.get_child_arguments: the same interpreter options,
    `-m package` or script, the same arguments), run through reload_child.BOOTSTRAP."""
    args = [str(arg) for arg in autoreload.get_child_arguments()]
    options = list(itertools.takewhile(lambda arg: arg.startswith(("-W", "-X")), args[1:]))
    rest = args[1 + len(options) :]
    target = ["module", *rest[1:]] if rest[0] == "-m" else ["script", *rest]
    return [args[0], *options, "-c", BOOTSTRAP, *target]


class Reloader:
    """The supervisor's loop: signals, file changes and the children's news through one select()."""

    def __init__(
        self, config, listeners, debug: bool, serve_here: Callable[[], None] | None = None
    ) -> None:
        self.config = config
        self.listeners = listeners
        self.fds = [listener.sock.fileno() for listener in listeners]
        self.debug = debug
        self.serve_here = serve_here
        self.command = child_command()
        self.warm = config.reload_start == "warm"
        self.children: list[Child] = []
        self.active: Child | None = None
        # The standbys, warmest first: `deep` serves an edit of code django.setup() does not
        # import (views, URLconf, forms...); `shallow`, with only Django imported, the others.
        self.deep: Child | None = None
        self.shallow: Child | None = None
        self.standby_at: float | None = None
        self.changed_at = time.monotonic()
        self.changed: list[Path] = []
        self.parked: set[Child] = set()  # the children that said b"w": imports done, waiting
        self.unannounced = False  # the watch set grew since the last "Watching" line
        self.stopping = False

    def run(self) -> None:
        """Serve through children until SIGTERM, SIGINT or SIGQUIT stops them all."""
        self.events = tempfile.TemporaryFile()
        self.reports = tempfile.TemporaryDirectory(prefix="prodserve-reload-")
        self.libraries = Path(self.reports.name, "libraries")
        # The server first (forked before this process sets its signals up): it boots while
        # this process works out what to watch.
        self.active = self.fork_first() if self.serve_here is not None else self.serve()
        self.wake_r, self.wake_w = wake_pipe()
        for signum in (signal.SIGCHLD, *STOP_SIGNALS):
            signal.signal(signum, _noop)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.reap()  # a server that died before SIGCHLD was ours to hear
        self.files = FileWatch(self.config.reload_extra_files)
        self.watcher = Watcher(self.config.reload_polling)
        self.watch()
        try:
            while self.children or not self.stopping:
                self.step()
        finally:
            signal.set_wakeup_fd(-1)
            self.watcher.close()
            for listener in self.listeners:
                listener.sock.close()
            self.events.close()
            self.reports.cleanup()

    def step(self) -> None:
        fds = [self.wake_r, self.watcher.fileno(), *(child.status for child in self.children)]
        readable = select.select(fds, [], [], next_deadline(self.children, self.standby_at))[0]
        if self.wake_r in readable:
            for signum in drain(self.wake_r):
                if signum in STOP_SIGNALS:
                    self.stop(signum)
        for child in list(self.children):
            if child.status in readable:
                self.on_status(child, drain(child.status))
        self.reap()
        if self.watcher.fileno() in readable:
            self.on_changes(self.watcher.changed())
        now = time.monotonic()
        kill_overdue(self.children, now)
        if self.standby_at is not None and now >= self.standby_at:
            self.standby_at = None
            self.shallow = self.shallow or self.start(deep=False)
            self.deep = self.deep or self.start(deep=True)

    # children

    def start(self, deep: bool) -> Child:
        """A new interpreter, parked after importing Django (and, deep, setting the project up)
        until it is told what to do."""
        control_r, control_w = os.pipe()

        def env_for(status: int) -> dict[str, str]:
            state = {"control": control_r, **self.child_state(status, deep)}
            # RUN_MAIN, as in runserver's child
            return {CHILD_ENV: json.dumps(state), autoreload.DJANGO_AUTORELOAD_ENV: "true"}

        try:
            child = spawn(self.command, self.fds, env_for, keep=(control_r, self.events.fileno()))
        finally:
            os.close(control_r)
        child.control = control_w
        self.children.append(child)
        return child

    def child_state(self, status: int, deep: bool) -> dict:
        """What a server child is told (reload_child.ChildState), but its control pipe."""
        return {
            "status": status,
            "events": self.events.fileno(),
            "debug": self.debug,
            "supervisor": os.getpid(),
            "reports": self.reports.name,
            "libraries": str(self.libraries) if deep else None,
        }

    def fork_first(self) -> Child:
        """The first server, forked from this process (reload_child.serve_forked): it imported
        the project a moment ago, and a fresh interpreter would import it all again (the start
        would be slower than runserver's)."""
        status_r, status_w = os.pipe()
        state = self.child_state(status_w, deep=False)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os.close(status_r)
            serve_forked(state, self.fds, self.serve_here)
        os.close(status_w)
        os.set_blocking(status_r, False)
        child = Child(Forked(pid), None, status_r, word=GO)
        self.children.append(child)
        return child

    def serve(self) -> Child:
        """The next server: the warmest parked standby, told what changed (one that finds a changed
        file among what it imported answers b"s" and on_status asks the next), or a new
        interpreter. A standby still importing is retired: what it holds is unknown."""
        self.standby_at = None
        for name in ("deep", "shallow"):
            child = getattr(self, name)
            setattr(self, name, None)
            if child in self.parked:
                return self.tell(child, b"\n".join([GO, *map(os.fsencode, self.changed)]))
            if child is not None:
                self.retire(child, signal.SIGTERM)
        return self.tell(self.start(deep=False), GO)

    def serve_error(self, message: str) -> Child:
        """A server of the error page: the shallow standby (its imports are Django's), or new."""
        child, self.shallow = self.shallow, None
        return self.tell(child or self.start(deep=False), b"error\n" + message.encode())

    def tell(self, child: Child, word: bytes) -> Child:
        child.word = word
        with contextlib.suppress(BrokenPipeError):  # it died already: reap() handles that
            os.write(child.control, word)
        os.close(child.control)
        child.control = None
        return child

    def retire(self, child: Child, sig: int) -> None:
        child.retire(sig, STOP_GRACE + 1.0)

    def on_status(self, child: Child, data: bytes) -> None:
        if b"w" in data:
            self.parked.add(child)
            if child in (self.deep, self.shallow):
                what = "the project set up" if child is self.deep else "Django imported"
                error_log.debug("Warm standby %d: %s, waiting", child.proc.pid, what)
        if b"m" in data:
            self.learn(child)
        if child is not self.active:
            return
        if b"s" in data:
            error_log.debug(
                "Standby %d had imported a changed file; the next one serves", child.proc.pid
            )
            self.active = self.serve()
            return
        pid = child.proc.pid
        if b"r" in data:
            ms = (time.monotonic() - self.changed_at) * 1000
            error_log.info("Server process %d ready in %d ms", pid, ms)
        if b"f" in data:
            child.failed = True
            error_log.error(
                "Server process %d could not start the project: requests get a 500 with the "
                "error until the next change",
                pid,
            )
        if b"c" in data or b"f" in data:
            self.announce_watch()
        # The next standbys start once this server's checker is done (or it serves an error
        # page): importing a project takes CPU its first requests should have.
        if (b"c" in data or b"f" in data) and self.warm and not self.stopping:
            self.standby_at = time.monotonic() + (STANDBY_DELAY if b"c" in data else 0.0)

    def learn(self, child: Child) -> None:
        """A server reported what it loaded and registers: watch it (the next reload may bring
        more)."""
        report = report_path(self.reports.name, child.proc.pid)
        try:
            loaded = json.loads(report.read_text())
            report.unlink()
        except (OSError, ValueError) as exc:
            error_log.warning(
                "Server process %d: no report of its modules: %s", child.proc.pid, exc
            )
            return
        self.files.learn(
            [file for _, file in loaded["modules"]],
            [path for _, path in loaded["apps"]],
            Registrations(**loaded["registered"]),
        )
        self.watch()
        apps = {name for name, _ in loaded["apps"]}
        self.libraries.write_text("\n".join(self.files.libraries(loaded["modules"], apps)))

    def watch(self) -> None:
        """Watch what FileWatch names (also what it has learnt since the last call)."""
        deep, flat = self.files.roots()
        if self.watcher.add(deep, flat):
            self.unannounced = True

    def announce_watch(self) -> None:
        """Say what is watched, when the set grew: once the server's checker is done (or it serves
        an error page, or exited). So a start says it once, after the first server's report, not
        once before and once after; and the line follows the checks' block, never splits it."""
        if self.unannounced:
            self.unannounced = False
            error_log.info(
                "Watching for file changes with watchfiles: recursively %s; and %d directories "
                "of imported modules",
                ", ".join(map(str, sorted(self.watcher.deep))) or "nothing",
                len(self.watcher.flat),
            )

    def reap(self) -> None:
        for child in list(self.children):
            code = child.proc.poll()
            if code is None:
                continue
            self.children.remove(child)
            self.parked.discard(child)
            os.close(child.status)
            if child.control is not None:
                os.close(child.control)
            if child is self.deep:
                self.deep = None
            if child is self.shallow:
                self.shallow = None
            if child is self.active:
                self.active = None
                if not self.stopping:
                    self.active_exited(child, code)

    def active_exited(self, child: Child, code: int) -> None:
        """The server went away by itself: say so on the console and, once, in the browser."""
        how = describe_exit(code)
        error_log.error("Server process %d exited (%s); waiting for a change", child.proc.pid, how)
        self.announce_watch()
        if child.word.startswith(GO):
            self.active = self.serve_error(
                f"The server process exited ({how}); the console says why.\n"
                "prodserve starts it again when a watched file changes."
            )

    # events

    def on_changes(self, paths: set[Path]) -> None:
        if self.stopping:
            return
        restart, handled = [], []
        for path in sorted(filter(self.files.relevant, paths)):
            (handled if self.files.notify(path) else restart).append(path)
        if restart:
            more = f" (and {len(restart) - 1} more)" if len(restart) > 1 else ""
            error_log.info("%s changed, reloading.%s", restart[0], more)
            self.changed_at = time.monotonic()
            if self.active is not None:
                self.retire(self.active, signal.SIGTERM)
            self.changed = restart
            self.active = self.serve()
        elif handled:
            os.write(self.events.fileno(), "".join(f"{path}\n" for path in handled).encode())
            error_log.info("%s changed, applied without a restart.", handled[0])

    def stop(self, signum: int) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.standby_at = None
        self.watcher.stop()
        error_log.info("%s: stopping", signal.Signals(signum).name)
        for child in self.children:
            if child.stop_by is None:
                fast = child is self.active and signum != signal.SIGTERM
                self.retire(child, signum if fast else signal.SIGTERM)


def _noop(signum, frame) -> None:
    """Signals are read from the wakeup fd; the handler only has to exist."""
