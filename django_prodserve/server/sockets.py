"""Listening sockets: parse `bind` addresses, bind them all before any worker forks."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import stat
from dataclasses import dataclass

DEFAULT_PORT = 8000


@dataclass(frozen=True)
class Address:
    """One parsed `bind` entry: a TCP host and port, a unix socket path, or an inherited fd."""

    kind: str  # "tcp", "unix" or "fd"
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1


def parse_bind(text: str) -> Address:
    """Parse HOST:PORT, [IPV6]:PORT, HOST (port 8000), unix:PATH or fd://N; ValueError says why."""
    if text.startswith("unix:"):
        path = text[5:].removeprefix("//")
        if not path:
            raise ValueError(f"{text!r} names no socket path; write unix:/run/app.sock")
        return Address("unix", path=path)
    if text.startswith("fd://"):
        if not text[5:].isdigit():
            raise ValueError(f"{text!r} is not a file descriptor number; write fd://3")
        return Address("fd", fd=int(text[5:]))
    if "://" in text:  # not fd:// (above): a URL such as http://127.0.0.1:8000
        netloc = text.partition("://")[2].partition("/")[0]
        raise ValueError(
            f"{text!r} is a URL; bind takes an address: write {netloc or 'HOST:PORT'!r}"
        )
    host, port = text, str(DEFAULT_PORT)
    if text.startswith("["):
        inner, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not a valid [IPv6]:port address")
        host, port = inner, rest[1:] or port
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not a valid IPv6 address") from None
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif ":" in text:
        raise ValueError(f"{text!r}: write IPv6 addresses in brackets, like [::1]:8000")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: {port!r} is not a valid port number (0-65535)")
    if host == "0":
        host = "0.0.0.0"
    if not host:
        raise ValueError(f"{text!r} names no host; write 127.0.0.1:{port} or 0.0.0.0:{port}")
    return Address("tcp", host=host, port=int(port))


BIND_ERRORS = {
    errno.EACCES: "You don't have permission to access that port.",
    errno.EADDRINUSE: "That port is already in use.",
    errno.EADDRNOTAVAIL: "That IP address can't be assigned to.",
}


class BindError(Exception):
    """A socket could not be bound; the message is fit for the console."""


def bind(address: Address, backlog: int, reuse_port: bool = False) -> socket.socket:
    """A listening, non-blocking, inheritable-by-fork socket for one address."""
    try:
        if address.kind == "fd":
            sock = socket.socket(fileno=address.fd)
            os.set_inheritable(address.fd, False)
        elif address.kind == "unix":
            _remove_stale_unix_socket(address.path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(address.path)
        else:
            infos = socket.getaddrinfo(
                address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, _, _, _, sockaddr = infos[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        reason = BIND_ERRORS.get(exc.errno, exc.strerror or str(exc))
        raise BindError(f"Error binding {display(address)}: {reason}") from exc
    sock.setblocking(False)
    return sock


def _remove_stale_unix_socket(path: str) -> None:
    """A socket file left by a dead server blocks bind(); a live one (or any other file) does not go."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return
    except FileNotFoundError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
    except OSError:
        pass
    finally:
        probe.close()


SYSTEMD_FIRST_FD = 3


def inherited_fds() -> list[int]:
    """Listening sockets handed over at start: by systemd socket activation (LISTEN_FDS for our
    pid) or by the previous master on SIGUSR2 (PRODSERVE_LISTEN_FDS). The variables are removed so
    that no child process takes them for its own."""
    handed = os.environ.pop("PRODSERVE_LISTEN_FDS", None)
    if handed:
        return [int(fd) for fd in handed.split(",")]
    count = os.environ.pop("LISTEN_FDS", None)
    pid = os.environ.pop("LISTEN_PID", None)
    os.environ.pop("LISTEN_FDNAMES", None)
    if count and count.isdigit() and pid == str(os.getpid()):
        return list(range(SYSTEMD_FIRST_FD, SYSTEMD_FIRST_FD + int(count)))
    return []


def bound_address(sock: socket.socket, address: Address) -> Address:
    """The address as bound: port 0 becomes the port the kernel chose."""
    if sock.family == socket.AF_UNIX:
        return Address("unix", path=sock.getsockname() or address.path)
    host, port = sock.getsockname()[:2]
    return Address("tcp", host=host, port=port)


def display(address: Address, scheme: str = "http") -> str:
    """How the banner and logs name an address: a URL for TCP."""
    if address.kind == "unix":
        return f"unix:{address.path}"
    if address.kind == "fd":
        return f"fd://{address.fd}"
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{scheme}://{host}:{address.port}/"
