"""The test project with a LOGGING that disables existing loggers (gunicorn#1051's trap)."""

from .settings import *  # noqa: F403

LOGGING = {
    "version": 1,
    "disable_existing_loggers": True,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
