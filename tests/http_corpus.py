"""The HTTP edge corpus: raw request bytes and exactly what prodserve must make of them.

Data only; tests/test_http_edge.py runs it against the sans-I/O parser (whole and byte by byte),
the fuzz tests mutate it, and the live tests send some of it to a real server. Every case names
the rule's source: an RFC section, a case family of gunicorn's tests/requests corpus, a waitress or
h11 test, llhttp's strict defaults, or a CVE. The bytes are our own. Where we differ from a
source's verdict the note says so; the reasons are in docs/http-edge.md.
"""

from __future__ import annotations

from typing import NamedTuple


class Reject(NamedTuple):
    """Bytes the parser must refuse with `status` (and the server close the connection after)."""

    id: str
    raw: bytes
    status: int
    source: str
    limits: dict | None = None  # Limits(**limits) instead of the defaults


class Parsed(NamedTuple):
    method: str
    target: bytes
    body: bytes = b""
    keep_alive: bool = True
    version: str = "1.1"


class Accept(NamedTuple):
    """Bytes the parser must turn into exactly `requests`, in order."""

    id: str
    raw: bytes
    requests: tuple[Parsed, ...]
    source: str


HOST = b"Host: example.com\r\n"
GET = b"GET / HTTP/1.1\r\n" + HOST
POST = b"POST /upload/ HTTP/1.1\r\n" + HOST
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"
END = b"0\r\n\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"  # 35 bytes


def te(value: bytes, body: bytes = b"5\r\nhello\r\n" + END) -> bytes:
    return POST + b"Transfer-Encoding: " + value + b"\r\n\r\n" + body


def cl(value: bytes, body: bytes = b"hello") -> bytes:
    return POST + b"Content-Length: " + value + b"\r\n\r\n" + body


def host(value: bytes) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: " + value + b"\r\n\r\n"


def target(method: bytes, value: bytes) -> bytes:
    return method + b" " + value + b" HTTP/1.1\r\n" + HOST + b"\r\n"


