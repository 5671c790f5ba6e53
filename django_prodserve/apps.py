from django.apps import AppConfig


class ProdserveConfig(AppConfig):
    name = "django_prodserve"
    verbose_name = "prodserve"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
