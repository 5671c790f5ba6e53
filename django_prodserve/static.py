"""Static files in production: STATIC_ROOT served under STATIC_URL in front of the Django app.

Installed by `prodserve --serve-static`. A request whose path does not start with STATIC_URL costs one
`str.startswith` (see `wrap`); one that does is looked up on disk (so files collected after the start
are found) and, when it names a regular file inside STATIC_ROOT, answered here with sendfile.
Anything else — a missing file, a directory, a name that tries to leave STATIC_ROOT — goes on to
Django, exactly as with WhiteNoise's middleware, so Django still answers 404 (or a view of yours).
"""

from __future__ import annotations

import mimetypes
import os
import re
import stat
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.http import http_date, parse_http_date_safe

# What ManifestStaticFilesStorage inserts: the first 12 hex digits of the content's MD5.
HASHED_NAME = re.compile(r"\.[0-9a-f]{12}\.")
IMMUTABLE = "public, max-age=31536000, immutable"
# Precompressed siblings; on equal preference (q) the first wins.
CODINGS = (("br", ".br"), ("gzip", ".gz"))
# RFC 9110 §14.1.2: one range. Several ranges are answered with the whole file (§14.2 allows it),
# and so are positions over 18 digits: past any file, and past int()'s 4300-digit limit a
# ValueError (issue 18 #11).
BYTE_RANGE = re.compile(r"\s*bytes\s*=\s*(\d{0,18})\s*-\s*(\d{0,18})\s*", re.ASCII | re.IGNORECASE)
Found = tuple[str, os.stat_result]


