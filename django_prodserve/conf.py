"""Every setting, declared once.

Each `Setting` names a gunicorn-compatible key of ``settings.PRODSERVE`` and says how to convert and
validate a value, its default, its command-line flags and its help. That one declaration drives the
command's options, the ``PRODSERVE_<NAME>`` environment variables, the system checks and the docs.
Precedence: defaults < settings.PRODSERVE < environment < command line.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .logs import compile_format
from .server.sockets import parse_bind

ENV_PREFIX = "PRODSERVE_"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class Invalid(ValueError):
    """A value a setting cannot take; the message says what it must be."""


def integer(minimum: int = 0) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise Invalid(f"must be an integer >= {minimum}, not {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise Invalid(f"must be an integer >= {minimum}, not {value!r}") from None
        if isinstance(value, float) and value != number:
            raise Invalid(f"must be an integer >= {minimum}, not {value!r}")
        if number < minimum:
            raise Invalid(f"must be an integer >= {minimum}, not {number}")
        return number

    return convert


def number(minimum: float = 0) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        if isinstance(value, bool):
            raise Invalid(f"must be a number >= {minimum}, not {value!r}")
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise Invalid(f"must be a number >= {minimum}, not {value!r}") from None
        if not result >= minimum:
            raise Invalid(f"must be a number >= {minimum}, not {value!r}")
        return result

    return convert


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise Invalid(f"must be True or False (in the environment: 1/0, true/false), not {value!r}")


def auto_boolean(value: Any) -> bool | str:
    """True, False, or 'auto': the caller decides (reload: on exactly when DEBUG is)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        return boolean(value)
    except Invalid:
        raise Invalid(f"must be True, False or 'auto', not {value!r}") from None


