"""The test project in production mode with collected static files (tests/test_static.py).

STATIC_ROOT and an extra source directory come from the environment, so each test run collects
into its own temporary directory. ManifestStaticFilesStorage by default, for hashed names.
"""

import os

from .settings import *  # noqa: F403

DEBUG = False
STATIC_ROOT = os.environ["TESTPROJECT_STATIC_ROOT"]
STATICFILES_DIRS = [os.environ["TESTPROJECT_STATIC_SRC"]]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": os.environ.get(
            "TESTPROJECT_STATIC_STORAGE",
            "django.contrib.staticfiles.storage.ManifestStaticFilesStorage",
        )
    },
}
