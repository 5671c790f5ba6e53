"""The settings registry: one declaration per setting drives settings, environment, CLI, checks."""

import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.test import override_settings

from django_prodserve.conf import BY_NAME, SECTIONS, SETTINGS, resolve
from django_prodserve.management.commands.prodserve import Command
from django_prodserve.server.sockets import Address, parse_bind
from tests.conftest import MANAGE


def test_defaults_apply_when_nothing_is_set():
    config, sources, problems = resolve({}, {}, {})
    assert problems == []
    assert config.workers == 1 and config.bind == ("127.0.0.1:8000",)
    assert set(sources.values()) == {"default"}


def test_precedence_is_defaults_then_settings_then_environment_then_cli():
    settings = {"workers": 2, "threads": 3, "timeout": 10}
    environ = {"PRODSERVE_THREADS": "4", "PRODSERVE_TIMEOUT": "20"}
    cli = {"timeout": "30"}
    config, sources, problems = resolve(settings, environ, cli)
    assert problems == []
    assert (config.workers, config.threads, config.timeout) == (2, 4, 30.0)
    assert sources["workers"] == "settings.PRODSERVE"
    assert sources["threads"] == "environment"
    assert sources["timeout"] == "command line"
    assert sources["keepalive"] == "default"


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("workers", 0, "must be an integer >= 1"),
        ("workers", "many", "must be an integer >= 1"),
        ("workers", True, "must be an integer"),
        ("timeout", -1, "must be a number >= 0"),
        ("preload_app", "maybe", "must be True or False"),
        ("loglevel", "loud", "must be one of debug"),
        ("bind", "127.0.0.1:http", "not a valid port number"),
        ("bind", ["::1:8000"], "IPv6 addresses in brackets"),
        ("bind", [], "at least one address"),
    ],
)
def test_invalid_setting_values_are_reported_with_the_setting_and_a_fix(key, value, fragment):
    config, _, problems = resolve({key: value}, {}, {})
    assert [p.id for p in problems] == ["prodserve.E003"]
    assert f"settings.PRODSERVE[{key!r}]" in problems[0].message
    assert fragment in problems[0].message
    assert problems[0].hint.startswith(f"Fix settings.PRODSERVE[{key!r}]")
    assert getattr(config, key) == BY_NAME[key].default


def test_environment_values_are_parsed_and_named_in_errors():
    config, _, problems = resolve(
        {}, {"PRODSERVE_PRELOAD_APP": "yes", "PRODSERVE_BIND": "127.0.0.1:1, unix:/tmp/s"}, {}
    )
    assert problems == []
    assert config.preload_app is True
    assert config.bind == ("127.0.0.1:1", "unix:/tmp/s")
    _, _, problems = resolve({}, {"PRODSERVE_WORKERS": "0"}, {})
    assert [p.id for p in problems] == ["prodserve.E004"]
    assert "PRODSERVE_WORKERS" in problems[0].message


def test_unknown_keys_and_non_dicts_are_errors_with_a_suggestion():
    _, _, problems = resolve({"wrokers": 2}, {}, {})
    assert [p.id for p in problems] == ["prodserve.E002"]
    assert "'workers'" in problems[0].hint
    _, _, problems = resolve(["workers"], {}, {})
    assert [p.id for p in problems] == ["prodserve.E001"]


def test_every_setting_has_help_flags_and_a_valid_default():
    for setting in SETTINGS:
        assert setting.help and setting.flags, setting.name
        assert setting.convert(setting.default) == setting.default, setting.name


@override_settings(PRODSERVE={"workers": 0, "bogus": 1})
def test_system_check_reports_invalid_settings():
    with pytest.raises(SystemCheckError) as info:
        call_command("check")
    text = str(info.value)
    assert "prodserve.E002" in text and "prodserve.E003" in text
    assert "settings.PRODSERVE['workers'] must be an integer >= 1" in text


