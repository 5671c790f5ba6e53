"""prodserve behind a real nginx, configured with the recipe in docs/deploy-nginx.md.

nginx runs in the foreground with a config generated in tmp_path (its own pid file, logs and temp
directories) around the documented `upstream` and `server` blocks, on a free loopback port. Without
nginx these tests skip, except under CI=true, where .ci/run installs it and they must run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.client import Connection, get
from tests.conftest import ROOT, require_tool, stop_process_group, wait_until
from tests.test_operations import Load

RECIPE_DOC = ROOT / "docs" / "deploy-nginx.md"
# The client's own loopback address, so that it differs from nginx's (127.0.0.1) and is not in
# prodserve's default forwarded_allow_ips.
CLIENT_ADDR = "127.0.0.5"
#: The recipe's lines that keep upstream connections open: keepalive, keepalive_timeout, and the
#: location's empty Connection header.
KEEPALIVE_LINES = re.compile(
    r'^ *(?:keepalive(?:_timeout)? \S+|proxy_set_header Connection "");.*\n', re.M
)
UPSTREAM_SERVERS = re.compile(r"(?:^ +server [^{\n]*;\n)+", re.M)


def documented_block(marker: str) -> str:
    """The nginx block that follows `marker` in docs/deploy-nginx.md."""
    _, found, rest = RECIPE_DOC.read_text().partition(marker)
    block = re.search(r"```nginx\n(.*?)```", rest, re.S)
    assert found and block, f"{RECIPE_DOC} lost the nginx block after {marker!r}"
    return block.group(1)


def documented_site(upstreams: list[str], port: int, keepalive: bool = True) -> str:
    """docs/deploy-nginx.md's configuration (upstream keep-alive on, as documented, or taken
    out) with our instances and listening port put in."""
    site = documented_block("<!-- tested: tests/test_nginx.py reads the next nginx block")
    assert site.count("listen 80;") == 1 and site.count("proxy_http_version 1.1;") == 1, site
    assert len(KEEPALIVE_LINES.findall(site)) == 3, site
    if not keepalive:
        site = KEEPALIVE_LINES.sub("", site)
    servers = UPSTREAM_SERVERS.search(site)
    indent, _, params = re.match(r"( +)server (\S+)(.*);", servers.group(0)).groups()
    ours = "".join(f"{indent}server {upstream}{params};\n" for upstream in upstreams)
    site = site[: servers.start()] + ours + site[servers.end() :]
    return site.replace("listen 80;", f"listen 127.0.0.1:{port};")


class Nginx:
    """One foreground nginx (master + 1 worker) whose files all live in `directory`."""

    def __init__(
        self, binary: str, directory: Path, upstreams: list[str], keepalive: bool = True
    ) -> None:
        directory.mkdir()
        self.directory = directory
        with socket.socket() as probe:  # a free port, which nginx binds a moment later
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        # As root, nginx's workers would switch to `nobody` and could not reach tmp_path.
        user = "user root;" if os.geteuid() == 0 else ""
        config = directory / "nginx.conf"
        config.write_text(
            f"""
{user}
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
{documented_site(upstreams, self.port, keepalive)}
}}
"""
        )
        log = directory / "error.log"  # -e: even before the config is read
        self.proc = subprocess.Popen(
            [binary, "-p", directory, "-e", log, "-c", config, "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self) -> Nginx:
        """nginx logs nothing when it listens: poll its port (and fail fast if it exited)."""
        assert wait_until(lambda: self.proc.poll() is not None or self.listening()), self.log()
        assert self.proc.poll() is None, f"nginx exited {self.proc.returncode}: {self.log()}"
        return self

    def listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text() if path.exists() else "(no error log)"

    def stop(self) -> None:
        stop_process_group(self.proc, signal.SIGTERM, 10)


@pytest.fixture
def nginx(tmp_path):
    """nginx(upstreams, keepalive=True) -> a ready Nginx proxying to those `server` addresses,
    configured as documented (keepalive=False: without upstream keep-alive)."""
    binary = require_tool("nginx", "nginx")
    started: list[Nginx] = []

    def start(upstreams: list[str], keepalive: bool = True) -> Nginx:
        proxy = Nginx(binary, tmp_path / f"nginx{len(started)}", upstreams, keepalive)
        started.append(proxy)
        return proxy.wait_ready()

    yield start
    for proxy in started:
        proxy.stop()


class ClientConnection(Connection):
    """A connection from CLIENT_ADDR, so the app can tell the client from nginx."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=10, source_address=(CLIENT_ADDR, 0)
        )
        self.buffer = b""


