"""The TLS context: TLS 1.2 at least, the configured certificate, optional client certificates."""

from __future__ import annotations

import ssl

VERIFY_MODES = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def make_context(config) -> ssl.SSLContext | None:
    """None without certfile. Raises ssl.SSLError or OSError for unusable files or ciphers."""
    if not config.certfile:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.certfile, config.keyfile)
    if config.ca_certs:
        context.load_verify_locations(config.ca_certs)
    context.verify_mode = VERIFY_MODES[config.cert_reqs]
    if config.ciphers:
        context.set_ciphers(config.ciphers)
    context.set_alpn_protocols(["http/1.1"])
    return context
