"""Operating the master: upgrades, recycling, readiness, drain, hooks, sockets — and chaos under load.

Every test runs real processes on loopback and sends real signals. Load loops are bounded in both
request count and time.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests import conftest
from tests.client import Connection, Response, get, unix_request
from tests.conftest import MANAGE, ROOT, children_of, pid_alive, wait_in_view, wait_until


class Load:
    """Background clients counting outcomes: each request on a fresh connection, or (keep_alive)
    on one connection per client, kept until the server answers `Connection: close`. They never
    retry: every request that gets no response is a failure.

    `pause`: seconds each client waits between its requests, as the connections of a load
    balancer's pool do, idle between requests (without one, clients that outpace the server always
    have a request waiting in it). Bounded: stops at `max_requests` or `max_seconds`, whichever
    comes first.
    """

    def __init__(
        self,
        port: int,
        path: str = "/hello/",
        clients: int = 4,
        max_requests: int = 200_000,
        max_seconds: float = 60.0,
        keep_alive: bool = False,
        pause: float = 0.0,
    ) -> None:
        self.port, self.path, self.keep_alive, self.pause = port, path, keep_alive, pause
        self.ok = 0
        self.failed: list[str] = []
        self.bodies: set[bytes] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._budget = max_requests
        self._deadline = time.monotonic() + max_seconds
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        conn = None
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            with self._lock:
                if self._budget <= 0:
                    break
                self._budget -= 1
            try:
                if self.keep_alive:
                    response, conn = self._on_kept_connection(conn)
                else:
                    response = get(self.port, self.path)
                outcome = None if response.status == 200 else f"status {response.status}"
            except OSError as exc:
                outcome = repr(exc)
                if conn is not None:
                    conn.close()
                    conn = None
            with self._lock:
                if outcome is None:
                    self.ok += 1
                    self.bodies.add(response.body)
                else:
                    self.failed.append(outcome)
            if self.pause:
                self._stop.wait(self.pause)
        if conn is not None:
            conn.close()

    def _on_kept_connection(self, conn: Connection | None) -> tuple[Response, Connection | None]:
        """One request on the client's connection; the connection to use next (None: closed).

        No retry: a draining worker answers the next request of a kept-alive connection with
        `Connection: close` instead of closing it under the client, so a request sent on a
        connection the server closed is a failure here (issue 16: RemoteDisconnected on HUP).
        A new connection only once the server said `Connection: close`.
        """
        if conn is None:
            conn = Connection("127.0.0.1", self.port)
        conn.send(f"GET {self.path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        return self._answered(conn)

    @staticmethod
    def _answered(conn: Connection) -> tuple[Response, Connection | None]:
        response = conn.read_response()
        if (response.header("Connection") or "").lower() == "close":
            conn.close()
            return response, None
        return response, conn

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> None:
        start = self.ok
        assert any(t.is_alive() for t in self._threads), "the load ran out of its budget"
        assert wait_until(lambda: self.ok >= start + count, timeout), (
            f"load made no progress; last failures: {self.failed[-5:]}"
        )

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


def test_hup_under_load_replaces_every_worker_with_no_failed_request(start_server):
    """Fresh connections and a pool of keep-alive ones sending back to back, none retrying: the
    old workers answer each kept connection's next request with `Connection: close` rather than
    close it idle as the client sends (issue 16: ~3 RemoteDisconnected per HUP)."""
    server = start_server("-w", "2")
    old = set(server.worker_pids())
    with (
        Load(server.port) as load,
        Load(server.port, clients=8, keep_alive=True, pause=0.002) as kept,
    ):
        load.wait_for_requests(50)
        kept.wait_for_requests(50)
        mark = server.mark()
        server.signal(signal.SIGHUP)
        server.wait_for(r"Ready: 2 worker", start=mark)
        assert wait_until(lambda: not old & set(server.worker_pids()))
        load.wait_for_requests(50)
        kept.wait_for_requests(50)
    assert load.failed == [] and kept.failed == []
    assert len(server.worker_pids()) == 2


def replace(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_hup_under_load_serves_the_edited_view_and_models_from_disk(start_copy, project_copy):
    """Issue 16: the master had imported the views (system checks) and models (django.setup())
    and forked the new workers from itself, so after a deploy and HUP they served the old code."""
    server = start_copy("-w", "2", env={"TESTPROJECT_DEBUG": "0"})
    master = server.proc.pid
    with (
        Load(server.port, clients=2) as fresh,
        Load(server.port, clients=2, keep_alive=True, pause=0.002) as kept,
    ):
        fresh.wait_for_requests(30)
        kept.wait_for_requests(30)
        # A deploy: a new function in a models module, and a view that uses it.
        models, views = project_copy / "demo" / "models.py", project_copy / "demo" / "views.py"
        models.write_text(models.read_text() + '\n\ndef greeting():\n    return "Hello, HUP!"\n')
        replace(views, 'HttpResponse(b"Hello, world!"', "HttpResponse(models.greeting()")
        replace(views, "from .models import Item", "from . import models\nfrom .models import Item")
        mark = server.mark()
        server.signal(signal.SIGHUP)
        server.wait_for(r"Ready: 2 worker", start=mark)
        server.wait_for(r"Generation pid \d+ serves; stopping pid \d+ gracefully", start=mark)
        assert wait_until(lambda: get(server.port, "/hello/").body == b"Hello, HUP!", timeout=10)
        fresh.wait_for_requests(30)
        kept.wait_for_requests(30)
    assert fresh.failed == [] and kept.failed == []
    assert b"Hello, HUP!" in fresh.bodies and b"Hello, HUP!" in kept.bodies
    assert server.proc.pid == master and server.proc.poll() is None
    assert len(server.worker_pids()) == 2


def test_hup_rereads_the_prodserve_settings(start_copy, project_copy):
    """A generation resolves its configuration afresh from settings.py (README, Signals)."""
    server = start_copy(env={"TESTPROJECT_DEBUG": "0"})
    settings = project_copy / "testproject" / "settings.py"
    replace(settings, '"workers": 2,', '"workers": 3,')
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_for(r"Ready: 3 worker", start=mark)
    assert wait_until(lambda: len(server.worker_pids()) == 3)


def test_hup_with_a_broken_deploy_keeps_the_old_generation_serving(start_copy, project_copy):
    server = start_copy("-w", "1", env={"TESTPROJECT_DEBUG": "0"})
    [old] = children_of(server.proc.pid)
    views = project_copy / "demo" / "views.py"
    with Load(server.port, clients=2) as load:
        load.wait_for_requests(20)
        replace(views, "def hello(request):", "def hello(request) oops:")
        mark = server.mark()
        server.signal(signal.SIGHUP)
        server.wait_for(r"the new generation \(pid \d+\) exited before it was ready", start=mark)
        load.wait_for_requests(20)
    assert load.failed == [] and load.bodies == {b"Hello, world!"}
    assert "SyntaxError" in server.output
    assert children_of(server.proc.pid) == [old]
    # Fixed, the next HUP serves the new code.
    replace(views, "def hello(request) oops:", "def hello(request):")
    replace(views, "Hello, world!", "Hello, fixed!")
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_for(r"Generation pid \d+ serves; stopping pid \d+ gracefully", start=mark)
    assert wait_until(lambda: get(server.port, "/hello/").body == b"Hello, fixed!", timeout=10)


def releases(tmp_path: Path, monkeypatch) -> Path:
    """A Capistrano-style layout: releases/1 and releases/2 of the test project (their hello
    views say which), `current -> releases/1`; the server runs `manage.py` from `current`."""
    root = tmp_path / "app"
    for number in (1, 2):
        target = root / "releases" / str(number)
        shutil.copytree(
            ROOT / "testproject", target, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3")
        )
        replace(target / "demo" / "views.py", "Hello, world!", f"release {number}")
    (root / "current").symlink_to("releases/1")
    monkeypatch.setattr(conftest, "MANAGE", Path("manage.py"))
    return root


def switch(root: Path, number: int) -> None:
    """The deploy: point `current` at another release atomically (ln -sfn, then mv -T)."""
    (root / "current.tmp").symlink_to(f"releases/{number}")
    os.replace(root / "current.tmp", root / "current")


def test_hup_after_a_symlink_switch_serves_the_new_release(start_server, tmp_path, monkeypatch):
    """`cd /srv/app/current && manage.py prodserve`: the generations after a deploy serve the
    release `current` points to now, not the directory it pointed to at start."""
    root = releases(tmp_path, monkeypatch)
    current = root / "current"
    server = start_server(
        "-w", "1", cwd=current, env={"PWD": str(current), "TESTPROJECT_DEBUG": "0"}
    )
    assert get(server.port, "/hello/").body == b"release 1"
    with Load(server.port, clients=2) as load:
        load.wait_for_requests(20)
        switch(root, 2)
        mark = server.mark()
        server.signal(signal.SIGHUP)
        server.wait_for(r"Generation pid \d+ serves; stopping pid \d+ gracefully", start=mark)
        load.wait_for_requests(20)
    assert load.failed == []
    assert get(server.port, "/hello/").body == b"release 2"


def test_usr2_after_a_symlink_switch_starts_the_new_release(start_server, tmp_path, monkeypatch):
    root = releases(tmp_path, monkeypatch)
    current = root / "current"
    server = start_server(
        "-w", "1", cwd=current, env={"PWD": str(current), "TESTPROJECT_DEBUG": "0"}
    )
    with Load(server.port, clients=2) as load:
        load.wait_for_requests(20)
        switch(root, 2)
        mark = server.mark()
        server.signal(signal.SIGUSR2)
        new_master = int(server.wait_for(r"started new master (\d+)", start=mark).group(1))
        server.wait_for(rf"\[{new_master}\] \[INFO\] Ready", start=mark)
        server.signal(signal.SIGTERM)
        assert server.wait_exit() == 0
        load.wait_for_requests(20)
    try:
        assert load.failed == []
        assert get(server.port, "/hello/").body == b"release 2"
    finally:
        os.kill(new_master, signal.SIGTERM)
        assert wait_until(lambda: not pid_alive(new_master), timeout=15)


def test_kill_9_under_load_replaces_the_worker_fast_and_fails_at_most_in_flight(start_server):
    server = start_server("-w", "2")
    with Load(server.port, clients=2) as load:
        load.wait_for_requests(50)
        before = server.worker_pids()
        victim = before[0]
        mark = server.mark()
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        server.wait_for(rf"Worker {victim} exited \(signal SIGKILL\)", start=mark)
        assert wait_until(
            lambda: len(server.worker_pids()) == 2 and victim not in server.worker_pids(), timeout=5
        )
        replaced_in = time.monotonic() - killed_at
        (replacement,) = set(server.worker_pids()) - set(before)
        server.wait_for(rf"Booting worker with pid {replacement}$", start=mark)
        load.wait_for_requests(50)
    assert replaced_in < 1.0
    # At most the requests that worker had in flight (each client has one at a time).
    assert len(load.failed) <= 2, load.failed


@pytest.mark.parametrize(
    ("pidfile", "retire"),
    [
        (True, [signal.SIGTERM]),
        (False, [signal.SIGTERM]),
        (False, [signal.SIGWINCH, signal.SIGTERM]),
    ],
    ids=["pidfile-TERM", "no-pidfile-TERM", "no-pidfile-WINCH-TERM"],
)
def test_usr2_upgrade_under_load_hands_the_sockets_to_a_new_master(
    start_server, tmp_path, pidfile, retire
):
    pidpath = tmp_path / "prodserve.pid"
    server = start_server("-w", "1", *(("-p", str(pidpath)) if pidfile else ()))
    old_master = server.proc.pid
    with (
        Load(server.port) as load,
        Load(server.port, clients=8, keep_alive=True, pause=0.002) as kept,
    ):
        load.wait_for_requests(30)
        kept.wait_for_requests(30)
        mark = server.mark()
        server.signal(signal.SIGUSR2)
        new_master = int(server.wait_for(r"started new master (\d+)", start=mark).group(1))
        server.wait_for(rf"\[{new_master}\] \[INFO\] Ready", start=mark)
        if pidfile:
            assert int(pidpath.read_text()) == new_master
            assert int((tmp_path / "prodserve.pid.oldbin").read_text()) == old_master
        load.wait_for_requests(30)  # both masters serve until the operator retires the old one
        assert server.proc.poll() is None
        for sig in retire:
            server.signal(sig)
            load.wait_for_requests(30)
            kept.wait_for_requests(30)
        assert server.wait_exit() == 0
        load.wait_for_requests(30)
        kept.wait_for_requests(30)
    assert load.failed == [] and kept.failed == []
    assert pid_alive(new_master)
    assert get(server.port, "/hello/").status == 200
    os.kill(new_master, signal.SIGTERM)
    assert wait_until(lambda: not pid_alive(new_master), timeout=15)
    assert not pidpath.exists()


def test_winch_stops_the_workers_and_hup_brings_them_back(start_server):
    server = start_server("-w", "2")
    mark = server.mark()
    server.signal(signal.SIGWINCH)
    assert wait_until(lambda: server.worker_pids() == [])
    assert server.proc.poll() is None
    server.signal(signal.SIGHUP)
    server.wait_for(r"Ready: 2 worker", start=mark)
    assert get(server.port, "/hello/").status == 200


def test_health_path_is_answered_without_django_and_flips_to_503_on_graceful_stop(start_server):
    server = start_server("-w", "1", "--health-check-path", "/-/health")
    response = get(server.port, "/-/health")
    assert (response.status, response.body) == (200, b"ok\n")
    assert response.header("Cache-Control") == "no-store"
    with Connection(server.host, server.port) as busy:
        # The probe waits behind a slow request on the same connection, so it is read after the
        # worker got SIGTERM.
        busy.send(b"GET /slow/?s=1.5 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        busy.send(b"GET /-/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        (worker,) = server.worker_pids()
        wait_in_view(worker)
        server.signal(signal.SIGTERM)
        assert busy.read_response().status == 200
        response = busy.read_response()
        assert (response.status, response.body) == (503, b"stopping\n")
        assert response.header("Connection") == "close"
    assert server.wait_exit() == 0


def test_sigterm_serves_connections_already_waiting_in_the_backlog(start_server):
    """gunicorn#3397: clients queued in the listen backlog at SIGTERM must not be reset."""
    # Strictly inline (no spare thread takes the loop over): while the single worker is inside
    # the slow view, the others wait in the backlog.
    server = start_server("-w", "1", "--spare-threads", "0")
    slow = Connection(server.host, server.port)
    slow.send(b"GET /slow/?s=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    waiting = [Connection(server.host, server.port) for _ in range(3)]
    for conn in waiting:
        conn.send(b"GET /hello/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
    server.signal(signal.SIGTERM)
    assert slow.read_response().status == 200
    for conn in waiting:
        response = conn.read_response()
        assert (response.status, response.body) == (200, b"Hello, world!")
        assert response.header("Connection") == "close"
        conn.close()
    slow.close()
    assert server.wait_exit() == 0


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (("--max-worker-memory", "1"), r"RSS \d+ MiB over max_worker_memory \(1 MiB\)"),
        (("--max-worker-lifetime", "1"), r"reached max_worker_lifetime \(1.0s\)"),
    ],
)
def test_memory_and_lifetime_limits_recycle_the_worker_gracefully(start_server, flags, reason):
    server = start_server("-w", "1", *flags)
    first = server.worker_pids()
    server.wait_for(reason + ": recycling")
    assert wait_until(lambda: server.worker_pids() and server.worker_pids() != first)
    assert get(server.port, "/hello/").status == 200


