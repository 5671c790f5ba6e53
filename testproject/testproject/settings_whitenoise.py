"""settings_static with WhiteNoise's middleware serving STATIC_ROOT instead of --serve-static."""

from .settings_static import *  # noqa: F403
from .settings_static import MIDDLEWARE

MIDDLEWARE = ["whitenoise.middleware.WhiteNoiseMiddleware", *MIDDLEWARE]
