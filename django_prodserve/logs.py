"""Loggers `django_prodserve.error` and `django_prodserve.access`, set up from the config.

A logger the project's LOGGING names (itself, or through their parent `django_prodserve`) is the
project's: we attach no handler and keep its level and propagation; `accesslog`/`errorlog` don't
apply to it. Either way both loggers are enabled again after LOGGING ran, in the command and after
the app's import (wsgi.py's django.setup() runs LOGGING again in each worker), so a project's
`disable_existing_loggers` cannot silence them (gunicorn#1051).

Access lines use gunicorn's atoms, or JSON. Every value is escaped (Apache's rules in text, JSON's
in JSON), so no header or path can end a line early or fake a field.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings

from .server.http import environ_key

ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"
#: On the development console, runserver's time (django.utils.log.ServerFormatter's server_time)
#: for every line, so the error lines read like the request lines around them.
CONSOLE_DATE_FORMAT = "%d/%b/%Y %H:%M:%S"
#: access_log_format = "json": one object per line, field → atom (plus request_id when set up).
JSON_FIELDS = {
    "time": "%(iso)s",
    "remote_addr": "%(h)s",
    "method": "%(m)s",
    "path": "%(U)s",
    "query": "%(q)s",
    "protocol": "%(H)s",
    "status": "%(s)s",
    "bytes": "%(B)s",
    "duration": "%(L)s",
    "referer": "%(f)s",
    "user_agent": "%(a)s",
}

error_log = logging.getLogger("django_prodserve.error")
access_log = logging.getLogger("django_prodserve.access")
#: (environ, exchange, duration) → the access line; set by configure().
_access_line: Callable[[dict, Any, float], str] | None = None
_console_style = None


def _handler(target: str, stream) -> logging.Handler:
    if target == "-":
        return logging.StreamHandler(stream)
    return logging.FileHandler(target, encoding="utf-8")


def configure(config, console_style=None) -> None:
    """Point our loggers at the configured files, unless LOGGING configures them; leave every
    other logger alone.

    With a Django `Style` (dev mode, `--reload`), access lines are runserver's, coloured by it.
    """
    global _access_line, _console_style
    projects = configured_by_logging()
    for logger, target, stream, fmt, level in (
        (error_log, config.errorlog or "-", sys.stderr, ERROR_FORMAT, config.loglevel.upper()),
        (access_log, config.accesslog, sys.stdout, "%(message)s", "INFO"),
    ):
        logger.disabled = False
        if logger.name in projects:
            continue
        for old in list(logger.handlers):
            logger.removeHandler(old)
            old.close()
        logger.propagate = False
        if target is None:
            logger.setLevel(logging.CRITICAL + 1)
            continue
        handler = _handler(target, stream)
        datefmt = DATE_FORMAT if console_style is None else CONSOLE_DATE_FORMAT
        handler.setFormatter(logging.Formatter(fmt, datefmt=datefmt))
        logger.addHandler(handler)
        logger.setLevel(level)
    _access_line = compile_format(
        config.access_log_format, environ_key(config.request_id_header or "")
    )
    _console_style = console_style


def configured_by_logging() -> set[str]:
    """Our loggers that the project's LOGGING names, itself or through `django_prodserve`."""
    config = settings.LOGGING if settings.LOGGING_CONFIG else None
    named = (config.get("loggers") or {}) if isinstance(config, dict) else {}
    ours = {error_log.name, access_log.name}
    return ours if "django_prodserve" in named else ours & set(named)


def keep_enabled() -> None:
    """After the app's import, whose django.setup() ran LOGGING again: undo a
    `disable_existing_loggers` (gunicorn#1051)."""
    error_log.disabled = access_log.disabled = False


def reopen_files() -> None:
    """SIGUSR1: logrotate moved the files away; reopen every FileHandler, ours and LOGGING's, at
    its path (gunicorn does the same)."""
    loggers = [logging.root, *logging.root.manager.loggerDict.values()]  # some are placeholders
    handlers = {
        h for x in loggers for h in getattr(x, "handlers", ()) if isinstance(h, logging.FileHandler)
    }
    failed = []
    for handler in handlers:
        handler.acquire()
        try:
            if handler.stream is not None:
                handler.stream.close()
                handler.stream = None  # if opening fails, emit() tries again
            handler.stream = handler._open()
        except OSError as exc:
            failed.append(exc)  # a signal handler must not raise into the serving loop
        finally:
            handler.release()
    for exc in failed:
        error_log.error("Could not reopen a log file on SIGUSR1: %s", exc)


