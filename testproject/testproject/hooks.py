"""Server hooks for the tests: each appends its name and pid to the file in $HOOKS_LOG."""

import os
import time


def _record(name: str) -> None:
    with open(os.environ["HOOKS_LOG"], "a") as f:
        f.write(f"{name} {os.getpid()}\n")


def on_starting(server):
    _record("on_starting")


def when_ready(server):
    _record("when_ready")


def post_fork(server, worker):
    _record("post_fork")
    if delay := os.environ.get("HOOKS_POST_FORK_SLEEP"):  # a worker slow to boot
        time.sleep(float(delay))


def worker_exit(server, worker):
    _record("worker_exit")


def on_exit(server):
    _record("on_exit")
