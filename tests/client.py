"""A tiny raw-socket HTTP/1.1 client: the tests must see exactly the bytes the server sends."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    raw_head: bytes = b""

    def header(self, name: str) -> str | None:
        """The value of a header (joined with ', ' if repeated), or None."""
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None


class Connection:
    """One client connection that can send raw bytes and read responses one by one."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"closed before {marker!r}; got {self.buffer[:200]!r}")
        data, _, self.buffer = self.buffer.partition(marker)
        return data

    def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise ConnectionError(f"closed after {len(self.buffer)} of {size} bytes")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_response(self, method: str = "GET") -> Response:
        head = self._read_until(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        version, status, *reason = status_line.split(" ", 2)
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines]
        response = Response(
            int(status), reason[0] if reason else "", version, headers, raw_head=head
        )
        if method == "HEAD" or response.status in (204, 304) or response.status < 200:
            return response
        if (response.header("Transfer-Encoding") or "").lower() == "chunked":
            body = b""
            while True:
                size = int(self._read_until(b"\r\n"), 16)
                if size == 0:
                    self._read_until(b"\r\n")
                    break
                body += self._read_exactly(size)
                assert self._read_exactly(2) == b"\r\n"
            response.body = body
        elif response.header("Content-Length") is not None:
            response.body = self._read_exactly(int(response.header("Content-Length")))
        else:
            while self._fill():
                pass
            response.body, self.buffer = self.buffer, b""
        return response

    def received(self) -> bytes:
        """Read what has arrived without waiting; the bytes received and not read yet."""
        timeout = self.sock.gettimeout()
        self.sock.setblocking(False)
        try:
            while self._fill():
                pass
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(timeout)  # setblocking(True) would drop it: a hang, not a failure
        return self.buffer

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True when the server has closed the connection (EOF or reset) within timeout."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def request(port: int, raw: bytes, method: str = "GET", host: str = "127.0.0.1") -> Response:
    """Send one raw request on a fresh connection and read one response."""
    with Connection(host, port) as conn:
        conn.send(raw)
        return conn.read_response(method)


def get(port: int, path: str, headers: str = "", host: str = "127.0.0.1") -> Response:
    return request(
        port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n".encode(), host=host
    )


def unix_request(path: str, raw: bytes, timeout: float = 30.0) -> bytes:
    """Send raw bytes over a unix socket and read until the server closes the connection."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data
