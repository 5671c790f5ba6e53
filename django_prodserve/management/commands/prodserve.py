"""`manage.py prodserve`: options → config → checks → sockets → banner → master.run()."""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
import ssl
import sys
from datetime import datetime

import django
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.core.management.commands.runserver import naiveip_re
from django.core.servers.basehttp import get_internal_wsgi_application
from django.db import connections
from django.urls import get_resolver

from ... import __version__, checks, logs, metrics, static
from ...conf import SECTIONS, SETTINGS, reloading, resolve
from ...server import portable, reload_child, sockets, supervisor, tls, wsgi
from ...server.hooks import Hooks
from ...server.inprocess import Server, one_process
from ...server.supervisor import Supervisor
from ...server.worker import Listener


def invalid_configuration(problems) -> CommandError:
    return CommandError(
        "Invalid prodserve configuration:\n"
        + "\n".join(f"  {p.id}: {p.message}\n    HINT: {p.hint}" for p in problems)
    )


class Command(BaseCommand):
    help = "Serves the project on prodserve, a pre-fork HTTP/1.1 server: from laptop to production."
    # Checks run in handle(), after the configuration is known, like runserver's inner_run().
    requires_system_checks = []
    suppressed_base_arguments = {"--verbosity", "--traceback"}
    reload_by_debug = False  # reload is on because DEBUG is (handle())

    def add_arguments(self, parser) -> None:
        parser.usage = "%(prog)s [addrport] [options]"  # the options, grouped, follow
        parser.add_argument(
            "addrport", nargs="?", help="Optional port number, or ipaddr:port (replaces bind)."
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Validate the configuration, run the system checks, import the hooks and the "
            "app, then exit (0 when all is well); no socket is bound.",
        )
        parser.add_argument(
            "--print-config",
            action="store_true",
            help="Print every resolved setting and where its value came from, then exit.",
        )
        # Each setting's flag in its section, with its default: `--help` reads like runserver's
        # for development and like gunicorn's below it.
        groups = {name: parser.add_argument_group(title) for name, title in SECTIONS.items()}
        development = groups["development"]
        development.add_argument(
            "-6",
            "--ipv6",
            action="store_true",
            dest="use_ipv6",
            help="Use the IPv6 loopback ::1 when addrport names no address.",
        )
        development.add_argument("--skip-checks", action="store_true", help="Skip system checks.")
        development.add_argument(
            "--nostatic",
            action="store_false",
            dest="use_static_handler",
            help="Do NOT serve static files at STATIC_URL when DEBUG is on.",
        )
        development.add_argument(
            "--insecure",
            action="store_true",
            dest="insecure_serving",
            help="Serve static files even if DEBUG is False.",
        )
        development.add_argument(
            "--noreload",
            action="store_const",
            const=False,
            dest="setting_reload",
            help="Do NOT watch files and restart on changes (runserver's flag).",
        )
        development.add_argument(
            "--nothreading",
            action="store_const",
            const=1,
            dest="setting_threads",
            help="Run the app inline in each worker's event loop (threads = 1).",
        )
        for setting in SETTINGS:
            default = setting.show(setting.default).replace("%", "%%")  # argparse formats help
            kwargs = {
                "dest": f"setting_{setting.name}",
                "default": None,
                "help": f"{setting.help} Default: {default}.",
            }
            if setting.is_flag:
                kwargs["action"] = "store_const"
                kwargs["const"] = True
            else:
                kwargs["metavar"] = setting.metavar
                if setting.is_list:
                    kwargs["action"] = "append"
            groups[setting.section].add_argument(*setting.flags, **kwargs)

    def handle(self, *args, **options) -> None:
        cli = {
            setting.name: options[f"setting_{setting.name}"]
            for setting in SETTINGS
            if options[f"setting_{setting.name}"] is not None
        }
        if options["addrport"] or options["use_ipv6"]:
            cli["bind"] = [self.addrport_to_bind(options["addrport"], options["use_ipv6"])]
        config, sources, problems = resolve(getattr(settings, "PRODSERVE", {}), os.environ, cli)
        if options["print_config"]:
            return self.print_config(config, sources, problems)
        if not settings.DEBUG and not settings.ALLOWED_HOSTS:
            raise CommandError("You must set settings.ALLOWED_HOSTS if DEBUG is False.")
        # The banner says why it reloads: DEBUG ('auto', runserver's way), or a `reload` asked for.
        self.reload_by_debug = config.reload == "auto" and settings.DEBUG
        config = dataclasses.replace(config, reload=reloading(config, settings.DEBUG))
        child = reload_child.state()
        generation = supervisor.generation()
        supervise = config.reload and child is None and not options["check"]
        # Under the --reload supervisor each server runs the checks, as runserver's child does
        # (reload_child.ready): then they see the code on disk, after every reload. So do the
        # generations after the first (a HUP): the first serves the code checked here.
        checked = child is None and not supervise and (generation is None or generation.checks)
        if checked and (options["check"] or not options["skip_checks"]):
            self.run_checks(cli)
        if problems:
            raise invalid_configuration(problems)
        if options["check"]:
            return self.check_startup(config, options)
        connections.close_all()  # the checks may have opened some; workers must not share them
        # runserver logs every request on the console; so does development (DEBUG) here, unless
        # the access log is configured (accesslog, or the project's LOGGING).
        console_log = (
            (config.reload or settings.DEBUG)
            and config.accesslog is None
            and logs.access_log.name not in logs.configured_by_logging()
        )
        if console_log:
            config = dataclasses.replace(config, accesslog="-")
        if child is not None:
            config = reload_child.adjust(config)
        if generation is not None:
            config = generation.adjust(config)
        config = one_process(config)
        logs.configure(config, self.style if console_log else None)
        if supervise:
            return self.supervise(config, options, cli)
        if child is None and generation is None:
            return self.serve_generations(config, options, cli)
        self.serve(config, options, cli, generation)

    def serve_generations(self, config, options, cli: dict) -> None:
        """Production: this process keeps the sockets, the signals and the pidfile; the first
        generation of workers is forked from it, each later one is a fresh interpreter that
        imports the code on disk (server/supervisor.py)."""

        def serve_first(generation: supervisor.Generation) -> None:
            self.serve(generation.adjust(config), options, cli, generation, top.listeners)

        try:
            top = Supervisor(config, serve_first)
        except ImportError as exc:
            raise CommandError(f"A server hook could not be imported: {exc}") from exc
        top.hooks("on_starting", top)
        if config.umask is not None:
            os.umask(config.umask)
        top.listeners = self.bind(config)
        self.banner(config, top.listeners)
        exit_code = top.run()
        if exit_code:
            sys.exit(exit_code)

    def serve(
        self,
        config,
        options,
        cli: dict,
        generation: supervisor.Generation | None,
        listeners: list[Listener] | None = None,
    ) -> None:
        """A generation (production) or a --reload server: the master of this interpreter's
        workers, on the supervisor's sockets (inherited, or its `listeners` when forked from it);
        no checks, no banner."""
        announce = generation.ready if generation is not None else None
        try:
            load_app = metrics.instrument(config, self.wsgi_loader(options, config))
            master = Server(config, load_app=load_app, announce=announce)
        except ImportError as exc:
            raise CommandError(f"A server hook could not be imported: {exc}") from exc
        master.hooks("on_starting", master)
        if config.umask is not None:
            os.umask(config.umask)
        master.listeners = self.bind(config) if listeners is None else listeners
        if generation is not None:
            # The URLconf (so the views), as the system checks did when workers were forked from
            # the process that ran them: every worker of a generation, a respawned one too, serves
            # the code the generation started with, and a broken view fails the boot.
            get_resolver().url_patterns  # noqa: B018  (the import is the point)
        if config.preload_app:
            # A broken app raises here: traceback and exit 1, no worker forked.
            master.app = master.load_app()
        connections.close_all()
        if announce is None:
            run_checks = None if options["skip_checks"] else functools.partial(self.run_checks, cli)
            master.app = reload_child.ready(master.app, run_checks)
        exit_code = master.run()
        if exit_code:
            sys.exit(exit_code)

    def run_checks(self, cli: dict) -> None:
        """runserver's: the system checks (with the command line's values in force), then a word
        about unapplied migrations."""
        self.stdout.write("Performing system checks...\n\n")
        with checks.command_line(cli):
            self.check(display_num_errors=True)
        self.check_migrations()

    def supervise(self, config, options, cli: dict) -> None:
        """--reload: this process keeps the sockets and watches files; a fork of it serves first,
        then fresh interpreters."""
        from ...server.reloader import Reloader  # imports watchfiles, which only dev mode needs

        if config.umask is not None:
            os.umask(config.umask)
        listeners = self.bind(config)
        self.banner(config, listeners)
        serve_here = functools.partial(self.serve, reload_child.adjust(config), options, cli, None)
        # Without fork (Windows) the first server is a fresh interpreter too, as every later one.
        Reloader(config, listeners, settings.DEBUG, serve_here if portable.CAN_FORK else None).run()

    def print_config(self, config, sources: dict[str, str], problems) -> None:
        """--print-config: each setting as you would write it in PRODSERVE, and its source."""
        invalid = {p.setting: p.source for p in problems}
        for setting in SETTINGS:
            shown = setting.show(getattr(config, setting.name))
            source = sources[setting.name]
            if source == "environment":
                source += f" ({setting.env_var})"
            if shown == "'auto'" and setting.name == "reload":
                source += f"; {'on' if settings.DEBUG else 'off'}, as DEBUG is {settings.DEBUG}"
            if setting.name in invalid:
                source += f"; the invalid value from {invalid[setting.name]} is ignored, see below"
            self.stdout.write(f"{setting.name} = {shown}  # {source}")
        if problems:
            raise invalid_configuration(problems)

    def check_startup(self, config, options) -> None:
        """--check: import what a start would (hooks, the WSGI app), but bind no socket."""
        try:
            Hooks(config)
        except ImportError as exc:
            raise CommandError(f"A server hook could not be imported: {exc}") from exc
        try:
            self.wsgi_loader(options, config)()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write("configuration OK")

    @staticmethod
    def addrport_to_bind(addrport: str | None, use_ipv6: bool) -> str:
        """runserver's addrport grammar, as a `bind` entry; runserver's error messages."""
        default_host = "::1" if use_ipv6 else "127.0.0.1"
        if not addrport:
            host, port = default_host, "8000"
        else:
            match = naiveip_re.match(addrport)
            if match is None:
                raise CommandError(f'"{addrport}" is not a valid port number or address:port pair.')
            host, _ipv4, ipv6, _fqdn, port = match.groups()
            if not port.isdigit():
                raise CommandError(f"{port!r} is not a valid port number.")
            if ipv6:
                host = ipv6[1:-1]
            host = host or default_host
            if host == "0":
                host = "0.0.0.0"
        if ":" in host:
            if not socket.has_ipv6:
                raise CommandError("Your Python does not support IPv6.")
            return f"[{host}]:{port}"
        return f"{host}:{port}"

    def bind(self, config) -> list[Listener]:
        """Bind every address; sockets handed over (systemd, SIGUSR2) replace `bind`."""
        multiprocess = config.workers > 1
        multithread = config.threads > 1
        try:
            context = tls.make_context(config)
        except (OSError, ssl.SSLError) as exc:
            raise CommandError(f"TLS: {exc} (check certfile, keyfile, ca_certs, ciphers)") from exc
        scheme = "http" if context is None else "https"
        listeners = []
        addresses = [sockets.Address("fd", fd=fd) for fd in sockets.inherited_fds()]
        for address in addresses or map(sockets.parse_bind, config.bind):
            try:
                sock = sockets.bind(address, config.backlog, config.reuse_port)
            except sockets.BindError as exc:
                self.stderr.write(f"Error: {exc}")
                for listener in listeners:
                    listener.sock.close()
                sys.exit(1)
            bound = sockets.bound_address(sock, address)
            name, port = (bound.host, str(bound.port)) if bound.kind == "tcp" else (bound.path, "")
            environ = wsgi.base_environ(name, port, multithread, multiprocess, scheme)
            listeners.append(Listener(sock, environ, bound, context))
        return listeners

    @staticmethod
    def wsgi_loader(options, config):
        """Resolve WSGI_APPLICATION exactly as runserver does; static files in DEBUG like it too.

        Otherwise, with serve_static, STATIC_ROOT is served in front of the app (static.py).
        """
        debug_static = (
            options["use_static_handler"]
            and (settings.DEBUG or options["insecure_serving"])
            and "django.contrib.staticfiles" in settings.INSTALLED_APPS
        )

        def load_app():
            app = get_internal_wsgi_application()
            if debug_static:
                from django.contrib.staticfiles.handlers import StaticFilesHandler

                app = StaticFilesHandler(app)
            elif config.serve_static:
                app = static.from_settings(app, config.static_max_age)
            return app

        return load_app

    def banner(self, config, listeners: list[Listener]) -> None:
        now = datetime.now().strftime("%B %d, %Y - %X")
        threads = "thread" if config.threads == 1 else "threads"
        workers = "worker" if config.workers == 1 else "workers"
        lines = [
            now,
            f"Django version {django.get_version()}, using settings {settings.SETTINGS_MODULE!r}",
            f"prodserve {__version__} on Python {sys.version.split()[0]}: "
            f"{'reloader' if config.reload else 'master'} pid {os.getpid()}, "
            f"{config.workers} {workers} × {config.threads} {threads}",
        ]
        for listener in listeners:
            scheme = listener.environ_base["wsgi.url_scheme"]
            lines.append(f"Listening at {sockets.display(listener.address, scheme)}")
        quit_key = "CTRL-BREAK" if sys.platform == "win32" else "CONTROL-C"
        lines.append(f"Quit the server with {quit_key}.")
        if self.reload_by_debug:
            lines.append(
                "DEBUG is on, so prodserve reloads on every change (--noreload turns it off)."
            )
        elif config.reload and os.environ.get("DJANGO_RUNSERVER_HIDE_WARNING") != "true":
            lines.append(
                self.style.WARNING(
                    "\nWARNING: --reload is for development: it restarts the server on every "
                    "change. Serve without it in production.\n(DJANGO_RUNSERVER_HIDE_WARNING=true "
                    "hides this warning.)"
                )
            )
        self.stdout.write("\n".join(lines))
        self.stdout.flush()