def log_access(environ: dict, exchange, duration: float) -> None:
    """One access line: access_log_format's atoms, or JSON."""
    if _console_style is not None:
        _log_console(environ, exchange, _console_style)
        return
    access_log.info(_access_line(environ, exchange, duration))


# access_log_format. An atom is a function of (environ, exchange, duration); None shows as "-".

Atom = Callable[[dict, Any, float], Any]


def _basic_auth_user(environ: dict, exchange, duration: float) -> str | None:
    """%(u)s: the user name of HTTP Basic authentication, as gunicorn logs it."""
    scheme, _, credentials = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True)
    except ValueError:
        return None
    return decoded.decode("latin-1").partition(":")[0]


ATOMS: dict[str, Atom] = {
    "h": lambda environ, ex, d: environ.get("REMOTE_ADDR") or None,
    "l": lambda environ, ex, d: None,
    "u": _basic_auth_user,
    "t": lambda environ, ex, d: time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
    "iso": lambda environ, ex, d: datetime.now().astimezone().isoformat(timespec="milliseconds"),
    "r": lambda environ, ex, d: " ".join(
        environ.get(key, "-") for key in ("REQUEST_METHOD", "RAW_URI", "SERVER_PROTOCOL")
    ),
    "m": lambda environ, ex, d: environ.get("REQUEST_METHOD"),
    "U": lambda environ, ex, d: environ.get("PATH_INFO"),
    "q": lambda environ, ex, d: environ.get("QUERY_STRING"),
    "H": lambda environ, ex, d: environ.get("SERVER_PROTOCOL"),
    "s": lambda environ, ex, d: ex.code,
    "B": lambda environ, ex, d: ex.sent,
    "b": lambda environ, ex, d: ex.sent or None,
    "f": lambda environ, ex, d: environ.get("HTTP_REFERER"),
    "a": lambda environ, ex, d: environ.get("HTTP_USER_AGENT"),
    "T": lambda environ, ex, d: int(d),
    "M": lambda environ, ex, d: int(d * 1000),
    "D": lambda environ, ex, d: int(d * 1_000_000),
    "L": lambda environ, ex, d: round(d, 6),
    "p": lambda environ, ex, d: f"<{os.getpid()}>",
}
#: %({name}i)s a request header, %({name}o)s a response header, %({key}e)s an environ value.
_KEYED_ATOM = re.compile(r"\{([^}]+)\}([ioe])")
#: Each % of a format: an atom, "%%", or (no group) a stray one.
_PERCENT = re.compile(r"%(%|\(([^)]*)\))?")
_JSON_ATOM = re.compile(r"%\(([^)]*)\)s")


def _atom(key: str, request_id_key: str) -> Atom:
    if key == "rid":
        return lambda environ, ex, d: environ.get(request_id_key)
    if key in ATOMS:
        return ATOMS[key]
    match = _KEYED_ATOM.fullmatch(key)
    if match is None:
        raise ValueError(f"has an unknown atom %({key})s")
    name, kind = match.groups()
    if kind == "i":
        header = environ_key(name)
        return lambda environ, ex, d: environ.get(header)
    if kind == "o":
        return _response_header(name.lower())
    return lambda environ, ex, d: _scalar(environ.get(name))


def _response_header(lower: str) -> Atom:
    def atom(environ: dict, exchange, duration: float) -> str | None:
        values = [value for name, value in exchange.headers if name.lower() == lower]
        return ", ".join(values) if values else None

    return atom


def _scalar(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float)) else str(value)


_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0x100))}
_ESCAPES |= {ord('"'): '\\"', ord("\\"): "\\\\"}


