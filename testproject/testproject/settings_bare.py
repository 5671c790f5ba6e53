"""The test project serving a bare WSGI hello, to measure the server without Django's request cost."""

from .settings import *  # noqa: F403

WSGI_APPLICATION = "testproject.bare.application"