@pytest.mark.parametrize(
    ("addrport", "ipv6", "bind"),
    [
        (None, False, "127.0.0.1:8000"),
        (None, True, "[::1]:8000"),
        ("8001", False, "127.0.0.1:8001"),
        ("8001", True, "[::1]:8001"),
        ("0:8001", False, "0.0.0.0:8001"),
        ("0.0.0.0:8001", False, "0.0.0.0:8001"),
        ("[::1]:8001", False, "[::1]:8001"),
        ("localhost:8001", False, "localhost:8001"),
    ],
)
def test_addrport_follows_runserver_grammar(addrport, ipv6, bind):
    assert Command.addrport_to_bind(addrport, ipv6) == bind


@pytest.mark.parametrize("addrport", ["abc:", "1.2.3.4:", ":8000", "[::1", "8000x"])
def test_bad_addrport_is_a_command_error_with_runserver_message(addrport):
    with pytest.raises(CommandError, match="is not a valid port number or address:port pair"):
        Command.addrport_to_bind(addrport, False)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:80", Address("tcp", host="127.0.0.1", port=80)),
        ("localhost", Address("tcp", host="localhost", port=8000)),
        ("[::1]:9", Address("tcp", host="::1", port=9)),
        ("0:9", Address("tcp", host="0.0.0.0", port=9)),
        ("unix:/run/app.sock", Address("unix", path="/run/app.sock")),
        ("unix:///run/app.sock", Address("unix", path="/run/app.sock")),
        ("fd://3", Address("fd", fd=3)),
    ],
)
def test_bind_forms(text, address):
    assert parse_bind(text) == address


@pytest.mark.parametrize("text", ["unix:", "fd://x", "[zz]:1", "host:99999", ":80", "a:b:c"])
def test_bad_bind_forms_raise_value_error(text):
    with pytest.raises(ValueError):
        parse_bind(text)


def test_invalid_cli_value_refuses_to_start_with_the_flag_named():
    result = subprocess.run(
        [sys.executable, str(MANAGE), "prodserve", "--workers", "none", "--skip-checks"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--workers must be an integer >= 1" in result.stderr


def test_help_groups_the_options_by_section_and_shows_each_default():
    text = Command().create_parser("manage.py", "prodserve").format_help()
    assert text.startswith("usage: manage.py prodserve [addrport] [options]\n")
    starts = [text.index(f"\n{title}:\n") for title in SECTIONS.values()]
    assert starts == sorted(starts)
    ends = [*starts[1:], len(text)]
    sections = {name: text[starts[i] : ends[i]] for i, name in enumerate(SECTIONS)}
    assert "--noreload" in sections["development"]
    assert "Default: 'auto'" in sections["development"]  # reload
    assert "--certfile" in sections["TLS and proxies"]
    assert "--access-logfile" in sections["logging"]
    assert "--post-fork" in sections["hooks"]
    assert "-w N, --workers N" in sections["production"]
    for setting in SETTINGS:
        assert setting.flags[-1] in sections[setting.section], setting.name


def test_a_url_for_bind_gets_the_address_to_write_instead():
    with pytest.raises(
        ValueError, match=r"is a URL; bind takes an address: write '127.0.0.1:8000'"
    ):
        parse_bind("http://127.0.0.1:8000")


def test_check_refuses_a_bind_host_that_does_not_resolve(monkeypatch):
    monkeypatch.setenv("PRODSERVE_BIND", "nonsense")
    with pytest.raises(SystemCheckError, match=r"prodserve\.E006.*'nonsense'"):
        call_command("prodserve", "--check", stdout=StringIO(), stderr=StringIO())


def test_a_misspelt_environment_variable_is_warned_about_with_the_name_it_meant(monkeypatch):
    monkeypatch.setenv("PRODSERVE_WOKERS", "2")
    out, err = StringIO(), StringIO()
    call_command("check", stdout=out, stderr=err)
    output = out.getvalue() + err.getvalue()
    assert "prodserve.W004" in output and "PRODSERVE_WOKERS" in output
    assert "Did you mean PRODSERVE_WORKERS?" in output
