"""The serving side of `--reload`: a fresh interpreter that the supervisor (reloader.py) starts.

`BOOTSTRAP` (run with `python -c`) sets sys.path as running the command line directly would, then
`main()` imports Django's core modules (and, as the deep standby, sets the project up and imports
the libraries the last server used) and waits on the control pipe. On the supervisor's word — `go`
and the changed paths — it checks that it holds no old copy of a changed file (else it says `s` and
exits, and a colder standby serves), runs manage.py as `__main__`, and the command serves on the
inherited sockets (PRODSERVE_LISTEN_FDS).

When the project cannot boot (a SyntaxError in models.py, broken settings, an app that won't
import) this process does not exit: it serves a 500 with the traceback (DEBUG) on the same sockets
until the supervisor stops it, so a request after a bad save gets an explanation, not a refusal.
"""

from __future__ import annotations

import dataclasses
import html
import importlib
import json
import os
import runpy
import select
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from . import portable

CHILD_ENV = "PRODSERVE_RELOAD_CHILD"
#: How a restart stops the old server: dev mode, a request still running after this is cut off.
STOP_GRACE = 1.0

BOOTSTRAP = (
    "import os, sys\n"
    "sys.path[0] = (os.path.dirname(os.path.realpath(sys.argv[2])) if sys.argv[1] == 'script'\n"
    "               else os.getcwd())\n"
    "from django_prodserve.server.reload_child import main\n"
    "main()\n"
)

#: Imported before the word. Library code only, never settings or the project: a standby is
#: started before the next edit, so anything it imports must not depend on the project's files.
PREIMPORT = (
    "django.core.management",
    "django.core.handlers.wsgi",
    "django.core.servers.basehttp",
    "django.core.checks",
    "django.db.models",
    "django.db.backends.sqlite3.base",
    "django.db.backends.postgresql.base",
    "django.db.migrations.executor",
    "django.forms",
    "django.http",
    "django.urls",
    "django.shortcuts",
    "django.template.backends.django",
    "django.template.defaulttags",
    "django.template.loader_tags",
    "django.template.loaders.cached",
    "django.template.loaders.app_directories",
    "django.templatetags.static",
    "django.views.debug",
    "django.views.generic",
    "django.views.static",
    "django.middleware.common",
    "django.middleware.csrf",
    "django.middleware.security",
    "django.middleware.clickjacking",
    "django.contrib.staticfiles.handlers",
    "django.contrib.messages.middleware",
    "django.contrib.sessions.middleware",
    "django_prodserve.management.commands.prodserve",
)


@dataclasses.dataclass
class ChildState:
    """What the supervisor handed over (CHILD_ENV), and whether the server got up."""

    control: int  # read end: b"go", or b"error\n<message>"; EOF means "exit"
    #: write end: b"w" parked, b"r" app loaded, b"m" report written, b"c" checks done, b"f"
    #: serving an error page, b"s" stale (a changed file is one this standby imported)
    status: int
    events: int  # changes handled without a restart, one path per line (ChangeReplay)
    debug: bool  # the supervisor's settings.DEBUG, for error pages when settings won't load
    supervisor: int
    reports: str  # directory for report_path()
    libraries: str | None  # deep standby: file naming the modules to import after django.setup()
    ready: bool = False


def report_path(reports: str | Path, pid: int) -> Path:
    """Where server `pid` writes what it loaded: {"modules": [[name, file]...], "apps": [[name,
    path]...], "registered": watch.Registrations as a dict}."""
    return Path(reports, f"{pid}.json")


_state: ChildState | None = None


def state() -> ChildState | None:
    """Set in a reload child: the command then serves on the supervisor's sockets, no banner."""
    return _state


def announced() -> bool:
    """A --reload server whose supervisor has said it is ready ("Server process N ready in X
    ms"): its own Ready line would say so twice on the console, so it is a debug line."""
    return _state is not None and _state.ready


