"""The test project serving the PEP 3333 conformance app instead of Django."""

from .settings import *  # noqa: F403

WSGI_APPLICATION = "testproject.conformance.application"
