#!/usr/bin/env python3
"""Benchmark `manage.py prodserve` against gunicorn, granian, waitress and bjoern with wrk.

Every (server, workload) pair gets a fresh server with 2 worker processes on a free loopback
port, a short wrk warmup, then a measured wrk run. Besides wrk's req/s and latency we record
the CPU time burnt by the whole server process tree during the measured run, because on a small
machine CPU per request is the number that predicts capacity, not raw req/s.

Servers: prodserve (2 workers x 1 thread + spare threads), prodserve-t4 (x 4 threads),
prodserve-inline (--spare-threads 0), prodserve-base (another checkout), prodserve-preload,
gunicorn (2 sync workers), gunicorn-gthread (2 gthread workers x 4 threads), granian (WSGI),
waitress (1 process x 4 threads), and the opt-in bjoern (2 forked processes of a WSGI server
written in C, started by bench/bjoern_serve.py; not a default, and not in the `bench` extra as
it builds against libev: `apt-get install libev-dev && pip install bjoern`). bjoern is the
reference limit: about the least CPU per request any server can spend on this machine.

App in-process cost: at the start of every round, before that round's servers run, each
Django-served workload's WSGI app (and the bare app) is called in a plain subprocess with a
realistic environ, no server and no socket, and its CPU µs per call is reported next to every
server's CPU µs/req (server/app ratio = what the server adds on top of the app). A server's
ratio to it pairs each round with that round's app cost, like the server-to-server ratios.

Goals: the report ends with a "## Goals" section: one line per goal of the performance issue
(prodserve vs granian, gunicorn sync or the app's own cost, as ratios measured in this run) with
PASS, FAIL, or "not measured" when the run lacked a server or workload the goal needs. When
bjoern ran too, each line also shows bjoern's value of the same ratio, i.e. whether a C server
reaches the goal on this machine at all. With --rounds N every cell (and the app cost) is
measured N times in alternating order and ratios are medians of the per-round ratios.

Usage (from anywhere; paths are resolved relative to this file):

    python bench/run.py                      # prodserve, gunicorn, granian on bare + django
    python bench/run.py --servers prodserve,prodserve-t4,gunicorn,gunicorn-gthread,granian,waitress \\
        --workloads bare,django,json,db,bare-close,django-close
    python bench/run.py --quick --guard 1.5  # CI: 3 alternating prodserve/granian rounds on bare,
                                             # exit 1 if the median CPU ratio exceeds 1.5
    python bench/run.py --servers prodserve,prodserve-preload,gunicorn \\
        --workloads post-1mb,download-100mb,slow-clients --output /tmp/bench-extra.md

Opt-in workloads: post-1mb (1 MiB POST bodies, MB/s), download-100mb (sendfile-able 100 MB
responses, CPU ms per MB), slow-clients (throughput kept while 1000 half-sent requests are held
open); issue 15's mix (bench/openloop.py: Poisson arrivals at 400/s over a pool of 32 keep-alive
connections, 1% to a 100 ms view; fast requests' p50/p99/p99.9 from the scheduled arrival; 30 s
whatever --duration says), nginx and nginx-keepalive (wrk through an nginx in front, without and
with upstream keep-alive; CPU µs/req counts nginx's processes too), pipeline (bench/pipeline.py:
4 connections keep 1000 pipelined requests each in flight while a probe on another times one
request every 5 ms). Every cell also reports the workers' RSS and USS after the measured run.

Issue 15's comparison (the default worker against the strictly inline one and the code before it,
and the other servers), as the lead reruns it on a quiet machine:

    mkdir -p /tmp/prodserve-base && git archive a19475b | tar -x -C /tmp/prodserve-base
    flock /tmp/bench.lock python bench/run.py --rounds 3 \
        --servers prodserve,prodserve-inline,prodserve-base,prodserve-t4,gunicorn-gthread,granian,bjoern \
        --workloads bare,django,mix,nginx,nginx-keepalive --output bench/results-issue15.md

Stdlib only; needs `wrk` on PATH. matplotlib is optional (adds results.png).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime
import errno
import http.client
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
TESTPROJECT = REPO / "testproject"
PRODSERVE_COMMAND = REPO / "django_prodserve" / "management" / "commands" / "prodserve.py"
WORKERS = 2
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
WRK_GRACE = 30.0
BACKGROUND_NOTE_CORES = 0.15  # unrelated CPU load (in cores) worth flagging in the report
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Process groups of servers that are still running, so atexit can kill them whatever happens.
_LIVE_GROUPS: set[int] = set()


@dataclass(frozen=True)
class Workload:
    """One URL to hammer, plus which app serves it (per server flavour)."""

    name: str
    path: str
    wsgi_app: str  # module:callable, for servers that take a WSGI target
    settings: str  # DJANGO_SETTINGS_MODULE, which is how prodserve picks its WSGI app
    headers: tuple[str, ...] = ()
    needs_db: bool = False
    lua: str = ""  # wrk -s script body, written to a temp file (e.g. to POST a request body)
    connections: int = 0  # overrides --connections when set (big responses want few clients)
    wrk_extra: tuple[str, ...] = ()  # extra wrk flags, e.g. a longer --timeout
    mb_per_request: float = 0.0  # MiB of body per request, to report MB/s and CPU per MB
    slow_clients: int = 0  # half-sent requests held open during a second measured run
    method: str = "GET"  # what the lua script (or wrk's default) sends; for the app-cost environ
    body_size: int = 0  # request body bytes the lua script sends; for the app-cost environ
    mix: bool = False  # open-loop arrivals with slow requests (openloop.py) instead of wrk
    pipeline: bool = False  # a pipelining client and a probe (pipeline.py) instead of wrk
    seconds: int = 0  # overrides --duration when set (tail percentiles want many requests)
    proxy: str = ""  # "nginx" or "nginx-keepalive": wrk talks to an nginx in front of the server


BARE = ("testproject.bare:application", "testproject.settings_bare")
DJANGO = ("testproject.wsgi:application", "testproject.settings")
CLOSE = ("Connection: close",)
MIB = 1 << 20
POST_CONTENT_TYPE = "application/octet-stream"
# wrk builds Content-Length from wrk.body; a fixed body keeps the script free of per-request work.
POST_1MB_LUA = f"""wrk.method = "POST"
wrk.body = string.rep("x", {MIB})
wrk.headers["Content-Type"] = "{POST_CONTENT_TYPE}"
"""
SLOW_CLIENTS = 1000
# A request line and Host header without the final blank line: the server must hold the
# connection waiting for the rest, which is what a slowloris client or a bad mobile link does.
SLOW_REQUEST = b"GET /hello/ HTTP/1.1\r\nHost: x\r\n"
SLOW_CONNECT_TIMEOUT = 10.0  # total seconds to get the slow clients connected, then go on
WORKLOADS = {
    w.name: w
    for w in (
        Workload("bare", "/", *BARE),
        Workload("django", "/hello/", *DJANGO),
        Workload("json", "/json/", *DJANGO),
        Workload("db", "/db/", *DJANGO, needs_db=True),
        Workload("bare-close", "/", *BARE, headers=CLOSE),
        Workload("django-close", "/hello/", *DJANGO, headers=CLOSE),
        # Opt-in workloads (not in the defaults): request bodies, big files, slow clients.
        Workload(
            "post-1mb",
            "/upload/",
            *DJANGO,
            lua=POST_1MB_LUA,
            mb_per_request=1.0,
            method="POST",
            body_size=MIB,
        ),
        Workload(
            "download-100mb",
            "/download/?mb=100",
            *DJANGO,
            connections=4,
            wrk_extra=("--timeout", "30s"),
            mb_per_request=100.0,
        ),
        Workload("slow-clients", "/hello/", *DJANGO, slow_clients=SLOW_CLIENTS),
        # Issue 15: what a load balancer's keep-alive pool does to a server whose views are
        # sometimes slow; and the same hello behind nginx, whose CPU counts too.
        Workload("mix", "/hello/", *DJANGO, mix=True, seconds=30),
        # A client that pipelines, beside one that does not: what the other waits.
        Workload("pipeline", "/hello/", *DJANGO, pipeline=True),
        Workload("nginx", "/hello/", *DJANGO, proxy="nginx"),
        Workload("nginx-keepalive", "/hello/", *DJANGO, proxy="nginx-keepalive"),
    )
}


@dataclass(frozen=True)
class Server:
    """How to launch one server flavour; `argv` gets the port and the workload."""

    name: str
    module: str  # importable module that must exist for the server to be usable
    argv: Callable[[int, Workload], list[str]]
    cwd: Path
    description: str
    # Master exit codes after SIGTERM that count as a clean stop. prodserve promises 0;
    # waitress installs no SIGTERM handler, so dying by the signal is its normal stop.
    clean_exits: frozenset[int] = frozenset({0})
    install: str = ""  # how to get `module` when the bench extra does not bring it
    own_tree: bool = False  # cwd is another checkout of prodserve, imported instead of REPO's


#: Another checkout of prodserve to compare against as the server prodserve-base, e.g. the code
#: before a change: `mkdir /tmp/prodserve-base && git archive BASE | tar -x -C /tmp/prodserve-base`.
BASE_TREE = Path(os.environ.get("PRODSERVE_BASE_TREE", "/tmp/prodserve-base"))


def _prodserve(
    threads: int, preload: bool = False, spares: int | None = None
) -> Callable[[int, Workload], list[str]]:
    """prodserve picks its app from DJANGO_SETTINGS_MODULE, so argv ignores the workload."""

    def argv(port: int, _w: Workload) -> list[str]:
        extra = ["--preload"] if preload else []
        if spares is not None:
            extra += ["--spare-threads", str(spares)]
        return [
            sys.executable,
            "testproject/manage.py",
            "prodserve",
            f"127.0.0.1:{port}",
            "--workers",
            str(WORKERS),
            "--threads",
            str(threads),
            "--skip-checks",
            *extra,
        ]

    return argv


def _gunicorn(threads: int = 0) -> Callable[[int, Workload], list[str]]:
    """threads=0: sync workers, gunicorn's default and the closest model to prodserve threads=1.

    threads>0: the gthread worker (a thread pool per worker process behind one selector, which
    also keeps idle keep-alive connections off the threads), the closest to prodserve --threads.
    """

    def argv(port: int, w: Workload) -> list[str]:
        worker = ["-k", "gthread", "--threads", str(threads)] if threads else []
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            str(WORKERS),
            *worker,
            "-b",
            f"127.0.0.1:{port}",
            "--chdir",
            "testproject",
            "--log-level",
            "warning",
            w.wsgi_app,
        ]

    return argv


def _granian(port: int, w: Workload) -> list[str]:
    """Granian's Rust HTTP stack is the CPU-efficiency bar we want prodserve to approach."""
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--workers",
        str(WORKERS),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--working-dir",
        "testproject",
        "--no-access-log",
        "--log-level",
        "warning",
        w.wsgi_app,
    ]


