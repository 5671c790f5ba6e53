"""The test project whose LOGGING configures prodserve's access logger with its own handler."""

from .settings import *  # noqa: F403

LOGGING = {
    "version": 1,
    "disable_existing_loggers": True,
    "formatters": {"project": {"format": "[project] %(message)s"}},
    "handlers": {
        "project": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "project",
        }
    },
    "loggers": {
        "django_prodserve.access": {"handlers": ["project"], "level": "INFO", "propagate": False}
    },
}
