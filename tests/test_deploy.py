"""Deploy-time tools: `prodserve --check` and `--print-config`, and running under systemd."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.test import override_settings

from django_prodserve.conf import SETTINGS
from tests.client import get, unix_request
from tests.conftest import MANAGE, require_tool, server_environ

needs_db = pytest.mark.django_db  # --check runs the migrations check, as a start does


def print_config(*args: str) -> dict[str, tuple[str, str]]:
    """Run --print-config in-process; {setting: (value as written, source)}."""
    out = StringIO()
    call_command("prodserve", "--print-config", *args, stdout=out)
    lines = out.getvalue().splitlines()
    parsed = {}
    for line in lines:
        name, _, rest = line.partition(" = ")
        value, _, source = rest.rpartition("  # ")
        parsed[name] = (value, source)
    return parsed


@override_settings(PRODSERVE={"workers": 3, "timeout": 10})
def test_print_config_shows_every_setting_and_where_its_value_came_from(monkeypatch):
    monkeypatch.setenv("PRODSERVE_THREADS", "2")
    monkeypatch.setenv("PRODSERVE_TIMEOUT", "20")
    config = print_config("9001", "--keep-alive", "7", "-m", "007")
    assert list(config) == [setting.name for setting in SETTINGS]
    assert config["backlog"] == ("2048", "default")
    assert config["workers"] == ("3", "settings.PRODSERVE")
    assert config["threads"] == ("2", "environment (PRODSERVE_THREADS)")
    assert config["timeout"] == ("20.0", "environment (PRODSERVE_TIMEOUT)")
    assert config["keepalive"] == ("7.0", "command line")
    assert config["bind"] == ("['127.0.0.1:9001']", "command line")
    assert config["umask"] == ("0o007", "command line")


def test_print_config_marks_an_invalid_value_then_fails_with_the_problem(monkeypatch):
    monkeypatch.setenv("PRODSERVE_WORKERS", "many")
    out = StringIO()
    with pytest.raises(CommandError, match="PRODSERVE_WORKERS must be an integer >= 1"):
        call_command("prodserve", "--print-config", stdout=out)
    assert (
        "workers = 2  # settings.PRODSERVE; the invalid value from environment is ignored"
        in out.getvalue()
    )


@needs_db
def test_check_reports_configuration_ok_and_binds_nothing():
    with socket.socket() as taken:  # a start would fail here: "That port is already in use."
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        out = StringIO()
        call_command("prodserve", "--check", f"127.0.0.1:{taken.getsockname()[1]}", stdout=out)
    assert "System check identified no issues" in out.getvalue()
    assert out.getvalue().rstrip().endswith("configuration OK")


@needs_db
@override_settings(PRODSERVE={"wrokers": 2})
def test_check_fails_on_a_settings_error_even_with_skip_checks():
    with pytest.raises(SystemCheckError, match=r"(?s)prodserve.E002.*Did you mean 'workers'"):
        call_command("prodserve", "--check", "--skip-checks", stdout=StringIO())


@needs_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers must be an integer >= 1"),
        (["--on-starting", "nowhere.hook"], "A server hook could not be imported"),
    ],
)
def test_check_fails_on_a_bad_command_line_value_or_hook(args, message):
    out = StringIO()
    with pytest.raises(CommandError, match=message):
        call_command("prodserve", "--check", *args, stdout=out)
    assert "configuration OK" not in out.getvalue()


@needs_db
@override_settings(WSGI_APPLICATION="testproject.wsgi_broken.application")
def test_check_imports_the_app_and_fails_when_it_cannot():
    with pytest.raises(RuntimeError, match="the WSGI module failed at import"):
        call_command("prodserve", "--check", stdout=StringIO())


def test_check_exit_status_is_zero_when_valid_and_non_zero_when_not(project_db):
    env = server_environ()
    env["TESTPROJECT_DB"] = str(project_db)
    command = [sys.executable, str(MANAGE), "prodserve", "--check"]
    ok = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert (ok.returncode, ok.stdout.splitlines()[-1]) == (0, "configuration OK"), ok.stderr
    typo = {**env, "DJANGO_SETTINGS_MODULE": "testproject.settings_typo"}
    bad = subprocess.run(command, env=typo, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "prodserve.E002" in bad.stderr and "configuration OK" not in bad.stdout


def test_master_tells_systemd_ready_once_its_workers_serve(start_server, tmp_path):
    """Type=notify: READY=1 arrives on $NOTIFY_SOCKET when every worker is up, not before."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(tmp_path / "notify"))
        notify.settimeout(20)
        server = start_server(
            "-w", "2", env={"NOTIFY_SOCKET": str(tmp_path / "notify")}, ready=False
        )
        assert notify.recv(4096) == b"READY=1"
        server.wait_ready()
        assert get(server.port, "/hello/").status == 200
        server.signal(signal.SIGTERM)
        assert server.wait_exit() == 0


def test_systemd_socket_activate_starts_prodserve_on_the_socket_it_hands_over(project_db, tmp_path):
    """`systemd-socket-activate` binds the socket and execs prodserve on the first connection,
    exactly as a systemd .socket unit does (LISTEN_FDS=1, LISTEN_PID = prodserve's pid)."""
    activate = require_tool("systemd-socket-activate", "systemd")
    path = tmp_path / "app.sock"
    env = server_environ()
    env.update(TESTPROJECT_DB=str(project_db), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [activate, "-l", str(path), sys.executable, str(MANAGE), "prodserve", "--skip-checks"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert select.select([proc.stdout], [], [], 20)[0], "systemd-socket-activate said nothing"
        assert proc.stdout.readline().startswith(f"Listening on {path} as 3.")
        # Nothing runs prodserve yet: this connection starts it, and waits in the backlog.
        data = unix_request(
            path, b"GET /hello/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"Hello, world!")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, output
    assert f"master pid {proc.pid}," in output  # exec'd in place: LISTEN_PID matched
    assert f"Listening at unix:{path}" in output
