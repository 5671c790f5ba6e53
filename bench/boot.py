#!/usr/bin/env python3
"""Boot time: `manage.py prodserve` started → first response, on the test project and on Wagtail.

Each run starts the production command (no --reload, DEBUG off, 2 workers) on a free loopback
port and requests the project's page every few milliseconds from the moment the process is
started until an HTTP response comes back; that interval is what a deploy or a restart costs.

The Wagtail site is the heavy project (dozens of apps, a big admin URLconf). It is built, not
committed: `--wagtail-python` names an interpreter that has wagtail installed, e.g.

    pip install wagtail   # or in a venv made with --system-site-packages
    python bench/boot.py --wagtail-python python

which runs `wagtail start` in a temporary directory (kept in --wagtail-dir when given, and reused),
migrates it and adds prodserve to INSTALLED_APPS. Without that option only the test project runs.

Usage: python bench/boot.py [-n RUNS] [--wagtail-python PY [--wagtail-dir DIR]] [-- prodserve args]
Stdlib only. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
POLL = 0.005
TIMEOUT = 60.0
WAGTAIL_SETTINGS = """\
from .dev import *  # noqa: F403

DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [*INSTALLED_APPS, "django_prodserve"]  # noqa: F405
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


def boot_time(
    python: str, project: Path, path: str, env: dict[str, str], extra: list[str]
) -> float:
    """Seconds from Popen to the first HTTP response on `path`."""
    port = free_port()
    args = [python, "manage.py", "prodserve", f"127.0.0.1:{port}", "-w", "2", *extra]
    started = time.monotonic()
    proc = subprocess.Popen(
        args,
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while not answers(port, path):
            if proc.poll() is not None:
                raise SystemExit(f"{project}: the server exited with status {proc.returncode}")
            if time.monotonic() - started > TIMEOUT:
                raise SystemExit(f"{project}: no response within {TIMEOUT}s")
            time.sleep(POLL)
        return time.monotonic() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def build_wagtail(python: str, directory: Path, env: dict[str, str]) -> Path:
    """`wagtail start mysite`, migrated, with prodserve installed; reused when already built."""
    site = directory / "mysite"
    if not (site / "db.sqlite3").exists():
        site.mkdir(parents=True, exist_ok=True)
        run = {"check": True, "env": env, "cwd": site, "stdout": subprocess.DEVNULL}
        wagtail = "from wagtail.bin.wagtail import main; main()"  # its console script
        subprocess.run([python, "-c", wagtail, "start", "mysite", str(site)], **run)
        (site / "mysite" / "settings" / "bench.py").write_text(WAGTAIL_SETTINGS)
        subprocess.run([python, "manage.py", "migrate"], **run)
    return site


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--runs", type=int, default=3)
    parser.add_argument("--wagtail-python", help="an interpreter with wagtail installed")
    parser.add_argument("--wagtail-dir", type=Path, help="where to build (and reuse) the site")
    parser.add_argument("extra", nargs="*", help="more prodserve arguments, after --")
    options = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODSERVE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("DJANGO_SETTINGS_MODULE", None)
    testproject_env = {**env, "TESTPROJECT_DEBUG": "0"}
    projects = [("testproject", sys.executable, REPO / "testproject", "/hello/", testproject_env)]
    if options.wagtail_python:
        directory = options.wagtail_dir or Path(tempfile.mkdtemp(prefix="prodserve-wagtail-"))
        site = build_wagtail(options.wagtail_python, directory, env)
        wagtail_env = {**env, "DJANGO_SETTINGS_MODULE": "mysite.settings.bench"}
        projects.append(("wagtail", options.wagtail_python, site, "/", wagtail_env))
    print("| project | runs | median s | min s | max s |")
    print("|---|---|---|---|---|")
    for name, python, project, path, project_env in projects:
        times = [
            boot_time(python, project, path, project_env, options.extra)
            for _ in range(options.runs)
        ]
        print(
            f"| {name} | {len(times)} | {statistics.median(times):.3f} | {min(times):.3f} "
            f"| {max(times):.3f} |"
        )


if __name__ == "__main__":
    main()
