"""django-prodserve: `python manage.py prodserve`, a pre-fork HTTP/1.1 server for Django."""

__version__ = "0.1.0"
