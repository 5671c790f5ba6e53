"""The test project with a misspelt PRODSERVE key ('wrokers'), for the settings-check tests."""

from .settings import *  # noqa: F403

PRODSERVE = {"wrokers": 2}
