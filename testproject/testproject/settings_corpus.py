"""The test project answering every request with its environ as JSON, for the corpus replay."""

from .settings import *  # noqa: F403

WSGI_APPLICATION = "testproject.conformance.environ_view"
