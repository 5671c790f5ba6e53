#!/usr/bin/env python3
"""Save → first new response: `prodserve --reload` (warm standby, cold start) vs `runserver`.

Each server serves a fresh copy of the test project on a free loopback port. N times, the bench
rewrites demo/views.py so that /hello/ answers a new text (a new length each time, so no stale
.pyc can hide an edit), then requests /hello/ every few milliseconds from the moment the file is
closed until the new text comes back. That interval is the number a developer feels. Between
edits it lets the server settle (runserver's poll, prodserve's standby) for SETTLE seconds.

Usage (from anywhere):

    python bench/reload.py                    # N=5 edits per server
    python bench/reload.py -n 10 --servers prodserve-warm,runserver

Stdlib only. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import django

REPO = Path(__file__).resolve().parent.parent
SERVERS = {
    "prodserve-warm": ["prodserve", "--reload", "--reload-start", "warm"],
    "prodserve-cold": ["prodserve", "--reload", "--reload-start", "cold"],
    "runserver": ["runserver"],
}
HELLO = "Hello, world!"
SETTLE = 2.0
POLL = 0.003
TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hello(port: int) -> bytes | None:
    """The /hello/ body, or None while nothing answers (runserver refuses during a restart)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/hello/")
        return conn.getresponse().read()
    except OSError:
        return None
    finally:
        conn.close()


def wait_for(port: int, body: bytes, since: float) -> float:
    """Seconds from `since` until /hello/ answers `body`."""
    while time.perf_counter() - since < TIMEOUT:
        if hello(port) == body:
            return time.perf_counter() - since
        time.sleep(POLL)
    raise RuntimeError(f"/hello/ never answered {body!r}")


def measure(name: str, project: Path, edits: int, env: dict[str, str]) -> list[float]:
    port = free_port()
    views = project / "demo" / "views.py"
    original = views.read_text()
    log = project.parent / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", *SERVERS[name], f"127.0.0.1:{port}"],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(port, HELLO.encode(), time.perf_counter())
        latencies = []
        for edit in range(1, edits + 1):
            time.sleep(SETTLE)
            new = f"Hello, edit {'!' * edit}"
            views.write_text(original.replace(HELLO, new))
            latencies.append(wait_for(port, new.encode(), time.perf_counter()))
        return latencies
    except RuntimeError:
        sys.exit(f"{name}: no new response; its log ends:\n{log.read_text()[-3000:]}")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        views.write_text(original)
        # Both servers log "<path> changed, reloading."; other paths make the numbers noisy.
        others = [line for line in log.read_text().splitlines() if "changed, reloading" in line]
        others = [line for line in others if "views.py" not in line]
        if others:
            print(f"{name}: {len(others)} restarts for other files, e.g. {others[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--edits", type=int, default=5)
    parser.add_argument("--servers", default=",".join(SERVERS))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="prodserve-reload-bench-") as tmp:
        env = {**os.environ, "TESTPROJECT_DB": str(Path(tmp) / "db.sqlite3")}
        env = {k: v for k, v in env.items() if not k.startswith("PRODSERVE_")}
        for name in args.servers.split(","):
            project = Path(tmp) / name
            shutil.copytree(
                REPO / "testproject",
                project,
                ignore=shutil.ignore_patterns("__pycache__", "db.sqlite3", "staticfiles"),
            )
            subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=project, env=env)
            results[name] = measure(name, project, args.edits, env)
            print(f"{name}: {', '.join(f'{s * 1000:.0f}' for s in results[name])} ms", flush=True)
    print(
        f"\nSave → first new response, {args.edits} edits each; Python {platform.python_version()}"
        f", Django {django.get_version()}, {os.cpu_count()} CPUs\n"
    )
    print("| server | median | max |")
    print("|---|---:|---:|")
    for name, latencies in results.items():
        median, worst = statistics.median(latencies) * 1000, max(latencies) * 1000
        print(f"| {name} | {median:.0f} ms | {worst:.0f} ms |")


if __name__ == "__main__":
    main()