def main() -> None:
    """The child's life: park (standby), then serve the project, or its boot error."""
    global _state
    _state = ChildState(**json.loads(os.environ.pop(CHILD_ENV)))
    portable.die_with_parent(_state.supervisor)
    # Ctrl-C reaches the whole process group; a parked standby leaves stopping to the supervisor.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    kind, target, *argv = sys.argv[1:]
    sys.argv = [target, *argv]  # as the command will see it, settings included
    imports = Imports()
    # Told already (the first server, one started for a change): importing ahead gains nothing.
    if not select.select([_state.control], [], [], 0)[0]:
        _preimport()
    set_up = _state.libraries is not None and _set_up(Path(_state.libraries))
    imports.freeze()
    os.write(_state.status, b"w")
    word = _read_all(_state.control)
    os.close(_state.control)
    if not word:
        return  # discarded, or the supervisor is gone
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if word.startswith(b"error\n"):
        fds = [int(fd) for fd in os.environ["PRODSERVE_LISTEN_FDS"].split(",")]
        serve_error(fds, word[6:].decode(), None)
    changed = word.split(b"\n")[1:]
    if (_state.libraries is not None and not set_up) or imports.stale(changed, set_up):
        os.write(_state.status, b"s")  # the supervisor asks a colder standby
        return
    if kind == "module":
        _serve_or_explain(lambda: runpy.run_module(target, run_name="__main__", alter_sys=True))
    else:
        _serve_or_explain(lambda: runpy.run_path(target, run_name="__main__"))


def serve_forked(state: dict, fds: list[int], serve: Callable[[], None]) -> NoReturn:
    """The first server: a fork of the supervisor, which imported the project a moment ago and so
    holds the code on disk; a fresh interpreter would spend as long again importing it. `serve`
    is the command's serving path; this never returns into the supervisor's."""
    global _state
    _state = ChildState(control=-1, **state)
    os.environ["PRODSERVE_LISTEN_FDS"] = ",".join(map(str, fds))
    os.environ["RUN_MAIN"] = "true"  # django.utils.autoreload's: as in runserver's child
    code = 0
    try:
        portable.die_with_parent(_state.supervisor)
        _serve_or_explain(serve)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _serve_or_explain(serve: Callable[[], None]) -> None:
    """Run the command's serving path; if the project fails before it serves, serve the error."""
    # Our own copies of the sockets: the command's socket objects close theirs if it fails.
    fallback = [os.dup(int(fd)) for fd in os.environ["PRODSERVE_LISTEN_FDS"].split(",")]
    try:
        serve()
    except KeyboardInterrupt:
        return
    except BaseException as exc:  # SystemExit too: a CommandError before serving is a boot error
        if _state.ready:
            raise
        if isinstance(exc, SystemExit):
            message = f"The command exited with status {exc.code} before serving."
        else:
            traceback.print_exc()
            message = "".join(traceback.format_exception(exc))
        sys.stderr.flush()
        serve_error(fallback, message, exc)


class Imports:
    """What this standby imported, and what an import looked for and did not find, to tell at the
    word whether a changed file is one it holds an old copy of."""

    def __init__(self) -> None:
        self.missing: set[str] = set()
        self.files: frozenset[str] = frozenset()
        self.roots: list[str] = []
        sys.meta_path.append(self)  # last: asked only when no finder found the module

    def find_spec(self, name: str, path=None, target=None) -> None:
        """A module no finder has (settings' `from .local import *` before local.py exists): the
        file appearing later changes what the import would have done."""
        self.missing.add(name)

    def freeze(self) -> None:
        """Parked: resolve now what the word's check compares with, off the reload's path."""
        sys.meta_path.remove(self)
        self.files = frozenset(
            os.path.realpath(file)
            for module in list(sys.modules.values())
            if isinstance(file := getattr(module, "__file__", None), str)
        )
        self.roots = [os.path.realpath(entry or os.curdir) for entry in sys.path]

    def stale(self, changed: list[bytes], set_up: bool) -> bool:
        """A changed file this process imported, or one an import looked for; once the project's
        settings are loaded, also any file that is not Python (one the settings may read)."""
        for raw in changed:
            path = os.path.realpath(os.fsdecode(raw))
            if path in self.files or (set_up and not path.endswith(".py")):
                return True
            for root in self.roots:
                if path.startswith(root + os.sep):
                    name = path[len(root) + 1 : -3].replace(os.sep, ".").removesuffix(".__init__")
                    if name in self.missing:
                        return True
        return False


