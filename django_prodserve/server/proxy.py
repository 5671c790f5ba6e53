"""Who the client really is, when a trusted proxy says so — and never when anyone else does.

Two mechanisms, each applied only to peers on an allow-list:
- forwarded headers (X-Forwarded-For/-Proto, RFC 7239 Forwarded, secure_scheme_headers), read
  per request; from untrusted peers they are removed, so neither we nor Django can be fooled;
- the PROXY protocol (HAProxy's v1 text / v2 binary preamble), read once per connection.
"""

from __future__ import annotations

import ipaddress
import struct

from .http import ProtocolError, environ_key

X_FORWARDED_KEYS = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_SSL",
)
FORWARDED_KEYS = ("HTTP_FORWARDED", *X_FORWARDED_KEYS)


class Trust:
    """Membership of peer addresses in a list of IPs/networks ('*' = everyone), cached per address.

    A unix-socket peer ('' address) is trusted: only local processes allowed by the socket file's
    permissions can connect, which is how a proxy on the same host reaches us.
    """

    def __init__(self, entries: tuple[str, ...]) -> None:
        self.everyone = "*" in entries
        self.networks = [ipaddress.ip_network(e, strict=False) for e in entries if e != "*"]
        self._cache: dict[str, bool] = {}

    def __contains__(self, address: str) -> bool:
        known = self._cache.get(address)
        if known is None:
            known = self._check(address)
            if len(self._cache) < 4096:
                self._cache[address] = known
        return known

    def _check(self, address: str) -> bool:
        if self.everyone or not address:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)


class ForwardedHeaders:
    """Rewrites REMOTE_ADDR/REMOTE_PORT and wsgi.url_scheme from a trusted proxy's headers.

    A proxy overwrites the headers it sets and passes the others on, so a trusted peer's request
    still carries whatever its client wrote in the kind of header the proxy does not use: that
    kind (`style` says which the proxy uses) is removed, never read (issue 18 #2).
    """

    def __init__(
        self, trust: Trust, secure_scheme_headers: dict[str, str], style: str = "x-forwarded"
    ) -> None:
        self.trust = trust
        self.secure = [
            (environ_key(name), value.lower()) for name, value in secure_scheme_headers.items()
        ]
        secure_keys = tuple(key for key, _ in self.secure if key not in FORWARDED_KEYS)
        self.strip = FORWARDED_KEYS + secure_keys
        self._keys = frozenset(self.strip)
        self.rfc7239 = style == "forwarded"
        self.unused = X_FORWARDED_KEYS + secure_keys if self.rfc7239 else ("HTTP_FORWARDED",)

    def apply(self, environ: dict, trusted: bool) -> None:
        """Raises ProtocolError(400) when the secure_scheme_headers contradict each other."""
        if environ.keys().isdisjoint(self._keys):
            return  # most requests carry none of these headers
        for key in self.unused if trusted else self.strip:
            if key in environ:
                del environ[key]
        if not trusted:
            return
        if self.rfc7239:
            forwarded = environ.get("HTTP_FORWARDED")
            if forwarded is not None:
                self._apply_rfc7239(environ, forwarded)
            return
        self._apply_scheme(environ)
        chain = environ.get("HTTP_X_FORWARDED_FOR")
        if chain is not None:
            client = self._client([part.strip() for part in chain.split(",")])
            if client:
                environ["REMOTE_ADDR"] = client
                environ["REMOTE_PORT"] = ""

    def _apply_scheme(self, environ: dict) -> None:
        """Each secure_scheme_header present says https or http; they must agree, as gunicorn
        requires: otherwise a header the proxy does not overwrite (a client's X-Forwarded-SSL)
        could contradict the one it does."""
        scheme = None
        for key, secure in self.secure:
            claimed = environ.get(key)
            if claimed is not None:
                said = "https" if claimed.lower() == secure else "http"
                if scheme is not None and said != scheme:
                    raise ProtocolError(400, "contradictory secure_scheme_headers")
                scheme = said
        if scheme is not None:
            environ["wsgi.url_scheme"] = scheme

    def _client(self, hops: list[str]) -> str | None:
        """The rightmost hop that is not one of our trusted proxies: every hop to its right was
        appended by a proxy we trust; anything to its left the client could have written."""
        for hop in reversed(hops):
            if hop and hop not in self.trust:
                return hop
        return hops[0] if hops and hops[0] else None

    def _apply_rfc7239(self, environ: dict, header: str) -> None:
        elements = [_forwarded_element(part) for part in header.split(",")]
        chosen = None
        for element in reversed(elements):
            chosen = element
            # Only an element whose for= is one of our proxies lets us look further left: one
            # without a usable for= (absent, "unknown", obfuscated) still came from the proxy to
            # its right, and what is left of it is the client's to write (issue 18 #9).
            address = _node_address(element.get("for", ""))[0]
            if not address or address not in self.trust:
                break
        if chosen is None:
            return
        address, port = _node_address(chosen.get("for", ""))
        if address:
            environ["REMOTE_ADDR"] = address
            environ["REMOTE_PORT"] = port
        if chosen.get("proto", "").lower() in ("http", "https"):
            environ["wsgi.url_scheme"] = chosen["proto"].lower()