def optional_string(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    raise Invalid(f"must be a string or None, not {value!r}")


def octal(value: Any) -> int | None:
    """A umask: an int, or a string in octal ('022', '0o022'); None leaves the process's alone."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        result = value
    elif isinstance(value, str):
        try:
            result = int(value, 8) if value.strip() else None
        except ValueError:
            raise Invalid(f"must be an octal number such as '022', not {value!r}") from None
    else:
        raise Invalid(f"must be an octal number such as '022' or 0o22, not {value!r}")
    if result is not None and not 0 <= result <= 0o777:
        raise Invalid(f"must be between 0 and 0o777, not {value!r}")
    return result


def hook(value: Any) -> Any:
    """A server hook: a callable, or the dotted path of one (imported when the server starts)."""
    if value is None or callable(value):
        return value
    if isinstance(value, str) and all(part.isidentifier() for part in value.split(".")):
        if "." in value:
            return value
    raise Invalid(
        f"must be a callable or a dotted path such as 'myproject.hooks.on_starting', not {value!r}"
    )


def url_path(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.startswith("/") and value.isascii() and " " not in value:
        return value
    raise Invalid(f"must be a URL path starting with '/', such as '/-/health', not {value!r}")


def _strings(value: Any) -> tuple[str, ...] | None:
    """A list of strings, or one comma-separated string (as the environment gives it); None if
    the value is neither, so each converter can say what it expected."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


def networks(value: Any) -> tuple[str, ...]:
    """Trusted peers: IPs or CIDR networks (list, or comma-separated string); '*' trusts all."""
    import ipaddress

    items = _strings(value)
    if items is None:
        raise Invalid(f"must be a list of IP addresses or networks, or '*', not {value!r}")
    items = tuple(item.strip() for item in items)
    for item in items:
        if item != "*":
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise Invalid(f"{item!r} is not an IP address or network (CIDR)") from None
    return items


def header_values(value: Any) -> dict[str, str]:
    """{header: value meaning https}, as gunicorn's secure_scheme_headers (JSON in env/CLI)."""
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise Invalid(
                f'must be a JSON object such as {{"X-Forwarded-Proto": "https"}}, not {value!r}'
            ) from None
    if isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return {k.upper(): v for k, v in value.items()}
    raise Invalid(
        f"must be a dict of header name to value, such as "
        f"{{'X-Forwarded-Proto': 'https'}}, not {value!r}"
    )


def choice(*options: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if isinstance(value, str) and value.lower() in options:
            return value.lower()
        raise Invalid(f"must be one of {', '.join(options)}, not {value!r}")

    return convert


def bind_list(value: Any) -> tuple[str, ...]:
    """Addresses to listen on: a list, or one string (comma-separated in the environment)."""
    items = _strings(value)
    if items is None:
        raise Invalid(f"must be a list of addresses such as ['127.0.0.1:8000'], not {value!r}")
    if not items:
        raise Invalid("must name at least one address, such as '127.0.0.1:8000'")
    for item in items:
        try:
            parse_bind(item)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
    return items


def string_list(value: Any) -> tuple[str, ...]:
    """Strings such as paths: a list, or one string (comma-separated in the environment)."""
    items = _strings(value)
    if items is None:
        raise Invalid(f"must be a list of strings, not {value!r}")
    return items


def access_format(value: Any) -> str:
    """An access line format, compiled here so a bad one is reported before the server starts."""
    if not isinstance(value, str) or not value:
        raise Invalid(f"must be a format such as '%(h)s \"%(r)s\" %(s)s', or 'json', not {value!r}")
    try:
        compile_format(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return value


def header_name(value: Any) -> str | None:
    """A request header name; no '_', which the server drops (it could pose as a '-')."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*", value):
        return value
    raise Invalid(f"must be a header name such as 'X-Request-ID', not {value!r}")


def split_host_port(value: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' → (host, port); ValueError when it is neither."""
    host, _, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError
    return host, int(port)


def udp_address(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        split_host_port(value)
    except (AttributeError, ValueError):
        raise Invalid(f"must be HOST:PORT such as 'localhost:8125', not {value!r}") from None
    return value


def metric_prefix(value: Any) -> str:
    """statsd names are `prefix.name:value|type`: a ':', '|' or newline would break the packet."""
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.-]*", value):
        return value
    raise Invalid(f"must be letters, digits, '_', '-' and '.', such as 'myapp', not {value!r}")


def prometheus_path(value: Any) -> str | None:
    path = url_path(value)
    if path is not None and importlib.util.find_spec("prometheus_client") is None:
        raise Invalid(
            "needs prometheus_client, which is not installed: "
            "pip install 'django-prodserve[prometheus]'"
        )
    return path


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    convert: Callable[[Any], Any]
    help: str
    flags: tuple[str, ...] = ()
    metavar: str | None = None
    section: str = "production"  # SECTIONS: where --help lists it

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def is_flag(self) -> bool:
        return self.convert in (boolean, auto_boolean)

    @property
    def is_list(self) -> bool:
        return self.convert in (bind_list, string_list)

    def show(self, value: Any) -> str:
        """A value as one would write it in settings.PRODSERVE (--print-config, the docs)."""
        if self.convert is octal and value is not None:
            return f"0o{value:03o}"
        return repr(list(value) if isinstance(value, tuple) else value)


#: --help's groups, in order, with what each is about.
SECTIONS = {
    "development": "Development (runserver's options; reload is on with DEBUG)",
    "production": "Production: workers, limits, sockets, processes",
    "TLS and proxies": "TLS and proxies",
    "logging": "Logging, request ids and metrics",
    "hooks": "Server hooks (gunicorn's): callables or dotted paths",
}


def _section(section: str, settings: tuple[Setting, ...]) -> tuple[Setting, ...]:
    return tuple(dataclasses.replace(setting, section=section) for setting in settings)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "bind",
        ("127.0.0.1:8000",),
        bind_list,
        "Address to listen on: HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N. Repeat for several.",
        ("-b", "--bind"),
        "ADDRESS",
    ),
    Setting(
        "backlog",
        2048,
        integer(1),
        "Pending connections the kernel queues per socket.",
        ("--backlog",),
        "N",
    ),
    Setting(
        "workers", 1, integer(1), "Worker processes serving requests.", ("-w", "--workers"), "N"
    ),
    Setting(
        "threads",
        1,
        integer(1),
        "Threads per worker running the app; 1 runs it inline in the event loop.",
        ("--threads",),
        "N",
    ),
    Setting(
        "spare_threads",
        4,
        integer(0),
        "With threads = 1: threads a worker may add while requests run long. A request that "
        "has been in the app for a few milliseconds hands the event loop to a spare thread, so "
        "the worker's other connections are still served; its thread becomes the next spare. "
        "0 keeps everything on one thread (a long request then holds the whole worker).",
        ("--spare-threads",),
        "N",
    ),
    Setting(
        "worker_connections",
        1000,
        integer(1),
        "Open client connections a worker holds at most; past it, it stops accepting.",
        ("--worker-connections",),
        "N",
    ),
    Setting(
        "timeout",
        30.0,
        number(0),
        "Seconds a request may run without progress (a client reading its response is "
        "progress): then its stack and request line are logged, its client gets a 500 if "
        "nothing was sent yet, and the worker is replaced, its other requests given "
        "graceful_timeout. A strictly inline worker (spare_threads 0) is judged by its event "
        "loop: silent that long, it is killed. 0 disables.",
        ("-t", "--timeout"),
        "SECONDS",
    ),
    Setting(
        "graceful_timeout",
        30.0,
        number(0),
        "Seconds workers get to finish in-flight requests on a graceful stop.",
        ("--graceful-timeout",),
        "SECONDS",
    ),
    Setting(
        "keepalive",
        5.0,
        number(0),
        "Seconds an idle keep-alive connection is held open. 0 closes after each response.",
        ("--keep-alive",),
        "SECONDS",
    ),
    Setting(
        "max_requests",
        0,
        integer(0),
        "Requests a worker serves before it is replaced. 0 disables.",
        ("--max-requests",),
        "N",
    ),
    Setting(
        "max_requests_jitter",
        0,
        integer(0),
        "Random extra requests (0..N) added to max_requests per worker, so they don't all "
        "restart at once.",
        ("--max-requests-jitter",),
        "N",
    ),
    Setting(
        "preload_app",
        False,
        boolean,
        "Import the app in the master before forking: faster boot, shared memory.",
        ("--preload",),
    ),
    Setting(
        "limit_request_line",
        8190,
        integer(0),
        "Longest request line in bytes (414 past it); RFC 9112 §3 asks for at least 8000. 0 "
        "means the internal cap of 65536.",
        ("--limit-request-line",),
        "BYTES",
    ),
    Setting(
        "limit_request_fields",
        100,
        integer(0),
        "Most header fields in a request (431 past it). 0 means the internal cap of 32768.",
        ("--limit-request-fields",),
        "N",
    ),
    Setting(
        "limit_request_field_size",
        8190,
        integer(0),
        "Longest header field in bytes, name and value (431 past it). 0 means the internal "
        "cap of 65536.",
        ("--limit-request-field-size",),
        "BYTES",
    ),
    Setting(
        "limit_request_body",
        10 * 1024 * 1024,
        integer(0),
        "Largest request body in bytes (413 past it, and no 100 Continue). The default, 10 MiB, "
        "is four times Django's DATA_UPLOAD_MAX_MEMORY_SIZE; raise it for file uploads, as "
        "with nginx's client_max_body_size. 0 means unlimited.",
        ("--limit-request-body",),
        "BYTES",
    ),
    Setting(
        "limit_buffered_bodies",
        256 * 1024 * 1024,
        integer(0),
        "Most bytes of unfinished request bodies one worker buffers at once (memory and spool "
        "files together); a request that would pass it gets 503. limit_request_body bounds one "
        "upload, this a crowd of slow ones, so they cannot fill the disk. 0 means unlimited.",
        ("--limit-buffered-bodies",),
        "BYTES",
    ),
    Setting(
        "accesslog",
        None,
        optional_string,
        "Access log: a file path, '-' for stdout, or None for no access log.",
        ("--access-logfile",),
        "FILE",
        "logging",
    ),
    Setting(
        "access_log_format",
        '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
        access_format,
        "Access log line: a format with gunicorn's atoms (h, r, s, b, a, {header}i, {header}o, "
        "{key}e ... and rid, the request id), 'json' for one JSON object per line, or a JSON "
        "object of atoms. Values are escaped, so no client can forge a line.",
        ("--access-logformat",),
        "FORMAT",
        "logging",
    ),
    Setting(
        "errorlog",
        "-",
        optional_string,
        "Error log: a file path, or '-' for stderr.",
        ("--error-logfile", "--log-file"),
        "FILE",
        "logging",
    ),
    Setting(
        "loglevel",
        "info",
        choice(*LOG_LEVELS),
        "Error log level.",
        ("--log-level",),
        "LEVEL",
        "logging",
    ),
    Setting(
        "proc_name",
        None,
        optional_string,
        "Process title base (needs setproctitle, the 'proctitle' extra).",
        ("-n", "--name"),
        "NAME",
    ),
)

HOOKS: dict[str, str] = {
    "on_starting": "on_starting(server): in the master, before sockets are bound.",
    "when_ready": "when_ready(server): in the master, once every worker is up.",
    "pre_fork": "pre_fork(server, worker): in the generation's master, before a worker is forked.",
    "post_fork": "post_fork(server, worker): in the worker, just after the fork.",
    "worker_int": "worker_int(worker): in the worker, on SIGINT or SIGQUIT.",
    "worker_abort": "worker_abort(worker): in the worker, on SIGABRT (timeout), after the traceback.",
    "pre_exec": "pre_exec(server): in the new master on SIGUSR2, just before exec.",
    "worker_exit": "worker_exit(server, worker): in the generation's master, after a worker exits.",
    "on_exit": "on_exit(server): in the master, just before it exits.",
}

SETTINGS += (
    Setting(
        "max_worker_memory",
        0,
        integer(0),
        "Recycle a worker, gracefully after its current request, once its RSS exceeds this "
        "many MiB. 0 disables.",
        ("--max-worker-memory",),
        "MIB",
    ),
    Setting(
        "max_worker_lifetime",
        0.0,
        number(0),
        "Recycle a worker gracefully after this many seconds. 0 disables.",
        ("--max-worker-lifetime",),
        "SECONDS",
    ),
    Setting(
        "max_worker_lifetime_jitter",
        0.0,
        number(0),
        "Random extra seconds (0..N) added to max_worker_lifetime per worker.",
        ("--max-worker-lifetime-jitter",),
        "SECONDS",
    ),
    Setting(
        "health_check_path",
        None,
        url_path,
        "A path the worker answers itself, without entering Django: 200 'ok' while serving, "
        "503 once a graceful stop began. None disables.",
        ("--health-check-path",),
        "PATH",
    ),
    Setting("reuse_port", False, boolean, "Set SO_REUSEPORT on TCP sockets.", ("--reuse-port",)),
    Setting(
        "pidfile",
        None,
        optional_string,
        "Write the master's pid to this file.",
        ("-p", "--pid"),
        "FILE",
    ),
    Setting(
        "umask",
        None,
        octal,
        "umask of the server processes (affects unix socket permissions), e.g. '007'. None "
        "leaves it as inherited.",
        ("-m", "--umask"),
        "OCTAL",
    ),
    Setting(
        "user",
        None,
        optional_string,
        "Workers switch to this user (name or uid) after the sockets are bound.",
        ("-u", "--user"),
        "USER",
    ),
    Setting(
        "group",
        None,
        optional_string,
        "Workers switch to this group (name or gid) after the sockets are bound.",
        ("-g", "--group"),
        "GROUP",
    ),
    Setting(
        "worker_tmp_dir",
        None,
        optional_string,
        "Directory for request bodies spooled to disk (over 1 MiB). None: the system's temp "
        "directory. The heartbeat needs no file: it lives in shared memory.",
        ("--worker-tmp-dir",),
        "DIR",
    ),
) + tuple(
    Setting(
        name,
        None,
        hook,
        f"Server hook {text}",
        (f"--{name.replace('_', '-')}",),
        "DOTTED.PATH",
        "hooks",
    )
    for name, text in HOOKS.items()
)

# TLS and proxies
SETTINGS += _section(
    "TLS and proxies",
    (
        Setting(
            "certfile",
            None,
            optional_string,
            "TLS certificate (PEM); with keyfile, serve HTTPS.",
            ("--certfile",),
            "FILE",
        ),
        Setting("keyfile", None, optional_string, "TLS private key (PEM).", ("--keyfile",), "FILE"),
        Setting(
            "ca_certs",
            None,
            optional_string,
            "CA certificates (PEM) to verify client certificates with.",
            ("--ca-certs",),
            "FILE",
        ),
        Setting(
            "cert_reqs",
            "none",
            choice("none", "optional", "required"),
            "Client certificates: none, optional or required (mutual TLS).",
            ("--cert-reqs",),
            "MODE",
        ),
        Setting(
            "ciphers",
            None,
            optional_string,
            "OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's). None: Python's "
            "defaults. TLS below 1.2 is never offered.",
            ("--ciphers",),
            "CIPHERS",
        ),
        Setting(
            "forwarded_allow_ips",
            ("127.0.0.1", "::1"),
            networks,
            "Peers trusted to set X-Forwarded-For/-Proto and Forwarded: IPs or CIDR networks, or "
            "'*'. From anyone else those headers are removed.",
            ("--forwarded-allow-ips",),
            "IPS",
        ),
        Setting(
            "secure_scheme_headers",
            {"X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on"},
            header_values,
            "Headers (from trusted peers) whose value means the request came over HTTPS. When "
            "several are present and disagree, the request gets 400 (as gunicorn).",
            ("--secure-scheme-headers",),
            "JSON",
        ),
        Setting(
            "forwarded_headers",
            "x-forwarded",
            choice("x-forwarded", "forwarded"),
            "Which headers a trusted proxy names the client with: 'x-forwarded' (X-Forwarded-For "
            "and secure_scheme_headers, as nginx's recipe sends) or 'forwarded' (RFC 7239 "
            "Forwarded). The other kind is removed: a proxy passes a client's copy through.",
            ("--forwarded-headers",),
            "STYLE",
        ),
        Setting(
            "proxy_protocol",
            "off",
            choice("off", "v1", "v2", "auto"),
            "Expect a PROXY protocol header (HAProxy) first on connections from proxy_allow_ips.",
            ("--proxy-protocol",),
            "VERSION",
        ),
        Setting(
            "proxy_allow_ips",
            ("127.0.0.1", "::1"),
            networks,
            "Peers allowed to send a PROXY protocol header.",
            ("--proxy-allow-from",),
            "IPS",
        ),
    ),
)

# Development
SETTINGS += _section(
    "development",
    (
        Setting(
            "reload",
            "auto",
            auto_boolean,
            "Development: watch the project's files and serve from a fresh interpreter after each "
            "change. A broken edit gets a 500 page with the traceback, never an exit. 'auto': on "
            "when DEBUG is, as runserver (--noreload turns it off).",
            ("--reload",),
        ),
        Setting(
            "reload_extra_files",
            (),
            string_list,
            "More files for --reload to watch: paths or globs such as 'config/*.yaml'. Repeat for "
            "several.",
            ("--reload-extra-file",),
            "PATH",
        ),
        Setting(
            "reload_start",
            "warm",
            choice("warm", "cold"),
            "How --reload starts the next server: 'warm' keeps a standby interpreter with Django "
            "already imported (faster reloads, one more process), 'cold' starts one per change.",
            ("--reload-start",),
            "MODE",
        ),
    ),
)

# Static files
SETTINGS += (
    Setting(
        "serve_static",
        False,
        boolean,
        "Serve STATIC_ROOT under STATIC_URL with sendfile, ETags, ranges and precompressed "
        ".br/.gz files (run `manage.py collectstatic` first). Off under DEBUG's static handler.",
        ("--serve-static",),
    ),
    Setting(
        "static_max_age",
        60,
        integer(0),
        "Cache-Control max-age of static files whose names carry no content hash; hashed "
        "(ManifestStaticFilesStorage) names are cached for a year as immutable.",
        ("--static-max-age",),
        "SECONDS",
    ),
)

# Platforms (see docs/architecture.md, "Platforms")
SETTINGS += (
    Setting(
        "event_loop",
        "auto",
        choice("auto", "epoll", "selectors"),
        "Workers' event loop: 'epoll' (Linux), 'selectors' (the best poller the platform has: "
        "kqueue on macOS and the BSDs, select() on Windows), or 'auto': epoll where the kernel "
        "has it, selectors elsewhere.",
        ("--event-loop",),
        "LOOP",
    ),
    Setting(
        "reload_polling",
        "auto",
        choice("auto", "on", "off"),
        "Development: how --reload sees changes. 'off': the system's file events; 'on': polling "
        "(reliable everywhere, some CPU); 'auto': polling only for directories on filesystems "
        "whose events miss changes made outside this system (WSL's Windows drives, Docker "
        "Desktop's host mounts, network and VM shares), or as WATCHFILES_FORCE_POLLING says.",
        ("--reload-polling",),
        "MODE",
    ),
)

# Request ids and metrics
SETTINGS += _section(
    "logging",
    (
        Setting(
            "request_id_header",
            None,
            header_name,
            "Request id header, such as 'X-Request-ID': its value (a new uuid4 hex when missing or "
            "malformed) reaches the app, is echoed in the response and logged as the rid atom. "
            "None disables.",
            ("--request-id-header",),
            "HEADER",
        ),
        Setting(
            "statsd_host",
            None,
            udp_address,
            "Send metrics to this statsd, HOST:PORT, over UDP without ever blocking (gunicorn's "
            "metric names). None disables.",
            ("--statsd-host",),
            "HOST:PORT",
        ),
        Setting(
            "statsd_prefix",
            "gunicorn",
            metric_prefix,
            "Prefix of the statsd names; the default gives gunicorn's (gunicorn.requests ...). "
            "gunicorn's prefix 'app' is 'app.gunicorn' here.",
            ("--statsd-prefix",),
            "PREFIX",
        ),
        Setting(
            "prometheus_path",
            None,
            prometheus_path,
            "Serve the Prometheus metrics of all workers at this path, such as '/-/metrics' (needs "
            "the 'prometheus' extra). Anyone who reaches the server can read it. None disables.",
            ("--prometheus-path",),
            "PATH",
        ),
    ),
)

BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}
Config = dataclasses.make_dataclass(
    "Config", [(setting.name, Any) for setting in SETTINGS], frozen=True, slots=True
)
Config.__doc__ = "The resolved configuration, passed down to every part of the server."


