"""The public corpora, replayed against a real server: gunicorn's tests/requests fixtures, and
tests/http_corpus.py, which holds waitress's and h11's parser cases (and RFC and CVE cases) as
bytes of our own, each naming its source.

Each fixture's bytes go to a fresh connection (then a half-close); the app echoes each request's
environ and body. A valid fixture must come back as exactly the requests its expectation lists;
an invalid one must be refused (an error response, or a close with no response at all). The
fixtures and their expectations are vendored in tests/corpora/gunicorn (see its README). Where we
refuse on purpose what gunicorn accepts, or serve what it refuses, REFUSED and SERVED say why;
docs/http-edge.md has the reasons with their RFC sections.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from tests.client import Connection, Response
from tests.http_corpus import ACCEPT, REJECT

CORPUS = Path(__file__).parent / "corpora" / "gunicorn"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())

#: gunicorn's options, as the flags of ours that mean the same; options for leniencies we do not
#: have are dropped (REFUSED lists the fixtures that need them).
FLAGS = {
    "limit_request_line": "--limit-request-line",
    "limit_request_fields": "--limit-request-fields",
    "limit_request_field_size": "--limit-request-field-size",
    "proxy_protocol": "--proxy-protocol",
    "forwarded_allow_ips": "--forwarded-allow-ips",
}

_GZIP = "a coding before chunked: 501, we decode none (RFC 9112 §6.1)"
_CONNECT = "CONNECT asks for a tunnel: 501 (RFC 9110 §9.3.6)"
_METHOD = "a method llhttp does not know: 400 (docs/http-edge.md, unknown methods)"
_FOLD = "obs-fold: 400 (RFC 9112 §5.2 lets a server reject it)"
#: Valid in gunicorn (some only behind an option), refused by us on purpose.
REFUSED = {
    "valid/005": "a fragment in the target: 400 (RFC 9112 §3.2)",
    "valid/009": "a fragment in the target, and Content-Length with Transfer-Encoding: 400 "
    "(RFC 9112 §3.2, §6.1)",
    "valid/013": "whitespace before a chunk extension's ';': llhttp refuses it (known gap)",
    "valid/025": _GZIP,
    "valid/025_line": _GZIP,
    "valid/027": "raw UTF-8 in the target: 400 (RFC 9112 §3.2, RFC 3986 §2)",
    "valid/028": "whitespace before the colon (gunicorn's strip_header_spaces): 400 (RFC 9112 "
    "§5.1 MUST)",
    "valid/029": _GZIP,
    "valid/030": _GZIP,
    "valid/031": _METHOD,
    "valid/031compat": _METHOD,
    "valid/031compat2": _METHOD,
    "valid/099": "Content-Length 17914 and 8599 bytes of body: an incomplete request, which "
    "gets no response when the client stops sending (RFC 9112 §8)",
    "valid/compat_obs_fold": _FOLD,
    "valid/compat_obs_fold_huge": _FOLD,
    "valid/pp_03": "no PROXY header where one is expected: 400 (the PROXY protocol spec: a "
    "receiver must not guess whether it is present)",
    "valid/rfc9112_smuggle_gzip_chunked_01": _GZIP,
    "valid/rfc9112_smuggle_te_identity_chunked_01": _GZIP,
    "valid/rfc9112_target_absolute_userinfo_01": "userinfo in the target: 400 (RFC 9110 §4.2.4)",
    "valid/rfc9112_target_authority_connect_01": _CONNECT,
    "valid/rfc9112_target_authority_ipv6_01": _CONNECT,
}

_FIELD_SIZE = (
    "limit_request_field_size counts a field's name and value; gunicorn counts the whole line "
    "with ': ' and CRLF, so this field fits ours"
)
#: Invalid in gunicorn, served by us on purpose.
SERVED = {
    "invalid/006": "a 4112-octet request line: RFC 9112 §3 asks for at least 8000 (ours: 8190)",
    "invalid/008": _FIELD_SIZE,
    "invalid/012": _FIELD_SIZE,
    "invalid/040": "a header name with '_' (gunicorn's header_map 'refuse'): dropped, as by "
    "gunicorn's default and nginx's, so it cannot pose as Transfer-Encoding",
    "invalid/041": "Content-Type twice: joined with ', ' (RFC 9110 §5.3); no framing depends on it",
    "invalid/limit_header_default_01": "limit_request_field_size 0 means our internal cap, 65536",
    "invalid/rfc9110_trailer_forbidden_host_01": "trailers are dropped, never merged into the "
    "headers (RFC 9110 §6.5.1), so a Host trailer changes nothing",
}


def fixture_bytes(name: str) -> bytes:
    """A fixture's bytes: its lines joined, escapes as gunicorn's tests/treq.py reads them."""
    data = (CORPUS / "requests" / f"{name}.http").read_bytes().replace(b"\n", b"")
    data = data.replace(b"\\r\\n", b"\r\n").replace(b"\\0", b"\0")
    data = data.replace(b"\\n", b"\n").replace(b"\\t", b"\t")
    data = re.sub(rb"\\x([0-9A-Fa-f]{2})", lambda m: bytes([int(m[1], 16)]), data)
    assert b"\\" not in data, name
    return data


def server_args(config: dict) -> tuple[str, ...]:
    args: list[str] = ["-w", "1"]
    for option, value in sorted(config.items()):
        if option in FLAGS:
            args += [FLAGS[option], "auto" if value is True else str(value)]
    return tuple(args)


@pytest.fixture(scope="module")
def servers(start_module_server):
    """servers(*args): one server per distinct command line, started on first use."""
    running = {}

    def server_for(*args: str):
        if args not in running:
            running[args] = start_module_server(*args, settings="testproject.settings_corpus")
        return running[args]

    return server_for


def exchange(server, raw: bytes, methods: tuple[str, ...] = ()) -> list[Response]:
    """Send raw on a fresh connection, half-close, and read every response until the close
    (the responses to HEAD requests, as `methods` lists them in order, without a body)."""
    responses = []
    with Connection(server.host, server.port) as conn:
        try:
            conn.send(raw)
            conn.sock.shutdown(socket.SHUT_WR)
            while True:
                method = methods[len(responses)] if len(responses) < len(methods) else "GET"
                responses.append(conn.read_response(method))
        except (ConnectionError, OSError):
            pass
    return responses


def environ_headers(headers: list[list[str]]) -> dict[str, str]:
    """What the expected header fields become in a WSGI environ (names with '_' are dropped)."""
    environ: dict[str, str] = {}
    for name, value in headers:
        if "_" in name:
            continue
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        if key in environ:
            environ[key] += ("; " if key == "HTTP_COOKIE" else ", ") + value
        else:
            environ[key] = value
    return environ


def served_as(response: Response, expected: dict) -> dict:
    """The differences between what the app saw and what the fixture expects."""
    environ = json.loads(response.body)
    version = "HTTP/{}.{}".format(*expected["version"])
    seen = {
        "method": environ["REQUEST_METHOD"],
        "target": environ["RAW_URI"],
        "version": environ["SERVER_PROTOCOL"],
        "body": environ["_body"],
    }
    want = {
        "method": expected["method"],
        "target": expected["target"],
        "version": version,
        "body": expected["body"],
    }
    headers = environ_headers(expected["headers"])
    for key, value in headers.items():
        seen[key] = environ.get(key)
        want[key] = value
    return {key: (seen[key], want[key]) for key in want if seen[key] != want[key]}


VALID = sorted(name for name, case in EXPECTED.items() if case["kind"] == "valid")
INVALID = sorted(name for name, case in EXPECTED.items() if case["kind"] == "invalid")


def lacks_host(request: dict) -> bool:
    return request["version"] == [1, 1] and all(name != "HOST" for name, _ in request["headers"])


def with_host(raw: bytes, requests: list[dict]) -> bytes:
    """raw with 'Host: localhost' after the request line of each HTTP/1.1 request without one."""
    at = 0
    for request in requests:
        line = f" {request['target']} HTTP/".encode("latin-1")  # methods may be case-folded
        at = raw.index(b"\r\n", raw.index(line, at)) + 2
        if lacks_host(request):
            raw = raw[:at] + b"Host: localhost\r\n" + raw[at:]
    return raw


@pytest.mark.parametrize("name", VALID)
def test_valid_fixture_is_served_as_its_expectation_says(servers, name):
    """RFC 9112 §3.2: an HTTP/1.1 request without Host MUST get 400, and many of the fixtures
    have none: those are refused as they are, then replayed with a Host added."""
    case = EXPECTED[name]
    server = servers(*server_args(case["config"]))
    raw = fixture_bytes(name)
    if any(lacks_host(request) for request in case["requests"]):
        assert exchange(server, raw)[-1].status == 400
        raw = with_host(raw, case["requests"])
    responses = exchange(server, raw)
    if name in REFUSED:
        assert not responses or responses[-1].status >= 400, REFUSED[name]
        return
    assert [r.status for r in responses] == [200] * len(case["requests"])
    for response, expected in zip(responses, case["requests"], strict=True):
        assert served_as(response, expected) == {}


@pytest.mark.parametrize("name", INVALID)
def test_invalid_fixture_is_refused(servers, name):
    case = EXPECTED[name]
    responses = exchange(servers(*server_args(case["config"])), fixture_bytes(name))
    if name in SERVED:
        assert responses and all(r.status == 200 for r in responses), SERVED[name]
        return
    assert not responses or responses[-1].status >= 400, [r.status for r in responses]


# tests/http_corpus.py, live: the same verdicts as the sans-I/O parser's


#: Limits fields (a case's `limits`) as our flags.
LIMIT_FLAGS = {
    "request_line": "--limit-request-line",
    "fields": "--limit-request-fields",
    "field_size": "--limit-request-field-size",
    "body": "--limit-request-body",
}


@pytest.mark.parametrize("case", REJECT, ids=lambda case: case.id)
def test_corpus_case_is_refused_live_with_its_status(servers, case):
    args = ["-w", "1"]
    for field, value in sorted((case.limits or {}).items()):
        args += [LIMIT_FLAGS[field], str(value)]
    responses = exchange(servers(*args), case.raw)
    assert responses and responses[-1].status == case.status, case.source
    assert responses[-1].header("Connection") == "close"


@pytest.mark.parametrize("case", ACCEPT, ids=lambda case: case.id)
def test_corpus_case_is_served_live_as_exactly_its_requests(servers, case):
    methods = tuple(parsed.method for parsed in case.requests)
    responses = exchange(servers("-w", "1"), case.raw, methods)
    assert [r.status for r in responses] == [200] * len(case.requests), case.source
    for response, parsed in zip(responses, case.requests, strict=True):
        if parsed.method == "HEAD":
            continue  # no body, so no echo to read
        environ = json.loads(response.body)
        seen = (environ["REQUEST_METHOD"], environ["RAW_URI"], environ["_body"])
        assert seen == (
            parsed.method,
            parsed.target.decode("latin-1"),
            parsed.body.decode("latin-1"),
        )
        assert environ["SERVER_PROTOCOL"] == f"HTTP/{parsed.version}"