def _text(value: Any) -> str:
    """A value as Apache's mod_log_config writes one: quotes and backslashes escaped, control and
    non-ASCII characters as \\xhh (\\uhhhh past latin-1), so it can't break the line or a field."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}"
    value = str(value)
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return value
    return value.translate(_ESCAPES).encode("ascii", "backslashreplace").decode("ascii")


def _plain(value: Any) -> str:
    """A value inside a JSON string, which json.dumps escapes."""
    if value is None:
        return "-"
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def _formatter(fmt: str, request_id_key: str, render: Callable[[Any], str]) -> Atom:
    atoms = {}
    for match in _PERCENT.finditer(fmt):
        if match[1] is None:
            raise ValueError("has a % that starts no atom: write atoms as %(h)s, a percent as %%")
        if match[2] is not None:
            atoms[match[2]] = _atom(match[2], request_id_key)
    try:
        fmt % dict.fromkeys(atoms, "-")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"is not a valid format ({exc}); write atoms as %(h)s") from None
    items = tuple(atoms.items())

    def line(environ: dict, exchange, duration: float) -> str:
        return fmt % {key: render(atom(environ, exchange, duration)) for key, atom in items}

    return line


def _json_formatter(template: dict, request_id_key: str) -> Atom:
    """A field that is one atom keeps its type (a number, null); others are formatted strings."""
    fields = []
    for name, fmt in template.items():
        single = _JSON_ATOM.fullmatch(fmt)
        if single is not None:
            fields.append((name, _atom(single[1], request_id_key)))
        else:
            fields.append((name, _formatter(fmt, request_id_key, _plain)))
    items = tuple(fields)

    def line(environ: dict, exchange, duration: float) -> str:
        values = {name: atom(environ, exchange, duration) for name, atom in items}
        return json.dumps(values, separators=(",", ":"))

    return line


def compile_format(text: str, request_id_key: str = "") -> Callable[[dict, Any, float], str]:
    """access_log_format → a function (environ, exchange, duration) → line, built once.

    'json' is the built-in JSON line; a format starting with '{' is a JSON object of atoms; anything
    else is gunicorn's %-format. ValueError says what is wrong (the setting's converter reports it).
    """
    if text == "json":
        template = dict(JSON_FIELDS, request_id="%(rid)s") if request_id_key else JSON_FIELDS
        return _json_formatter(template, request_id_key)
    if text.lstrip().startswith("{"):
        try:
            template = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"is not valid JSON ({exc})") from None
        if not isinstance(template, dict) or not all(isinstance(v, str) for v in template.values()):
            raise ValueError('must be a JSON object of atom strings, such as {"status": "%(s)s"}')
        return _json_formatter(template, request_id_key)
    return _formatter(text, request_id_key, _text)


#: An incoming request id is kept when it is 1-200 visible ASCII characters, else replaced.
_SANE_ID = re.compile(r"[\x21-\x7e]{1,200}")


class RequestId:
    """Request id passthrough: the client's or proxy's id (a new uuid4 hex when it is missing or
    malformed) goes into environ for the app and %(rid)s, and back in the response."""

    __slots__ = ("app", "header", "key")

    def __init__(self, app, header: str) -> None:
        self.app = app
        self.header = header
        self.key = environ_key(header)

    def __call__(self, environ: dict, start_response):
        rid = environ.get(self.key)
        if rid is None or not _SANE_ID.fullmatch(rid):
            rid = environ[self.key] = uuid.uuid4().hex
        header = self.header
        lower = header.lower()

        def start(status: str, headers: list, exc_info=None):
            if not any(name.lower() == lower for name, _ in headers):
                headers = [*headers, (header, rid)]  # a new list: apps may reuse theirs
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


def _log_console(environ: dict, exchange, style) -> None:
    """runserver's line, `[25/Nov/2026 10:00:00] "GET /hello/ HTTP/1.1" 200 13`, coloured by
    status as django.utils.log.ServerFormatter does (plain when not a tty or with --no-color)."""
    code = exchange.code
    if code < 200:
        colour = style.HTTP_INFO
    elif code < 300:
        colour = style.HTTP_SUCCESS
    elif code == 304:
        colour = style.HTTP_NOT_MODIFIED
    elif code < 400:
        colour = style.HTTP_REDIRECT
    elif code == 404:
        colour = style.HTTP_NOT_FOUND
    elif code < 500:
        colour = style.HTTP_BAD_REQUEST
    else:
        colour = style.HTTP_SERVER_ERROR
    request = " ".join(
        environ.get(key, "-") for key in ("REQUEST_METHOD", "RAW_URI", "SERVER_PROTOCOL")
    )
    line = colour(f'"{request}" {code} {exchange.sent}')
    access_log.info("[%s] %s", time.strftime(CONSOLE_DATE_FORMAT), line)