def _waitress(port: int, w: Workload) -> list[str]:
    """Waitress has no worker processes: one process, 4 threads (run with cwd=testproject)."""
    return [
        sys.executable,
        "-m",
        "waitress",
        f"--listen=127.0.0.1:{port}",
        "--threads=4",
        w.wsgi_app,
    ]


BJOERN_SERVE = BENCH_DIR / "bjoern_serve.py"


def _bjoern(port: int, w: Workload) -> list[str]:
    """bjoern has no CLI or process manager: bjoern_serve.py binds, forks WORKERS and reaps."""
    return [
        sys.executable,
        str(BJOERN_SERVE.relative_to(REPO)),
        "--chdir",
        "testproject",
        str(port),
        str(WORKERS),
        w.wsgi_app,
    ]


SERVERS = {
    s.name: s
    for s in (
        Server("prodserve", "django", _prodserve(1), REPO, "2 workers x 1 thread"),
        Server("prodserve-t4", "django", _prodserve(4), REPO, "2 workers x 4 threads"),
        Server(
            "prodserve-inline",
            "django",
            _prodserve(1, spares=0),
            REPO,
            "2 workers x 1 thread, no spare threads (strictly inline)",
        ),
        Server(
            "prodserve-base",
            "django",
            _prodserve(1),
            BASE_TREE,
            f"2 workers x 1 thread, the code in {BASE_TREE} ($PRODSERVE_BASE_TREE)",
            install=f"git archive BASE_COMMIT | tar -x -C {BASE_TREE}",
            own_tree=True,
        ),
        Server(
            "prodserve-preload",
            "django",
            _prodserve(1, preload=True),
            REPO,
            "2 workers x 1 thread, --preload (app imported before fork)",
        ),
        Server("gunicorn", "gunicorn", _gunicorn(), REPO, "2 sync workers"),
        Server("gunicorn-gthread", "gunicorn", _gunicorn(4), REPO, "2 gthread workers x 4 threads"),
        Server("granian", "granian", _granian, REPO, "2 workers, WSGI interface"),
        Server(
            "waitress",
            "waitress",
            _waitress,
            TESTPROJECT,
            "1 process x 4 threads",
            clean_exits=frozenset({0, -signal.SIGTERM}),
        ),
        Server(
            "bjoern",
            "bjoern",
            _bjoern,
            REPO,
            f"{WORKERS} forked processes (C; the reference limit)",
            install="apt-get install libev-dev && pip install bjoern",
        ),
    )
}
REFERENCE_SERVER = "bjoern"  # shown next to the goals: what a C server gets on this machine


@dataclass
class Result:
    """One measured (server, workload) cell; `error` set means no numbers."""

    server: str
    workload: str
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_us_per_req: float = 0.0
    problems: str = ""
    background_cores: float = 0.0  # CPU used by neither server nor wrk during the run
    error: str = ""
    mb_per_s: float = 0.0  # body MiB/s, for workloads with mb_per_request
    cpu_ms_per_mb: float = 0.0
    baseline_rps: float = 0.0  # slow-clients: same server, same run, without slow clients
    slow_opened: int = 0  # slow-clients: how many of SLOW_CLIENTS actually connected
    workers: int = 0  # processes the memory numbers are summed over
    rss_mb: float = 0.0
    uss_mb: float = 0.0
    round_no: int = 1  # which of Plan.rounds this cell was measured in
    fast_p999_ms: float = 0.0  # mix: p50_ms/p99_ms are the fast requests', this their p99.9
    slow_p50_ms: float = 0.0  # mix: the slow requests' median
    lag_p99_ms: float = 0.0  # mix: the generator's own lateness (scheduled arrival to send)
    probe_max_ms: float = 0.0  # pipeline: p50_ms/p99_ms are the probe's, this its worst
    cpu_split: str = ""  # proxied workloads: "nginx X + server Y" CPU µs/req


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class ProcStat:
    """The few /proc/PID/stat fields we need."""

    ppid: int
    pgrp: int
    state: str
    cpu_ticks: int


def read_proc_table() -> dict[int, ProcStat]:
    """Snapshot every process once, so tree and group walks see a consistent view."""
    table: dict[int, ProcStat] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # process exited between listdir and read
            continue
        # comm (field 2) may contain spaces and parens; everything after the last ')' is fixed.
        f = raw.rpartition(")")[2].split()
        # utime, stime, cutime, cstime: cutime/cstime keep the CPU of reaped children (e.g. a
        # respawned worker) in the tree's total instead of letting it vanish mid-run.
        ticks = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
        table[int(entry)] = ProcStat(ppid=int(f[1]), pgrp=int(f[2]), state=f[0], cpu_ticks=ticks)
    return table


