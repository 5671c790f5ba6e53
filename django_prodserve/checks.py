"""System checks: every invalid PRODSERVE setting or PRODSERVE_* variable, with the fix."""

import os

from django.conf import settings
from django.core.checks import Error, register

from .conf import resolve


@register("prodserve")
def check_settings(app_configs, **kwargs) -> list[Error]:
    _, _, problems = resolve(getattr(settings, "PRODSERVE", {}), os.environ, {})
    return [Error(p.message, hint=p.hint, id=p.id) for p in problems]