def _set_up(libraries: Path) -> bool:
    """The deep standby: as far as the project goes before the edit is known. django.setup()
    (settings, every app and models module), then the libraries the last server imported
    (FileWatch.libraries). False when the project cannot set up: then this standby serves no
    word, and a colder one shows the error."""
    import django

    try:
        django.setup()
    except Exception:
        return False
    names = libraries.read_text().split() if libraries.exists() else []
    for name in names:
        try:
            importlib.import_module(name)
        except (Exception, SystemExit):
            pass  # imported after the word, as in a cold start, if it still fails
    for name in names:
        _compile_urls(getattr(sys.modules.get(name), "urlpatterns", None))
    from django.db import connections

    connections.close_all()  # a library may have queried at import; the workers must not share
    return True


def _compile_urls(patterns) -> None:
    """A library's URL patterns compile their regexes and build their reverse maps on first use,
    which is the first request after a reload (`{% url %}`: ~25 ms on Wagtail's admin). Libraries
    don't change with an edit of the project: do it before the word."""
    from django.urls import URLResolver

    if not isinstance(patterns, (list, tuple)):
        return
    for pattern in patterns:
        try:
            pattern.pattern.regex  # noqa: B018  (compiled and cached on first access)
            if isinstance(pattern, URLResolver):
                _compile_urls(pattern.url_patterns)
                pattern.reverse_dict  # noqa: B018  (built and cached per language)
        except Exception:
            pass  # the first request meets it again, as it would have


def _preimport() -> None:
    """Import PREIMPORT with DJANGO_SETTINGS_MODULE hidden: a module that reads a setting at import
    fails here and is imported after the word instead, so no value is cached from stale settings.
    A failure here is not an error: the real import after the word reports it if it persists."""
    saved = os.environ.pop("DJANGO_SETTINGS_MODULE", None)
    try:
        for name in PREIMPORT:
            try:
                importlib.import_module(name)
            except Exception:
                pass
    finally:
        if saved is not None:
            os.environ["DJANGO_SETTINGS_MODULE"] = saved


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def adjust(config):
    """The child's config: the app loaded before fork (a broken one raises here, where main()
    turns it into the error page), quick stops, no pidfile of its own, and no worker timeout — as
    under runserver, a breakpoint() in a view must not get its worker killed 30 s later."""
    return dataclasses.replace(
        config,
        preload_app=True,
        graceful_timeout=min(config.graceful_timeout, STOP_GRACE),
        timeout=0,
        pidfile=None,
    )


def ready(app, run_checks: Callable[[], None] | None):
    """The app is loaded: import the URLconf too, tell the supervisor, start the checker, and wrap
    the app so each worker replays the supervisor's template/.mo resets.

    The URLconf (and so the views) is imported here, before fork, rather than by the first
    request: the workers inherit it, and a SyntaxError in a view module becomes a boot error with
    its traceback on the error page. Left to the request, Django's technical 500 would resolve the
    URL again to name the view, raise the same SyntaxError, and the browser would get a bare 500.
    """
    from django.db import connections
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018  (the import is the point)
    connections.close_all()  # a view module may have queried at import; workers must not share
    _state.ready = True
    os.write(_state.status, b"r")
    server = os.getpid()
    if not portable.CAN_FORK:  # Windows: a thread of the server, as runserver checks in-process
        threading.Thread(target=_check, args=(server, run_checks), daemon=True).start()
    elif os.fork() == 0:  # off the path of the first requests, at a lower priority
        portable.die_with_parent(server)  # a retired server's stale notices would only confuse
        os.nice(19)  # the first requests come first
        os._exit(_check(server, run_checks))
    return ChangeReplay(app, _state.events)


