"""The test project with a WSGI_APPLICATION whose module raises at import."""

from .settings import *  # noqa: F403

WSGI_APPLICATION = "testproject.wsgi_broken.application"