# fmt: off
REJECT: tuple[Reject, ...] = (
    # Request line: method (RFC 9110 §9.1, RFC 9112 §3.1)
    Reject("method-lowercase", target(b"get", b"/"), 400,
           "RFC 9110 §9.1 (case-sensitive); waitress test_crack_first_line_lowercase_method"),
    Reject("method-unknown-token", target(b"BREW", b"/pot"), 400,
           "llhttp method list; a valid token llhttp does not know is 400, not 501 (docs)"),
    Reject("method-unknown-leading-dash", b"-BLARGH /foo HTTP/1.1\r\n" + HOST + b"\r\n", 400,
           "gunicorn valid/031 accepts; llhttp refuses: we differ (docs)"),
    Reject("method-with-colon", target(b"GET:", b"/"), 400, "gunicorn invalid/prefix_05"),
    Reject("method-with-nul", target(b"GET\x00", b"/"), 400, "gunicorn invalid/prefix_02"),
    Reject("method-non-ascii", target(b"GET\xc3\x9f", b"/"), 400, "gunicorn invalid/nonascii_01"),
    Reject("method-after-space", b" " + target(b"GET", b"/"), 400,
           "RFC 9112 §2.2 (no whitespace before the request-line)"),
    # Request line: separators and line ends (RFC 9112 §2.2, §3)
    Reject("line-tab-after-method", b"GET\t/ HTTP/1.1\r\n" + HOST + b"\r\n", 400,
           "RFC 9112 §3 (SP only); llhttp strict"),
    Reject("line-lf-separators", b"GET\n/\nHTTP/1.1\r\n\r\n", 400, "gunicorn invalid/003"),
    Reject("line-no-target", b"GET HTTP/1.1\r\n" + HOST + b"\r\n", 400, "gunicorn invalid/002"),
    Reject("line-space-after-version", b"GET / HTTP/1.1 \r\n" + HOST + b"\r\n", 400,
           "RFC 9112 §3"),
    Reject("line-bare-lf", b"GET / HTTP/1.1\n" + HOST + b"\r\n", 400,
           "CVE-2019-16785 (waitress); RFC 9112 §2.2"),
    Reject("line-bare-cr", b"GET / HTTP/1.1\r" + HOST + b"\r\n", 400, "RFC 9112 §2.2 (bare CR)"),
    # Request line: target characters (RFC 9112 §3.2, RFC 3986)
    Reject("target-ctl", target(b"GET", b"/a\x01b"), 400, "h11 test_reject_non_vchar_in_path"),
    Reject("target-del", target(b"GET", b"/a\x7f"), 400, "h11 test_reject_non_vchar_in_path"),
    Reject("target-non-ascii", target(b"GET", b"/\xee"), 400, "h11 test_reject_non_vchar_in_path"),
    Reject("target-tab", target(b"GET", b"/a\tb"), 400, "RFC 9112 §3.2; llhttp strict"),
    Reject("target-fragment", target(b"GET", b"/a#b"), 400, "RFC 9112 §3.2.1 (no fragment)"),
    Reject("target-fragment-after-query", target(b"GET", b"/a?b#c"), 400, "RFC 9112 §3.2.1"),
    Reject("target-too-long", target(b"GET", b"/" + b"a" * 64), 414,
           "gunicorn invalid/006; RFC 9112 §3 (414)", {"request_line": 64}),
    # Request line: version (RFC 9112 §2.3, RFC 9110 §15.6.6)
    Reject("version-lowercase", b"GET / http/1.1\r\n" + HOST + b"\r\n", 400,
           "RFC 9112 §2.3 (HTTP-name is case-sensitive)"),
    Reject("version-ftp", b"GET /foo FTP/1.1\r\n" + HOST + b"\r\n", 400, "gunicorn invalid/004"),
    Reject("version-no-dot", b"GET /test HTTP/111\r\n" + HOST + b"\r\n", 400,
           "gunicorn invalid/018"),
    Reject("version-two-digit-minor", b"GET / HTTP/1.10\r\n" + HOST + b"\r\n", 400,
           "RFC 9112 §2.3 (one DIGIT each)"),
    Reject("version-two-digit-minor-0", b"GET /foo HTTP/0.99\r\n\r\n", 400,
           "gunicorn invalid/version_01"),
    Reject("version-huge-major", b"GET / HTTP/" + b"1" * 40 + b".1\r\n" + HOST + b"\r\n", 400,
           "gunicorn invalid/prefix_06"),
    Reject("version-1.2", b"GET / HTTP/1.2\r\n" + HOST + b"\r\n", 505,
           "RFC 9110 §15.6.6 (well-formed, unsupported: 505; llhttp alone says 400)"),
    Reject("version-2.0", b"GET / HTTP/2.0\r\n" + HOST + b"\r\n", 505,
           "gunicorn invalid/version_02; RFC 9110 §15.6.6"),
    Reject("version-3.0", b"GET / HTTP/3.0\r\n" + HOST + b"\r\n", 505, "RFC 9110 §15.6.6"),
    Reject("version-0.9", b"GET / HTTP/0.9\r\n\r\n", 505, "RFC 9110 §15.6.6"),
    Reject("version-missing-0.9-simple-request", b"GET /\r\n\r\n", 505,
           "RFC 9112 §2.3 (no HTTP/0.9); llhttp reads a bare 'GET /' as 0.9"),
    Reject("http2-prior-knowledge-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400,
           "RFC 9113 §3.4 (HTTP/2 preface sent to an HTTP/1.1 server)"),
    # Request-target forms (RFC 9112 §3.2)
    Reject("asterisk-with-get", target(b"GET", b"*"), 400,
           "gunicorn invalid/rfc9112_target_asterisk_non_options_01; RFC 9112 §3.2.4"),
    Reject("asterisk-with-suffix", target(b"OPTIONS", b"*x"), 400, "RFC 9112 §3.2.4"),
    Reject("asterisk-with-query", target(b"OPTIONS", b"*?x"), 400, "RFC 9112 §3.2.4"),
    Reject("asterisk-with-m-search", target(b"M-SEARCH", b"*"), 400,
           "RFC 9112 §3.2.4 (OPTIONS only; SSDP is not HTTP over TCP)"),
    Reject("authority-form-with-get", target(b"GET", b"example.com:443"), 400,
           "gunicorn invalid/rfc9112_target_authority_non_connect_01; RFC 9112 §3.2.3"),
    Reject("relative-target", target(b"GET", b"foo/bar"), 400,
           "gunicorn invalid/rfc9112_target_relative_01"),
    Reject("connect-authority-form", target(b"CONNECT", b"example.com:443"), 501,
           "RFC 9110 §9.3.6 (a tunnel is a proxy's job); gunicorn valid accepts: we differ"),
    Reject("connect-origin-form", target(b"CONNECT", b"/"), 501, "RFC 9110 §9.3.6"),
    Reject("absolute-form-ftp", target(b"GET", b"ftp://example.com/x"), 400,
           "RFC 9112 §3.2.2; RFC 9110 §4.2 (http and https only)"),
    Reject("absolute-form-userinfo", target(b"GET", b"http://user:pw@example.com/x"), 400,
           "RFC 9110 §4.2.4; gunicorn valid/rfc9112_target_absolute_userinfo_01: we differ"),
    Reject("absolute-form-empty-host", target(b"GET", b"http:///x"), 400, "RFC 9110 §4.2.1"),
    Reject("absolute-form-port-too-big", target(b"GET", b"http://example.com:99999/"), 400,
           "RFC 3986 §3.2.3 (parse_url in wsgi._origin_path raised: the worker died)"),
    Reject("absolute-form-port-not-digits", target(b"GET", b"http://example.com:8o/"), 400,
           "RFC 3986 §3.2.3"),
    Reject("absolute-form-pct-host", target(b"GET", b"http://a%20b/"), 400,
           "RFC 9110 §4.2.1 (httptools.parse_url refuses it)"),
    Reject("absolute-form-fragment", target(b"GET", b"http://example.com/#f"), 400,
           "RFC 9112 §3.2.2 (absolute-URI has no fragment)"),
    Reject("absolute-form-broken", target(b"PUT", b"s://]ufd/:"), 400, "gunicorn invalid/016"),
    Reject("absolute-form-needs-host-header", b"GET http://example.com/ HTTP/1.1\r\n\r\n", 400,
           "RFC 9112 §3.2 (an HTTP/1.1 client sends Host with absolute-form too)"),
    # Header fields (RFC 9112 §5, RFC 9110 §5)
    Reject("name-space-before-colon", GET + b"Content-Length : 3\r\n\r\nxyz", 400,
           "gunicorn invalid/020; waitress test_parse_header_invalid_whitespace; RFC 9112 §5.1"),
    Reject("name-tab-before-colon", GET + b"Foo\t: line\r\n\r\n", 400,
           "h11 test_readers_unusual; RFC 9112 §5.1"),
    Reject("name-no-colon", GET + b"notvalid\r\n\r\n", 400,
           "waitress test_parse_header_invalid_no_colon"),
    Reject("name-empty", GET + b": line\r\n\r\n", 400, "h11 test_readers_unusual"),
    Reject("name-nul", GET + b"ba\x00z: bar\r\n\r\n", 400, "gunicorn invalid/005"),
    Reject("name-non-ascii", GET + b"Content-Length\xc3\x9f: 3\r\n\r\n", 400,
           "gunicorn invalid/nonascii_03"),
    Reject("name-separator", GET + b"X(y): 1\r\n\r\n", 400, "RFC 9110 §5.1 (token)"),
    Reject("obs-fold-space", GET + b"Long: one\r\n two\r\n\r\n", 400,
           "gunicorn invalid/obs_fold_01; RFC 9112 §5.2"),
    Reject("obs-fold-tab", GET + b"Long: one\r\n\ttwo\r\n\r\n", 400,
           "waitress test_parse_header_invalid_folding_spacing; RFC 9112 §5.2"),
    Reject("whitespace-before-first-field", b"GET / HTTP/1.1\r\n " + HOST + b"\r\n", 400,
           "RFC 9112 §2.2; h11 test_readers_unusual"),
    Reject("value-nul", GET + b"X: foo\x00bar\r\n\r\n", 400,
           "h11 test_reject_garbage_in_header_line; RFC 9110 §5.5"),
    Reject("value-bel", GET + b"X: plain\x07injected\r\n\r\n", 400,
           "gunicorn invalid/rfc9110_field_value_ctl_bel_01"),
    Reject("value-del", GET + b"X: plain\x7finjected\r\n\r\n", 400,
           "gunicorn invalid/rfc9110_field_value_ctl_del_01"),
    Reject("value-vtab", GET + b"X:\x0bbar\r\n\r\n", 400,
           "waitress test_parse_header_invalid_whitespace_vtab"),
    Reject("value-bare-cr", GET + b"X: a\rb\r\n\r\n", 400, "RFC 9112 §2.2 (bare CR)"),
    Reject("value-bare-lf-hides-request",
           b"GET / HTTP/1.1\r\nHost: x\r\nNewline: a\nContent-Length: 26\r\n"
           b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400, "gunicorn invalid/invalid_field_value_01"),
    Reject("field-bare-lf", GET + b"X: a\n\r\n", 400, "CVE-2019-16785 (waitress)"),
    Reject("head-ends-in-bare-lf", GET + b"\n", 400, "RFC 9112 §2.2"),
    Reject("too-many-fields", GET + b"A: 1\r\nB: 2\r\nC: 3\r\n\r\n", 431,
           "gunicorn invalid/009, 011; RFC 6585 §5", {"fields": 3}),
    Reject("field-too-large", GET + b"Accept: " + b"x" * 40 + b"\r\n\r\n", 431,
           "gunicorn invalid/010, 012; RFC 6585 §5", {"field_size": 32}),
    # Host (RFC 9112 §3.2, RFC 9110 §7.2)
    Reject("host-missing-http11", b"GET / HTTP/1.1\r\n\r\n", 400, "RFC 9112 §3.2"),
    Reject("host-twice", GET + b"Host: evil.example.com\r\n\r\n", 400,
           "gunicorn invalid/042; waitress test_received_duplicate_host_header"),
    Reject("host-twice-http10", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400,
           "RFC 9112 §3.2 (any request with more than one Host)"),
    Reject("host-space", host(b"a b"), 400, "RFC 9112 §3.2 (invalid field value); RFC 9110 §7.2"),
    Reject("host-slash", host(b"a/b"), 400, "RFC 9110 §7.2"),
    Reject("host-userinfo", host(b"user@example.com"), 400, "RFC 9110 §4.2.4, §7.2"),
    Reject("host-port-not-digits", host(b"example.com:8o"), 400, "RFC 3986 §3.2.3"),
    Reject("host-bad-pct", host(b"a%zz"), 400, "RFC 3986 §2.1"),
    Reject("host-unclosed-ipv6", host(b"[::1"), 400, "RFC 3986 §3.2.2"),
    # Content-Length (RFC 9110 §8.6, RFC 9112 §6.3)
    Reject("cl-negative", cl(b"-1"), 400, "gunicorn invalid/014"),
    Reject("cl-minus-zero", cl(b"-0"), 400, "gunicorn invalid/022"),
    Reject("cl-plus", cl(b"+1"), 400, "gunicorn invalid/024; CVE-2022-24761 (int() took +10)"),
    Reject("cl-underscore", cl(b"0_1"), 400, "gunicorn invalid/023; CVE-2022-24761"),
    Reject("cl-hex", cl(b"0x5"), 400, "CVE-2022-24761 (waitress)"),
    Reject("cl-words", cl(b"bla-bla-bla"), 400, "gunicorn invalid/015"),
    Reject("cl-list", cl(b"5, 5"), 400,
           "gunicorn invalid/rfc9112_smuggle_cl_list_form_01; RFC 9112 §6.3 ¶5"),
    Reject("cl-list-no-space", cl(b"5,5"), 400, "RFC 9112 §6.3 ¶5"),
    Reject("cl-inner-space", cl(b"0 1", b"x"), 400, "gunicorn invalid/prefix_03"),
    Reject("cl-unicode-digit", cl(b"\xd9\xa5"), 400,
           "CVE-2022-24761 family (int() takes Arabic-Indic digits)"),
    Reject("cl-vtab", cl(b"5\x0b"), 400, "RFC 9110 §5.5 (VT is not OWS)"),
    Reject("cl-empty", cl(b""), 400, "RFC 9110 §8.6 (1*DIGIT)"),
    Reject("cl-overflow", cl(b"18446744073709551616"), 400, "RFC 9112 §6.3 ¶5 (invalid)"),
    Reject("cl-twice-same", POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400,
           "waitress test_received_duplicate_content_length_header (stricter than RFC 9110 §8.6)"),
    Reject("cl-twice-different", POST + b"Content-Length: 3\r\nContent-Length: 2\r\n\r\nxyz", 400,
           "gunicorn invalid/021"),
    Reject("cl-and-te", POST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" + END,
           400, "gunicorn invalid/rfc9112_smuggle_cl_te_chunked_01; RFC 9112 §6.1, §6.3"),
    Reject("te-and-cl", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n" + END,
           400, "RFC 9112 §6.1 (TE.CL)"),
    Reject("te-tab-and-cl",
           POST + b"Content-Length: 12\r\nTransfer-Encoding: \tchunked\r\n\r\n5\r\nhello\r\n" + END,
           400, "gunicorn invalid/chunked_02"),
    Reject("cl-over-limit", cl(b"11", b"x" * 11), 413, "RFC 9110 §15.5.14", {"body": 10}),
    Reject("cl-huge-over-limit", cl(b"18446744073709551615"), 413, "RFC 9110 §15.5.14",
           {"body": 10}),
    # Transfer-Encoding (RFC 9112 §6.1, §6.3, §7)
    Reject("te-gzip-alone", te(b"gzip"), 400,
           "RFC 9112 §6.3 ¶4 (chunked not last); "
           "waitress test_parse_header_transfer_encoding_invalid (501 there)"),
    Reject("te-identity-alone", te(b"identity"), 400, "RFC 9112 §6.3 ¶4"),
    Reject("te-unknown", te(b"foo", b"1d;\r\nThis string has 29 characters\r\n" + END), 400,
           "waitress test_received_bad_transfer_encoding (501 there); RFC 9112 §6.3 ¶4"),
    Reject("te-gzip-then-chunked", te(b"gzip, chunked"), 501,
           "RFC 9112 §6.1; gunicorn valid/rfc9112_smuggle_gzip_chunked_01 accepts: we differ"),
    Reject("te-identity-then-chunked", te(b"identity, chunked"), 501,
           "RFC 9112 §6.1; gunicorn valid/rfc9112_smuggle_te_identity_chunked_01: we differ"),
    Reject("te-gzip-line-then-chunked-line",
           POST + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
           + END, 501, "waitress test_parse_header_transfer_encoding_invalid_multiple; "
           "gunicorn valid/025"),
    Reject("te-chunked-twice", te(b"chunked, chunked"), 400,
           "waitress test_parse_header_transfer_encoding_invalid_multiple_chunked; RFC 9112 §7"),
    Reject("te-chunked-line-twice",
           POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n" + END, 400,
           "CVE-2024-1135 (gunicorn: conflicting TE lines)"),
    Reject("te-chunked-line-then-gzip",
           POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n" + END, 400,
           "gunicorn invalid/chunked_06; CVE-2024-1135"),
    Reject("te-chunked-line-then-identity",
           POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n" + END, 400,
           "gunicorn invalid/chunked_08; CVE-2024-1135"),
    Reject("te-identity-chunked-twice", te(b"identity, chunked, identity, chunked"), 400,
           "gunicorn invalid/chunked_03"),
    Reject("te-empty-element-first", te(b",chunked"), 400,
           "CVE-2024-6827 (an odd TE must not be read two ways); RFC 9110 §5.6.1"),
    Reject("te-empty-element-last", te(b"chunked,"), 400, "CVE-2024-6827"),
    Reject("te-x-chunked", te(b"x-chunked"), 400, "CVE-2024-6827 (TE.TE obfuscation)"),
    Reject("te-chunked-suffix", te(b"chunkedx"), 400, "CVE-2024-6827 (TE.TE obfuscation)"),
    Reject("te-parameter", te(b"chunked;q=1"), 400, "RFC 9112 §7 (chunked takes no parameters)"),
    Reject("te-nel-before", te(b"\x85chunked"), 400,
           "waitress test_parse_header_transfer_encoding_invalid_whitespace; CVE-2019-16789"),
    Reject("te-kelvin-sign", te(b"chun\xe2\x84\xaaed"), 400,
           "waitress test_parse_header_transfer_encoding_invalid_unicode"),
    Reject("te-vtab-before", te(b"\x0bchunked"), 400, "CVE-2019-16789 (odd whitespace in TE)"),
    Reject("te-tab-after", te(b"chunked\t"), 400, "llhttp strict (stricter than RFC 9110 §5.5)"),
    Reject("te-empty", te(b"", b""), 400, "RFC 9112 §6.1 (1#transfer-coding)"),
    Reject("te-http10",
           b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n" + END, 400,
           "RFC 9112 §6.1 (HTTP/1.0 with TE: faulty framing); gunicorn invalid/chunked_05"),
    Reject("te-name-space-before-colon", POST + b"Transfer-Encoding : chunked\r\n\r\n" + END, 400,
           "RFC 9112 §5.1 (TE.TE obfuscation)"),
    # Chunked framing (RFC 9112 §7.1)
    Reject("chunk-size-0x", CHUNKED + b"0x5\r\nhello\r\n" + END, 400,
           "CVE-2022-24761; waitress test_received_invalid_size"),
    Reject("chunk-size-plus", CHUNKED + b"+5\r\nhello\r\n" + END, 400,
           "gunicorn invalid/rfc9112_chunked_size_plus_sign_01"),
    Reject("chunk-size-minus", CHUNKED + b"-5\r\nhello\r\n" + END, 400,
           "gunicorn invalid/rfc9112_chunked_size_minus_sign_01"),
    Reject("chunk-size-space-before", CHUNKED + b"5\r\nhello\r\n 0\r\n\r\n", 400,
           "gunicorn invalid/chunked_10; waitress test_received_invalid_size"),
    Reject("chunk-size-space-after", CHUNKED + b"5\r\nhello\r\n0 \r\n\r\n", 400,
           "gunicorn invalid/chunked_09 (stricter than RFC 9112 §7.1.1 BWS)"),
    Reject("chunk-size-underscore", CHUNKED + b"5\r\nhello\r\n6_0\r\n world\r\n" + END, 400,
           "gunicorn invalid/chunked_01"),
    Reject("chunk-size-overflow", CHUNKED + b"1" + b"0" * 16 + b"\r\nhello\r\n" + END, 400,
           "h11 test_ChunkedReader (refuses long chunk integers)"),
    Reject("chunk-size-missing", CHUNKED + b"\r\nhello\r\n" + END, 400,
           "gunicorn invalid/chunked_13"),
    Reject("chunk-size-missing-with-ext", CHUNKED + b" ;foo=bar\r\nhello\r\n" + END, 400,
           "gunicorn invalid/chunked_12"),
    Reject("chunk-size-bare-lf", CHUNKED + b"5\nhello\r\n" + END, 400,
           "CVE-2025-22871 (Go net/http); RFC 9112 §7.1"),
    Reject("chunk-size-lf-then-ext", CHUNKED + b"5\n;\r\nhello\r\n" + END, 400,
           "gunicorn invalid/chunked_11"),
    Reject("chunk-ext-bare-cr", CHUNKED + b"5;ext=val\rue\r\nhello\r\n" + END, 400,
           "gunicorn invalid/chunked_14"),
    Reject("chunk-ext-bare-lf", CHUNKED + b"2;\nxx\r\n45\r\n" + b"0" * 69 + b"\r\n" + END, 400,
           "CVE-2025-55315 (Kestrel: LF inside a chunk extension)"),
    Reject("chunk-ext-nul", CHUNKED + b"5;a\x00\r\nhello\r\n" + END, 400,
           "CVE-2022-24761 (extensions dropped unvalidated)"),
    Reject("chunk-ext-spaces-around-equals", CHUNKED + b"4;invalid = true\r\ntest\r\n" + END, 400,
           "waitress test_received_invalid_extensions"),
    Reject("chunk-data-bad-terminator", CHUNKED + b"3\r\nxxx__1a\r\n", 400,
           "CVE-2025-43859 (h11 read any two bytes as CRLF); h11 test_ChunkedReader"),
    Reject("chunk-data-cr-then-junk", CHUNKED + b"3\r\nxxx\r_1a\r\n", 400,
           "h11 test_ChunkedReader"),
    Reject("chunk-data-junk-then-lf", CHUNKED + b"3\r\nxxx_\n1a\r\n", 400,
           "h11 test_ChunkedReader"),
    Reject("chunk-data-bare-lf", CHUNKED + b"5\r\nhello\n" + END, 400, "RFC 9112 §7.1"),
    Reject("chunk-data-longer-than-size", CHUNKED + b"5\r\nhello!\r\n" + END, 400,
           "RFC 9112 §7.1; waitress test_received_chunk_not_properly_terminated"),
    Reject("last-chunk-bare-lf", CHUNKED + b"5\r\nhello\r\n0\n\n", 400, "RFC 9112 §7.1"),
    Reject("trailer-obs-fold", CHUNKED + b"5\r\nhello\r\n0\r\nX: y\r\n z\r\n\r\n", 400,
           "RFC 9112 §7.1.2, §5.2"),
    Reject("trailer-space-before-colon", CHUNKED + b"5\r\nhello\r\n0\r\nX : y\r\n\r\n", 400,
           "RFC 9112 §7.1.2, §5.1"),
    Reject("trailer-bare-lf", CHUNKED + b"5\r\nhello\r\n0\r\nX: y\n\r\n", 400,
           "RFC 9112 §7.1.2, §2.2"),
    Reject("trailer-content-length", CHUNKED + b"5\r\nhello\r\n0\r\nContent-Length: 99\r\n\r\n",
           400, "gunicorn invalid/rfc9110_trailer_forbidden_cl_01; llhttp strict"),
    Reject("trailer-too-many", CHUNKED + b"5\r\nhello\r\n0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
           431, "RFC 9112 §7.1.2 (trailers count against the field limits)", {"fields": 3}),
    Reject("trailer-too-large", CHUNKED + b"5\r\nhello\r\n0\r\nX: " + b"y" * 300 + b"\r\n\r\n",
           431, "RFC 9112 §7.1.2", {"field_size": 256}),
    Reject("chunked-over-limit", CHUNKED + b"6\r\nhello,\r\n6\r\n world\r\n" + END, 413,
           "RFC 9110 §15.5.14 (counted as chunks arrive)", {"body": 10}),
    # Connection management (RFC 9110 §7.8, RFC 9112 §9)
    Reject("upgrade-with-content-length",
           POST + b"Upgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 5\r\n\r\nhello",
           501, "RFC 9110 §7.8 (httptools would drop the body of an upgrade request)"),
    Reject("upgrade-h2c-with-chunked-body",
           POST + b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AA\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n" + END,
           501, "RFC 9110 §7.8; RFC 7540 §3.2 (h2c upgrade with a body)"),
    # waitress tests/test_parser.py: each test whose input is a request, completed where waitress
    # feeds a partial head (often as HTTP/8.4) into an HTTP/1.1 request with a Host. Its helpers'
    # own tests (split_uri, get_header_lines, crack_first_line's results) are covered by the
    # request-line and target cases above and the ones here.
    Reject("w-version-first", b"HTTP/1.0 GET /foobar\r\n\r\n", 400,
           "waitress test_received_get_no_headers"),
    Reject("w-version-first-space-header", b"HTTP/1.0 GET /foobar\r\n Host: foo\r\n\r\n", 400,
           "waitress test_received_bad_host_header"),
    Reject("w-cl-over-body-limit", b"GET /foobar HTTP/1.1\r\n" + HOST
           + b"Content-Length: 10\r\n\r\n", 413, "waitress test_received_cl_too_large",
           {"body": 2}),
    Reject("w-head-over-limit", b"GET /foobar HTTP/1.1\r\n" + HOST + b"X-Foo: 1\r\n\r\n", 431,
           "waitress test_received_headers_too_large", {"field_size": 2}),
    Reject("w-chunked-over-body-limit", b"GET /foobar HTTP/1.1\r\n" + HOST
           + b"Transfer-Encoding: chunked\r\nX-Foo: 1\r\n\r\n1d\r\n"
           b"This string has 29 characters\r\n0\r\n\r\n", 413,
           "waitress test_received_body_too_large", {"body": 2}),
    Reject("w-chunk-ext-empty", b"GET /foobar HTTP/1.1\r\n" + HOST
           + b"Transfer-Encoding: chunked\r\nX-Foo: 1\r\n\r\n1d;\r\n"
           b"This string has 29 characters\r\n0\r\n\r\n", 400,
           "waitress test_received_body_too_large's chunk (waitress takes a ';' with no name; "
           "RFC 9112 §7.1.1: chunk-ext-name is a token)"),
    Reject("w-chunk-garbage", b"GET /foobar HTTP/1.1\r\n" + HOST
           + b"Transfer-Encoding: chunked\r\nX-Foo: 1\r\n\r\ngarbage\r\n", 400,
           "waitress test_received_error_from_parser"),
    Reject("w-cl-letters", b"GET /foobar HTTP/1.1\r\n" + HOST + b"content-length: abc\r\n\r\n",
           400, "waitress test_parse_header_bad_content_length"),
    Reject("w-cl-plus", b"GET /foobar HTTP/1.1\r\n" + HOST + b"content-length: +10\r\n\r\n",
           400, "waitress test_parse_header_bad_content_length_plus"),
    Reject("w-cl-minus", b"GET /foobar HTTP/1.1\r\n" + HOST + b"content-length: -10\r\n\r\n",
           400, "waitress test_parse_header_bad_content_length_minus"),
    Reject("w-cl-twice", b"GET /foobar HTTP/1.1\r\n" + HOST
           + b"content-length: 10\r\ncontent-length: 20\r\n\r\n", 400,
           "waitress test_parse_header_multiple_content_length"),
    Reject("w-te-and-cl", b"GET /foobar HTTP/1.1\r\n" + HOST
           + b"transfer-encoding: chunked\r\ncontent-length: 10\r\n\r\n" + END, 400,
           "waitress test_parse_header_11_te_chunked_with_cl_close_connection (waitress serves "
           "it, then closes; RFC 9112 §6.1 lets a server refuse it)"),
    Reject("w-lf-only", b"GET /foobar HTTP/1.1\n" + HOST + b"foo: bar\r\n\r\n", 400,
           "waitress test_parse_header_lf_only"),
    Reject("w-cr-only", b"GET /foobar HTTP/1.1\r" + HOST + b"foo: bar\r\n\r\n", 400,
           "waitress test_parse_header_cr_only"),
    Reject("w-lf-in-value", b"GET /foobar HTTP/1.1\r\n" + HOST + b"foo: \nbar\r\n\r\n", 400,
           "waitress test_parse_header_extra_lf_in_header"),
    Reject("w-lf-in-request-line", b"GET /foobar\n HTTP/1.1\r\n" + HOST + b"\r\n", 400,
           "waitress test_parse_header_extra_lf_in_first_line"),
    Reject("w-vtab-starts-value", b"GET /foobar HTTP/1.1\r\n" + HOST
           + b"foo: bar\r\nfoo: \x0bbaz\r\n\r\n", 400, "waitress test_parse_header_invalid_chars"),
    Reject("w-ctl-ends-value", b"GET /foobar HTTP/1.1\r\n" + HOST + b"foo: bar\r\nfoo: "
           + b"x" * 35 + b"\x10\r\n\r\n", 400, "waitress test_parse_header_invalid_backtrack_bad"),
    Reject("w-folded-list", b"GET /foobar HTTP/1.1\r\n" + HOST
           + b"foo: bar, whatever,\r\n more, please, yes\r\n\r\n", 400,
           "waitress test_parse_header_multiple_values_header_folded (waitress unfolds; "
           "RFC 9112 §5.2 lets a server refuse obs-fold)"),
    Reject("w-folded-list-repeated", b"GET /foobar HTTP/1.1\r\n" + HOST
           + b"foo: bar, whatever,\r\n more\r\nfoo: please, yes\r\n\r\n", 400,
           "waitress test_parse_header_multiple_values_header_folded_multiple; RFC 9112 §5.2"),
    Reject("w-version-word", b"GET / bleh\r\n" + HOST + b"\r\n", 400,
           "waitress test_crack_first_line_nomatch"),
    Reject("w-no-version", b"GET /\r\n" + HOST + b"\r\n", 505,
           "waitress test_crack_first_line_missing_version"),
    Reject("w-nul-in-method", b"GE\x00 /foobar HTTP/1.1\r\n" + HOST + b"\r\n", 400,
           "waitress test_crack_first_line_bad_method"),
    Reject("w-version-dots", b"GET /foobar HTTP/.1.\r\n" + HOST + b"\r\n", 400,
           "waitress test_crack_first_line_bad_version"),
    Reject("w-fragment", b"GET /foo/bar#frag HTTP/1.1\r\n" + HOST + b"\r\n", 400,
           "waitress test_split_url_with_fragment (waitress drops it; RFC 9112 §3.2)"),
    Reject("w-query-and-fragment", b"GET /foo/bar?a=1#frag HTTP/1.1\r\n" + HOST + b"\r\n", 400,
           "waitress test_split_uri_path_query_fragment; RFC 9112 §3.2"),
    # h11 h11/tests/test_io.py: each reader case of a request, as a whole request here.
    Reject("h-obs-fold-lines", b"HEAD /foo HTTP/1.1\r\n" + HOST + b"Some: multi-line\r\n header\r\n"
           b"\tnonsense\r\n    \t   \t\tI guess\r\nConnection: close\r\n\r\n", 400,
           "h11 test_readers_unusual (h11 unfolds; RFC 9112 §5.2 lets a server refuse obs-fold)"),
    Reject("h-first-line-folded", b"HEAD /foo HTTP/1.1\r\n  folded: line\r\n" + HOST + b"\r\n",
           400, "h11 test_readers_unusual; RFC 9112 §2.2"),
    Reject("h-spaces-before-colon", b"HEAD /foo HTTP/1.1\r\n" + HOST + b"foo  : line\r\n\r\n",
           400, "h11 test_readers_unusual; RFC 9112 §5.1"),
    Reject("h-tab-before-colon", b"HEAD /foo HTTP/1.1\r\n" + HOST + b"foo\t: line\r\n\r\n", 400,
           "h11 test_readers_unusual; RFC 9112 §5.1"),
    Reject("h-garbage-after-version", b"HEAD /foo HTTP/1.1 xxxxxx\r\n" + HOST + b"\r\n", 400,
           "h11 test_reject_garbage_after_response_line (its request case)"),
    Reject("h-space-in-target", target(b"HEAD", b"/a b"), 400,
           "h11 test_reject_non_vchar_in_path (\\x20)"),
    Reject("h-ctl-in-cookie", b"HEAD /foo HTTP/1.1\r\n" + HOST
           + b"Set-Cookie: ___utmvafIumyLc=kUd\x01UpAt; path=/; Max-Age=900\r\n\r\n", 400,
           "h11 test_allow_some_garbage_in_cookies (h11 lets it through, h11#57; llhttp "
           "refuses CTLs in values, RFC 9110 §5.5 lets a recipient reject them)"),
    Reject("h-chunk-size-overflow", CHUNKED + b"9" * 100 + b"\r\nxxx", 400,
           "h11 test_ChunkedReader"),
    Reject("h-chunk-size-nul", CHUNKED + b"10\x00\r\nxxx", 400, "h11 test_ChunkedReader"),
    Reject("h-chunk-size-trailing-space", CHUNKED + b"5   \t \r\n01234\r\n" + END, 400,
           "h11 test_ChunkedReader (h11 accepts it; llhttp refuses whitespace after the size "
           "without a ';', which RFC 9112 §7.1 does not allow either)"),
    Reject("h-chunk-data-no-crlf", CHUNKED + b"3\r\nxxx__1a\r\n", 400,
           "h11 test_ChunkedReader; CVE-2025-43859"),
    Reject("h-chunk-data-cr-only", CHUNKED + b"3\r\nxxx\r_1a\r\n", 400,
           "h11 test_ChunkedReader; CVE-2025-43859"),
    Reject("h-chunk-data-lf-only", CHUNKED + b"3\r\nxxx_\n1a\r\n", 400,
           "h11 test_ChunkedReader; CVE-2025-43859"),
    Reject("h-chunk-extension-bws", CHUNKED + b"5; hello=there\r\nxxxxx\r\n" + END, 400,
           "h11 test_ChunkedReader (h11 accepts it, as RFC 9112 §7.1.1's BWS allows; llhttp "
           "refuses it: a known gap, docs/http-edge.md)"),
)


