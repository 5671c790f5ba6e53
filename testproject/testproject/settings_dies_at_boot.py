"""The test project whose WSGI app kills its worker during import, without a Python error."""

from .settings import *  # noqa: F403

WSGI_APPLICATION = "testproject.wsgi_dies.application"