def environ_via(port: int, headers: str = "") -> dict:
    with ClientConnection(port) as conn:
        conn.send(f"GET /environ/ HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n".encode())
        response = conn.read_response()
    assert response.status == 200, response
    return json.loads(response.body)


def documented_server(start_server, *args: str, **kwargs):
    """prodserve with the settings docs/deploy-nginx.md pairs with its nginx configuration."""
    return start_server(*args, "--health-check-path", "/-/health", **kwargs)


@pytest.mark.parametrize(
    ("keepalive", "settings"),
    [(False, ()), (True, ("--keep-alive", "75"))],
    ids=["no-upstream-keepalive", "upstream-keepalive"],
)
def test_nginx_proxies_to_prodserve_over_tcp(start_server, nginx, keepalive, settings):
    # nginx untrusted here, so REMOTE_PORT stays the port of nginx's connection to prodserve.
    server = documented_server(
        start_server, "-w", "2", "--forwarded-allow-ips", "192.0.2.1", *settings
    )
    proxy = nginx([f"127.0.0.1:{server.port}"], keepalive=keepalive)
    payload = bytes(range(256)) * 1200  # 300 KiB: past nginx's in-memory buffer, to its temp file
    with Connection("127.0.0.1", proxy.port) as conn:
        for path, body in [
            ("/hello/", b"Hello, world!"),
            ("/-/health", b"ok\n"),
            ("/stream/?n=3", b"chunk 0\nchunk 1\nchunk 2\n"),
        ]:
            conn.send(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            response = conn.read_response()
            assert (response.status, response.body) == (200, body), path
        conn.send(
            b"POST /environ/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream"
            b"\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload)
        )
        response = conn.read_response()
    assert response.status == 200
    assert json.loads(response.body)["_body"].encode("latin-1") == payload
    upstream_ports = {environ_via(proxy.port)["REMOTE_PORT"] for _ in range(3)}
    assert len(upstream_ports) == (1 if keepalive else 3)


def test_nginx_proxies_to_prodserve_over_a_unix_socket(start_server, nginx, tmp_path):
    path = tmp_path / "app.sock"
    server = documented_server(start_server, "-b", f"unix:{path}", "-w", "2", ready=False)
    server.wait_for(r"Ready: 2 worker")
    proxy = nginx([f"unix:{path}"])
    assert get(proxy.port, "/hello/").body == b"Hello, world!"
    # A unix-socket peer is trusted: nginx's X-Forwarded-For names the client.
    assert environ_via(proxy.port)["REMOTE_ADDR"] == CLIENT_ADDR


def test_x_forwarded_for_from_nginx_reaches_the_app(start_server, nginx):
    server = documented_server(start_server, "-w", "1")
    proxy = nginx([f"127.0.0.1:{server.port}"])
    environ = environ_via(proxy.port, "X-Forwarded-Proto: https\r\n")
    assert environ["HTTP_X_FORWARDED_FOR"] == CLIENT_ADDR
    # nginx overwrites the client's X-Forwarded-Proto with the scheme the client really used.
    assert environ["HTTP_X_FORWARDED_PROTO"] == "http"
    assert environ["wsgi.url_scheme"] == "http"


def test_a_client_s_forwarded_or_x_forwarded_ssl_does_not_pass_through_nginx(start_server, nginx):
    """Issue 18 #2: nginx passes on what it does not overwrite. A client's RFC 7239 Forwarded
    must not beat nginx's X-Forwarded-For, nor its X-Forwarded-SSL contradict nginx's scheme,
    nor its X-Forwarded-Host/-Port reach a project that sets USE_X_FORWARDED_HOST/_PORT."""
    server = documented_server(start_server, "-w", "1")
    proxy = nginx([f"127.0.0.1:{server.port}"])
    environ = environ_via(
        proxy.port,
        "Forwarded: for=6.6.6.6;proto=https\r\nX-Forwarded-SSL: on\r\n"
        "X-Forwarded-Host: evil.example\r\nX-Forwarded-Port: 4443\r\n",
    )
    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == (CLIENT_ADDR, "http")
    assert not {"HTTP_FORWARDED", "HTTP_X_FORWARDED_SSL"} & set(environ)
    assert environ["HTTP_X_FORWARDED_HOST"] == "localhost"
    assert environ["HTTP_X_FORWARDED_PORT"] == str(proxy.port)


def test_remote_addr_is_the_real_client_only_because_nginx_is_trusted(start_server, nginx):
    trusting = documented_server(start_server, "-w", "1")  # default forwarded_allow_ips: 127.0.0.1
    distrusting = documented_server(start_server, "-w", "1", "--forwarded-allow-ips", "192.0.2.1")
    proxy = nginx([f"127.0.0.1:{trusting.port}"])
    other_proxy = nginx([f"127.0.0.1:{distrusting.port}"])

    # Through a trusted nginx, the client's address; a forged entry it sent only lands to the left.
    spoof = "X-Forwarded-For: 203.0.113.9\r\n"
    assert environ_via(proxy.port)["REMOTE_ADDR"] == CLIENT_ADDR
    via_trusted = environ_via(proxy.port, spoof)
    assert via_trusted["HTTP_X_FORWARDED_FOR"] == f"203.0.113.9, {CLIENT_ADDR}"
    assert via_trusted["REMOTE_ADDR"] == CLIENT_ADDR

    # Through an nginx prodserve does not trust, nginx's own address, and the headers are gone.
    via_untrusted = environ_via(other_proxy.port, spoof)
    assert via_untrusted["REMOTE_ADDR"] == "127.0.0.1"
    assert "HTTP_X_FORWARDED_FOR" not in via_untrusted

    # Straight to prodserve, a client cannot make itself someone else.
    direct = environ_via(trusting.port, spoof)
    assert direct["REMOTE_ADDR"] == CLIENT_ADDR
    assert "HTTP_X_FORWARDED_FOR" not in direct


def test_two_instances_survive_a_sigterm_and_a_sigkill_under_load(start_server, nginx):
    """A rolling restart of one instance, then a crash of the other, with clients on nginx."""
    first = documented_server(start_server, "-w", "2")
    second = documented_server(start_server, "-w", "2")
    proxy = nginx([f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"])
    clients = 4  # each has one request in flight at a time
    with Load(proxy.port, clients=clients, max_requests=20000, max_seconds=40) as load:
        load.wait_for_requests(100)

        first.signal(signal.SIGTERM)  # graceful: drains, then nginx uses the other instance
        assert first.wait_exit() == 0
        load.wait_for_requests(100)
        failed_on_sigterm = list(load.failed)

        # The first comes back on its port; once nginx sends it requests, the second crashes.
        back = documented_server(
            start_server, f"127.0.0.1:{first.port}", "-w", "2", "--access-logfile", "-"
        )
        back.wait_for(r'"GET /hello/ HTTP/1.1" 200')
        os.killpg(second.proc.pid, signal.SIGKILL)  # master and workers, like a lost machine
        load.wait_for_requests(100)
    assert failed_on_sigterm == []
    assert len(load.failed) <= clients, load.failed
    assert load.ok >= 300
