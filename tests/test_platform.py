"""Platforms beyond Linux (issue 19): the settings that choose, the checks that refuse, and the
fallbacks macOS and Windows take, run here on Linux with the calls they lack removed (tests/nofork)."""

from __future__ import annotations

import subprocess
import sys

from django_prodserve.conf import resolve
from django_prodserve.server import portable
from tests.conftest import MANAGE, nofork_environ, server_environ


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