def _check(server: int, run_checks: Callable[[], None] | None) -> int:
    """Report what the server loaded and what autoreload_started registers with its settings (the
    supervisor watches those; the next standby imports the libraries among them), then run runserver's checks and migration notice. The exit status."""
    from django.apps import apps
    from django.core.management.base import SystemCheckError

    from .watch import Registrations

    code = 0
    try:
        report = {
            "modules": [
                [name, file]
                for name, module in list(sys.modules.items())
                if isinstance(file := getattr(module, "__file__", None), str)
            ],
            "apps": [[config.name, config.path] for config in apps.get_app_configs()],
            "registered": Registrations.here().report(),
        }
        report_path(_state.reports, server).write_text(json.dumps(report))
        os.write(_state.status, b"m")
        if run_checks is not None:
            run_checks()
    except SystemCheckError as exc:
        sys.stderr.write(f"{exc}\n")  # as runserver's child shows it, without our traceback
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(_state.status, b"c")
    return code


class ChangeReplay:
    """Fires Django's `file_changed` in this process, before the next request, for each change the
    supervisor handled without a restart (django.template.autoreload claims template edits,
    django.utils.translation.reloader .mo files): its receivers then reset the caches that serve
    here, not only the supervisor's. Dev mode only; one fstat() per request."""

    def __init__(self, app, fd: int) -> None:
        self.app = app
        self.fd = fd
        self.offset = os.fstat(fd).st_size

    def __call__(self, environ, start_response):
        size = os.fstat(self.fd).st_size
        if size != self.offset:
            self.replay(size)
        return self.app(environ, start_response)

    def replay(self, size: int) -> None:
        from django.utils.autoreload import file_changed

        data = os.pread(self.fd, size - self.offset, self.offset)
        data = data[: data.rfind(b"\n") + 1]  # a line still being written waits for next time
        self.offset += len(data)
        for line in data.decode().splitlines():
            file_changed.send(sender=self, file_path=Path(line))


def serve_error(fds: list[int], message: str, exc: BaseException | None) -> None:
    """Serve a 500 on the inherited sockets until the supervisor stops us; never returns."""
    from ..conf import resolve
    from .inprocess import Server
    from .sockets import Address, bound_address
    from .worker import Listener
    from .wsgi import base_environ

    os.write(_state.status, b"f")
    config = dataclasses.replace(
        resolve({}, {}, {})[0], workers=1, timeout=0, graceful_timeout=STOP_GRACE
    )
    listeners = []
    for fd in fds:
        sock = socket.socket(fileno=fd)
        address = bound_address(sock, Address("fd", fd=fd))
        host, port = (address.host, str(address.port)) if address.kind == "tcp" else ("", "")
        listeners.append(Listener(sock, base_environ(host, port, False, False), address))
    code = Server(config, listeners, app=ErrorPage(error_page(message, exc))).run()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def error_page(message: str, exc: BaseException | None) -> bytes:
    """Django's technical 500 when DEBUG and settings load; a plain traceback page when they
    don't; Django's bare 500 body when DEBUG is off."""
    try:
        from django.conf import settings

        debug = settings.DEBUG
    except Exception:
        debug = _state.debug
    if not debug:
        return b"<h1>Server Error (500)</h1>"
    if exc is not None and not isinstance(exc, SystemExit):
        try:
            from django.views.debug import ExceptionReporter

            reporter = ExceptionReporter(None, type(exc), exc, exc.__traceback__)
            return reporter.get_traceback_html().encode()
        except Exception:
            pass
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Server error</title></head>"
        "<body><h1>The project failed to start</h1>"
        "<p>prodserve will start it again when a watched file changes.</p>"
        f"<pre>{html.escape(message)}</pre></body></html>"
    ).encode()


class ErrorPage:
    """The WSGI app of a project that cannot boot: every request gets the same 500."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __call__(self, environ, start_response):
        start_response(
            "500 Internal Server Error",
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", str(len(self.body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [self.body]
