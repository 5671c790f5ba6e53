"""The test project with every observable server hook set (they log to $HOOKS_LOG)."""

from .settings import *  # noqa: F403

PRODSERVE = {
    **PRODSERVE,  # noqa: F405
    "on_starting": "testproject.hooks.on_starting",
    "when_ready": "testproject.hooks.when_ready",
    "post_fork": "testproject.hooks.post_fork",
    "worker_exit": "testproject.hooks.worker_exit",
    "on_exit": "testproject.hooks.on_exit",
}