@dataclass(frozen=True)
class Problem:
    """One invalid value, with where it came from, for a system check or a command error."""

    id: str
    setting: str
    source: str
    message: str
    hint: str


def problems_in_settings(value: Any) -> list[Problem]:
    if not isinstance(value, Mapping):
        return [
            Problem(
                "prodserve.E001",
                "PRODSERVE",
                "settings.PRODSERVE",
                f"settings.PRODSERVE must be a dict, not {type(value).__name__}.",
                "Write PRODSERVE = {'workers': 2, ...} in your settings.",
            )
        ]
    found = []
    for key in value:
        if key not in BY_NAME:
            found.append(
                Problem(
                    "prodserve.E002",
                    str(key),
                    "settings.PRODSERVE",
                    f"settings.PRODSERVE has an unknown setting {key!r}.",
                    _suggest(str(key)),
                )
            )
    return found


def _suggest(key: str) -> str:
    close = closest_setting(key)
    if close:
        return f"Did you mean {close!r}? Remove or rename the key."
    return "Remove the key; `manage.py prodserve --help` lists every setting."


def closest_setting(name: str) -> str | None:
    """The setting a misspelt name probably meant ('wrokers', 'WOKERS' → 'workers')."""
    import difflib

    close = difflib.get_close_matches(name.lower().replace("-", "_"), BY_NAME, n=1)
    return close[0] if close else None


