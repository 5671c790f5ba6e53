#!/usr/bin/env python3
"""Save → first new response, and start → first response: prodserve vs runserver vs granian.

Each server serves a fresh copy of a project on a free loopback port, with DEBUG on, started as a
developer starts it (`manage.py prodserve`, `manage.py runserver`, `granian --reload`). The bench
times the start until the page answers, then N times rewrites a view module (`VIEW_EDIT = "n"`)
and then N times a models module (`MODEL_EDIT = "n"`), and requests the page every few
milliseconds from the moment the file is closed until the response's X-Edit header shows the new
value. That interval is what a developer waits for. Between edits it lets the server settle: SETTLE
seconds, and for prodserve until its standbys are parked again (what a developer's pause between
two saves gives it; the time that takes is printed).

Projects: `test` (the test project, tiny) and `wagtail` (a site from `wagtail start`, ~1,800
modules: the heavy, real project). The Wagtail site is built, not committed, with
bench/boot.py's build_wagtail (pip install wagtail first); --wagtail-dir keeps it for reuse.

Usage (the machine is shared: take the lock):

    flock /tmp/bench.lock python bench/reload.py --project wagtail      # the issue 17 table
    python bench/reload.py --project test -n 5 --servers prodserve,runserver

Prints a markdown table; -v also prints when prodserve saw each change and had the new server up.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import django
from boot import build_wagtail

REPO = Path(__file__).resolve().parent.parent
SETTLE = 2.0
POLL = 0.003
TIMEOUT = 60.0
STANDBY = re.compile(r"Warm standby \d+: the project set up, waiting")
EDIT_HEADER = 'response["X-Edit"] = f"{VIEW_EDIT}/{MODEL_EDIT}"'


@dataclass
class Project:
    name: str
    path: str  # the page the bench requests
    module: str  # WSGI application, for granian
    settings: str
    views: str  # files, relative to the project
    models: str
    build: Callable[[Path, Path], None]  # (work directory, project directory) → project built


def build_test(work: Path, project: Path) -> None:
    shutil.copytree(
        REPO / "testproject",
        project,
        ignore=shutil.ignore_patterns("__pycache__", "db.sqlite3", "staticfiles"),
    )
    views = project / "demo" / "views.py"
    text = views.read_text().replace(
        "from .models import Item", "from .models import MODEL_EDIT, Item"
    )
    text = text.replace(
        '    return HttpResponse(b"Hello, world!", content_type="text/plain")',
        '    response = HttpResponse(b"Hello, world!", content_type="text/plain")\n'
        f"    {EDIT_HEADER}\n    return response",
    )
    views.write_text(text + '\n\nVIEW_EDIT = "0"\n')
    settings = project / "testproject" / "settings.py"
    settings.write_text(settings.read_text().replace('"reload": False', '"reload": "auto"'))
    _append(project / "demo" / "models.py", '\n\nMODEL_EDIT = "0"\n')


def build_site(work: Path, project: Path) -> None:
    built = build_wagtail(sys.executable, work / "wagtail", _env())
    shutil.copytree(built, project, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "mysite" / "settings" / "reloadbench.py").write_text(
        "from .dev import *  # noqa: F403\n\n"
        'INSTALLED_APPS = [*INSTALLED_APPS, "django_prodserve"]  # noqa: F405\n'
    )
    views = project / "search" / "views.py"
    text = views.read_text().replace(
        "from wagtail.models import Page\n",
        'from wagtail.models import Page\n\nfrom home.models import MODEL_EDIT\n\nVIEW_EDIT = "0"\n',
        1,
    )
    text = text.replace("    return TemplateResponse(", "    response = TemplateResponse(")
    views.write_text(text.rstrip() + f"\n    {EDIT_HEADER}\n    return response\n")
    _append(project / "home" / "models.py", '\n\nMODEL_EDIT = "0"\n')


PROJECTS = {
    "test": Project(
        "test", "/hello/", "testproject.wsgi:application", "testproject.settings",
        "demo/views.py", "demo/models.py", build_test,
    ),
    "wagtail": Project(
        "wagtail", "/search/", "mysite.wsgi:application", "mysite.settings.reloadbench",
        "search/views.py", "home/models.py", build_site,
    ),
}  # fmt: skip


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODSERVE_")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def commands(project: Project, port: int) -> dict[str, list[str]]:
    manage = [sys.executable, "manage.py"]
    return {
        "prodserve": [*manage, "prodserve", f"127.0.0.1:{port}", "--log-level", "debug"],
        "prodserve-cold": [*manage, "prodserve", f"127.0.0.1:{port}", "--reload-start", "cold"],
        "runserver": [*manage, "runserver", f"127.0.0.1:{port}"],
        "granian": [
            *("granian", "--interface", "wsgi", "--reload", "--host", "127.0.0.1"),
            *("--port", str(port), "--log-level", "warning", project.module),
        ],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def edit_header(port: int, path: str) -> str | None:
    """The page's X-Edit header, or None while nothing answers (a server restarting)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.getheader("X-Edit") if response.status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()


