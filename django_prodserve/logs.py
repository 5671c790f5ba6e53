"""Loggers `django_prodserve.error` and `django_prodserve.access`, set up from the config.

They are configured after Django's LOGGING ran (the command runs after django.setup()) and marked
enabled again, so a project's `disable_existing_loggers` cannot silence them (gunicorn#1051).
"""

from __future__ import annotations

import logging
import os
import sys
import time

ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"

error_log = logging.getLogger("django_prodserve.error")
access_log = logging.getLogger("django_prodserve.access")
_access_format = ""
_console_style = None


def _handler(target: str, stream) -> logging.Handler:
    if target == "-":
        return logging.StreamHandler(stream)
    return logging.FileHandler(target, encoding="utf-8")


def configure(config, console_style=None) -> None:
    """Point our loggers at the configured files; leave every other logger alone.

    With a Django `Style` (dev mode, `--reload`), access lines are runserver's, coloured by it.
    """
    global _access_format, _console_style
    for logger, target, stream, fmt, level in (
        (error_log, config.errorlog or "-", sys.stderr, ERROR_FORMAT, config.loglevel.upper()),
        (access_log, config.accesslog, sys.stdout, "%(message)s", "INFO"),
    ):
        for old in list(logger.handlers):
            logger.removeHandler(old)
            old.close()
        logger.propagate = False
        logger.disabled = False
        if target is None:
            logger.setLevel(logging.CRITICAL + 1)
            continue
        handler = _handler(target, stream)
        handler.setFormatter(logging.Formatter(fmt, datefmt="%Y-%m-%d %H:%M:%S %z"))
        logger.addHandler(handler)
        logger.setLevel(level)
    _access_format = config.access_log_format
    _console_style = console_style


def reopen_files() -> None:
    """SIGUSR1: logrotate moved our files away; open them anew at the same paths."""
    for logger in (error_log, access_log):
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.acquire()
                try:
                    handler.close()
                    handler.stream = handler._open()
                finally:
                    handler.release()


class _Atoms(dict):
    def __missing__(self, key: str) -> str:
        return "-"


def log_access(environ: dict, exchange, duration: float) -> None:
    """One access line with gunicorn's atoms: %(h)s %(r)s %(s)s %(b)s %(D)s ..."""
    if _console_style is not None:
        _log_console(environ, exchange, _console_style)
        return
    protocol = environ.get("SERVER_PROTOCOL", "-")
    method = environ.get("REQUEST_METHOD", "-")
    uri = environ.get("RAW_URI", "-")
    atoms = _Atoms(
        h=environ.get("REMOTE_ADDR") or "-",
        t=time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
        r=f"{method} {uri} {protocol}",
        s=exchange.code,
        b=exchange.sent or "-",
        B=exchange.sent,
        f=environ.get("HTTP_REFERER", "-"),
        a=environ.get("HTTP_USER_AGENT", "-"),
        T=int(duration),
        D=int(duration * 1_000_000),
        M=int(duration * 1000),
        L=f"{duration:.6f}",
        m=method,
        U=environ.get("PATH_INFO", "-"),
        q=environ.get("QUERY_STRING", ""),
        H=protocol,
        p=f"<{os.getpid()}>",
    )
    access_log.info(_access_format % atoms)


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
    access_log.info("[%s] %s", time.strftime("%d/%b/%Y %H:%M:%S"), line)