def resolve(
    settings_value: Any, environ: Mapping[str, str], cli: Mapping[str, Any]
) -> tuple[Any, dict[str, str], list[Problem]]:
    """Merge defaults < settings < environment < CLI. Returns (config, sources, problems).

    With problems the config holds the default in place of every invalid value.
    """
    problems = problems_in_settings(settings_value)
    layers = [
        (
            "settings.PRODSERVE",
            settings_value if isinstance(settings_value, Mapping) else {},
            "prodserve.E003",
            lambda s: f"settings.PRODSERVE[{s.name!r}]",
        ),
        (
            "environment",
            {s.name: environ[s.env_var] for s in SETTINGS if s.env_var in environ},
            "prodserve.E004",
            lambda s: s.env_var,
        ),
        ("command line", cli, "prodserve.E005", lambda s: s.flags[-1]),
    ]
    values = {s.name: s.default for s in SETTINGS}
    sources = {s.name: "default" for s in SETTINGS}
    for source, layer, check_id, describe in layers:
        for name, raw in layer.items():
            setting = BY_NAME.get(name)
            if setting is None:
                continue
            try:
                values[name] = setting.convert(raw)
            except Invalid as exc:
                where = describe(setting)
                problems.append(
                    Problem(
                        check_id, name, source, f"{where} {exc}.", f"Fix {where}: {setting.help}"
                    )
                )
            else:
                sources[name] = source
    return Config(**values), sources, problems


def reloading(config, debug: bool) -> bool:
    """Whether the command supervises (`reload`), with 'auto' meaning DEBUG."""
    return debug if config.reload == "auto" else config.reload
