#!/usr/bin/env python3
"""Run a WSGI app on bjoern with N forked worker processes, for bench/run.py.

bjoern (a WSGI server in C on libev) is the benchmark's reference limit: what serving a request
costs when the HTTP side is C and does next to nothing. It has no CLI and no process manager,
so this is the smallest one that behaves like the other benchmarked servers: bind once
(SO_REUSEPORT set, as a forking server would), fork N workers that all accept on that one
socket, and on SIGTERM/SIGINT stop the workers (SIGTERM, SIGKILL after a short wait), reap
them and exit 0. A worker dying on its own is an error: the rest are stopped and we exit 1, so
the benchmark sees a failed server rather than one quietly running on fewer workers.

The app is imported once, before the fork (like --preload), relative to the working directory
(`--chdir`, like gunicorn's), with DJANGO_SETTINGS_MODULE taken from the environment.

Usage: python bench/bjoern_serve.py [--chdir testproject] PORT WORKERS module:attr

Needs bjoern: apt-get install libev-dev && pip install bjoern
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time

import bjoern

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
KILL_AFTER = 3.0  # seconds a worker gets to die on SIGTERM before SIGKILL


class Stop(Exception):
    """Raised by the master's signal handler to break out of os.wait()."""


def log(message: str) -> None:
    print(f"bjoern_serve[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


def load_app(target: str):
    """Import 'module:attr' with the working directory first on sys.path (gunicorn --chdir)."""
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise SystemExit(f"app must be module:attr, got {target!r}")
    sys.path.insert(0, os.getcwd())
    return getattr(importlib.import_module(module), attr)


def run_worker() -> None:
    """Child: default signal dispositions (SIGTERM kills it outright), then bjoern's loop."""
    code = 1
    try:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        bjoern.run()  # returns (KeyboardInterrupt) on SIGINT: bjoern watches it itself
        code = 0
    except KeyboardInterrupt:
        code = 0
    except BaseException as exc:  # a worker must never return into the master's code
        log(f"worker failed: {exc!r}")
    finally:
        sys.stderr.flush()
        os._exit(code)


def reap(children: set[int], timeout: float) -> None:
    """waitpid the children until none is left or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while children:
        for pid in list(children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                children.discard(pid)
        if not children or time.monotonic() >= deadline:
            return
        time.sleep(0.02)


def stop_children(children: set[int]) -> None:
    """SIGTERM every worker, SIGKILL the ones still there after KILL_AFTER, reap them all."""
    for sig, wait in ((signal.SIGTERM, KILL_AFTER), (signal.SIGKILL, KILL_AFTER)):
        for pid in children:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        reap(children, wait)
        if not children:
            return
    log(f"{len(children)} worker(s) not reaped after SIGKILL")


def main(argv: list[str] | None = None) -> int:
    """Bind, import, fork the workers, then wait; 0 after a stop signal, 1 if a worker died."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chdir", help="directory to change to (and import the app from) first")
    p.add_argument("port", type=int)
    p.add_argument("workers", type=int)
    p.add_argument("app", help="WSGI app as module:attr")
    args = p.parse_args(argv)
    if args.chdir:
        os.chdir(args.chdir)
    app = load_app(args.app)
    sock = bjoern.listen(app, "127.0.0.1", args.port, reuse_port=True)

    def on_signal(signum, _frame):
        # Block further stop signals first: a second SIGTERM must not interrupt the stopping.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        raise Stop(signal.Signals(signum).name)

    # Block the stop signals across the forks: a signal arriving mid-loop then reaches the
    # master once its handler can stop the children it has, and never a half-set-up child.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    children: set[int] = set()
    code = 0
    try:  # from the first fork on, whatever happens, the finally stops the workers
        for _ in range(max(args.workers, 1)):
            pid = os.fork()
            if pid == 0:
                run_worker()  # never returns
            children.add(pid)
        sock.close()  # the workers hold it; with none left, clients get refused, not hung
        log(f"listening on 127.0.0.1:{args.port} with {len(children)} workers")
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        pid, status = os.wait()
        children.discard(pid)
        log(f"worker {pid} exited on its own ({status:#x}); stopping the others")
        code = 1
    except Stop as stop:
        log(f"{stop}: stopping {len(children)} workers")
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        stop_children(children)
    return code


if __name__ == "__main__":
    sys.exit(main())
