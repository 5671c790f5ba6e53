"""Fixtures that start real `manage.py prodserve` processes on free loopback ports."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "testproject" / "manage.py"
LISTENING = re.compile(r"Listening at https?://(?:\[([^\]]+)\]|([^:/]+)):(\d+)/")
MASTER_PID = re.compile(r"master pid (\d+)")
#: PRODSERVE_ variables a test run hands on to every server it starts: .ci/run's second run of the
#: suite chooses the workers' event loop with it (issue 19).
RUN_WIDE = ("PRODSERVE_EVENT_LOOP",)
#: Put first on PYTHONPATH, its sitecustomize.py removes fork, epoll, poll, pipe2 and sendfile from
#: every interpreter: the calls macOS or Windows lack (.ci/run's no-fork run).
NOFORK = ROOT / "tests" / "nofork"


class Server:
    """A running `prodserve` process: its output, its port, its process tree, its signals."""

    def __init__(
        self, args: list[str], env: dict[str, str], cwd: Path, launcher: tuple[str, ...] = ()
    ) -> None:
        self.args = args
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            [*launcher, sys.executable, "-u", str(MANAGE), "prodserve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = 0
        self.host = "127.0.0.1"

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 20.0, start: int = 0) -> re.Match:
        """Wait until a line after index `start` matches; fail with the output if it doesn't."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    match = regex.search(line)
                    if match:
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no line matching {pattern!r} within {timeout}s; output:\n{self.output}"
                    )
                self._changed.wait(min(remaining, 0.2))

    def mark(self) -> int:
        """The current output position, for wait_for(start=...)."""
        with self._changed:
            return len(self.lines)

    def wait_ready(self) -> Server:
        match = self.wait_for(LISTENING.pattern)
        self.host = match.group(1) or match.group(2)
        self.port = int(match.group(3))
        # A master's line; under --reload, its supervisor's (the server's own is a debug line).
        self.wait_for(r"Ready: \d+ worker|Server process \d+ ready in")
        return self

    @property
    def master_pid(self) -> int:
        return int(self.wait_for(MASTER_PID.pattern).group(1))

    def worker_pids(self) -> list[int]:
        """The workers of every generation: the children of the master's children (each
        generation, or --reload's server, is a fresh interpreter with workers of its own)."""
        return [pid for generation in children_of(self.proc.pid) for pid in children_of(generation)]

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        stop_process_group(self.proc, signal.SIGINT, 5)


def stop_process_group(proc: subprocess.Popen, sig: int, grace: float) -> None:
    """Signal a process started with start_new_session, give it `grace` seconds, then kill
    whatever is left of its group (the workers of a killed master, say)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(5)


#: For tests of what only epoll does: the selectors loop (macOS, Windows; .ci/run's second run) has
#: no exclusive wakeup, so every idle worker wakes for a new client and the first one takes it.
epoll_only = pytest.mark.skipif(
    os.environ.get("PRODSERVE_EVENT_LOOP") == "selectors" or not hasattr(select, "epoll"),
    reason="wakeup order of workers at new clients: epoll's EPOLLEXCLUSIVE queue, not selectors'",
)


def server_environ() -> dict[str, str]:
    """os.environ without the PRODSERVE_ settings (each test gives its own), except RUN_WIDE's."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PRODSERVE_") or k in RUN_WIDE}


