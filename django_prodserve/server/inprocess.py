"""Serving without fork (Windows): the process that bound the sockets runs the worker loop itself.

As runserver does: one process, the app on `workers × threads` threads (a system check says so when
`workers` > 1). What a master adds is gone with it: no worker is replaced (max_requests, memory,
`timeout`), HUP/TTIN/TTOU/USR2 have nothing to act on, and the process ends where the worker does
(os._exit), so there is no `on_exit` hook and no pidfile (it could not be removed). `--reload` keeps working: its children are
fresh interpreters, never forks (reloader.py).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable

from .heartbeat import Heartbeat
from .master import Master, WorkerProcess, set_title
from .portable import CAN_FORK
from .worker import Worker

error_log = logging.getLogger("django_prodserve.error")


def one_process(config):
    """The configuration a process that cannot fork serves with: the workers become threads."""
    if CAN_FORK or config.workers == 1:
        return config
    return dataclasses.replace(config, workers=1, threads=config.workers * config.threads)


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
        error_log.info("Ready: 1 worker(s), pids %d (one process: no fork here)", os.getpid())
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
