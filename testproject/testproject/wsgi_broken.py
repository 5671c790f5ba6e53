"""A WSGI module that fails at import, for the boot-failure tests."""

raise RuntimeError("prodserve-test: the WSGI module failed at import")