ACCEPT: tuple[Accept, ...] = (
    Accept("simple-get", GET + b"\r\n", (Parsed("GET", b"/"),), "RFC 9112 §3"),
    Accept("empty-line-before-request", b"\r\n" + GET + b"\r\n", (Parsed("GET", b"/"),),
           "RFC 9112 §2.2 (SHOULD ignore at least one empty line)"),
    Accept("bare-lf-line-before-request", b"\n" + GET + b"\r\n", (Parsed("GET", b"/"),),
           "RFC 9112 §2.2 (a recipient MAY take LF as a line end); llhttp allows it here only"),
    Accept("webdav-method", target(b"PROPFIND", b"/dav/"), (Parsed("PROPFIND", b"/dav/"),),
           "RFC 4918 §9.1; llhttp method list"),
    Accept("query-method", target(b"QUERY", b"/search"), (Parsed("QUERY", b"/search"),),
           "draft-ietf-httpbis-safe-method-w-body; llhttp method list"),
    Accept("purge-method", target(b"PURGE", b"/cached"), (Parsed("PURGE", b"/cached"),),
           "llhttp method list (cache PURGE)"),
    Accept("options-asterisk", target(b"OPTIONS", b"*"), (Parsed("OPTIONS", b"*"),),
           "RFC 9112 §3.2.4; gunicorn valid/rfc9112_target_asterisk_options_01"),
    Accept("absolute-form", target(b"GET", b"http://example.com/a?b=1"),
           (Parsed("GET", b"http://example.com/a?b=1"),),
           "RFC 9112 §3.2.2; gunicorn valid/rfc9112_target_absolute_01"),
    Accept("absolute-form-https-ipv6-port", target(b"GET", b"https://[::1]:8443/x"),
           (Parsed("GET", b"https://[::1]:8443/x"),),
           "gunicorn valid/rfc9112_target_absolute_https_01, _ipv6_01"),
    Accept("absolute-form-upper-scheme-no-path", target(b"GET", b"HTTP://EXAMPLE.COM"),
           (Parsed("GET", b"HTTP://EXAMPLE.COM"),),
           "RFC 3986 §3.1 (schemes are case-insensitive)"),
    Accept("slashes-kept", b"GET ///keeping_slashes HTTP/1.1\r\n" + HOST + b"\r\n",
           (Parsed("GET", b"///keeping_slashes"),), "gunicorn valid/100"),
    Accept("host-empty", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", (Parsed("GET", b"/"),),
           "RFC 9110 §7.2 (empty Host when the URI has no authority)"),
    Accept("host-ipv6-port", host(b"[::1]:8000"), (Parsed("GET", b"/"),), "RFC 3986 §3.2.2"),
    Accept("host-trailing-ows", host(b"example.com \t"), (Parsed("GET", b"/"),),
           "RFC 9110 §5.5 (OWS is not part of the value)"),
    Accept("http10-no-host-closes", b"GET / HTTP/1.0\r\n\r\n",
           (Parsed("GET", b"/", keep_alive=False, version="1.0"),), "RFC 9112 §9.3"),
    Accept("http10-keep-alive", b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
           (Parsed("GET", b"/", version="1.0"),), "RFC 9112 Appendix C.2.2"),
    Accept("http10-keep-alive-and-close",
           b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
           (Parsed("GET", b"/", keep_alive=False, version="1.0"),),
           "RFC 9112 §9.3 (close wins; llhttp lets keep-alive win in 1.0)"),
    Accept("http11-close-ignores-what-follows",
           GET + b"Connection: close\r\n\r\nGET /smuggled HTTP/1.1\r\n" + HOST + b"\r\n",
           (Parsed("GET", b"/", keep_alive=False),),
           "RFC 9112 §9.6 (MUST NOT process further requests); CVE-2024-49768 (waitress)"),
    Accept("http11-keep-alive-and-close", GET + b"Connection: keep-alive, close\r\n\r\n",
           (Parsed("GET", b"/", keep_alive=False),), "RFC 9112 §9.6"),
    Accept("http10-ignores-what-follows", b"GET / HTTP/1.0\r\n\r\nGARBAGE\x00\r\n\r\n",
           (Parsed("GET", b"/", keep_alive=False, version="1.0"),), "RFC 9112 §9.3, §9.6"),
    Accept("upgrade-served-then-closed",
           GET + b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
           (Parsed("GET", b"/", keep_alive=False),),
           "RFC 9110 §7.8 (a server MAY ignore Upgrade)"),
    Accept("upgrade-without-connection-option",
           GET + b"Upgrade: websocket\r\n\r\n" + GET + b"\r\n",
           (Parsed("GET", b"/"), Parsed("GET", b"/")), "RFC 9110 §7.8, §7.6.1"),
    Accept("cl-leading-zeros", cl(b"005"), (Parsed("POST", b"/upload/", b"hello"),),
           "RFC 9110 §8.6 (1*DIGIT)"),
    Accept("cl-trailing-ows", cl(b"5 \t"), (Parsed("POST", b"/upload/", b"hello"),),
           "RFC 9110 §5.5"),
    Accept("cl-zero", cl(b"0", b""), (Parsed("POST", b"/upload/"),),
           "gunicorn valid/rfc9110_body_framing_get_cl_zero_01"),
    Accept("get-with-body-then-next",
           b"GET /a HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n"
           + HOST + b"\r\n", (Parsed("GET", b"/a", b"hello"), Parsed("GET", b"/b")),
           "gunicorn valid/rfc9110_body_framing_get_cl_nonzero_01; RFC 9112 §6.3"),
    Accept("http10-post-cl", b"POST /p HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello",
           (Parsed("POST", b"/p", b"hello", keep_alive=False, version="1.0"),),
           "gunicorn valid/rfc9110_body_framing_http10_cl_01"),
    Accept("body-looks-like-a-request", cl(b"35", SMUGGLED) + GET + b"\r\n",
           (Parsed("POST", b"/upload/", SMUGGLED), Parsed("GET", b"/")),
           "RFC 9112 §6.3 (the body is data, never a request)"),
    Accept("te-case-insensitive", te(b"ChUnKeD"), (Parsed("POST", b"/upload/", b"hello"),),
           "RFC 9112 §7 (coding names are case-insensitive)"),
    Accept("te-ows", te(b"\tchunked  "), (Parsed("POST", b"/upload/", b"hello"),),
           "RFC 9110 §5.5; gunicorn valid/padding_01"),
    Accept("chunk-size-hex-and-zeros",
           CHUNKED + b"000A\r\n0123456789\r\na\r\nabcdefghij\r\n000\r\n\r\n",
           (Parsed("POST", b"/upload/", b"0123456789abcdefghij"),),
           "gunicorn valid/rfc9112_chunked_size_uppercase_hex_01, _leading_zeros_01, valid/029"),
    Accept("chunk-extensions", CHUNKED + b'5;a=1;b;c="x;y\\"z"\r\nhello\r\n0;last=1\r\n\r\n',
           (Parsed("POST", b"/upload/", b"hello"),),
           "gunicorn valid/rfc9112_chunked_ext_quoted_01; waitress test_received_valid_extensions"),
    Accept("chunk-data-with-crlf", CHUNKED + b"4\r\n\r\n\r\n\r\n" + END,
           (Parsed("POST", b"/upload/", b"\r\n\r\n"),), "waitress test_received_multiple_chunks"),
    Accept("trailers-are-dropped",
           CHUNKED + b"5\r\nhello\r\n0\r\nHost: evil.example.com\r\nX-Sum: 1\r\n\r\n",
           (Parsed("POST", b"/upload/", b"hello"),),
           "RFC 9110 §6.5.1 (never merged into the header section); gunicorn invalid/"
           "rfc9110_trailer_forbidden_host_01 refuses instead"),
    Accept("underscore-names-frame-nothing",
           b"GET /keep HTTP/1.0\r\nTransfer_Encoding: tricked\r\nContent-Length: 7\r\n"
           b"Content_Length: -1E23\r\n\r\ntricked",
           (Parsed("GET", b"/keep", b"tricked", keep_alive=False, version="1.0"),),
           "gunicorn valid/040 (wsgi.py then drops the _ names)"),
    Accept("value-obs-text-and-htab", GET + b"X: caf\xe9\tau lait\r\n\r\n",
           (Parsed("GET", b"/"),),
           "gunicorn valid/rfc9110_field_value_obs_text_01; RFC 9110 §5.5"),
    Accept("pipelined-in-order",
           b"GET /1 HTTP/1.1\r\n" + HOST + b"\r\n" + cl(b"3", b"abc")
           + b"GET /3 HTTP/1.1\r\n" + HOST + b"\r\n",
           (Parsed("GET", b"/1"), Parsed("POST", b"/upload/", b"abc"), Parsed("GET", b"/3")),
           "RFC 9112 §9.3.2"),
    # waitress tests/test_parser.py, accepted: the same requests, complete.
    Accept("w-gardenpath", b"GET /foobar HTTP/1.1\r\n" + HOST + b"foo: bar\r\n\r\n",
           (Parsed("GET", b"/foobar"),), "waitress test_parse_header_gardenpath"),
    Accept("w-te-mixed-case", b"POST /foobar HTTP/1.1\r\n" + HOST
           + b"transfer-encoding: ChUnKed\r\n\r\n1d\r\nThis string has 29 characters\r\n" + END,
           (Parsed("POST", b"/foobar", b"This string has 29 characters"),),
           "waitress test_parse_header_11_te_chunked, "
           "test_received_chunked_completed_sets_content_length"),
    Accept("w-expect-continue-no-body", b"GET /foobar HTTP/1.1\r\n" + HOST
           + b"expect: 100-continue\r\n\r\n", (Parsed("GET", b"/foobar"),),
           "waitress test_parse_header_11_expect_continue"),
    Accept("w-connection-close", b"GET /foobar HTTP/1.1\r\n" + HOST
           + b"Connection: close\r\n\r\n", (Parsed("GET", b"/foobar", keep_alive=False),),
           "waitress test_parse_header_connection_close"),
    Accept("w-empty-value", b"GET /foobar HTTP/1.1\r\n" + HOST + b"foo: bar\r\nempty:\r\n\r\n",
           (Parsed("GET", b"/foobar"),), "waitress test_parse_header_empty"),
    Accept("w-list-values", b"GET /foobar HTTP/1.1\r\n" + HOST
           + b"foo: bar, whatever, more, please, yes\r\nfoo: abrowser/0.001 (C O M M E N T)\r\n"
           b"one: 1\r\ntwo: 22\r\n\r\n", (Parsed("GET", b"/foobar"),),
           "waitress test_parse_header_multiple_values, _extra_space, _short_values"),
    Accept("w-obs-text", b"GET /foobar HTTP/1.1\r\n" + HOST + b"foo: \xa0something\x85\r\n\r\n",
           (Parsed("GET", b"/foobar"),), "waitress test_parse_header_other_whitespace"),
    Accept("w-duplicate-content-type", b"GET / HTTP/1.1\r\n" + HOST
           + b"Content-Type: text/plain\r\nContent-Type: text/html\r\n\r\n", (Parsed("GET", b"/"),),
           "waitress test_received_duplicate_content_type_header (400 there; joined here, RFC "
           "9110 §5.3: no framing depends on it)"),
    Accept("w-escaped-target", b"GET /foo/a+%2B%2F%C3%A4%3D%26a%3Aint?d=b+%2B%2F%3D%26b%3Aint"
           b"&c+%2B%2F%3D%26c%3Aint=6 HTTP/1.1\r\n" + HOST + b"content-length: 10\r\n\r\n"
           b"Hello mick",
           (Parsed("GET", b"/foo/a+%2B%2F%C3%A4%3D%26a%3Aint?d=b+%2B%2F%3D%26b%3Aint"
                   b"&c+%2B%2F%3D%26c%3Aint=6", b"Hello mick"),),
           "waitress testComplexGET (escapes stay raw in the target; PATH_INFO unquotes)"),
    Accept("w-high-order-escape", b"GET /a%C5%9B HTTP/1.1\r\n" + HOST + b"\r\n",
           (Parsed("GET", b"/a%C5%9B"),), "waitress test_highorder"),
    Accept("w-empty-lines-only", b"\r\n\r\n", (), "waitress test_received_nonsense_nothing"),
    # h11 h11/tests/test_io.py, accepted: the same requests, whole.
    Accept("h-simple-close", b"GET /a HTTP/1.1\r\nHost: foo\r\nConnection: close\r\n\r\n",
           (Parsed("GET", b"/a", keep_alive=False),), "h11 test_readers_simple"),
    Accept("h-head-1.0-header", b"HEAD /foo HTTP/1.0\r\nSome: header\r\n\r\n",
           (Parsed("HEAD", b"/foo", keep_alive=False, version="1.0"),),
           "h11 test_readers_unusual"),
    Accept("h-head-1.0-bare", b"HEAD /foo HTTP/1.0\r\n\r\n",
           (Parsed("HEAD", b"/foo", keep_alive=False, version="1.0"),),
           "h11 test_readers_unusual"),
    Accept("h-whitespace-values", b"GET / HTTP/1.1\r\n" + HOST
           + b"Foo: a a a a a \r\nBar:\r\nBaz: \t \t \r\n\r\n", (Parsed("GET", b"/"),),
           "h11 test_readers_unusual (its response cases' header lines, in a request)"),
    Accept("h-cl-zero", cl(b"0", b""), (Parsed("POST", b"/upload/"),), "h11 test_ContentLengthReader"),
    Accept("h-cl-ten", cl(b"10", b"0123456789"), (Parsed("POST", b"/upload/", b"0123456789"),),
           "h11 test_ContentLengthReader"),
    Accept("h-chunked-empty-with-trailer", CHUNKED + b"0\r\nSome: header\r\n\r\n",
           (Parsed("POST", b"/upload/"),), "h11 test_ChunkedReader"),
    Accept("h-chunked-two-with-trailer", CHUNKED + b"5\r\n01234\r\n10\r\n0123456789abcdef\r\n"
           b"0\r\nSome: header\r\n\r\n",
           (Parsed("POST", b"/upload/", b"012340123456789abcdef"),), "h11 test_ChunkedReader"),
    Accept("h-chunk-size-mixed-case", CHUNKED + b"aA\r\n" + b"x" * 0xAA + b"\r\n" + END,
           (Parsed("POST", b"/upload/", b"x" * 0xAA),), "h11 test_ChunkedReader"),
)


#: What llhttp accepts and we cannot cheaply refuse: it reports neither the raw request line nor
#: the protocol name. Each runs as an xfail(strict) test, so a fix (or an llhttp change) shows.
KNOWN_GAPS: tuple[Reject, ...] = (
    Reject("line-two-spaces-before-target", b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n", 400,
           "RFC 9112 §3 (single SP; the whitespace-tolerant reading is a MAY)"),
    Reject("line-two-spaces-after-target", b"GET /  HTTP/1.1\r\n" + HOST + b"\r\n", 400,
           "RFC 9112 §3"),
    Reject("version-rtsp", b"GET / RTSP/1.0\r\n" + HOST + b"\r\n", 400,
           "RFC 9112 §2.3 (llhttp also speaks RTSP)"),
    Reject("version-ice", b"SOURCE / ICE/1.0\r\n" + HOST + b"\r\n", 400,
           "RFC 9112 §2.3 (llhttp also speaks ICE for SOURCE)"),
)
# fmt: on
