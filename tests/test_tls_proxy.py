"""TLS, forwarded headers and the PROXY protocol, over real sockets to a real server."""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import ssl
import struct
import subprocess
import sys

import pytest

from django_prodserve.server.http import ProtocolError
from django_prodserve.server.proxy import read_proxy_header
from tests.client import Connection, get, request
from tests.conftest import MANAGE

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1/localhost, that also serves as its own CA."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def tls_client(cert, client_cert=None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    if client_cert:
        context.load_cert_chain(*map(str, client_cert))
    return context


def tls_get(port: int, context: ssl.SSLContext, path: str, requests: int = 1) -> list:
    """Requests on one TLS connection; returns the responses."""
    conn = Connection("127.0.0.1", port)
    conn.sock = context.wrap_socket(conn.sock, server_hostname="127.0.0.1")
    with conn:
        responses = []
        for _ in range(requests):
            conn.send(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            responses.append(conn.read_response())
        return responses


def environ_of(response) -> dict:
    assert response.status == 200, response.body[:300]
    return json.loads(response.body)


def test_tls_serves_https_with_keep_alive(start_server, certificate):
    cert, key = certificate
    server = start_server("-w", "1", "--certfile", str(cert), "--keyfile", str(key))
    assert "Listening at https://127.0.0.1:" in server.output
    first, second = tls_get(server.port, tls_client(cert), "/environ/", requests=2)
    assert environ_of(first)["wsgi.url_scheme"] == "https"
    assert environ_of(second)["REMOTE_ADDR"] == "127.0.0.1"


def test_tls_large_file_arrives_byte_exact(start_server, certificate):
    cert, key = certificate
    server = start_server("-w", "1", "--certfile", str(cert), "--keyfile", str(key))
    [response] = tls_get(server.port, tls_client(cert), "/download/?mb=3")
    assert response.status == 200
    assert response.body == (bytes(range(256)) * 4096) * 3


def test_tls_pipeline_is_served_in_turns_whole_and_in_order(start_server, certificate):
    """A pipeline longer than a turn (worker.PIPELINE_TURN) waits queued between its turns and
    goes back to reading through TLS after: every response, in order, then the next request."""
    cert, key = certificate
    server = start_server("-w", "1", "--certfile", str(cert), "--keyfile", str(key))
    conn = Connection("127.0.0.1", server.port)
    conn.sock = tls_client(cert).wrap_socket(conn.sock, server_hostname="127.0.0.1")
    with conn:
        conn.send(
            b"".join(b"GET /hello/?n=%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % n for n in range(50))
        )
        assert [conn.read_response().body for _ in range(50)] == [b"Hello, world!"] * 50
        conn.send(b"GET /environ/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert environ_of(conn.read_response())["wsgi.url_scheme"] == "https"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_refuses_versions_below_1_2(start_server, certificate):
    cert, key = certificate
    server = start_server("-w", "1", "--certfile", str(cert), "--keyfile", str(key))
    context = tls_client(cert)
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        tls_get(server.port, context, "/hello/")
    assert tls_get(server.port, tls_client(cert), "/hello/")[0].status == 200


def test_plain_http_to_a_tls_port_fails_cleanly_and_the_worker_survives(start_server, certificate):
    cert, key = certificate
    server = start_server("-w", "1", "--certfile", str(cert), "--keyfile", str(key))
    with Connection("127.0.0.1", server.port) as conn:
        conn.send(b"GET /hello/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert conn.is_closed()
    assert tls_get(server.port, tls_client(cert), "/hello/")[0].status == 200


def test_mutual_tls_requires_a_client_certificate(start_server, certificate):
    cert, key = certificate
    server = start_server(
        "-w",
        "1",
        "--certfile",
        str(cert),
        "--keyfile",
        str(key),
        "--ca-certs",
        str(cert),
        "--cert-reqs",
        "required",
    )
    assert tls_get(server.port, tls_client(cert, (cert, key)), "/hello/")[0].status == 200
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_get(server.port, tls_client(cert), "/hello/")


def test_unusable_certificate_is_a_system_check_error(tmp_path, project_db):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    result = subprocess.run(
        [sys.executable, str(MANAGE), "prodserve", "127.0.0.1:0", "--certfile", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"TESTPROJECT_DB": str(project_db), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert "prodserve.E011" in result.stderr and "certfile" in result.stderr


# forwarded headers


def test_trusted_proxy_sets_the_client_address_and_scheme(start_server):
    server = start_server("-w", "1")  # default forwarded_allow_ips: 127.0.0.1, ::1
    environ = environ_of(
        get(
            server.port, "/environ/", "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n"
        )
    )
    assert environ["REMOTE_ADDR"] == "203.0.113.7"
    assert environ["wsgi.url_scheme"] == "https"


def test_a_client_cannot_spoof_its_address_through_a_trusted_proxy(start_server):
    """The client wrote 6.6.6.6; our proxy appended the address it saw: that one wins."""
    server = start_server("-w", "1")
    environ = environ_of(get(server.port, "/environ/", "X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\n"))
    assert environ["REMOTE_ADDR"] == "203.0.113.7"


def test_untrusted_peers_cannot_set_address_or_scheme_and_the_headers_are_removed(start_server):
    server = start_server("-w", "1", "--forwarded-allow-ips", "10.9.9.9")
    environ = environ_of(
        get(
            server.port,
            "/environ/",
            "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nForwarded: for=1.1.1.1\r\n",
        )
    )
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["wsgi.url_scheme"] == "http"
    assert not {"HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_FORWARDED"} & set(environ)


def test_a_forwarded_header_is_ignored_where_the_proxy_speaks_x_forwarded(start_server):
    """Issue 18 #2: by default (forwarded_headers 'x-forwarded', nginx's recipe) a Forwarded
    header is the client's own, passed through: ignored, and removed."""
    server = start_server("-w", "1")
    environ = environ_of(
        get(
            server.port,
            "/environ/",
            "Forwarded: for=6.6.6.6;proto=https\r\nX-Forwarded-For: 203.0.113.7\r\n"
            "X-Forwarded-Proto: http\r\n",
        )
    )
    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == ("203.0.113.7", "http")
    assert "HTTP_FORWARDED" not in environ


@pytest.mark.parametrize(
    "headers",
    [
        "X-Forwarded-SSL: on\r\nX-Forwarded-Proto: http\r\n",
        "X-Forwarded-Proto: https\r\nX-Forwarded-SSL: off\r\n",
    ],
    ids=["ssl-on-proto-http", "proto-https-ssl-off"],
)
def test_contradictory_scheme_headers_get_400(start_server, headers):
    """Issue 18 #2: as gunicorn, a request whose secure_scheme_headers disagree is refused; no
    one header wins."""
    server = start_server("-w", "1")
    with Connection(server.host, server.port) as conn:
        conn.send(f"GET /environ/ HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n".encode())
        response = conn.read_response()
        assert (response.status, response.header("Connection")) == (400, "close")
        assert conn.is_closed()


def test_rfc7239_forwarded_header_from_a_trusted_peer(start_server):
    server = start_server(
        "-w", "1", "--forwarded-allow-ips", "127.0.0.0/8", "--forwarded-headers", "forwarded"
    )
    environ = environ_of(
        get(server.port, "/environ/", 'Forwarded: for="[2001:db8::1]:4711";proto=https\r\n')
    )
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("2001:db8::1", "4711")
    assert environ["wsgi.url_scheme"] == "https"


def test_rfc7239_the_trusted_proxy_s_own_element_is_used_even_without_for(start_server):
    """Issue 18 #9: the rightmost element is our proxy's; with no for= it names no client, and
    the client's element to its left must not be taken instead."""
    server = start_server("-w", "1", "--forwarded-headers", "forwarded")
    environ = environ_of(
        get(server.port, "/environ/", "Forwarded: for=6.6.6.6;proto=https, proto=http;host=x\r\n")
    )
    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == ("127.0.0.1", "http")


def test_rfc7239_mode_ignores_x_forwarded_headers(start_server):
    server = start_server("-w", "1", "--forwarded-headers", "forwarded")
    environ = environ_of(
        get(
            server.port,
            "/environ/",
            "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nForwarded: for=203.0.113.7\r\n",
        )
    )
    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == ("203.0.113.7", "http")
    assert not {"HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO"} & set(environ)


# PROXY protocol


def proxy_v2(source: str, port: int) -> bytes:
    ip = ipaddress.ip_address(source)
    family = 0x11 if ip.version == 4 else 0x21
    body = ip.packed + ipaddress.ip_address("127.0.0.1" if ip.version == 4 else "::1").packed
    body += struct.pack("!HH", port, 8000)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


ENVIRON_REQUEST = b"GET /environ/ HTTP/1.1\r\nHost: localhost\r\n\r\n"


@pytest.mark.parametrize(
    ("version", "preamble", "client"),
    [
        ("v1", b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 8000\r\n", ("198.51.100.9", "5555")),
        ("v1", b"PROXY TCP6 2001:db8::9 ::1 5555 8000\r\n", ("2001:db8::9", "5555")),
        ("v2", proxy_v2("198.51.100.10", 6666), ("198.51.100.10", "6666")),
        ("auto", proxy_v2("2001:db8::10", 7777), ("2001:db8::10", "7777")),
        ("auto", b"PROXY UNKNOWN\r\n", ("127.0.0.1", None)),
    ],
)
def test_proxy_protocol_gives_the_real_client(start_server, version, preamble, client):
    server = start_server("-w", "1", "--proxy-protocol", version)
    environ = environ_of(request(server.port, preamble + ENVIRON_REQUEST))
    assert environ["REMOTE_ADDR"] == client[0]
    if client[1] is not None:
        assert environ["REMOTE_PORT"] == client[1]


V2 = b"\r\n\r\n\x00\r\nQUIT\n"


@pytest.mark.parametrize(
    "preamble",
    [
        b"PROXY UNKNOWN\r\n",
        V2 + b"\x20\x00\x00\x00",  # LOCAL
        V2 + b"\x21\x00\x00\x00",  # PROXY, family UNSPEC
    ],
    ids=["v1-unknown", "v2-local", "v2-unspec"],
)
def test_a_proxy_header_without_a_client_takes_the_trust_away(start_server, preamble):
    """Issue 18 #10: the proxy does not say who the client is, so the bytes after it are the
    client's, and a forwarded header among them is the client's own."""
    server = start_server("-w", "1", "--proxy-protocol", "auto")
    spoof = b"GET /environ/ HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n"
    environ = environ_of(request(server.port, preamble + spoof))
    assert environ["REMOTE_ADDR"] == "127.0.0.1" and "HTTP_X_FORWARDED_FOR" not in environ


@pytest.mark.parametrize(
    "preamble",
    [V2 + b"\x21\x11\x00\x04" + bytes(4), V2 + b"\x21\x21\x00\x0c" + bytes(12)],
    ids=["tcp4-in-4-bytes", "tcp6-in-12-bytes"],
)
def test_a_v2_address_block_too_short_for_its_family_gets_400(start_server, preamble):
    """Issue 18 #10: it was taken as 'no address', with the proxy's trust kept."""
    server = start_server("-w", "1", "--proxy-protocol", "auto")
    assert request(server.port, preamble + ENVIRON_REQUEST).status == 400


def test_with_tls_the_proxy_header_comes_before_the_handshake(start_server, certificate):
    """HAProxy's send-proxy writes the PROXY line in clear, then the TLS ClientHello; it was
    expected inside TLS, so the handshake failed on it and the connection was reset."""
    cert, key = certificate
    server = start_server(
        "-w", "1", "--certfile", str(cert), "--keyfile", str(key), "--proxy-protocol", "v1"
    )
    with Connection("127.0.0.1", server.port) as conn:
        conn.send(b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 8000\r\n")
        conn.sock = tls_client(cert).wrap_socket(conn.sock, server_hostname="127.0.0.1")
        conn.send(ENVIRON_REQUEST)
        environ = environ_of(conn.read_response())
    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == ("198.51.100.9", "https")
    with Connection("127.0.0.1", server.port) as conn:  # a bad one: closed, the worker lives
        conn.send(b"PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\n")
        assert conn.is_closed()


def test_proxy_header_split_across_packets(start_server):
    server = start_server("-w", "1", "--proxy-protocol", "v1")
    with Connection("127.0.0.1", server.port) as conn:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in (
            b"PROXY TCP4 198.51",
            b".100.9 127.0.0.1 5555 8000\r\nGET /env",
            b"iron/ HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ):
            conn.send(piece)
        assert environ_of(conn.read_response())["REMOTE_ADDR"] == "198.51.100.9"


@pytest.mark.parametrize(
    "preamble",
    [
        b"PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\n",
        b"PROXY TCP9 1.2.3.4 1.2.3.4 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 127.0.0.1 99999 2\r\n",
        b"GET / HTTP/1.1\r\n",
        b"\r\n\r\n\x00\r\nQUIT\n\x31",
    ],
)
def test_malformed_proxy_headers_get_400_and_close(start_server, preamble):
    server = start_server("-w", "1", "--proxy-protocol", "auto")
    with Connection("127.0.0.1", server.port) as conn:
        conn.send(preamble + b"\x00" * 20)
        assert conn.read_response().status == 400
        assert conn.is_closed()
    assert get(server.port, "/hello/").status == 400  # still wants a PROXY header: and says so


def test_proxy_header_from_a_peer_not_allowed_is_not_honoured(start_server):
    server = start_server("-w", "1", "--proxy-protocol", "v1", "--proxy-allow-from", "10.0.0.1")
    response = request(
        server.port, b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 8000\r\n" + ENVIRON_REQUEST
    )
    assert response.status == 400  # parsed as HTTP: 'PROXY' is no method
    assert environ_of(request(server.port, ENVIRON_REQUEST))["REMOTE_ADDR"] == "127.0.0.1"


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 1.2.3.4 127.0.0.1 1_0 80\r\n",
        b"PROXY TCP4 1.2.3.4 127.0.0.1 065535 80\r\n",
        b"PROXY TCP4 1.2.3.4 127.0.0.1 +5 80\r\n",
        b"PROXY TCP4 1.2.3.4 127.0.0.1 65536 80\r\n",
        b"PROXY TCP4 1.2.3.4 127.0.0.1 5 80_0\r\n",
        b"PROXY TCP4 1.2.3.4 not-an-ip 5 80\r\n",
        b"PROXY TCP4 1.2.3.4 ::1 5 80\r\n",
        b"PROXY TCP6 fe80::1%eth0 ::1 5 80\r\n",
    ],
)
def test_a_proxy_v1_header_is_read_as_the_spec_writes_it(line):
    """What int() and ip_address() would take but no proxy writes: 400, not a guessed client."""
    with pytest.raises(ProtocolError) as info:
        read_proxy_header(line, "v1")
    assert info.value.status == 400


def test_a_proxy_v1_header_names_ports_0_and_65535():
    line = b"PROXY TCP4 1.2.3.4 127.0.0.1 65535 0\r\n"
    assert read_proxy_header(line, "v1") == (len(line), ("1.2.3.4", "65535"))
