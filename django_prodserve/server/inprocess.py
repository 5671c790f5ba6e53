"""Serving without fork (Windows): the serving interpreter runs the worker loop itself.

The command's process never forks (supervisor.py, reloader.py): it keeps the sockets and starts
fresh interpreters — a generation, or a --reload server. Only their master forks workers; where
there is no fork, `InProcess` stands in for it: one process, the app on `workers × threads`
threads, as runserver serves (system check W041 says so when `workers` > 1). What the master's
supervision adds is gone: no worker is recycled (the recycling settings are off, W042) or aborted
(`timeout`), and TTIN/TTOU have nothing to act on. HUP still serves the code on disk (a new generation is a new interpreter).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable

from . import reload_child
from .heartbeat import Heartbeat
from .master import Master, WorkerProcess, set_title
from .portable import CAN_FORK
from .worker import Worker

error_log = logging.getLogger("django_prodserve.error")


#: What recycles a worker: without fork the worker is the server, and its exit would stop it.
RECYCLING = ("max_requests", "max_worker_memory", "max_worker_lifetime")


def one_process(config):
    """The configuration a process that cannot fork serves with: the workers become threads, and
    nothing recycles the one worker (system checks W041, W042)."""
    if CAN_FORK:
        return config
    return dataclasses.replace(
        config,
        workers=1,
        threads=config.workers * config.threads,
        **dict.fromkeys(RECYCLING, 0),
    )


class InProcess(Master):
    """A Master whose one worker is this process: same construction, same hooks, same log lines."""

    def run(self) -> int:
        """Serve until stopped; never returns (the worker's exit is the process's)."""
        set_title("server", self.config)
        if self.app is None:
            self.app = self.load_app()  # a broken app raises here, before "Ready", as preloaded
        record = WorkerProcess(os.getpid(), 0, time.monotonic(), 0, booted=True)
        self.hooks("pre_fork", self, record)
        worker = Worker(
            self.config,
            self.listeners,
            self.app,
            self.load_app,
            FirstBeat(self.announce_ready),
            0,
            self.hooks,
        )
        self.hooks("post_fork", self, worker)
        worker.run()
        return 1  # not reached: Worker.run() exits the process

    def announce_ready(self) -> None:
        message = f"Ready: 1 worker(s), pids {os.getpid()} (one process: no fork here)"
        if self.announce is not None:
            self.announce(message)  # a generation's: the supervisor logs it, runs when_ready
        else:
            error_log.log(
                logging.DEBUG if reload_child.announced() else logging.INFO, "%s", message
            )
            self.hooks("when_ready", self)


class FirstBeat(Heartbeat):
    """A heartbeat that calls `ready` on the first beat: the worker beats once its signal handlers
    and the app are in place (Worker.run), which is when a master would say Ready."""

    def __init__(self, ready: Callable[[], None]) -> None:
        super().__init__(slots=1)
        self._ready: Callable[[], None] | None = ready

    def beat(self, slot: int) -> None:
        super().beat(slot)
        if self._ready is not None:
            ready, self._ready = self._ready, None
            ready()


#: What the command and the reload child serve with.
Server = Master if CAN_FORK else InProcess