def test_workers_dying_before_boot_back_off_then_give_up(start_server):
    server = start_server("-w", "1", settings="testproject.settings_dies_at_boot", ready=False)
    assert server.wait_exit(timeout=30) == 1
    # Five attempts in all: four retries, each after a longer pause, then the master gives up.
    assert server.output.count("died before booting (exit status 7); retrying in") == 4
    assert "retrying in 0.2s" in server.output and "retrying in 1.6s" in server.output
    assert "workers in a row died before booting (last: exit status 7): giving up" in server.output


def test_pidfile_is_written_and_removed(start_server, tmp_path):
    pidfile = tmp_path / "app.pid"
    server = start_server("--pid", str(pidfile))
    assert int(pidfile.read_text()) == server.proc.pid
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert not pidfile.exists()


def test_server_hooks_run_in_the_right_processes(start_server, tmp_path):
    log = tmp_path / "hooks.log"
    server = start_server(
        "-w", "2", settings="testproject.settings_hooks", env={"HOOKS_LOG": str(log)}
    )
    [generation] = map(str, children_of(server.proc.pid))
    workers = set(server.worker_pids())
    os.kill(next(iter(workers)), signal.SIGKILL)
    assert wait_until(lambda: "worker_exit" in log.read_text())
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    entries = [line.split() for line in log.read_text().splitlines()]
    master = str(server.proc.pid)
    # The master the operator sees runs the start-and-stop hooks; the worker hooks run in the
    # master of the workers' generation.
    assert [pid for name, pid in entries if name == "on_starting"] == [master]
    assert [pid for name, pid in entries if name == "when_ready"] == [master]
    assert [pid for name, pid in entries if name == "on_exit"] == [master]
    assert {pid for name, pid in entries if name == "post_fork"} >= {str(p) for p in workers}
    assert {pid for name, pid in entries if name in ("pre_fork", "worker_exit")} == {generation}
    assert entries[-1][0] == "on_exit"


