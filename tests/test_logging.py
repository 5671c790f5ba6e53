"""Logging: our loggers under a project's LOGGING, access lines no client can forge, USR1 reopening
the files, request ids.

The behaviour tests run the real `manage.py prodserve` and read its output or its log files; the
format tables call the compiled formats directly, with values the wire itself would refuse.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from django_prodserve import logs
from tests.client import get, request
from tests.conftest import LISTENING, MANAGE, wait_until

LOOPBACK = "127.0.0.1:0"
#: Everything a client can put on the wire that a careless log line would print raw: a quote and a
#: backslash in a header, a tab and a non-ASCII byte in another; CR LF and a quote percent-encoded
#: in the path (the app and %(U)s see them decoded). Raw CR, LF or NUL in a header never get in:
#: the parser answers 400.
HOSTILE = (
    b"GET /hello%0d%0aforged%22x?q=%0a%22y HTTP/1.1\r\nHost: localhost\r\n"
    b'User-Agent: a"b\tc\xffd\\e\r\nX-Note: \x80"\r\n\r\n'
)
HEX_ID = re.compile(r"[0-9a-f]{32}")


def read_lines(path: Path, count: int) -> list[str]:
    """The lines of a log file once it has at least `count` of them."""
    wait_until(lambda: path.exists() and len(path.read_text().splitlines()) >= count, timeout=5)
    return path.read_text().splitlines()


def fake_exchange(code: int = 200, sent: int = 13, headers=()) -> SimpleNamespace:
    """What the atoms read of wsgi.Exchange."""
    return SimpleNamespace(code=code, sent=sent, headers=list(headers))


def fake_environ(**extra: str) -> dict:
    return {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/p?x=1",
        "PATH_INFO": "/p",
        "QUERY_STRING": "x=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.1",
        "wsgi.url_scheme": "https",
        **extra,
    }


# LOGGING


@pytest.mark.parametrize("preload", [False, True], ids=["app-imported-in-worker", "preloaded"])
def test_our_loggers_keep_working_when_logging_disables_existing_loggers(start_server, preload):
    # The app's import runs django.setup() and so LOGGING again: in each worker, or in the master
    # with --preload. wait_ready() itself needs the master's "Ready" line from the error log.
    args = [LOOPBACK, "--access-logfile", "-", "--access-logformat", "access %(r)s %(s)s"]
    server = start_server(
        *args, *(["--preload"] if preload else []), settings="testproject.settings_logging"
    )
    start = server.mark()
    assert get(server.port, "/hello/").status == 200
    server.wait_for(r"^access GET /hello/ HTTP/1\.1 200$", start=start)
    assert request(server.port, b"NOT HTTP\r\n\r\n").status == 400
    server.wait_for(r"\[INFO\] Bad request from 127\.0\.0\.1", start=start)  # a worker's error log


def test_a_logger_that_logging_names_gets_the_projects_handler_and_not_ours(start_server):
    server = start_server(
        LOOPBACK,
        "-w",
        "1",  # one worker logs in order: the /json/ line comes after every /hello/ line
        "--access-logformat",
        "%(U)s %(s)s",
        settings="testproject.settings_logging_owned",
    )
    start = server.mark()
    # No --access-logfile: LOGGING configuring the access logger is what turns it on.
    assert get(server.port, "/hello/").status == 200
    assert get(server.port, "/json/").status == 200
    server.wait_for(r"^\[project\] /json/ 200$", start=start)
    lines = [line for line in server.lines[start:] if "/hello/" in line]
    assert lines == ["[project] /hello/ 200"]  # once, through the project's handler alone
    # The error logger, which LOGGING doesn't name, is still ours, in our format.
    assert re.search(r"^\[[^]]+\] \[\d+\] \[INFO\] Ready: ", server.output, re.M)


@pytest.mark.parametrize(
    ("logging_config", "projects"),
    [
        ({"loggers": {"django_prodserve.access": {}}}, {"django_prodserve.access"}),
        (
            {"loggers": {"django_prodserve": {}}},
            {"django_prodserve.access", "django_prodserve.error"},
        ),
        ({"loggers": {"django": {}}, "root": {"level": "INFO"}}, set()),
    ],
    ids=["by-name", "through-the-parent", "not-named"],
)
def test_loggers_named_in_logging_itself_or_through_the_parent_are_the_projects(
    logging_config, projects
):
    with override_settings(LOGGING={"version": 1, **logging_config}):
        assert logs.configured_by_logging() == projects


def test_logging_is_ignored_when_logging_config_is_off():
    with override_settings(LOGGING_CONFIG=None, LOGGING={"loggers": {"django_prodserve": {}}}):
        assert logs.configured_by_logging() == set()


def test_check_warns_that_accesslog_is_unused_when_logging_configures_the_access_logger():
    with override_settings(
        LOGGING={"version": 1, "loggers": {"django_prodserve.access": {}}},
        PRODSERVE={"accesslog": "/var/log/access.log"},
    ):
        warnings = [m for m in run_checks(tags=["prodserve"]) if m.id == "prodserve.W031"]
    assert len(warnings) == 1
    assert "'django_prodserve.access'" in warnings[0].msg and "accesslog" in warnings[0].msg


# access lines that can't be forged


def test_text_access_line_escapes_what_a_client_sends(start_server, tmp_path):
    log = tmp_path / "access.log"
    fmt = "%(r)s|%(U)s|%(q)s|%(a)s|%({x-note}i)s"
    server = start_server(LOOPBACK, "--access-logfile", str(log), "--access-logformat", fmt)
    assert request(server.port, HOSTILE).status == 404
    raw_lf = b"GET /hello/ HTTP/1.1\r\nHost: localhost\r\nUser-Agent: a\rb\r\n\r\n"
    assert request(server.port, raw_lf).status == 400
    assert get(server.port, "/hello/").status == 200
    lines = read_lines(log, 2)  # in either order: two workers
    assert sorted(lines) == [
        r"GET /hello%0d%0aforged%22x?q=%0a%22y HTTP/1.1|/hello\x0d\x0aforged\"x|q=%0a%22y|"
        r"a\"b\x09c\xffd\\e|\x80\"",
        "GET /hello/ HTTP/1.1|/hello/||-|-",
    ]


def test_json_access_line_escapes_every_value_and_keeps_numbers_typed(start_server, tmp_path):
    log = tmp_path / "access.json"
    server = start_server(LOOPBACK, "--access-logfile", str(log), "--access-logformat", "json")
    assert request(server.port, HOSTILE).status == 404
    assert get(server.port, "/hello/", headers="Referer: http://x/\r\n").status == 200
    lines = read_lines(log, 2)
    assert len(lines) == 2 and all(line.isascii() for line in lines)
    hello, hostile = sorted(map(json.loads, lines), key=lambda line: line["status"])
    assert hostile["path"] == '/hello\r\nforged"x'
    assert hostile["query"] == "q=%0a%22y"
    assert hostile["user_agent"] == 'a"b\tc\xffd\\e'
    assert hostile["status"] == 404
    assert set(hello) == set(logs.JSON_FIELDS)  # no request_id: request_id_header is off
    assert hello["method"] == "GET" and hello["path"] == "/hello/" and hello["query"] == ""
    assert (hello["status"], hello["bytes"], hello["protocol"]) == (200, 13, "HTTP/1.1")
    assert hello["referer"] == "http://x/" and hello["user_agent"] is None
    assert hello["remote_addr"] == "127.0.0.1"
    assert isinstance(hello["duration"], float) and 0 < hello["duration"] < 5
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", hello["time"])


#: A User-Agent that would forge a whole combined-format line if printed raw.
FORGED_UA = (
    'Mozilla "x"\r\n6.6.6.6 - - [01/Jan/2026:00:00:00 +0000] "GET /admin HTTP/1.1" 200 5\x00\x1b'
)


def test_text_format_escapes_control_characters_quotes_and_backslashes():
    line = logs.compile_format('"%(a)s" %({x}e)s')(
        fake_environ(HTTP_USER_AGENT=FORGED_UA, x="tab\there\\ \u2028"), fake_exchange(), 0.0
    )
    assert line == (
        r'"Mozilla \"x\"\x0d\x0a6.6.6.6 - - [01/Jan/2026:00:00:00 +0000] \"GET /admin HTTP/1.1\" '
        r'200 5\x00\x1b" tab\x09here\\ \u2028'
    )


def test_json_format_escapes_control_characters_and_round_trips():
    environ = fake_environ(HTTP_USER_AGENT=FORGED_UA)
    line = logs.compile_format('{"ua": "%(a)s", "said": "ua=%(a)s"}')(environ, fake_exchange(), 0)
    assert "\n" not in line and "\r" not in line and line.isascii()
    assert json.loads(line) == {"ua": FORGED_UA, "said": "ua=" + FORGED_UA}


@pytest.mark.parametrize(
    ("atom", "expected"),
    [
        ("h", "10.0.0.1"),
        ("l", "-"),
        ("u", "alice"),
        ("r", "GET /p?x=1 HTTP/1.1"),
        ("m", "GET"),
        ("U", "/p"),
        ("q", "x=1"),
        ("H", "HTTP/1.1"),
        ("s", "404"),
        ("B", "0"),
        ("b", "-"),
        ("f", "-"),
        ("a", "curl"),
        ("T", "1"),
        ("M", "1500"),
        ("D", "1500000"),
        ("L", "1.500000"),
        ("p", f"<{os.getpid()}>"),
        ("{x-forwarded-for}i", "1.2.3.4"),
        ("{content-type}i", "text/plain"),
        ("{CONTENT-TYPE}o", "text/html, text/x"),
        ("{location}o", "-"),
        ("{wsgi.url_scheme}e", "https"),
        ("rid", "abc"),
    ],
)
def test_each_gunicorn_atom(atom, expected):
    environ = fake_environ(
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"alice:secret").decode(),
        HTTP_USER_AGENT="curl",
        HTTP_X_FORWARDED_FOR="1.2.3.4",
        CONTENT_TYPE="text/plain",
        HTTP_X_REQUEST_ID="abc",
    )
    exchange = fake_exchange(404, 0, [("Content-Type", "text/html"), ("content-type", "text/x")])
    line = logs.compile_format(f"%({atom})s", "HTTP_X_REQUEST_ID")
    assert line(environ, exchange, 1.5) == expected


@pytest.mark.parametrize(
    ("fmt", "fragment"),
    [
        ("%(h)s %(nope)s", "has an unknown atom %(nope)s"),
        ("%(h)s %d", "has a % that starts no atom"),
        ('{"status": "%(s)s"', "is not valid JSON"),
    ],
)
def test_a_format_that_does_not_parse_refuses_to_start_and_says_why(project_db, fmt, fragment):
    result = subprocess.run(
        [sys.executable, str(MANAGE), "prodserve", "--check", "--access-logformat", fmt],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TESTPROJECT_DB": str(project_db)},
    )
    assert result.returncode != 0
    assert f"--access-logformat {fragment}" in result.stderr


def test_check_warns_when_the_format_logs_a_request_id_that_is_never_set():
    with override_settings(PRODSERVE={"access_log_format": "%(h)s %(rid)s"}):
        ids = [m.id for m in run_checks(tags=["prodserve"])]
    assert "prodserve.W030" in ids
    with override_settings(
        PRODSERVE={"access_log_format": "%(h)s %(rid)s", "request_id_header": "X-Request-ID"}
    ):
        assert "prodserve.W030" not in [m.id for m in run_checks(tags=["prodserve"])]


# USR1


def test_usr1_reopens_the_access_and_error_log_files_at_their_paths(start_server, tmp_path):
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    server = start_server(
        LOOPBACK,
        "--access-logfile",
        str(access),
        "--access-logformat",
        "%(U)s",
        "--error-logfile",
        str(errors),
        ready=False,
    )
    port = int(server.wait_for(LISTENING.pattern).group(3))
    assert wait_until(lambda: errors.exists() and "Ready:" in errors.read_text(), timeout=20)
    assert get(port, "/before").status == 404
    assert read_lines(access, 1) == ["/before"]
    access.rename(tmp_path / "access.log.1")
    errors.rename(tmp_path / "error.log.1")  # as logrotate does, then it signals the master

    server.signal(signal.SIGUSR1)
    assert wait_until(errors.exists)  # the master reopened its files
    server.signal(signal.SIGTTIN)
    assert wait_until(lambda: "SIGTTIN: 3 workers" in errors.read_text())  # settings: 2

    def served_into_new_file() -> bool:  # the workers reopen on the USR1 the master relays
        assert get(port, "/after").status == 404
        return access.exists() and "/after" in access.read_text().splitlines()

    assert wait_until(served_into_new_file, timeout=10, interval=0.1)
    assert "/before" not in access.read_text()
    assert "SIGTTIN" not in (tmp_path / "error.log.1").read_text()


# request ids


def test_request_id_is_kept_or_made_then_given_to_the_app_echoed_and_logged(start_server):
    fmt = "rid %(U)s %(rid)s %({x-request-id}o)s"
    server = start_server(
        LOOPBACK,
        "--request-id-header",
        "X-Request-ID",
        "--access-logfile",
        "-",
        "--access-logformat",
        fmt,
    )
    cases = [("abc-123", "abc-123"), (None, None), ("two words", None), ("x" * 201, None)]
    for sent, kept in cases:
        start = server.mark()
        headers = f"X-Request-ID: {sent}\r\n" if sent is not None else ""
        response = get(server.port, "/environ/", headers=headers)
        rid = response.header("X-Request-ID")
        if kept is not None:
            assert rid == kept
        else:
            assert HEX_ID.fullmatch(rid), (sent, rid)
        assert json.loads(response.body)["HTTP_X_REQUEST_ID"] == rid
        server.wait_for(rf"^rid /environ/ {re.escape(rid)} {re.escape(rid)}$", start=start)


def test_no_request_id_header_unless_it_is_configured(start_module_server):
    server = start_module_server()
    response = get(server.port, "/environ/", headers="X-Request-ID: abc\r\n")
    assert response.header("X-Request-ID") is None
    assert json.loads(response.body)["HTTP_X_REQUEST_ID"] == "abc"  # the header, as sent


def test_response_header_atoms_read_an_exchange_whose_app_failed_before_start_response():
    """The access line of a request whose app raised before start_response: a 500 with no headers."""
    from django_prodserve.server import http, wsgi

    parser = http.RequestParser(http.Limits())
    parser.feed(b"GET /p HTTP/1.1\r\nHost: a\r\n\r\n")
    req = parser.ready.popleft()

    class Conn:
        keep_alive = True

        def send(self, data: bytes) -> None:
            pass

    def app(environ, start_response):
        raise RuntimeError("before start_response")

    exchange = wsgi.handle(app, Conn(), req, fake_environ())
    line = logs.compile_format("%(s)s %({content-type}o)s", "HTTP_X_REQUEST_ID")
    assert line(fake_environ(), exchange, 0.1) == "500 -"
