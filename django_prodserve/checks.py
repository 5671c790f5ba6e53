"""System checks: invalid settings, and server settings that contradict Django's own.

The command runs them with its command-line values in force (see `command_line`), so a flag is
checked exactly like the same key in settings.PRODSERVE.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import sys
from contextlib import contextmanager

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from . import logs
from .conf import BY_NAME, ENV_PREFIX, SETTINGS, closest_setting, reloading, resolve
from .server import portable, sockets, tls
from .server.inprocess import RECYCLING

_command_line: dict = {}


@contextmanager
def command_line(values: dict):
    """Run the checks as the command would serve: with its command-line values applied."""
    _command_line.update(values)
    try:
        yield
    finally:
        _command_line.clear()


def current_config():
    return resolve(getattr(settings, "PRODSERVE", {}), os.environ, _command_line)


@register("prodserve")
def check_settings(app_configs, **kwargs) -> list[CheckMessage]:
    config, _, problems = current_config()
    messages: list[CheckMessage] = [Error(p.message, hint=p.hint, id=p.id) for p in problems]
    messages += check_environment(os.environ)
    if not problems:
        messages += check_tls(config) + check_against_django(config) + check_static(config)
        messages += check_platform(config) + check_bind(config)
    return messages


def check_environment(environ) -> list[CheckMessage]:
    """A PRODSERVE_ variable that names no setting is a typo (PRODSERVE_WOKERS) the server would
    silently ignore: say so, as settings.PRODSERVE's unknown keys are refused."""
    from .server.master import LISTEN_FDS_ENV
    from .server.reload_child import CHILD_ENV
    from .server.supervisor import GENERATION_ENV

    known = {setting.env_var for setting in SETTINGS} | {LISTEN_FDS_ENV, CHILD_ENV, GENERATION_ENV}
    messages: list[CheckMessage] = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            close = closest_setting(name.removeprefix(ENV_PREFIX))
            hint = (
                f"Did you mean {BY_NAME[close].env_var}?"
                if close
                else "`manage.py prodserve --print-config` lists every setting and its variable."
            )
            messages.append(
                Warning(
                    f"The environment variable {name} is not a prodserve setting: it is ignored.",
                    hint=hint,
                    id="prodserve.W004",
                )
            )
    return messages


def check_bind(config) -> list[CheckMessage]:
    """A `bind` host that is neither an IP address nor a name this machine resolves cannot be
    bound; say so now (--check), not when the server starts."""
    messages: list[CheckMessage] = []
    for entry in config.bind:
        address = sockets.parse_bind(entry)
        if address.kind != "tcp":
            continue
        try:
            socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            messages.append(
                Error(
                    f"PRODSERVE bind {entry!r}: the host {address.host!r} is not an IP address "
                    f"and does not resolve ({exc}).",
                    hint="Fix bind: write HOST:PORT with an IP address or a name this machine "
                    "resolves, such as '127.0.0.1:8000', '0.0.0.0:8000' or '[::1]:8000'.",
                    id="prodserve.E006",
                )
            )
    return messages


def check_tls(config) -> list[CheckMessage]:
    if config.keyfile and not config.certfile:
        return [
            Error(
                "PRODSERVE keyfile is set without certfile.",
                hint="Set certfile to the certificate that goes with the key.",
                id="prodserve.E010",
            )
        ]
    try:
        tls.make_context(config)
    except (OSError, ssl.SSLError) as exc:
        return [
            Error(
                f"PRODSERVE TLS files cannot be used: {exc}.",
                hint="Check that certfile, keyfile and ca_certs exist, are readable by this "
                "user, are PEM, and that the key matches the certificate.",
                id="prodserve.E011",
            )
        ]
    return []


def check_against_django(config) -> list[CheckMessage]:
    """Server settings that, combined with Django's, are probably a mistake."""
    messages: list[CheckMessage] = []
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None) and not config.forwarded_allow_ips:
        messages.append(
            Warning(
                "SECURE_PROXY_SSL_HEADER is set but PRODSERVE forwarded_allow_ips trusts no proxy: "
                "the header is removed from every request, so Django never sees HTTPS.",
                hint="Set forwarded_allow_ips to your proxy's addresses.",
                id="prodserve.W001",
            )
        )
    public = any(_public(b) for b in config.bind)
    if "*" in config.forwarded_allow_ips and public:
        messages.append(
            Warning(
                "PRODSERVE forwarded_allow_ips is '*' while binding a non-loopback address: any "
                "client can set its own REMOTE_ADDR and scheme with X-Forwarded-* headers.",
                hint="List your proxies' addresses instead of '*', or bind to loopback.",
                id="prodserve.W002",
            )
        )
    if settings.DEBUG and config.workers > 1 and public and not reloading(config, True):
        messages.append(
            Warning(
                f"DEBUG is True with {config.workers} workers on a non-loopback address and no "
                "reload: this looks like a production server with DEBUG on (tracebacks shown to "
                "visitors).",
                hint="Set DEBUG = False in production, or use --reload for development.",
                id="prodserve.W003",
            )
        )
    return messages