def test_sigterm_reaching_a_worker_before_its_handlers_stops_it_gracefully(start_server, tmp_path):
    """A worker signalled between its fork and its own handlers ran the master's no-op handler
    and lost the signal: told to stop while it booted (a replacement, just before a stop), it
    served on until graceful_timeout killed it. The signals now wait until its handlers are in."""
    log = tmp_path / "hooks.log"
    env = {"HOOKS_LOG": str(log), "HOOKS_POST_FORK_SLEEP": "1"}
    server = start_server(
        "-w",
        "1",
        "--graceful-timeout",
        "20",
        settings="testproject.settings_hooks",
        env=env,
        ready=False,
    )
    assert wait_until(lambda: log.exists() and "post_fork" in log.read_text())
    server.signal(signal.SIGTERM)  # the worker is still in post_fork, before its handlers
    assert server.wait_exit(timeout=10) == 0
    assert "worker_exit" in log.read_text()


def test_unix_socket_honours_umask(start_server, tmp_path):
    path = tmp_path / "app.sock"
    server = start_server("-b", f"unix:{path}", "-m", "077", ready=False)
    server.wait_for(r"Ready: 2 worker")
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    data = unix_request(
        path, b"GET /hello/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"Hello, world!")
    assert server.proc.poll() is None


def test_systemd_socket_activation_serves_on_the_inherited_socket(project_db, tmp_path):
    """LISTEN_FDS/LISTEN_PID as systemd sets them: fd 3 is the listening socket, already bound."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    launcher = (
        "import os, sys\n"
        "os.dup2(int(sys.argv[1]), 3)\n"
        "os.environ['LISTEN_FDS'] = '1'\n"
        "os.environ['LISTEN_PID'] = str(os.getpid())\n"
        "os.execv(sys.executable, [sys.executable, sys.argv[2], 'prodserve', '--skip-checks'])\n"
    )
    env = {**os.environ, "TESTPROJECT_DB": str(project_db)}
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher, str(listener.fileno()), str(MANAGE)],
        pass_fds=[listener.fileno()],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    listener.close()
    try:
        response = get(port, "/hello/")
        assert response.body == b"Hello, world!"
        assert children_of(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert f"Listening at http://127.0.0.1:{port}/" in output


@pytest.mark.parametrize("flag", ["--reuse-port"])
def test_reuse_port_lets_two_servers_share_a_port(start_server, flag):
    first = start_server("-w", "1", flag)
    second = start_server(f"127.0.0.1:{first.port}", "-w", "1", flag)
    assert second.port == first.port
    first.signal(signal.SIGTERM)
    assert first.wait_exit() == 0
    assert get(second.port, "/hello/").status == 200


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(") ", 1)[1][0]


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) for a PID namespace",
)
def test_as_pid_1_the_master_reaps_orphans_and_keeps_serving(start_server):
    """In a container the master is PID 1: orphans of the app become its children to reap."""
    server = start_server("-w", "1", launcher=("unshare", "--pid", "--fork", "--mount-proc"))
    [master] = children_of(server.proc.pid)  # unshare's child: PID 1 inside the namespace
    [worker] = children_of(master)
    assert get(server.port, "/orphan/").body == b"orphaned"
    # The grandchild lives 0.2 s as the master's child, then exits: it must not stay a zombie,
    # and the master must not mistake it for a worker.
    assert wait_until(lambda: children_of(master) == [worker], timeout=5), [
        (pid, process_state(pid)) for pid in children_of(master)
    ]
    assert get(server.port, "/hello/").status == 200
    assert "Worker" not in server.output.split("Ready")[-1]


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_workers_drop_to_the_configured_user_after_the_master_binds(start_server):
    # --preload: the app is imported as root before the drop (this Python lives under /root,
    # which nobody may not read); the worker then serves as nobody.
    server = start_server("-w", "1", "--user", "nobody", "--group", "nogroup", "--preload")
    [worker] = server.worker_pids()
    with open(f"/proc/{worker}/status") as f:
        ids = {line.split(":")[0]: line.split()[1:] for line in f if line[:4] in ("Uid:", "Gid:")}
    assert ids["Uid"][0] == str(pwd.getpwnam("nobody").pw_uid)
    assert ids["Gid"][0] == str(grp.getgrnam("nogroup").gr_gid)
    with open(f"/proc/{server.proc.pid}/status") as f:
        assert next(line for line in f if line.startswith("Uid:")).split()[1] == "0"
    assert get(server.port, "/hello/").status == 200