@dataclass
class Console:
    """A server's output, each line with the time it arrived."""

    proc: subprocess.Popen
    lines: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.perf_counter(), line.decode(errors="replace").rstrip()))

    def count(self, pattern: re.Pattern) -> int:
        return sum(1 for _, line in list(self.lines) if pattern.search(line))

    def first_after(self, since: float, pattern: str) -> float | None:
        return next(
            (t for t, line in list(self.lines) if t >= since and re.search(pattern, line)), None
        )


@dataclass
class Result:
    start: float
    edits: dict[str, list[float]] = field(default_factory=lambda: {"view": [], "models": []})
    settle: list[float] = field(default_factory=list)  # prodserve: until the standby was parked
    trace: list[str] = field(default_factory=list)


def wait_for(port: int, path: str, value: str, since: float) -> float:
    while time.perf_counter() - since < TIMEOUT:
        if edit_header(port, path) == value:
            return time.perf_counter() - since
        time.sleep(POLL)
    raise RuntimeError(f"{path} never answered X-Edit: {value}")


def measure(
    name: str, project: Project, root: Path, env: dict[str, str], edits: int, verbose: bool
) -> Result:
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        commands(project, port)[name],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    console = Console(proc)
    try:
        result = Result(wait_for(port, project.path, "0/0", started))
        values = {"view": 0, "models": 0}
        parked = 1  # standbys parked so far that the next edit waits for
        for kind in ("view", "models"):
            module = root / (project.views if kind == "view" else project.models)
            variable = "VIEW_EDIT" if kind == "view" else "MODEL_EDIT"
            for _ in range(edits):
                settled = time.perf_counter()
                time.sleep(SETTLE)
                if name == "prodserve":
                    while (
                        console.count(STANDBY) < parked and time.perf_counter() - settled < TIMEOUT
                    ):
                        time.sleep(0.05)
                    result.settle.append(time.perf_counter() - settled)
                values[kind] += 1
                text = re.sub(
                    rf'^{variable} = "\d+"$',
                    f'{variable} = "{values[kind]}"',
                    module.read_text(),
                    flags=re.M,
                )
                saved = time.perf_counter()
                module.write_text(text)
                parked = console.count(STANDBY) + 1
                latency = wait_for(
                    port, project.path, f"{values['view']}/{values['models']}", saved
                )
                result.edits[kind].append(latency)
                if verbose:
                    seen = console.first_after(saved, "changed, reloading")
                    up = console.first_after(saved, r"Server process \d+ ready")
                    worker = console.first_after(saved, r"Worker \d+ ready")
                    ms = [
                        None if t is None else round((t - saved) * 1000) for t in (seen, up, worker)
                    ]
                    result.trace.append(
                        f"{name} {kind}: seen {ms[0]} ms, app loaded {ms[1]} ms, "
                        f"worker up {ms[2]} ms, answered {latency * 1000:.0f} ms"
                    )
        return result
    except RuntimeError as exc:
        output = "\n".join(line for _, line in console.lines[-40:])
        sys.exit(f"{name}: {exc}; its output ends:\n{output}")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", choices=PROJECTS, default="test")
    parser.add_argument("-n", "--edits", type=int, default=5, help="edits of each kind")
    parser.add_argument("--servers", default="prodserve,runserver,granian")
    parser.add_argument("--wagtail-dir", type=Path, help="where to build (and reuse) the site")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    project = PROJECTS[args.project]
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="prodserve-reload-bench-") as tmp:
        work = args.wagtail_dir or Path(tmp)
        for name in args.servers.split(","):
            root = Path(tmp) / name
            project.build(work, root)
            env = {
                **_env(),
                "DJANGO_SETTINGS_MODULE": project.settings,
                "TESTPROJECT_DB": str(root / "db.sqlite3"),
                "PYTHONUNBUFFERED": "1",
            }
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "-v0"], cwd=root, env=env, check=True
            )
            results[name] = result = measure(name, project, root, env, args.edits, args.verbose)
            edits = "; ".join(
                f"{kind} " + ", ".join(f"{s * 1000:.0f}" for s in times)
                for kind, times in result.edits.items()
            )
            print(f"{name}: start {result.start:.2f} s; {edits} ms", flush=True)
            for line in result.trace:
                print(f"  {line}")
    print(
        f"\nProject {project.name}, {args.edits} edits of each kind; Python "
        f"{platform.python_version()}, Django {django.get_version()}, {os.cpu_count()} CPUs\n"
    )
    print(
        "| server | save → new response, view edit (median) | models edit (median) | start → first response |"
    )
    print("|---|---:|---:|---:|")
    for name, result in results.items():
        view, models = (statistics.median(result.edits[k]) * 1000 for k in ("view", "models"))
        print(f"| {name} | {view:.0f} ms | {models:.0f} ms | {result.start:.2f} s |")
    if "prodserve" in results and results["prodserve"].settle:
        settle = results["prodserve"].settle
        print(
            f"\nprodserve's standby was parked {max(settle):.1f} s at most after a reload (SETTLE {SETTLE} s)."
        )


if __name__ == "__main__":
    main()