def _public(bind: str) -> bool:
    address = sockets.parse_bind(bind)
    if address.kind != "tcp":
        return False
    try:
        return not ipaddress.ip_address(address.host).is_loopback
    except ValueError:
        return address.host != "localhost"


def check_static(config) -> list[CheckMessage]:
    """serve_static without collected files would answer every static URL with Django's 404."""
    if not config.serve_static:
        return []
    if not settings.STATIC_ROOT or not settings.STATIC_URL:
        return [
            Error(
                "PRODSERVE serve_static is on but STATIC_ROOT or STATIC_URL is not set.",
                hint="Set STATIC_URL and STATIC_ROOT (the directory to serve), then run "
                "`manage.py collectstatic`.",
                id="prodserve.E020",
            )
        ]
    if not os.path.isdir(settings.STATIC_ROOT):
        return [
            Warning(
                f"PRODSERVE serve_static is on but STATIC_ROOT ({settings.STATIC_ROOT}) does not "
                "exist: every static URL will be a 404.",
                hint="Run `manage.py collectstatic` to fill STATIC_ROOT.",
                id="prodserve.W020",
            )
        ]
    return []


def check_platform(config) -> list[CheckMessage]:
    """Settings this platform cannot honour (issue 19)."""
    if config.event_loop == "epoll" and not portable.HAS_EPOLL:
        return [
            Error(
                f"PRODSERVE event_loop is 'epoll', which this platform ({sys.platform}) does not "
                "have: epoll is Linux's.",
                hint="Set event_loop to 'auto' (the default) or 'selectors': kqueue on macOS and "
                "the BSDs, select() on Windows.",
                id="prodserve.E040",
            )
        ]
    if config.workers > 1 and not portable.CAN_FORK:
        return [
            Warning(
                f"PRODSERVE workers is {config.workers}, but this platform ({sys.platform}) cannot "
                "fork: prodserve serves in one process, with workers × threads = "
                f"{config.workers * config.threads} threads, as runserver does.",
                hint="Set workers to 1 and threads to the requests to serve at once. A production "
                "server needs fork: Linux, macOS or a BSD.",
                id="prodserve.W041",
            )
        ]
    recycling = [name for name in RECYCLING if getattr(config, name)]
    if recycling and not portable.CAN_FORK:
        return [
            Warning(
                f"PRODSERVE {', '.join(recycling)} would recycle the worker, but this platform "
                f"({sys.platform}) cannot fork: the one process serving is the worker, so they "
                "are ignored.",
                hint="Unset them here; they apply where workers are forked (Linux, macOS, BSDs).",
                id="prodserve.W042",
            )
        ]
    if config.reuse_port and not portable.HAS_REUSE_PORT:
        return [
            Error(
                f"PRODSERVE reuse_port is on, but this platform ({sys.platform}) has no "
                "SO_REUSEPORT.",
                hint="Turn reuse_port off: the workers of one server share its sockets without it.",
                id="prodserve.E041",
            )
        ]
    if config.reuse_port and not portable.REUSE_PORT_BALANCES:
        return [
            Warning(
                f"PRODSERVE reuse_port is on, but on this platform ({sys.platform}) SO_REUSEPORT "
                "lets several servers bind one port without spreading the connections over them: "
                "one server gets them all.",
                hint="The workers of one server share its sockets without reuse_port; to spread "
                "clients over several servers here, put a proxy (nginx, HAProxy) in front.",
                id="prodserve.W040",
            )
        ]
    return []


@register("prodserve")
def check_logging(app_configs, **kwargs) -> list[CheckMessage]:
    """Logging settings that would silently do nothing."""
    config, _, problems = current_config()
    if problems:
        return []  # reported by check_settings
    messages: list[CheckMessage] = []
    if "%(rid)" in config.access_log_format and not config.request_id_header:
        messages.append(
            Warning(
                "PRODSERVE access_log_format logs the request id, %(rid)s, but request_id_header "
                "is not set: it is always '-'.",
                hint="Set request_id_header, such as 'X-Request-ID', or drop %(rid)s.",
                id="prodserve.W030",
            )
        )
    for name, setting, value, unset in (
        (logs.access_log.name, "accesslog", config.accesslog, None),
        (logs.error_log.name, "errorlog", config.errorlog, "-"),
    ):
        if value != unset and name in logs.configured_by_logging():
            messages.append(
                Warning(
                    f"settings.LOGGING configures the logger {name!r}, so PRODSERVE {setting} "
                    f"({value!r}) is not used: LOGGING's handlers get its lines.",
                    hint=f"Remove {setting}, or send the logger to that file in LOGGING.",
                    id="prodserve.W031",
                )
            )
    return messages
