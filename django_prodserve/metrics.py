"""Metrics: statsd with gunicorn's names, and Prometheus in prometheus_client's multiprocess mode.

Everything is off by default and then costs nothing: a worker gets no request observer unless the
access log or a metric sink is on (its hot path then skips even the clock), the app is wrapped only
for the features in use, and the master's hooks only when a sink is on. The three seams:

- `request_observer()`: the worker's, around each request (access line, statsd, Prometheus).
- `instrument()`: the app loader's: request ids, the Prometheus endpoint, our loggers re-enabled.
- `with_master_metrics()`: the master's hooks, to count workers and restarts; it also owns
  PROMETHEUS_MULTIPROC_DIR, where every process keeps its values for the endpoint to merge.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from typing import Any

from . import logs
from .conf import split_host_port

error_log = logging.getLogger("django_prodserve.error")

#: Methods counted by name in Prometheus; any other is "other", so clients can't add label values.
METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")
)
RESTART_REASONS = ("crash", "timeout", "recycle")
#: Our PROMETHEUS_MULTIPROC_DIR: made per master, removed when it exits.
DIR_PREFIX = "prodserve-prometheus-"


class Statsd:
    """statsd over UDP: one non-blocking datagram per event, errors dropped, so metrics can never
    slow or break serving. Several metrics share a datagram, one per line (statsd's framing)."""

    __slots__ = ("sock", "prefix")

    def __init__(self, address: str, prefix: str) -> None:
        host, port = split_host_port(address)
        family, kind, proto, _, target = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        self.sock = socket.socket(family, kind, proto)
        self.sock.setblocking(False)
        self.sock.connect(target)
        self.prefix = prefix.rstrip(".") + "." if prefix else ""

    @classmethod
    def from_config(cls, config) -> Statsd | None:
        if config.statsd_host is None:
            return None
        try:
            return cls(config.statsd_host, config.statsd_prefix)
        except OSError as exc:
            error_log.warning("statsd_host %s: %s; no statsd metrics", config.statsd_host, exc)
            return None

    def send(self, text: str) -> None:
        try:
            self.sock.send(text.encode())
        except OSError:
            pass

    def request(self, code: int, duration: float) -> None:
        p = self.prefix
        self.send(
            f"{p}requests:1|c\n{p}request.duration:{duration * 1000:.3f}|ms\n"
            f"{p}request.status.{code}:1|c"
        )


class PrometheusRequests:
    """A worker's request metrics; prometheus_client keeps them in its file in the directory."""

    __slots__ = ("count", "latency", "in_flight", "_counters")

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.count = Counter(
            "prodserve_requests",
            "HTTP requests answered, by method and status.",
            ("method", "status"),
            registry=None,
        )
        self.latency = Histogram(
            "prodserve_request_duration_seconds",
            "Seconds from a complete request to the end of its response.",
            registry=None,
        )
        self.in_flight = Gauge(
            "prodserve_requests_in_flight",
            "Requests being served now.",
            registry=None,
            multiprocess_mode="livesum",
        )
        self._counters: dict[tuple[str, int], Any] = {}

    def request(self, method: str, code: int, duration: float) -> None:
        if method not in METHODS:
            method = "other"
        counter = self._counters.get((method, code))
        if counter is None:
            counter = self._counters[method, code] = self.count.labels(method, str(code))
        counter.inc()
        self.latency.observe(duration)


class Observer:
    """Around each request in a worker: the in-flight gauge while it runs, then the access line
    and the metrics. A failure here is logged, never allowed to break serving."""

    __slots__ = ("access", "statsd", "prometheus", "begin")

    def __init__(self, access: bool, statsd: Statsd | None, prometheus: PrometheusRequests | None):
        self.access = access
        self.statsd = statsd
        self.prometheus = prometheus
        #: () → the start time the worker hands back to end().
        self.begin: Callable[[], float] = time.monotonic if prometheus is None else self._enter

    def _enter(self) -> float:
        self.prometheus.in_flight.inc()
        return time.monotonic()

    def end(self, environ: dict, exchange, start: float) -> None:
        """`exchange` is None when the client went away mid-response: nothing to log or count."""
        duration = time.monotonic() - start
        try:
            if self.prometheus is not None:
                self.prometheus.in_flight.dec()
            if exchange is None:
                return
            if self.access:
                logs.log_access(environ, exchange, duration)
            if self.statsd is not None:
                self.statsd.request(exchange.code, duration)
            if self.prometheus is not None:
                self.prometheus.request(environ["REQUEST_METHOD"], exchange.code, duration)
        except Exception:
            error_log.exception("Logging or measuring a request failed")


def request_observer(config) -> Observer | None:
    """The worker's observer, made after the fork; None when nothing would observe."""
    access = logs.access_log.isEnabledFor(logging.INFO)
    statsd = Statsd.from_config(config)
    prometheus = PrometheusRequests() if config.prometheus_path else None
    if not access and statsd is None and prometheus is None:
        return None
    return Observer(access, statsd, prometheus)


class MetricsEndpoint:
    """prometheus_path: the metrics of every process, merged from PROMETHEUS_MULTIPROC_DIR.
    Every other request goes to the app."""

    __slots__ = ("app", "path", "registry")

    def __init__(self, app, path: str) -> None:
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        self.app = app
        self.path = path
        self.registry = CollectorRegistry()
        MultiProcessCollector(self.registry)

    def __call__(self, environ: dict, start_response):
        if environ.get("PATH_INFO") != self.path:
            return self.app(environ, start_response)
        from prometheus_client.exposition import choose_encoder

        encode, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        body = encode(self.registry)
        start_response(
            "200 OK",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]


def instrument(config, load_app: Callable[[], Any]) -> Callable[[], Any]:
    """The app loader the master (preload) and the workers use: the project's app behind the
    layers that are on, and our loggers enabled again after its import."""

    def load() -> Any:
        app = load_app()
        logs.keep_enabled()
        if config.prometheus_path:
            app = MetricsEndpoint(app, config.prometheus_path)
        if config.request_id_header:
            app = logs.RequestId(app, config.request_id_header)
        return app

    return load


class MasterMetrics:
    """The master's hooks, wrapped: after each, the metrics only the master knows, how many
    workers there are and why they restart."""

    def __init__(self, hooks, statsd: Statsd | None, prometheus: bool) -> None:
        self.hooks = hooks
        self.statsd = statsd
        self.restarts = self.workers = None
        self.own_dir = None
        if prometheus:
            self.own_dir = multiprocess_dir()
            from prometheus_client import Counter, Gauge

            self.restarts = Counter(
                "prodserve_worker_restarts",
                "Workers replaced after a crash, a timeout, or recycling (max_requests, "
                "max_worker_memory, max_worker_lifetime).",
                ("reason",),
                registry=None,
            )
            for reason in RESTART_REASONS:
                self.restarts.labels(reason)  # a series from the start, at 0
            self.workers = Gauge(
                "prodserve_workers", "Worker processes.", registry=None, multiprocess_mode="livesum"
            )

    def __call__(self, name: str, *args) -> None:
        self.hooks(name, *args)
        try:
            if name == "pre_fork":
                self.count(len(args[0].workers) + 1)  # the new one is not in the table yet
            elif name == "worker_exit":
                self.worker_exited(*args)
            elif name == "on_exit":
                self.count(0)
                if self.own_dir is not None:
                    shutil.rmtree(self.own_dir, ignore_errors=True)
        except Exception:
            error_log.exception("Metrics of the %s event failed", name)

    def count(self, workers: int) -> None:
        if self.statsd is not None:
            self.statsd.send(f"{self.statsd.prefix}workers:{workers}|g")
        if self.workers is not None:
            self.workers.set(workers)

    def worker_exited(self, master, worker) -> None:
        if self.workers is not None:
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(worker.pid)  # its in-flight gauge no longer counts
        reason = restart_reason(master, worker)
        if reason is not None:
            if self.statsd is not None:
                p = self.statsd.prefix
                self.statsd.send(f"{p}worker.restarts:1|c\n{p}worker.restarts.{reason}:1|c")
            if self.restarts is not None:
                self.restarts.labels(reason).inc()
        self.count(len(master.workers))


def restart_reason(master, worker) -> str | None:
    """Why an exited worker gets replaced: 'timeout', 'recycle' or 'crash'; None when it was
    meant to go (a stop, HUP's old generation, TTOU, WINCH)."""
    if master.stop_deadline is not None:
        return None
    if worker.aborted_at is not None:
        return "timeout"
    if master.heartbeat.retiring(worker.slot):
        return "recycle"
    return None if worker.stopping else "crash"


def with_master_metrics(config, hooks):
    """The master's hooks, wrapped to feed statsd and Prometheus; as they are when both are off."""
    statsd = Statsd.from_config(config)
    if statsd is None and not config.prometheus_path:
        return hooks
    return MasterMetrics(hooks, statsd, bool(config.prometheus_path))


def multiprocess_dir() -> str | None:
    """Point PROMETHEUS_MULTIPROC_DIR at this run's directory; returns it when it is ours.

    The operator's directory is kept and emptied of the last run's files, as prometheus_client
    asks. Without one, or when the variable names a directory an old master made (a SIGUSR2
    upgrade inherits it), a fresh one is made, and removed when this master exits.
    """
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    own = None
    if given and not os.path.basename(given.rstrip("/")).startswith(DIR_PREFIX):
        os.makedirs(given, exist_ok=True)
        for path in glob.glob(os.path.join(given, "*.db")):
            os.unlink(path)
    else:
        own = tempfile.mkdtemp(prefix=DIR_PREFIX)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own
    from prometheus_client import values

    if values.ValueClass is values.MutexValue:
        # prometheus_client was imported before the variable was set (by the project, say).
        values.ValueClass = values.MultiProcessValue()
    return own