def process_tree(root: int, table: dict[int, ProcStat]) -> list[int]:
    """`root` and all its descendants that are in `table`, root first."""
    children: dict[int, list[int]] = {}
    for pid, st in table.items():
        children.setdefault(st.ppid, []).append(pid)
    found, stack, seen = [], [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen or pid not in table:
            continue
        seen.add(pid)
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by `root` and all its descendants (master + workers)."""
    table = read_proc_table()
    return sum(table[pid].cpu_ticks for pid in process_tree(root, table)) / CLK_TCK


def smaps_kb(pid: int) -> tuple[int, int]:
    """(RSS, USS) in kB from /proc/PID/smaps_rollup; USS = Private_Clean + Private_Dirty.

    RSS double-counts pages a worker shares with the master (what --preload is for); USS is what
    killing that one process would give back, so it is the number that sizes a worker.
    """
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[key] = int(parts[0])
    return fields.get("Rss", 0), fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)


def worker_memory(root: int) -> tuple[int, float, float]:
    """(processes, RSS MiB, USS MiB) summed over the live processes below the master.

    A server without worker processes (waitress) is measured as the master itself.
    """
    table = read_proc_table()
    tree = [pid for pid in process_tree(root, table) if table[pid].state != "Z"]
    pids = [pid for pid in tree if pid != root] or tree
    count, rss, uss = 0, 0, 0
    for pid in pids:
        try:
            r, u = smaps_kb(pid)
        except OSError:  # exited (or a kernel without smaps_rollup): leave it out
            continue
        count, rss, uss = count + 1, rss + r, uss + u
    return count, rss / 1024, uss / 1024


def machine_busy_seconds() -> float:
    """user+nice+system CPU seconds of all cores since boot (first line of /proc/stat).

    irq/softirq time is left out: it is charged to no process, and on loopback most of it is
    the benchmark's own TCP traffic, so counting it would flag every run as noisy.
    """
    user, nice, system = Path("/proc/stat").read_text().split(maxsplit=4)[1:4]
    return (int(user) + int(nice) + int(system)) / CLK_TCK


def children_cpu_seconds() -> float:
    """CPU seconds of our reaped children; wrk is reaped when subprocess.run returns."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def live_group_members(pgid: int) -> list[int]:
    """Non-zombie members of a process group (zombies may linger if PID 1 does not reap)."""
    return [pid for pid, st in read_proc_table().items() if st.pgrp == pgid and st.state != "Z"]


def kill_group(pgid: int, sig: signal.Signals) -> None:
    """Signal a whole group, tolerating that it may already be gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def start_server(server: Server, workload: Workload, port: int, env: dict[str, str], log: Path):
    """Launch in a new session so the master and its workers share a killable process group."""
    env = {**env, "DJANGO_SETTINGS_MODULE": workload.settings}
    if server.own_tree:
        env["PYTHONPATH"] = os.pathsep.join((str(server.cwd), env["PYTHONPATH"]))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            server.argv(port, workload),
            cwd=server.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _LIVE_GROUPS.add(proc.pid)
    return proc


def stop_server(proc: subprocess.Popen, server: Server) -> str:
    """SIGTERM the master (graceful), then SIGKILL whatever is left of its group.

    Waits until no group member is alive so the next server gets quiet cores. Returns a note
    about an unclean stop, empty when the stop was clean.
    """
    note = ""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            note = f"master ignored SIGTERM for {STOP_TIMEOUT:.0f}s, SIGKILLed"
            kill_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT)
        else:
            if code not in server.clean_exits:
                note = f"master exit code after SIGTERM was {code}"
    deadline = time.monotonic() + STOP_TIMEOUT
    while live_group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    strays = live_group_members(proc.pid)
    if strays:
        kill_group(proc.pid, signal.SIGKILL)
        note += f"; {len(strays)} process(es) outlived the master, SIGKILLed"
    _LIVE_GROUPS.discard(proc.pid)
    return note.lstrip("; ")


def kill_all_servers() -> None:
    """atexit safety net: nothing we started may outlive the harness."""
    for pgid in list(_LIVE_GROUPS):
        kill_group(pgid, signal.SIGKILL)
    _LIVE_GROUPS.clear()


def free_port() -> int:
    """Ask the kernel for an unused loopback port (tiny race accepted: nothing else binds here)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def probe(port: int, path: str) -> int:
    """One real HTTP GET; returns the status code."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen, port: int, path: str) -> str:
    """Poll with real requests until 200; returns an error message, empty when ready.

    Workers may still be importing Django after the socket is bound, so a TCP connect alone
    would start wrk too early and measure startup.
    """
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with code {proc.returncode} before answering"
        try:
            status = probe(port, path)
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if status == 200:
                return ""
            last = f"HTTP {status}"
        time.sleep(0.1)
    return f"not ready after {READY_TIMEOUT:.0f}s ({last})"


def log_tail(log: Path, lines: int = 15) -> str:
    """Last lines of a server log, to explain a failure without opening files."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class WrkRun:
    """Parsed wrk --latency output."""

    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    problems: str  # wrk's socket error / non-2xx lines, empty when there were none


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _latency_ms(text: str, pct: str) -> float:
    """wrk prints e.g. '     99%    3.21ms' under 'Latency Distribution'."""
    m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    if not m:
        raise ValueError(f"no {pct}% latency in wrk output")
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def parse_wrk(text: str) -> WrkRun:
    """Pull the numbers out of wrk's human-readable report."""
    reqs = re.search(r"^\s*(\d+) requests in", text, re.MULTILINE)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    if not reqs or not rps:
        raise ValueError(f"unexpected wrk output:\n{text}")
    # wrk prints these two lines only when the counts are not all zero.
    problems = re.findall(
        r"^\s*((?:Socket errors|Non-2xx or 3xx responses):.*)$", text, re.MULTILINE
    )
    return WrkRun(
        requests=int(reqs.group(1)),
        rps=float(rps.group(1)),
        p50_ms=_latency_ms(text, "50"),
        p99_ms=_latency_ms(text, "99"),
        problems="; ".join(problems),
    )


def wrk_argv(
    url: str,
    seconds: int,
    connections: int,
    headers: Iterable[str],
    script: Path | None = None,
    extra: Iterable[str] = (),
) -> list[str]:
    """One wrk thread: the client already takes a core of our 2, more threads only add noise."""
    argv = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    for h in headers:
        argv += ["-H", h]
    if script is not None:
        argv += ["-s", str(script)]
    return [*argv, *extra, url]


def run_wrk(
    url: str,
    seconds: int,
    connections: int,
    headers: Iterable[str],
    script: Path | None = None,
    extra: Iterable[str] = (),
) -> WrkRun:
    """Run wrk with a hard timeout so a wedged server cannot hang the harness."""
    out = subprocess.run(
        wrk_argv(url, seconds, connections, headers, script, extra),
        capture_output=True,
        text=True,
        timeout=seconds + WRK_GRACE,
        check=True,
    )
    return parse_wrk(out.stdout)


# --------------------------------------------------------------------------- slow clients


def raise_nofile(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards `wanted` (capped by the hard limit); returns it.

    Done before servers start so they inherit it too: a server must not lose the slow-clients
    test just because the harness's shell had a 1024 limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft


def open_slow_clients(port: int, count: int, socks: list[socket.socket]) -> int:
    """Connect up to `count` loopback sockets and send each a half request; returns how many.

    Every socket goes into the caller's `socks` as soon as it exists so the caller's `finally`
    closes it whatever happens. Connects are non-blocking with one overall deadline: a server
    whose accept queue is full leaves connects pending, and that must cost seconds, not hang.
    """
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY:
        count = min(count, soft - 64)  # keep a few fds for logs, probes and pipes
    deadline = time.monotonic() + SLOW_CONNECT_TIMEOUT
    opened = 0
    with selectors.DefaultSelector() as sel:
        for _ in range(count):
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except OSError:  # EMFILE/ENFILE: go on with what we have
                break
            socks.append(sock)
            sock.setblocking(False)
            if sock.connect_ex(("127.0.0.1", port)) in (0, errno.EINPROGRESS):
                sel.register(sock, selectors.EVENT_WRITE)
        while sel.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(timeout=left):
                sock = key.fileobj
                sel.unregister(sock)
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    continue
                with contextlib.suppress(OSError):
                    sock.send(SLOW_REQUEST)  # a few bytes into an empty buffer: never blocks
                    opened += 1
    return opened


def close_all(socks: list[socket.socket]) -> None:
    """Close every slow client; RST-free close is fine, the server just sees EOF."""
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.close()
    socks.clear()


# --------------------------------------------------------------------------- app cost

APP_COST_SECONDS = 2.0  # time the app for this long (wall clock) ...
APP_COST_CALLS = 20000  # ... or this many calls, whichever comes first
APP_COST_WARMUP_CALLS = 1000  # untimed calls first (lazy imports, URL resolver, caches) ...
APP_COST_WARMUP_SECONDS = 1.0  # ... capped in time for slow apps
APP_COST_TIMEOUT = 120.0
APP_COST_PORT = 8000  # the port the environ claims; nothing listens there

# Run with `python -c` in a subprocess (cwd=testproject, the servers' env and settings), so the
# app is imported exactly as a server's worker imports it and this harness stays Django-free.
# argv[1] is JSON: app ("module:callable"), environ (the str values), body_size, limits.
# Mirrors what a server does per request: a fresh environ dict with its own wsgi.input, call the
# app, iterate the body (except a wsgi.file_wrapper, which servers hand to sendfile), close().
# The deadline is checked with perf_counter (vDSO, ~50 ns) rather than process_time (a syscall)
# so the clock does not weigh on a ~1 µs app; CPU is process_time around the whole timed loop.
APP_COST_SCRIPT = r"""
import importlib, io, json, sys, time, wsgiref.util

spec = json.loads(sys.argv[1])
module, _, attr = spec["app"].partition(":")
app = getattr(importlib.import_module(module), attr)
template = dict(spec["environ"])
template.update({
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": True,
    "wsgi.run_once": False,
    "wsgi.file_wrapper": wsgiref.util.FileWrapper,
})
body = b"x" * spec["body_size"]
status = [""]


def write(data):
    pass


def start_response(s, headers, exc_info=None):
    status[0] = s
    return write


def call():
    environ = dict(template)
    environ["wsgi.input"] = io.BytesIO(body)
    result = app(environ, start_response)
    try:
        if not isinstance(result, wsgiref.util.FileWrapper):
            for _chunk in result:
                pass
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


call()
if not status[0].startswith("200"):
    sys.exit(f"app answered {status[0]!r}, not 200")
clock = time.perf_counter
deadline = clock() + spec["warmup_seconds"]
for _ in range(spec["warmup_calls"]):
    call()
    if clock() > deadline:
        break
calls, deadline = 0, clock() + spec["seconds"]
cpu0 = time.process_time()
while calls < spec["max_calls"] and clock() < deadline:
    call()
    calls += 1
cpu = time.process_time() - cpu0
print(json.dumps({"calls": calls, "cpu_s": cpu}))
"""


@dataclass(frozen=True)
class AppCost:
    """CPU per call of one workload's WSGI app with no server around it; `error` set: none."""

    cpu_us_per_req: float = 0.0
    calls: int = 0
    error: str = ""


# round_no -> workload name -> that round's measurement. Measured afresh every round because
# one reading is noisy on a small shared machine (the same app read 112-216 µs across runs);
# pairing a server's round with its own round's app cost cancels slow drifts, as for servers.
AppCosts = dict[int, dict[str, AppCost]]


def app_environ(workload: Workload, port: int = APP_COST_PORT) -> dict[str, str]:
    """The str part of a PEP 3333 environ for the request wrk sends for `workload`.

    wrk sends the request line, `Host: 127.0.0.1:PORT`, the -H headers and (from a lua script)
    a method and body; servers add the CGI keys and SERVER_*/REMOTE_* on top.
    """
    path, _, query = workload.path.partition("?")
    environ = {
        "REQUEST_METHOD": workload.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": urllib.parse.unquote(path, encoding="latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": f"127.0.0.1:{port}",
    }
    if workload.body_size:
        environ["CONTENT_LENGTH"] = str(workload.body_size)
        environ["CONTENT_TYPE"] = POST_CONTENT_TYPE
    for header in workload.headers:
        name, _, value = header.partition(":")
        key = name.strip().upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = f"HTTP_{key}"
        environ[key] = value.strip()
    return environ


def measure_app_cost(workload: Workload, env: dict[str, str]) -> AppCost:
    """Time `workload`'s WSGI app in-process (in a subprocess with the servers' environment)."""
    spec = {
        "app": workload.wsgi_app,
        "environ": app_environ(workload),
        "body_size": workload.body_size,
        "seconds": APP_COST_SECONDS,
        "max_calls": APP_COST_CALLS,
        "warmup_calls": APP_COST_WARMUP_CALLS,
        "warmup_seconds": APP_COST_WARMUP_SECONDS,
    }
    try:
        out = subprocess.run(
            [sys.executable, "-c", APP_COST_SCRIPT, json.dumps(spec)],
            cwd=TESTPROJECT,  # like gunicorn --chdir / granian --working-dir: testproject importable
            env={**env, "DJANGO_SETTINGS_MODULE": workload.settings},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=APP_COST_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return AppCost(error=f"timed out after {APP_COST_TIMEOUT:.0f}s")
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        tail = (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[-1]
        return AppCost(error=tail)
    data = json.loads(lines[-1])
    if not data["calls"]:
        return AppCost(error="no call finished in time")
    return AppCost(cpu_us_per_req=data["cpu_s"] * 1e6 / data["calls"], calls=data["calls"])


def app_cost_key(workload: Workload) -> tuple:
    """Workloads that send the app the same request share one measurement (django/slow-clients)."""
    return (
        workload.wsgi_app,
        workload.settings,
        workload.path,
        workload.headers,
        workload.method,
        workload.body_size,
    )


def measure_app_costs(
    workloads: Iterable[Workload], env: dict[str, str], where: str = ""
) -> dict[str, AppCost]:
    """The app's own cost for one round, once per distinct request (not per server).

    `where` (e.g. " round 2") only goes into the progress lines.
    """
    costs: dict[str, AppCost] = {}
    seen: dict[tuple, AppCost] = {}
    for workload in workloads:
        key = app_cost_key(workload)
        if key not in seen:
            tag = f"[app/{workload.name}{where}]"
            progress(f"{tag} timing {workload.wsgi_app} in-process")
            seen[key] = measure_app_cost(workload, env)
            cost = seen[key]
            if cost.error:
                progress(f"{tag} FAILED: {cost.error}")
            else:
                progress(f"{tag} {cost.cpu_us_per_req:.1f} CPU us/call over {cost.calls} calls")
        costs[workload.name] = seen[key]
    return costs


# --------------------------------------------------------------------------- benchmark


@dataclass(frozen=True)
class Plan:
    """What to run and for how long."""

    servers: list[str]
    workloads: list[str]
    duration: int
    warmup: int
    connections: int
    rounds: int = 1  # every cell this many times, servers alternating within each round


def missing_reason(server: Server) -> str:
    """Why a server cannot run here ('' if it can), so it is skipped rather than crashing."""
    if server.name.startswith("prodserve") and not PRODSERVE_COMMAND.is_file():
        return f"{PRODSERVE_COMMAND.relative_to(REPO)} does not exist yet"
    if server.own_tree and not (server.cwd / "django_prodserve").is_dir():
        return f"no prodserve checkout in {server.cwd}; {server.install}"
    if importlib.util.find_spec(server.module) is None:
        hint = f"; {server.install}" if server.install else ""
        return f"python module {server.module!r} not installed{hint}"
    return ""


def bench_one(
    server: Server,
    workload: Workload,
    plan: Plan,
    env: dict[str, str],
    logdir: Path,
    round_no: int = 1,
) -> tuple[Result, list[str]]:
    """Start, warm up, measure, stop. Always stops the server; returns the result and notes."""
    tag = f"{server.name}/{workload.name}"
    if plan.rounds > 1:
        tag += f" round {round_no}"
    port = free_port()
    log = logdir / f"{server.name}-{workload.name}-{round_no}.log"
    script = None
    if workload.lua:
        script = logdir / f"{workload.name}.lua"
        script.write_text(workload.lua)
    notes: list[str] = []
    progress(f"[{tag}] starting on port {port}")
    proc = start_server(server, workload, port, env, log)
    try:
        error = wait_ready(proc, port, workload.path)
        if error:
            progress(f"[{tag}] FAILED: {error}\n{log_tail(log)}")
            return Result(server.name, workload.name, error=error, round_no=round_no), notes
        result = measure(server.name, workload, proc, port, plan, script)
        result.round_no = round_no
    except (subprocess.SubprocessError, ValueError, OSError) as exc:
        progress(f"[{tag}] FAILED: {exc}\n{log_tail(log)}")
        error = str(exc).splitlines()[0]
        return Result(server.name, workload.name, error=error, round_no=round_no), notes
    finally:
        stop_note = stop_server(proc, server)
        if stop_note:
            notes.append(f"{tag}: {stop_note}")
    progress(
        f"[{tag}] {result.rps:.0f} req/s, p50 {result.p50_ms:.2f} ms, "
        f"p99 {result.p99_ms:.2f} ms, {result.cpu_us_per_req:.1f} CPU us/req"
    )
    progress(f"[{tag}] {extra_summary(result)}")
    if result.problems:
        notes.append(f"{tag}: {result.problems}")
    if workload.slow_clients and result.slow_opened < workload.slow_clients:
        notes.append(
            f"{tag}: only {result.slow_opened} of {workload.slow_clients} slow clients got "
            f"connected within {SLOW_CONNECT_TIMEOUT:.0f}s"
        )
    if result.background_cores > BACKGROUND_NOTE_CORES:
        notes.append(
            f"{tag}: other processes used {result.background_cores:.2f} cores during the run; "
            "numbers are noisy"
        )
    return result, notes


def extra_summary(r: Result) -> str:
    """One progress line with the workload-specific numbers (memory always)."""
    parts = [f"{r.workers} worker procs: RSS {r.rss_mb:.1f} MB, USS {r.uss_mb:.1f} MB"]
    if r.mb_per_s:
        parts.append(f"{r.mb_per_s:.1f} MB/s, {r.cpu_ms_per_mb:.2f} CPU ms/MB")
    if r.slow_opened or r.baseline_rps:
        parts.append(
            f"{r.slow_opened} slow clients: {r.rps:.0f} vs {r.baseline_rps:.0f} req/s "
            f"({slow_pct(r):.0f}%)"
        )
    return "; ".join(parts)


def slow_pct(r: Result) -> float:
    """Throughput kept with slow clients, as % of the same server's run without them."""
    return 100.0 * r.rps / r.baseline_rps if r.baseline_rps else 0.0


def measured_run(
    name: str, workload: Workload, proc: subprocess.Popen, wrk: Callable[[int], WrkRun], plan: Plan
) -> Result:
    """One wrk run bracketed by CPU samples of the server tree, wrk and the machine.

    The machine-wide sample exposes CPU taken by unrelated processes, which on a small shared
    box silently skews req/s and latency.
    """
    server0 = tree_cpu_seconds(proc.pid)
    wrk0 = children_cpu_seconds()
    busy0 = machine_busy_seconds()
    start = time.monotonic()
    run = wrk(plan.duration)
    server_cpu = tree_cpu_seconds(proc.pid) - server0
    other_cpu = machine_busy_seconds() - busy0 - server_cpu - (children_cpu_seconds() - wrk0)
    elapsed = time.monotonic() - start
    return Result(
        server=name,
        workload=workload.name,
        rps=run.rps,
        p50_ms=run.p50_ms,
        p99_ms=run.p99_ms,
        cpu_us_per_req=server_cpu * 1e6 / run.requests if run.requests else 0.0,
        problems=run.problems,
        background_cores=max(other_cpu, 0.0) / elapsed,
    )


def measure(
    name: str,
    workload: Workload,
    proc: subprocess.Popen,
    port: int,
    plan: Plan,
    script: Path | None = None,
) -> Result:
    """The workload's own measurement, then the workers' memory after it."""
    if workload.mix:
        result = measure_mix(name, workload, proc, port, plan)
    elif workload.pipeline:
        result = measure_pipeline(name, workload, proc, port, plan)
    elif workload.proxy:
        result = measure_proxied(name, workload, proc, port, plan, script)
    else:
        result = measure_wrk(name, workload, proc, port, plan, script)
    result.workers, result.rss_mb, result.uss_mb = worker_memory(proc.pid)
    return result


def measure_wrk(
    name: str,
    workload: Workload,
    proc: subprocess.Popen,
    port: int,
    plan: Plan,
    script: Path | None,
) -> Result:
    """wrk straight at the server: warmup, the measured run(s), the workload's extras.

    slow-clients measures twice on the same server: once plain (the baseline) and once with
    the slow clients held open, so the % kept does not mix up two server boots.
    """
    url = f"http://127.0.0.1:{port}{workload.path}"
    connections = workload.connections or plan.connections

    def wrk(seconds: int) -> WrkRun:
        return run_wrk(url, seconds, connections, workload.headers, script, workload.wrk_extra)

    if plan.warmup:
        wrk(plan.warmup)
    result = measured_run(name, workload, proc, wrk, plan)
    if result.rps == 0:
        raise ValueError("wrk completed 0 requests")
    if workload.slow_clients:
        baseline = result
        socks: list[socket.socket] = []
        try:
            opened = open_slow_clients(port, workload.slow_clients, socks)
            progress(f"[{name}/{workload.name}] {opened} slow clients connected")
            result = measured_run(name, workload, proc, wrk, plan)
        finally:
            close_all(socks)
        result.baseline_rps, result.slow_opened = baseline.rps, opened
    if workload.mb_per_request:
        # CPU / (requests x MB per request), in ms: the per-request figure scaled down.
        result.mb_per_s = result.rps * workload.mb_per_request
        result.cpu_ms_per_mb = result.cpu_us_per_req / 1000 / workload.mb_per_request
    return result


def run_client(
    script: Path, port: int, seconds: float, args: list[str], proc: subprocess.Popen
) -> tuple[dict, float]:
    """Run a load script of bench/ that prints one JSON object: its numbers, and the CPU
    seconds the server's process tree used meanwhile."""
    argv = [sys.executable, str(script), "--port", str(port), "--duration", str(seconds), *args]
    server0 = tree_cpu_seconds(proc.pid)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode:
        raise ValueError(f"{script.name} failed: {out.stderr.strip()[-300:]}")
    return json.loads(out.stdout), tree_cpu_seconds(proc.pid) - server0


MIX_RATE = 400  # arrivals per second: the load balancer
MIX_CONNECTIONS = 32  # its keep-alive pool
MIX_SLOW = 0.01  # 1% of the requests to a 100 ms view
OPENLOOP = BENCH_DIR / "openloop.py"


def measure_mix(
    name: str, workload: Workload, proc: subprocess.Popen, port: int, plan: Plan
) -> Result:
    """openloop.py's Poisson arrivals over a keep-alive pool; latency from scheduled arrival."""
    seconds = workload.seconds or plan.duration
    args = ["--rate", str(MIX_RATE), "--connections", str(MIX_CONNECTIONS), "--slow", str(MIX_SLOW)]
    args += ["--fast-path", workload.path, "--slow-path", "/slow/?s=0.1"]
    busy0 = machine_busy_seconds()
    start = time.monotonic()
    run, server_cpu = run_client(OPENLOOP, port, seconds, args, proc)
    other_cpu = machine_busy_seconds() - busy0 - server_cpu - run["generator_cpu_s"]
    result = Result(
        server=name,
        workload=workload.name,
        rps=run["rate"],
        p50_ms=run["fast_p50_ms"],
        p99_ms=run["fast_p99_ms"],
        fast_p999_ms=run["fast_p999_ms"],
        slow_p50_ms=run["slow_p50_ms"],
        lag_p99_ms=run["lag_p99_ms"],
        cpu_us_per_req=server_cpu * 1e6 / run["requests"] if run["requests"] else 0.0,
        problems=f"{run['errors']} requests failed" if run["errors"] else "",
        background_cores=max(other_cpu, 0.0) / (time.monotonic() - start),
    )
    return result


PIPELINE_CONNECTIONS = 4  # pipelining connections: whatever the spread, each worker has some
PIPELINE_BATCH = 1000  # requests each keeps in flight: ~40 KB, one read
PIPELINE_PROBE_EVERY = 0.005  # seconds between the probe's requests
PIPELINE = BENCH_DIR / "pipeline.py"


def measure_pipeline(
    name: str, workload: Workload, proc: subprocess.Popen, port: int, plan: Plan
) -> Result:
    """pipeline.py: connections pipelining batches, a probe on another timing its requests.
    CPU µs/req over all their requests."""
    args = ["--path", workload.path, "--pipelines", str(PIPELINE_CONNECTIONS)]
    args += ["--batch", str(PIPELINE_BATCH), "--every", str(PIPELINE_PROBE_EVERY)]
    run, server_cpu = run_client(PIPELINE, port, workload.seconds or plan.duration, args, proc)
    result = Result(
        server=name,
        workload=workload.name,
        rps=run["pipelined_rps"],
        p50_ms=run["probe_p50_ms"],
        p99_ms=run["probe_p99_ms"],
        probe_max_ms=run["probe_max_ms"],
        cpu_us_per_req=server_cpu * 1e6 / run["requests"] if run["requests"] else 0.0,
    )
    return result


NGINX_CONF = """
{user}
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    upstream app {{
        server 127.0.0.1:{upstream};
        {keepalive}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            {connection}
        }}
    }}
}}
"""


def start_nginx(directory: Path, upstream: int, keepalive: bool) -> tuple[subprocess.Popen, int]:
    """One foreground nginx (master + 1 worker) in front of 127.0.0.1:upstream."""
    directory.mkdir(exist_ok=True)
    port = free_port()
    config = directory / "nginx.conf"
    config.write_text(
        NGINX_CONF.format(
            user="user root;" if os.geteuid() == 0 else "",  # else its workers become nobody
            directory=directory,
            upstream=upstream,
            port=port,
            keepalive="keepalive 32;" if keepalive else "",
            connection='proxy_http_version 1.1;\n            proxy_set_header Connection "";'
            if keepalive
            else "",
        )
    )
    proc = subprocess.Popen(
        ["nginx", "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(config)]
        + ["-g", "daemon off;"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _LIVE_GROUPS.add(proc.pid)
    return proc, port


def measure_proxied(
    name: str,
    workload: Workload,
    proc: subprocess.Popen,
    port: int,
    plan: Plan,
    script: Path | None,
) -> Result:
    """wrk → nginx → server; CPU µs/req counts nginx's processes and the server's."""
    if shutil.which("nginx") is None:
        raise ValueError("nginx is not on PATH (apt-get install nginx)")
    directory = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    nginx, nginx_port = start_nginx(directory, port, workload.proxy == "nginx-keepalive")
    try:
        error = wait_ready(nginx, nginx_port, workload.path)
        if error:
            raise ValueError(f"nginx: {error}: {log_tail(directory / 'error.log')}")
        url = f"http://127.0.0.1:{nginx_port}{workload.path}"
        connections = workload.connections or plan.connections

        def wrk(seconds: int) -> WrkRun:
            return run_wrk(url, seconds, connections, workload.headers, script, workload.wrk_extra)

        if plan.warmup:
            wrk(plan.warmup)
        nginx0 = tree_cpu_seconds(nginx.pid)
        result = measured_run(name, workload, proc, wrk, plan)
        nginx_cpu = tree_cpu_seconds(nginx.pid) - nginx0
    finally:
        kill_group(nginx.pid, signal.SIGTERM)
        nginx.wait(10)
        _LIVE_GROUPS.discard(nginx.pid)
        shutil.rmtree(directory, ignore_errors=True)
    if not result.rps:
        raise ValueError("wrk completed 0 requests")
    requests = result.rps * plan.duration
    nginx_us = nginx_cpu * 1e6 / requests
    result.cpu_split = f"nginx {nginx_us:.1f} + server {result.cpu_us_per_req:.1f}"
    result.cpu_us_per_req += nginx_us
    result.background_cores = max(result.background_cores - nginx_cpu / plan.duration, 0.0)
    return result


def migrate(env: dict[str, str]) -> str:
    """Create the temp sqlite db for /db/; returns an error message, empty on success."""
    try:
        subprocess.run(
            [sys.executable, "testproject/manage.py", "migrate", "-v0"],
            cwd=REPO,
            env={**env, "DJANGO_SETTINGS_MODULE": "testproject.settings"},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        return f"migrate failed: {(exc.stderr or exc.stdout).strip().splitlines()[-1:]}"
    except subprocess.TimeoutExpired:
        return "migrate timed out"
    return ""


def server_env(tmp: Path) -> dict[str, str]:
    """Env shared by all servers: repo importable (django_prodserve), a throwaway db, DEBUG off."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["TESTPROJECT_DB"] = str(tmp / "db.sqlite3")
    env["PYTHONUNBUFFERED"] = "1"
    # The demo /download/ view writes its N MB file with tempfile in each worker; keep those
    # inside our temp dir so they are deleted with it instead of piling up in /tmp.
    env["TMPDIR"] = str(tmp)
    # Production settings for every server: DEBUG off (no DEBUG-only static handler, no query log).
    env["TESTPROJECT_DEBUG"] = "0"
    return env


def run_plan(plan: Plan) -> tuple[list[Result], list[str], AppCosts]:
    """Run every available server on every workload, collecting results, notes and app costs.

    With plan.rounds > 1 the whole server x workload sweep repeats, so the servers alternate
    (prodserve, granian, prodserve, granian, ...) and slow drifts in machine load hit both.
    Each round starts by timing the apps in-process, so the app cost takes part in the
    alternation too instead of resting on one reading.
    """
    results: list[Result] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="prodserve-bench-") as tmpname:
        tmp = Path(tmpname)
        env = server_env(tmp)
        workloads = [WORKLOADS[w] for w in plan.workloads]
        slow = max((w.slow_clients for w in workloads), default=0)
        if slow:
            limit = raise_nofile(slow + 1024)
            if limit != resource.RLIM_INFINITY and limit < slow + 64:
                notes.append(f"RLIMIT_NOFILE is {limit}: fewer than {slow} slow clients possible")
        if any(w.needs_db for w in workloads):
            error = migrate(env)
            if error:
                notes.append(f"db workload skipped: {error}")
                workloads = [w for w in workloads if not w.needs_db]
        servers = []
        for name in plan.servers:
            reason = missing_reason(SERVERS[name])
            if reason:
                notes.append(f"{name}: skipped ({reason})")
                progress(f"[{name}] skipped: {reason}")
            else:
                servers.append(SERVERS[name])
        app_costs: AppCosts = {}
        for round_no in range(1, plan.rounds + 1):
            where = f" round {round_no}" if plan.rounds > 1 else ""
            # No server is running here, so the machine is as quiet as it gets for the timing.
            app_costs[round_no] = measure_app_costs(workloads, env, where)
            for workload, cost in app_costs[round_no].items():
                if cost.error:
                    notes.append(f"app in-process cost of {workload}{where}: failed: {cost.error}")
            for server in servers:
                for workload in workloads:
                    result, cell_notes = bench_one(server, workload, plan, env, tmp, round_no)
                    results.append(result)
                    notes.extend(cell_notes)
                    if result.error:
                        notes.append(
                            f"{server.name}/{workload.name}{where}: failed: {result.error}"
                        )
    return results, notes, app_costs


# --------------------------------------------------------------------------- report


def progress(message: str) -> None:
    """Progress goes to stderr so stdout stays just the markdown report."""
    print(message, file=sys.stderr, flush=True)


def nproc() -> int:
    """CPUs this process may run on, i.e. what `nproc` prints (cgroup/affinity aware)."""
    return len(os.sched_getaffinity(0))


def versions() -> str:
    """Versions of everything measured, since numbers are meaningless without them."""
    parts = []
    for dist in ("Django", "gunicorn", "granian", "waitress", "bjoern"):
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    wrk = subprocess.run(
        ["wrk", "--version"], check=False, capture_output=True, text=True, timeout=10
    )
    m = re.search(r"wrk (\S+)", wrk.stdout + wrk.stderr)
    parts.append(f"wrk {m.group(1) if m else '?'}")
    return ", ".join(parts)


def fmt_table(results: list[Result]) -> list[str]:
    """Markdown table, failed cells shown as 'failed' rather than dropped."""
    lines = [
        "| server | workload | req/s | p50 | p99 | CPU µs/req |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.error:
            lines.append(f"| {server_label(r, results)} | {r.workload} | failed | - | - | - |")
        elif r.rps == 0:  # only slow-clients may end at 0 req/s: no latency or CPU to show
            lines.append(f"| {server_label(r, results)} | {r.workload} | 0 | - | - | - |")
        else:
            lines.append(
                f"| {server_label(r, results)} | {r.workload} | {r.rps:,.0f} | {r.p50_ms:.2f} ms "
                f"| {r.p99_ms:.2f} ms | {r.cpu_us_per_req:.1f} |"
            )
    return lines


def fmt_transfer(results: list[Result]) -> list[str]:
    """Bulk-body workloads: bytes moved and CPU per MB matter there, not per-request cost."""
    rows = [r for r in results if not r.error and r.mb_per_s]
    if not rows:
        return []
    lines = [
        "| server | workload | connections | req/s | MB/s | CPU µs/req | CPU ms/MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        conns = WORKLOADS[r.workload].connections or "default"
        lines.append(
            f"| {server_label(r, results)} | {r.workload} | {conns} | {r.rps:,.1f} | {r.mb_per_s:,.1f} "
            f"| {r.cpu_us_per_req:,.0f} | {r.cpu_ms_per_mb:.2f} |"
        )
    return lines


def fmt_slow(results: list[Result]) -> list[str]:
    """Slow-clients: throughput kept while half-sent requests hold connections open."""
    rows = [r for r in results if not r.error and (r.baseline_rps or r.slow_opened)]
    if not rows:
        return []
    lines = [
        "| server | slow clients connected | req/s without | req/s with | kept | p99 with |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        p99 = f"{r.p99_ms:.2f} ms" if r.rps else "-"
        lines.append(
            f"| {server_label(r, results)} | {r.slow_opened} | {r.baseline_rps:,.0f} | {r.rps:,.0f} "
            f"| {slow_pct(r):.0f}% | {p99} |"
        )
    return lines


def fmt_workload(
    results: list[Result], workload: str, columns: list[str], cells: Callable[[Result], str]
) -> list[str]:
    """One row per server for a workload with a table of its own: `columns` after the server's,
    `cells(r)` the row's cells after its label ("| a | b |" without the first "|")."""
    rows = [r for r in results if r.workload == workload]
    if not rows:
        return []
    lines = ["| server | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for r in rows:
        failed = "failed |" + " |" * (len(columns) - 1)
        lines.append(f"| {server_label(r, results)} | {failed if r.error else cells(r)}")
    return lines


def fmt_mix(results: list[Result]) -> list[str]:
    """The mixed workload: the fast requests' tail while slow ones run."""
    return fmt_workload(
        results,
        "mix",
        ["fast p50", "fast p99", "fast p99.9", "slow p50", "req/s", "CPU µs/req", "generator lag"],
        lambda r: (
            f"{r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms | {r.fast_p999_ms:.2f} ms "
            f"| {r.slow_p50_ms:.1f} ms | {r.rps:.0f} | {r.cpu_us_per_req:.1f} "
            f"| {r.lag_p99_ms:.2f} ms |"
        ),
    )


def fmt_pipeline(results: list[Result]) -> list[str]:
    """Clients pipelining beside a probe: what the probe waits, what the pipelines get."""
    return fmt_workload(
        results,
        "pipeline",
        ["probe p50", "probe p99", "probe max", "pipelined req/s", "CPU µs/req"],
        lambda r: (
            f"{r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms | {r.probe_max_ms:.2f} ms "
            f"| {r.rps:,.0f} | {r.cpu_us_per_req:.1f} |"
        ),
    )


def fmt_proxied(results: list[Result]) -> list[str]:
    """Behind nginx: the CPU of the pair, split."""
    rows = [r for r in results if not r.error and r.cpu_split]
    if not rows:
        return []
    lines = ["| server | workload | req/s | CPU µs/req | of which |", "|---|---|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {server_label(r, results)} | {r.workload} | {r.rps:,.0f} "
            f"| {r.cpu_us_per_req:.1f} | {r.cpu_split} |"
        )
    return lines


def fmt_memory(results: list[Result]) -> list[str]:
    """Worker memory after each measured run (RSS counts shared pages, USS does not)."""
    rows = [r for r in results if not r.error and r.workers]
    if not rows:
        return []
    lines = [
        "| server | workload | processes | RSS MB | USS MB |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {server_label(r, results)} | {r.workload} | {r.workers} | {r.rss_mb:.1f} | {r.uss_mb:.1f} |"
        )
    return lines


def server_label(r: Result, results: list[Result]) -> str:
    """The server's name, plus the round when the run had several."""
    return f"{r.server} (round {r.round_no})" if any(x.round_no > 1 for x in results) else r.server


def ran(results: list[Result], server: str) -> bool:
    """Whether `server` has at least one successful cell in this run."""
    return any(r.server == server and not r.error for r in results)


def cells(results: list[Result], server: str, workload: str) -> list[Result]:
    """The successful results of one (server, workload) cell, one per round."""
    return [r for r in results if r.server == server and r.workload == workload and not r.error]


# Metrics a goal or ratio can compare: report label and getter. None means "not meaningful for
# this result" (e.g. CPU per request when no request completed), so it is left out of ratios.
METRICS: dict[str, tuple[str, Callable[[Result], float | None]]] = {
    "cpu": ("CPU µs/req", lambda r: r.cpu_us_per_req if r.rps > 0 else None),
    "rps": ("req/s", lambda r: r.rps),
    "cpu_per_mb": ("CPU ms/MB", lambda r: r.cpu_ms_per_mb if r.mb_per_s > 0 else None),
    "mb_per_s": ("MB/s", lambda r: r.mb_per_s if r.mb_per_s > 0 else None),
    # Throughput kept with the slow clients held open: already a ratio within one cell.
    "kept": ("req/s kept", lambda r: r.rps / r.baseline_rps if r.baseline_rps > 0 else None),
}
APP = "app"  # ratio baseline meaning "the app's own in-process cost" instead of a server
SELF = ""  # ratio baseline meaning "no other server: the metric is a ratio already"


def app_cpu_by_round(app_costs: AppCosts | None, workload: str) -> dict[int, float]:
    """round_no -> the app's in-process CPU µs per call on `workload`, rounds that measured it."""
    found = {}
    for round_no, costs in sorted((app_costs or {}).items()):
        cost = costs.get(workload)
        if cost is not None and not cost.error and cost.cpu_us_per_req > 0:
            found[round_no] = cost.cpu_us_per_req
    return found


def round_ratios(
    results: list[Result],
    server: str,
    baseline: str,
    workload: str,
    metric: str,
    app_costs: AppCosts | None = None,
) -> list[float]:
    """Per-round ratios of `server`'s metric to `baseline`'s, rounds where both have a value.

    `baseline` is another server (paired by round, since those ran minutes apart at most),
    APP (the app's in-process CPU per call, timed at the start of the same round) or SELF
    (the metric itself).
    """
    get = METRICS[metric][1]
    if baseline == SELF:
        values = [get(r) for r in cells(results, server, workload)]
        return [v for v in values if v is not None]
    if baseline == APP:
        theirs: dict[int, float | None] = dict(app_cpu_by_round(app_costs, workload))
    else:
        theirs = {r.round_no: get(r) for r in cells(results, baseline, workload)}
    ratios = []
    for r in cells(results, server, workload):
        a, b = get(r), theirs.get(r.round_no)
        if a is not None and b:  # b may be None or 0: no ratio
            ratios.append(a / b)
    return ratios


def median_ratio(*args, **kwargs) -> float | None:
    """round_ratios' median (noise-robust with several rounds), None when there is none."""
    ratios = round_ratios(*args, **kwargs)
    return statistics.median(ratios) if ratios else None


def median_metric(results: list[Result], server: str, workload: str, metric: str) -> float:
    """Median over rounds of a cell's metric, 0 when the cell has no value (for the plot)."""
    get = METRICS[metric][1]
    values = [v for r in cells(results, server, workload) if (v := get(r)) is not None]
    return statistics.median(values) if values else 0.0


def fmt_ratios(results: list[Result], plan: Plan) -> list[str]:
    """prodserve vs each other server; < 1.00 CPU ratio means prodserve is cheaper."""
    lines = []
    ours = [s for s in plan.servers if s.startswith("prodserve")]
    theirs = [s for s in plan.servers if not s.startswith("prodserve")]
    median = " (median over rounds)" if plan.rounds > 1 else ""
    for workload in plan.workloads:
        for mine in ours:
            for other in theirs:
                cpu = median_ratio(results, mine, other, workload, "cpu")
                rps = median_ratio(results, mine, other, workload, "rps")
                if cpu is not None and rps is not None:
                    lines.append(
                        f"- {mine}/{other} CPU per request on {workload}: {cpu:.2f} "
                        f"(req/s ratio {rps:.2f}){median}"
                    )
    return lines


def fmt_app_costs(results: list[Result], app_costs: AppCosts, plan: Plan) -> list[str]:
    """The app's own CPU per call, and each server's CPU per request as a multiple of it.

    With several rounds the app column is the median over rounds, next to each round's value
    (so the noise of the in-process timing is visible), and server / app is the median of the
    per-round ratios, as in the goals.
    """
    rounds = sorted(app_costs)
    per_round = len(rounds) > 1
    names = dict.fromkeys(w for r in rounds for w in app_costs[r])  # run order, no repeats
    rows = {w: by_round for w in names if (by_round := app_cpu_by_round(app_costs, w))}
    if not rows:
        return []
    servers = [s for s in plan.servers if ran(results, s)]
    app_head = " app CPU µs/call (median) | per round |" if per_round else " app CPU µs/call |"
    lines = [
        "".join(["| workload |", app_head, " calls timed |", *(f" {s} / app |" for s in servers)]),
        "|---|---:|" + ("---|" if per_round else "") + "---:|" + "---:|" * len(servers),
    ]
    for workload, by_round in rows.items():
        cols = [f"| {workload} | {statistics.median(by_round.values()):.1f} |"]
        measured = [app_costs[r][workload] for r in rounds if workload in app_costs[r]]
        if per_round:
            values = ("failed" if c.error else f"{c.cpu_us_per_req:.1f}" for c in measured)
            cols.append(f" {', '.join(values)} |")
        calls = sorted({c.calls for c in measured if not c.error})
        cols.append(f" {calls[0]:,} |" if len(calls) == 1 else f" {calls[0]:,}–{calls[-1]:,} |")
        for server in servers:
            ratio = median_ratio(results, server, APP, workload, "cpu", app_costs)
            cols.append(" - |" if ratio is None else f" {ratio:.2f} |")
        lines.append("".join(cols))
    return lines


# --------------------------------------------------------------------------- goals


@dataclass(frozen=True)
class Check:
    """One ratio a goal needs: GOAL_SERVER's `metric` on `workload` over `baseline`'s."""

    metric: str  # key of METRICS
    workload: str
    baseline: str  # a server name, APP or SELF (see round_ratios)
    op: str  # key of OPS
    target: float


@dataclass(frozen=True)
class Goal:
    """One goal of the performance issue; it passes when all its checks do."""

    title: str
    checks: tuple[Check, ...]


GOAL_SERVER = "prodserve"  # 2 workers x 1 thread, the default configuration
OPS: dict[str, Callable[[float, float], bool]] = {
    "≤": lambda value, target: value <= target,
    "<": lambda value, target: value < target,
    "≥": lambda value, target: value >= target,
    ">": lambda value, target: value > target,
}
GUARD_RATIO = 1.5  # what .ci/run passes to --guard
GOALS = (
    Goal("bare hello, keep-alive", (Check("cpu", "bare", "granian", "≤", 0.8),)),
    Goal("bare hello, Connection: close", (Check("cpu", "bare-close", "granian", "≤", 1.0),)),
    Goal(
        "Django hello at saturation",
        (
            Check("cpu", "django", "gunicorn", "≤", 0.5),
            Check("rps", "django", "gunicorn", "≥", 2.0),
        ),
    ),
    Goal(
        "Django hello vs the app's own in-process cost", (Check("cpu", "django", APP, "≤", 1.15),)
    ),
    Goal("template + ORM page", (Check("cpu", "db", "gunicorn", "≤", 0.9),)),
    # "1000 slow clients cost < 10 % throughput": more than 90 % of it kept.
    Goal("1000 slow clients", (Check("kept", "slow-clients", SELF, ">", 0.9),)),
    Goal(
        "100 MB file download",
        (
            Check("cpu_per_mb", "download-100mb", "gunicorn", "≤", 1.0),
            Check("mb_per_s", "download-100mb", "gunicorn", "≥", 1.0),
        ),
    ),
    Goal("CI regression guard (bare hello)", (Check("cpu", "bare", "granian", "≤", GUARD_RATIO),)),
)


@dataclass(frozen=True)
class GoalResult:
    """A goal's verdict and the text for its report line."""

    goal: Goal
    verdict: str  # PASS, FAIL or "not measured"
    measured: str  # per check: what was divided by what, the median ratio and the target


def check_label(check: Check) -> str:
    """E.g. 'bare CPU µs/req ÷ granian' (what a ratio divides by what)."""
    metric = METRICS[check.metric][0]
    if check.baseline == SELF:
        return f"{check.workload} {metric}"
    base = "app in-process" if check.baseline == APP else check.baseline
    return f"{check.workload} {metric} ÷ {base}"


def goal_ratios(
    goal: Goal, results: list[Result], server: str, app_costs: AppCosts | None = None
) -> list[float | None]:
    """Each check's median ratio with `server` in GOAL_SERVER's place, None where unmeasured."""
    return [
        median_ratio(results, server, check.baseline, check.workload, check.metric, app_costs)
        for check in goal.checks
    ]


def evaluate_goal(
    goal: Goal, results: list[Result], app_costs: AppCosts | None = None
) -> GoalResult:
    """Median ratio per check; PASS only if all checks were measured and pass."""
    measured, verdicts = [], []
    for check, value in zip(
        goal.checks, goal_ratios(goal, results, GOAL_SERVER, app_costs), strict=True
    ):
        shown = "not measured" if value is None else f"{value:.2f}"
        measured.append(f"{check_label(check)} {shown} (target {check.op} {check.target:.2f})")
        if value is None:
            verdicts.append("not measured")
        else:
            verdicts.append("PASS" if OPS[check.op](value, check.target) else "FAIL")
    if "not measured" in verdicts:
        verdict = "not measured"
    else:
        verdict = "FAIL" if "FAIL" in verdicts else "PASS"
    return GoalResult(goal, verdict, "; ".join(measured))


def reference_ratios(goal: Goal, results: list[Result], app_costs: AppCosts | None = None) -> str:
    """REFERENCE_SERVER's value of each of the goal's ratios and whether it meets the target.

    Not a verdict (the goals are prodserve's): it tells whether a C server reaches the goal on
    this machine at all, i.e. whether a FAIL is prodserve's fault or the target's.
    """
    parts = []
    for check, value in zip(
        goal.checks, goal_ratios(goal, results, REFERENCE_SERVER, app_costs), strict=True
    ):
        label = f"{METRICS[check.metric][0]} " if len(goal.checks) > 1 else ""
        if value is None:
            parts.append(f"{label}not measured")
        else:
            meets = "meets" if OPS[check.op](value, check.target) else "misses"
            parts.append(f"{label}{value:.2f} ({meets} target)")
    return "; ".join(parts)


def fmt_goals(results: list[Result], app_costs: AppCosts | None = None) -> list[str]:
    """The goals table: one row per goal with its measured ratio(s), target(s) and verdict.

    When REFERENCE_SERVER ran, a last column shows the same ratios for it.
    """
    reference = ran(results, REFERENCE_SERVER)
    extra = f" {REFERENCE_SERVER}, same ratio |" if reference else ""
    lines = [
        f"| goal | {GOAL_SERVER} ÷ baseline (target) | verdict |{extra}",
        "|---|---|---|" + ("---|" if reference else ""),
    ]
    for goal in GOALS:
        g = evaluate_goal(goal, results, app_costs)
        row = f"| {g.goal.title} | {g.measured} | {g.verdict} |"
        if reference:
            row += f" {reference_ratios(goal, results, app_costs)} |"
        lines.append(row)
    return lines


#: The port commands_used asks each server's argv for, then shows as PORT.
SHOWN_PORT = 65432


def commands_used(plan: Plan) -> list[str]:
    """Exact command lines so anyone can reproduce a cell by hand."""
    placeholder = Workload("", "", wsgi_app="APP", settings="SETTINGS")
    legend = (
        f"APP is {BARE[0]} for bare workloads, {DJANGO[0]} otherwise; SETTINGS is "
        f"{BARE[1]} for bare workloads, {DJANGO[1]} otherwise (prodserve picks its app "
        "from it). Run from the repo root unless a directory is given."
    )
    lines = [legend, ""]
    for name in plan.servers:
        server = SERVERS[name]
        # A port no other argument spells stands for PORT: in "127.0.0.1:N", after --port, or on
        # its own (bjoern_serve). Not 0: "--spare-threads 0" read "--spare-threads PORT".
        shown = str(SHOWN_PORT)
        argv = [
            "python",
            *("PORT" if a == shown else a for a in server.argv(SHOWN_PORT, placeholder)[1:]),
        ]
        cmd = " ".join(argv).replace(f"127.0.0.1:{shown}", "127.0.0.1:PORT")
        if server.own_tree:
            where = f"cd {server.cwd} && PYTHONPATH={server.cwd} "
        else:
            where = f"cd {server.cwd.relative_to(REPO)} && " if server.cwd != REPO else ""
        lines.append(
            f"- {name} ({server.description}): `{where}DJANGO_SETTINGS_MODULE=SETTINGS {cmd}`"
        )
    return lines


def render(
    results: list[Result],
    notes: list[str],
    plan: Plan,
    app_costs: AppCosts | None = None,
) -> str:
    """The whole markdown report; it ends with the goals so they are the last thing printed."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    warmup = f" after a {plan.warmup}s warmup" if plan.warmup else ""
    machine = f"nproc={nproc()}, {platform.system()} {platform.machine()}"
    load = f"`wrk -t 1 -c {plan.connections} -d {plan.duration}s --latency`{warmup}"
    cpu_note = (
        "CPU µs/req = (utime+stime of the server's whole process tree during the wrk run) / "
        "requests completed. wrk runs on the same cores and competes with the server for CPU "
        "(same handicap for every server), so req/s is partly client-bound; CPU µs/req is the "
        "fairer comparison."
    )
    header = [
        "# django-prodserve benchmark",
        "",
        f"- date: {now}",
        f"- machine: {machine}, Python {platform.python_version()}",
        f"- versions: {versions()}",
        f"- load: {load}; {WORKERS} worker processes per server unless noted",
        f"- {cpu_note}",
        "",
    ]
    if plan.rounds > 1:
        header[-1:] = [
            f"- {plan.rounds} rounds: the whole sweep ran {plan.rounds} times, servers "
            "alternating; ratios are medians of the per-round ratios.",
            "",
        ]
    body = [*fmt_table(results), ""]
    app = fmt_app_costs(results, app_costs or {}, plan)
    if app:
        body += [
            "## App in-process cost",
            "",
            "The workload's WSGI app called in one process with no server (same env and "
            "settings as the servers, a PEP 3333 environ with the Host and headers wrk sends, "
            "body iterated and close() called; file_wrapper bodies not read, as servers "
            f"sendfile them): CPU µs per call by time.process_time() over up to "
            f"{APP_COST_CALLS:,} calls or {APP_COST_SECONDS:.0f} s after "
            f"{APP_COST_WARMUP_CALLS:,} warmup calls, timed at the start of every round before "
            "its servers. `server / app` = the server's CPU µs/req ÷ that; 1.00 would be a free "
            "server."
            + (
                " With several rounds the app cost is the median of the rounds' values (listed "
                "in round order) and `server / app` the median of the per-round ratios, each "
                "round's server ÷ the same round's app."
                if len(app_costs or {}) > 1
                else ""
            ),
            "",
            *app,
            "",
        ]
    transfer = fmt_transfer(results)
    if transfer:
        body += [
            "## Bulk transfer",
            "",
            "MB = 2^20 bytes of body per request (post-1mb: request body, echoed back; "
            "download-100mb: response body). CPU ms/MB = server CPU / (requests × MB). "
            'post-1mb runs wrk with `-s` and a script setting wrk.method = "POST" and '
            "wrk.body to 1 MiB; download-100mb uses `-c 4 --timeout 30s`.",
            "",
            *transfer,
            "",
        ]
    slow = fmt_slow(results)
    if slow:
        body += [
            "## Slow clients",
            "",
            f"Same server, one boot: a measured run, then {SLOW_CLIENTS} loopback connections "
            "each holding a request without its final CRLF, then a second measured run; kept = "
            "req/s with / req/s without.",
            "",
            *slow,
            "",
        ]
    mix = fmt_mix(results)
    if mix:
        body += [
            "## Mixed workload (a load balancer's keep-alive pool)",
            "",
            f"bench/openloop.py: Poisson arrivals at {MIX_RATE}/s over a pool of "
            f"{MIX_CONNECTIONS} keep-alive connections (least recently used first), "
            f"{MIX_SLOW:.0%} of them to a view that sleeps 100 ms, the rest to /hello/. Latency "
            "from each request's scheduled arrival, so waiting counts; generator lag = its own "
            "lateness (p99), included in every latency. CPU µs/req: the server's.",
            "",
            *mix,
            "",
        ]
    pipeline = fmt_pipeline(results)
    if pipeline:
        body += [
            "## A pipelining client beside another",
            "",
            f"bench/pipeline.py: {PIPELINE_CONNECTIONS} connections each keep {PIPELINE_BATCH} "
            "pipelined requests in flight; a probe on another sends one request every "
            f"{PIPELINE_PROBE_EVERY * 1000:g} ms and times it: what a worker's other clients "
            "wait while pipelines are served.",
            "",
            *pipeline,
            "",
        ]
    proxied = fmt_proxied(results)
    if proxied:
        body += [
            "## Behind nginx",
            "",
            "wrk → nginx (1 worker, `keepalive 32` to the upstream or none) → the server. "
            "CPU µs/req = nginx's + the server's.",
            "",
            *proxied,
            "",
        ]
    memory = fmt_memory(results)
    if memory:
        body += [
            "## Worker memory",
            "",
            "Summed over the processes below the master (the master itself when there are "
            "none), read from /proc/PID/smaps_rollup right after the measured run. "
            "USS = Private_Clean + Private_Dirty.",
            "",
            *memory,
            "",
        ]
    ratios = fmt_ratios(results, plan)
    if ratios:
        body += ["## Ratios (prodserve / other)", "", *ratios, ""]
    if notes:
        body += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    body += ["## Commands", "", *commands_used(plan), ""]
    body += [
        "## Goals",
        "",
        f"The performance issue's goals for {GOAL_SERVER} ({SERVERS[GOAL_SERVER].description}), "
        "each a ratio of two numbers measured in this run (median over rounds); "
        '"not measured" when the run lacked a server or workload the goal needs.'
        + (
            f" The last column is the same ratio with {REFERENCE_SERVER} "
            f"({SERVERS[REFERENCE_SERVER].description}) in place of {GOAL_SERVER}: whether "
            "the goal is reachable on this machine at all; the verdict is "
            f"{GOAL_SERVER}'s alone."
            if ran(results, REFERENCE_SERVER)
            else ""
        ),
        "",
        *fmt_goals(results, app_costs),
        "",
    ]
    return "\n".join(header + body)


def plot(results: list[Result], plan: Plan, path: Path) -> str:
    """Bar chart of CPU µs/req; returns a note when matplotlib is unavailable."""
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib not installed: results.png not written"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(len(plan.servers), 1)
    for i, server in enumerate(plan.servers):
        # A log scale: the workloads span 20 µs to 20 ms; a missing or zero cell draws no bar.
        values = [median_metric(results, server, w, "cpu") or float("nan") for w in plan.workloads]
        xs = [j + i * width for j in range(len(plan.workloads))]
        ax.bar(xs, values, width, label=server)
    ax.set_yscale("log")
    ax.set_xticks([j + width * (len(plan.servers) - 1) / 2 for j in range(len(plan.workloads))])
    ax.set_xticklabels(plan.workloads, rotation=30, ha="right")
    ax.set_ylabel("server CPU µs per request, log scale (lower is better)")
    ax.set_title(f"{WORKERS} workers, wrk -c {plan.connections}, nproc={nproc()}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return ""


def check_guard(results: list[Result], ratio: float) -> int:
    """CI regression guard: prodserve may burn at most `ratio` x granian's CPU on bare.

    Each round pairs a prodserve and a granian run made back to back, so a per-round ratio
    cancels most machine noise; the median of the rounds drops the odd disturbed one.
    """
    ours = {r.round_no: r for r in cells(results, "prodserve", "bare")}
    theirs = {r.round_no: r for r in cells(results, "granian", "bare")}
    ratios = []
    for round_no in sorted(ours.keys() & theirs.keys()):
        a, b = ours[round_no], theirs[round_no]
        if a.cpu_us_per_req <= 0 or b.cpu_us_per_req <= 0:
            continue
        ratios.append(a.cpu_us_per_req / b.cpu_us_per_req)
        print(
            f"guard round {round_no}: prodserve {a.cpu_us_per_req:.1f} CPU µs/req "
            f"({a.rps:,.0f} req/s), granian {b.cpu_us_per_req:.1f} CPU µs/req "
            f"({b.rps:,.0f} req/s): ratio {ratios[-1]:.2f}"
        )
    if not ratios:
        print("guard: no usable prodserve and granian results on bare; cannot compare")
        return 2
    actual = statistics.median(ratios)
    verdict = "OK" if actual <= ratio else "FAIL"
    print(
        f"guard: median prodserve/granian CPU per request on bare over {len(ratios)} "
        f"round(s): {actual:.2f} (limit {ratio:.2f}) {verdict}"
    )
    return 0 if verdict == "OK" else 1


# --------------------------------------------------------------------------- CLI


def csv_choice(choices: Iterable[str]) -> Callable[[str], list[str]]:
    """argparse type for comma-separated names drawn from `choices`."""
    allowed = list(choices)

    def parse(value: str) -> list[str]:
        names = [v.strip() for v in value.split(",") if v.strip()]
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)} (got {value!r})")
        return names

    return parse


def parse_args(argv: list[str] | None = None) -> tuple[Plan, argparse.Namespace]:
    """CLI; --quick only changes defaults, explicit flags still win."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=int, help="measured seconds per cell (default 10)")
    p.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    p.add_argument(
        "--servers",
        type=csv_choice(SERVERS),
        help=f"comma list from {','.join(SERVERS)} (default prodserve,gunicorn,granian)",
    )
    p.add_argument(
        "--workloads",
        type=csv_choice(WORKLOADS),
        help=f"comma list from {','.join(WORKLOADS)} (default bare,django)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        help="run the whole sweep N times, servers alternating; ratios and goals use the "
        "median of the per-round ratios (default 1, 3 with --quick)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI mode: bare only, prodserve+granian, 3 alternating rounds of 3s after a 1s "
        "warmup (about 40s), no results files",
    )
    p.add_argument(
        "--guard",
        type=float,
        metavar="RATIO",
        help="exit 1 if the median over rounds of prodserve/granian CPU per request on bare "
        f"exceeds RATIO (CI uses {GUARD_RATIO})",
    )
    p.add_argument(
        "--output",
        type=Path,
        help="markdown report path (default bench/results.md; none with --quick); "
        "a .png with the same stem is written next to it if matplotlib is available",
    )
    args = p.parse_args(argv)
    quick = args.quick
    servers = args.servers or (
        ["prodserve", "granian"] if quick else ["prodserve", "gunicorn", "granian"]
    )
    workloads = args.workloads or (["bare"] if quick else ["bare", "django"])
    if args.guard is not None:  # the guard needs both sides of its comparison
        servers += [s for s in ("prodserve", "granian") if s not in servers]
        workloads = workloads if "bare" in workloads else ["bare", *workloads]
    plan = Plan(
        servers=servers,
        workloads=workloads,
        duration=args.duration or (3 if quick else 10),
        warmup=1 if quick else 2,
        connections=args.connections,
        rounds=max(args.rounds or (3 if quick else 1), 1),
    )
    if args.output is None and not quick:
        args.output = BENCH_DIR / "results.md"
    return plan, args


def main(argv: list[str] | None = None) -> int:
    """Run the plan, print/write the report, apply the guard."""
    plan, args = parse_args(argv)
    if shutil.which("wrk") is None:
        progress("wrk not found on PATH (apt-get install wrk)")
        return 2
    if not (TESTPROJECT / "testproject").is_dir():
        progress(f"{TESTPROJECT} is missing; nothing to serve")
        return 2
    atexit.register(kill_all_servers)
    # Turn SIGTERM/SIGHUP into SystemExit so `finally` blocks stop the servers gracefully.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    results, notes, app_costs = run_plan(plan)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        note = plot(results, plan, args.output.with_suffix(".png"))
        if note:
            notes.append(note)
    report = render(results, notes, plan, app_costs)
    print(report)
    if args.output:
        args.output.write_text(report)
        progress(f"wrote {args.output}")
    return check_guard(results, args.guard) if args.guard is not None else 0


if __name__ == "__main__":
    sys.exit(main())
