"""Server hooks (gunicorn's names), given in settings as callables or dotted paths."""

from __future__ import annotations

import logging

from django.utils.module_loading import import_string

from ..conf import HOOKS

error_log = logging.getLogger("django_prodserve.error")


class Hooks:
    """Calls the configured hooks; a failing hook is logged, never takes the server down."""

    def __init__(self, config) -> None:
        self._hooks = {}
        for name in HOOKS:
            value = getattr(config, name)
            if value is not None:
                self._hooks[name] = import_string(value) if isinstance(value, str) else value

    def __call__(self, name: str, *args) -> None:
        hook = self._hooks.get(name)
        if hook is None:
            return
        try:
            hook(*args)
        except Exception:
            error_log.exception("The %s hook failed", name)