def _forwarded_element(text: str) -> dict[str, str]:
    """One RFC 7239 forwarded-element: 'for=1.2.3.4;proto=https' → {'for': ..., 'proto': ...}."""
    pairs = {}
    for pair in text.split(";"):
        name, sep, value = pair.strip().partition("=")
        if sep:
            pairs[name.strip().lower()] = value.strip().strip('"')
    return pairs


def _node_address(node: str) -> tuple[str, str]:
    """RFC 7239 §6 node: '1.2.3.4', '1.2.3.4:80', '[2001:db8::1]:80', 'unknown', '_hidden'."""
    if node.startswith("["):
        host, _, rest = node[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    if node.count(":") == 1:
        host, port = node.split(":")
        return host, port
    if node.lower() == "unknown" or node.startswith("_"):
        return "", ""
    return node, ""


# PROXY protocol (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt)

V1_PREFIX = b"PROXY "
V1_MAX = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER = struct.Struct("!12sBBH")


def read_proxy_header(data: bytes, version: str) -> tuple[int, tuple[str, str] | None] | None:
    """Parse a PROXY preamble at the start of data.

    Returns None when more bytes are needed, else (bytes consumed, (client ip, port) or None
    when the proxy names no client: LOCAL, UNKNOWN, UNSPEC or unix). Raises ProtocolError(400)
    on anything malformed.
    """
    if version in ("v2", "auto") and data[:1] == b"\r":
        if len(data) < V2_HEADER.size:
            return None if V2_SIGNATURE.startswith(data[:12]) else _bad("PROXY v2 signature")
        return _read_v2(data)
    if version in ("v1", "auto") and data[:1] == b"P":
        return _read_v1(data)
    raise ProtocolError(400, "expected a PROXY protocol header")


def _read_v1(data: bytes):
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or not (
            V1_PREFIX.startswith(data[:6]) or data.startswith(V1_PREFIX)
        ):
            _bad("PROXY v1 header")
        return None
    fields = data[:end].decode("ascii", "replace").split(" ")
    if fields[:2] == ["PROXY", "UNKNOWN"]:
        return end + 2, None
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        _bad("PROXY v1 header")
    _, family, source, destination, source_port, destination_port = fields
    version = 4 if family == "TCP4" else 6
    ip = _v1_address(source, version)
    _v1_address(destination, version)
    if not (_v1_port(source_port) and _v1_port(destination_port)):
        _bad("PROXY v1 port")
    return end + 2, (str(ip), source_port)


def _v1_address(text: str, version: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address of the header's family, as the spec writes it (no IPv6 zone)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        _bad("PROXY v1 address")
    if ip.version != version or "%" in text:
        _bad("PROXY v1 address")
    return ip


def _v1_port(text: str) -> bool:
    """0-65535 in plain decimal: no sign, underscore, space or leading zero (int() takes all)."""
    if text == "0":
        return True
    return text.isascii() and text.isdigit() and text[0] != "0" and int(text) <= 65535


def _read_v2(data: bytes):
    signature, version_command, family, length = V2_HEADER.unpack_from(data)
    if signature != V2_SIGNATURE or version_command >> 4 != 2:
        _bad("PROXY v2 header")
    end = V2_HEADER.size + length
    if len(data) < end:
        return None
    command = version_command & 0x0F
    if command == 0:  # LOCAL: a health check from the proxy itself
        return end, None
    if command != 1:
        _bad("PROXY v2 command")
    body = data[V2_HEADER.size : end]
    if family == 0x11:
        if length < 12:
            _bad("PROXY v2 TCP4 address block")
        return end, (str(ipaddress.IPv4Address(body[:4])), str(struct.unpack("!H", body[8:10])[0]))
    if family == 0x21:
        if length < 36:
            _bad("PROXY v2 TCP6 address block")
        return end, (
            str(ipaddress.IPv6Address(body[:16])),
            str(struct.unpack("!H", body[32:34])[0]),
        )
    return end, None  # UNSPEC or unix: no client address


def _bad(what: str):
    raise ProtocolError(400, f"malformed {what}")