class StaticFiles:
    """The files of `root` under the URL path `prefix`; `app` answers whatever is not one."""

    __slots__ = ("app", "prefix", "root", "inside", "max_age", "hashed")

    def __init__(
        self, app: Callable, root: str, prefix: str, max_age: int, hashed: frozenset[str] | None
    ) -> None:
        self.app = app
        self.prefix = prefix
        # Resolved once: a worker keeps serving the tree it booted with (and whose manifest it
        # read) when a deploy swaps a STATIC_ROOT symlink, until it is reloaded.
        self.root = os.path.realpath(root)
        self.inside = self.root + os.sep
        self.max_age = max_age
        # Names ManifestStaticFilesStorage hashed; None: no manifest, so go by HASHED_NAME.
        self.hashed = hashed

    def serve(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        name = _file_name(environ["PATH_INFO"][len(self.prefix) :])
        found = None if name is None else self.find(name)
        if found is None:
            return self.app(environ, start_response)
        method = environ["REQUEST_METHOD"]
        if method != "GET" and method != "HEAD":
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return []
        base = name.rpartition("/")[2]
        if self.hashed is None:
            immutable = HASHED_NAME.search(base) is not None
        else:
            immutable = name in self.hashed
        headers = [("Cache-Control", IMMUTABLE if immutable else f"public, max-age={self.max_age}")]
        (path, info), coding = self.variant(found, environ, headers)
        etag = f'"{info.st_mtime_ns:x}-{info.st_size:x}"'
        last_modified = http_date(info.st_mtime)
        headers += [("ETag", etag), ("Last-Modified", last_modified)]
        if _not_modified(environ, etag, info.st_mtime):
            start_response("304 Not Modified", headers)
            return []
        size = info.st_size
        headers += [("Content-Type", _content_type(base)), ("Accept-Ranges", "bytes")]
        if coding is not None:
            headers.append(("Content-Encoding", coding))
        status, start, stop = "200 OK", 0, size
        ranges = environ.get("HTTP_RANGE")
        if_range = environ.get("HTTP_IF_RANGE")
        if ranges and method == "GET" and (if_range is None or if_range in (etag, last_modified)):
            span = _byte_range(ranges, size)
            if span is not None:
                start, stop = span
                if start >= stop:
                    headers.append(("Content-Range", f"bytes */{size}"))
                    start_response("416 Range Not Satisfiable", headers)
                    return []
                status = "206 Partial Content"
                headers.append(("Content-Range", f"bytes {start}-{stop - 1}/{size}"))
        headers.append(("Content-Length", str(stop - start)))
        if method == "HEAD":
            start_response(status, headers)
            return []
        try:
            file = open(path, "rb", buffering=0)  # closed by the server, through the wrapper
        except OSError:
            return self.app(environ, start_response)
        file.seek(start)
        start_response(status, headers)
        return environ["wsgi.file_wrapper"](file)

    def find(self, name: str) -> Found | None:
        """root/name if it is a regular file there, following only symlinks that stay inside root.

        Each part of the name is one lstat below the (already real) root: no realpath() per
        request, which would stat every directory from / down.
        """
        path = self.root
        for part in name.split("/"):
            found = self.lookup(f"{path}/{part}")
            if found is None:
                return None
            path, info = found
        return found if stat.S_ISREG(info.st_mode) else None

    def lookup(self, path: str) -> Found | None:
        """lstat `path`, whose parent is real and inside root; a symlink must resolve inside root."""
        try:
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                path = os.path.realpath(path)
                if not path.startswith(self.inside):
                    return None
                info = os.stat(path)
        except OSError:
            return None
        return path, info

    def variant(self, found: Found, environ: dict, headers: list) -> tuple[Found, str | None]:
        """The precompressed sibling the client prefers and its coding, or the file itself.

        Vary goes into `headers` whenever a sibling exists, whichever is chosen, so that caches
        keep the variants apart.
        """
        directory, _, base = found[0].rpartition("/")
        siblings = {}
        for coding, suffix in CODINGS:
            sibling = self.lookup(f"{directory}/{base}{suffix}")
            if sibling is not None and stat.S_ISREG(sibling[1].st_mode):
                siblings[coding] = sibling
        if not siblings:
            return found, None
        headers.append(("Vary", "Accept-Encoding"))
        for coding in _accepted_codings(environ.get("HTTP_ACCEPT_ENCODING", "")):
            if coding in siblings:
                return siblings[coding], coding
        return found, None


def wrap(files: StaticFiles) -> Callable:
    """The WSGI app: STATIC_URL paths to `files`, the rest straight to the app it wraps.

    A closure rather than StaticFiles.__call__: calling an instance costs CPython ~90 ns more
    than calling a function, and every non-static request would pay it.
    """
    app, prefix, serve = files.app, files.prefix, files.serve

    def static_or_app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ["PATH_INFO"].startswith(prefix):
            return serve(environ, start_response)
        return app(environ, start_response)

    static_or_app.__wrapped__ = app
    return static_or_app


def from_settings(app: Callable, max_age: int) -> Callable:
    """`app` behind this project's STATIC_ROOT and STATIC_URL; a manifest is read now.

    The prefix is STATIC_URL's path, as Django's own StaticFilesHandler matches it, so a STATIC_URL
    on a CDN host still serves the CDN's pulls from this origin.
    """
    if not settings.STATIC_ROOT or not settings.STATIC_URL:
        raise ImproperlyConfigured(
            "serve_static needs STATIC_URL and STATIC_ROOT: set them, then run "
            "`manage.py collectstatic`."
        )
    from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage

    hashed = None
    if isinstance(staticfiles_storage, ManifestFilesMixin):
        hashed = frozenset(staticfiles_storage.hashed_files.values())
    prefix = urlsplit(settings.STATIC_URL).path
    return wrap(StaticFiles(app, str(settings.STATIC_ROOT), prefix, max_age, hashed))


def _file_name(raw: str) -> str | None:
    """The UTF-8 name under STATIC_ROOT that a PATH_INFO tail names, or None if it could escape.

    PATH_INFO is already percent-decoded (as latin-1), so %2e%2e and ..%2f arrive here as `..` and
    `../`. Refused: NUL, backslashes, and empty, `.` or `..` parts (this also refuses absolute
    names, a trailing slash and `//`).
    """
    try:
        name = raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None
    if "\x00" in name or "\\" in name:
        return None
    if any(part in ("", ".", "..") for part in name.split("/")):
        return None
    return name


def _content_type(name: str) -> str:
    """The type by extension; a .gz asked for by its own name is gzip data, not encoded text."""
    media_type, encoding = mimetypes.guess_type(name)
    if encoding is not None:
        return "application/gzip" if encoding == "gzip" else "application/octet-stream"
    if media_type is None:
        return "application/octet-stream"
    if media_type.startswith("text/") or media_type == "application/javascript":
        return media_type + "; charset=utf-8"
    return media_type


def _not_modified(environ: dict, etag: str, mtime: float) -> bool:
    """RFC 9110 §13.2.2: If-None-Match decides when present; If-Modified-Since only without it."""
    if_none_match = environ.get("HTTP_IF_NONE_MATCH")
    if if_none_match is not None:
        # Weak comparison (§8.8.3.2): W/ is ignored on either side.
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or etag in tags
    since = parse_http_date_safe(environ.get("HTTP_IF_MODIFIED_SINCE", ""))
    return since is not None and int(mtime) <= since


def _accepted_codings(header: str) -> list[str]:
    """The precompressed codings Accept-Encoding allows (q > 0), best first (RFC 9110 §12.5.3)."""
    weights: dict[str, float] = {}
    for item in header.split(","):
        coding, *params = item.split(";")
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        # §8.4.1.3: x-gzip is gzip.
        weights[coding.strip().lower().removeprefix("x-")] = weight
    anything = weights.get("*", 0.0)
    allowed = [coding for coding, _ in CODINGS if weights.get(coding, anything) > 0]
    return sorted(allowed, key=lambda coding: -weights.get(coding, anything))


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """A Range header's one byte range as (start, stop), start >= stop when unsatisfiable.

    None, to send the whole file, for what we don't serve as a range: several ranges, other units,
    malformed or invalid (last < first) ranges — RFC 9110 §14.2 lets a server ignore those.
    """
    match = BYTE_RANGE.fullmatch(header)
    if match is None:
        return None
    first, last = match.groups()
    if first:
        start = int(first)
        if last and int(last) < start:
            return None
        stop = min(int(last) + 1, size) if last else size
    elif last:
        start, stop = max(size - int(last), 0), size
    else:
        return None
    return start, stop