def nofork_environ(env: dict[str, str]) -> dict[str, str]:
    """`env` with NOFORK first on PYTHONPATH (and what it had after it)."""
    path = os.pathsep.join(filter(None, (str(NOFORK), env.get("PYTHONPATH"))))
    return {**env, "PYTHONPATH": path}


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or before the read
        return []


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(") ")[2][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or before the read
        return False


def wchan(pid: int | str) -> str:
    """Where in the kernel a process sleeps: 'do_epoll_wait' for an idle worker."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read()
    except OSError:
        return ""


def loop_idle(pid: int) -> bool:
    """Whether a worker's event loop waits in epoll. Its owner is the main thread until a request
    outlives a few ms (a CPU-starved hello, under load) and a spare thread takes the loop over;
    the main thread then parks in a futex. So: any of its threads in epoll_wait (the watchdog and
    parked spares wait elsewhere)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    return any(wchan(f"{pid}/task/{tid}") == "do_epoll_wait" for tid in tasks)


def sleeping_in_view(channel: str) -> bool:
    """time.sleep() blocks in nanosleep (Python ≥ 3.11) or select (3.10); the loop in epoll."""
    return "sleep" in channel or "select" in channel or "poll_schedule" in channel


def wait_in_view(pid: int) -> None:
    """Wait until a 1-thread worker runs /slow/: its kernel wait channel turns from epoll to sleep.

    Call it right after sending the request. Where the kernel hides wait channels there is no
    event that says the request reached the view, so it falls back to a bounded head start.
    """
    if wait_until(lambda: sleeping_in_view(wchan(pid)), timeout=5):
        return
    if "epoll" in wchan(pid):
        raise AssertionError(f"worker {pid} is still waiting in epoll: the request never arrived")
    time.sleep(0.5)  # no wait channel here: the only evidence left is time


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll a condition that has no event to wait on (a process appearing or vanishing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture(scope="session")
def project_db(tmp_path_factory) -> Path:
    """A migrated sqlite database for the test project, made once per session."""
    db = tmp_path_factory.mktemp("db") / "testproject.sqlite3"
    env = {**os.environ, "TESTPROJECT_DB": str(db)}
    subprocess.run([sys.executable, str(MANAGE), "migrate", "-v0"], check=True, env=env)
    return db


@pytest.fixture
def start_server(project_db, tmp_path):
    """start_server(*args, env={...}, settings="testproject.settings", ready=True) -> Server."""
    servers: list[Server] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        settings: str | None = None,
        ready: bool = True,
        cwd: Path | None = None,
        launcher: tuple[str, ...] = (),
    ) -> Server:
        full_env = server_environ()
        full_env.update(TESTPROJECT_DB=str(project_db), PYTHONUNBUFFERED="1")
        if settings:
            full_env["DJANGO_SETTINGS_MODULE"] = settings
        full_env.update(env or {})
        # An addrport comes first; -b/--bind anywhere; otherwise a free loopback port.
        if not (args and not args[0].startswith("-")) and not {"-b", "--bind"} & set(args):
            args = ("127.0.0.1:0", *args)
        server = Server(list(args), full_env, cwd or ROOT, launcher)
        servers.append(server)
        return server.wait_ready() if ready else server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def project_copy(tmp_path) -> Path:
    """A writable copy of the test project, for tests that edit its code."""
    target = tmp_path / "project"
    shutil.copytree(
        ROOT / "testproject",
        target,
        ignore=shutil.ignore_patterns("__pycache__", "db.sqlite3", "staticfiles"),
    )
    return target


@pytest.fixture(scope="module")
def start_module_server(project_db):
    """Like start_server, but its servers live for the whole test module: one boot, many tests.

    For tests that only send requests and read responses; anything that signals, kills or
    reconfigures a server uses start_server.
    """
    servers: list[Server] = []

    def start(*args: str, settings: str | None = None) -> Server:
        full_env = server_environ()
        full_env.update(TESTPROJECT_DB=str(project_db), PYTHONUNBUFFERED="1")
        if settings:
            full_env["DJANGO_SETTINGS_MODULE"] = settings
        # An address comes first or after -b; "-w 2" is no port (start_server mistakes it for one).
        if not args or (args[0].startswith("-") and not {"-b", "--bind"} & set(args)):
            args = ("127.0.0.1:0", *args)
        server = Server(list(args), full_env, ROOT)
        servers.append(server)
        return server.wait_ready()

    yield start
    for server in servers:
        server.stop()


def require_tool(name: str, package: str) -> str:
    """The path of an external program a test needs (also looked for in the sbin directories).

    Missing, the test is skipped with the reason, except under CI=true, where .ci/run installs it:
    there a missing tool fails the test, so a broken CI setup never passes by skipping.
    """
    path = shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    if path is None:
        reason = f"{name} is not installed (Debian package {package!r}: apt-get install {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true, so .ci/run should have installed it")
        pytest.skip(reason)
    return path


@pytest.fixture
def start_copy(start_server, project_copy, monkeypatch):
    """start_server(...) for the project copy: its own manage.py, run from its directory, so the
    code a test edits is the code the server imports."""
    monkeypatch.setattr(sys.modules[__name__], "MANAGE", project_copy / "manage.py")

    def start(*args: str, **kwargs) -> Server:
        return start_server(*args, cwd=project_copy, **kwargs)

    return start
