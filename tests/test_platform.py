"""Platforms beyond Linux (issue 19): the settings that choose, the checks that refuse, and the
fallbacks macOS and Windows take, run here on Linux with the calls they lack removed (tests/nofork)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from django_prodserve import checks
from django_prodserve.conf import resolve
from django_prodserve.server import portable
from tests.client import get
from tests.conftest import MANAGE, nofork_environ, pid_alive, server_environ, wait_until


def run_command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(MANAGE), "prodserve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_event_loop_is_a_setting_with_environment_and_flag():
    config, sources, problems = resolve({}, {"PRODSERVE_EVENT_LOOP": "Selectors"}, {})
    assert (config.event_loop, sources["event_loop"], problems) == ("selectors", "environment", [])
    config, _, problems = resolve({"event_loop": "kqueue"}, {}, {})
    assert config.event_loop == "auto"
    assert "must be one of auto, epoll, selectors, not 'kqueue'" in problems[0].message


def test_auto_is_epoll_where_the_kernel_has_it_and_selectors_elsewhere():
    assert portable.event_loop("auto") == ("epoll" if portable.HAS_EPOLL else "selectors")
    assert portable.event_loop("selectors") == "selectors"
    code = "from django_prodserve.server import portable; print(portable.event_loop('auto'))"
    without_epoll = subprocess.run(
        [sys.executable, "-c", code], env=nofork_environ(server_environ()), capture_output=True
    )
    assert without_epoll.stdout == b"selectors\n", without_epoll.stderr


def test_print_config_shows_the_event_loop_flag():
    shown = run_command("--print-config", "--event-loop", "selectors", env=server_environ())
    assert "event_loop = 'selectors'  # command line" in shown.stdout.splitlines()


def test_epoll_where_there_is_none_is_a_check_error_naming_the_setting_and_the_fix():
    env = nofork_environ(server_environ())
    refused = run_command("--check", "--event-loop", "epoll", env=env)
    assert refused.returncode == 1
    assert "prodserve.E040" in refused.stderr
    assert "event_loop is 'epoll', which this platform (linux) does not have" in refused.stderr
    assert "Set event_loop to 'auto' (the default) or 'selectors'" in refused.stderr
    assert run_command("--check", "--event-loop", "epoll", env=server_environ()).returncode == 0
    assert run_command("--check", env=env).returncode == 0


def test_the_wake_pipe_without_pipe2_is_non_blocking_and_not_inherited():
    code = (
        "import os; from django_prodserve.server.portable import wake_pipe\n"
        "assert not hasattr(os, 'pipe2')\n"
        "for fd in wake_pipe(): print(os.get_blocking(fd), os.get_inheritable(fd))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=nofork_environ(server_environ()), capture_output=True
    )
    assert result.stdout == b"False False\nFalse False\n", result.stderr


def test_without_proc_max_worker_memory_reads_the_peak_which_is_never_below_the_current():
    ballast = bytearray(64 * 1024 * 1024)  # the peak and the current RSS both include it
    ballast[::4096] = b"x" * len(ballast[::4096])
    current, peak = portable.resident_memory(), portable.peak_memory()
    assert current > 64 * 1024 * 1024
    assert peak >= current * 0.98


def test_a_server_whose_parent_dies_is_stopped_without_prctl(tmp_path):
    """What macOS gets in place of PR_SET_PDEATHSIG: the watch thread, on its own."""
    pid_file = tmp_path / "grandchild"
    grandchild = (
        "import os, time; from django_prodserve.server.portable import watch_parent\n"
        f"watch_parent(os.getppid(), interval=0.05); open({str(pid_file)!r}, 'w').write("
        "str(os.getpid())); time.sleep(30)"
    )
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys, time; subprocess.Popen([sys.executable, "
            f"'-c', {grandchild!r}]); time.sleep(30)",
        ],
        env=server_environ(),
    )
    try:
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text(), 10)
        pid = int(pid_file.read_text())
        parent.kill()
        parent.wait(5)
        assert wait_until(lambda: not pid_alive(pid), 5)
    finally:
        parent.kill()
        parent.wait(5)


@pytest.mark.parametrize(
    ("has_option", "balances", "expected"),
    [(True, True, []), (True, False, ["prodserve.W040"]), (False, False, ["prodserve.E041"])],
)
def test_reuse_port_where_it_does_not_balance_or_does_not_exist_is_said(
    monkeypatch, has_option, balances, expected
):
    """Linux balances; macOS and most BSDs give one socket every connection; Windows has none."""
    monkeypatch.setattr(portable, "HAS_REUSE_PORT", has_option)
    monkeypatch.setattr(portable, "REUSE_PORT_BALANCES", balances)
    config, _, _ = resolve({"reuse_port": True}, {}, {})
    assert [message.id for message in checks.check_platform(config)] == expected
    assert checks.check_platform(resolve({}, {}, {})[0]) == []


#: /proc/self/mountinfo as WSL 2 and a Docker Desktop for Mac container show it (trimmed).
MOUNTINFO = """\
22 1 8:32 / / rw,relatime - ext4 /dev/sdc rw,discard,errors=remount-ro
58 22 0:52 / /mnt/c rw,noatime - 9p C:\\134 rw,dirsync,aname=drvfs;path=C:\\
61 22 0:55 / /app rw,relatime - fakeowner /run/host_mark/Users rw
62 61 0:56 / /app/node\\040modules rw,relatime - ext4 /dev/vda1 rw
"""


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/home/me/site/views.py", "ext4"),
        ("/mnt/c/Users/me/site", "9p"),
        ("/app/demo/views.py", "fakeowner"),
        ("/app/node modules/x.js", "ext4"),
        ("/mnt/cd", "ext4"),
    ],
)
def test_the_filesystem_of_a_path_is_its_deepest_mount(path, kind):
    assert portable.filesystem_type(Path(path), MOUNTINFO) == kind


def test_reload_polling_modes_and_watchfiles_own_switch(monkeypatch, tmp_path):
    monkeypatch.delenv("WATCHFILES_FORCE_POLLING", raising=False)
    assert portable.polling_for("on")(tmp_path) and not portable.polling_for("off")(tmp_path)
    assert not portable.polling_for("auto")(tmp_path)  # a local filesystem: its events are seen
    monkeypatch.setenv("WATCHFILES_FORCE_POLLING", "1")
    assert portable.polling_for("auto")(tmp_path) and not portable.polling_for("off")(tmp_path)
    monkeypatch.setenv("WATCHFILES_FORCE_POLLING", "disabled")
    assert not portable.polling_for("auto")(tmp_path)


def test_a_polled_reload_serves_the_edited_view(start_copy, project_copy):
    server = start_copy("--reload", "--reload-polling", "on")
    server.wait_for(r"Polling for changes in .*/demo.* \(reload_polling=on\)")
    assert get(server.port, "/hello/").body == b"Hello, world!"
    views = project_copy / "demo" / "views.py"
    views.write_text(views.read_text().replace("Hello, world!", "Hello, polled!"))
    assert wait_until(lambda: get(server.port, "/hello/").body == b"Hello, polled!", 10)
