"""Metrics over real processes: statsd packets caught by a UDP socket in the test, and the
Prometheus endpoint merging the numbers of every worker (and of the master) into one scrape."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import sys
import time

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from django_prodserve.conf import resolve
from tests.client import Connection, get, request
from tests.conftest import wait_until

LOOPBACK = "127.0.0.1:0"
needs_prometheus = pytest.mark.skipif(
    importlib.util.find_spec("prometheus_client") is None,
    reason="prometheus_client is not installed: pip install 'django-prodserve[prometheus]'",
)


class StatsdCatcher:
    """A statsd stand-in: a UDP socket on loopback that keeps every metric line it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.lines: list[str] = []

    def wait_for(self, predicate, timeout: float = 10.0) -> list[str]:
        """Receive until predicate(lines) holds; fail with what came if it doesn't in time."""
        deadline = time.monotonic() + timeout
        while not predicate(self.lines):
            if time.monotonic() > deadline:
                raise AssertionError(f"statsd lines so far: {self.lines}")
            try:
                self.lines += self.sock.recv(65536).decode().split("\n")
            except TimeoutError:
                pass
        return self.lines


@pytest.fixture
def statsd():
    catcher = StatsdCatcher()
    yield catcher
    catcher.sock.close()


# statsd


def test_statsd_gets_gunicorns_request_metrics_and_the_workers_gauge(start_server, statsd):
    server = start_server(LOOPBACK, "-w", "2", "--statsd-host", statsd.address)
    statsd.wait_for(lambda lines: "gunicorn.workers:2|g" in lines)
    for _ in range(3):
        assert get(server.port, "/hello/").status == 200
    assert get(server.port, "/missing/").status == 404
    lines = statsd.wait_for(lambda lines: lines.count("gunicorn.requests:1|c") == 4)
    assert lines.count("gunicorn.request.status.200:1|c") == 3
    assert lines.count("gunicorn.request.status.404:1|c") == 1
    timings = [re.fullmatch(r"gunicorn\.request\.duration:([\d.]+)\|ms", line) for line in lines]
    durations = [float(match[1]) for match in timings if match]
    assert len(durations) == 4 and all(0 < ms < 5000 for ms in durations)


def test_statsd_counts_a_crashed_worker_as_a_restart_under_the_prefix(start_server, statsd):
    server = start_server(
        LOOPBACK, "-w", "2", "--statsd-host", statsd.address, "--statsd-prefix", "myapp"
    )
    statsd.wait_for(lambda lines: "myapp.workers:2|g" in lines)
    start = len(statsd.lines)
    os.kill(server.worker_pids()[0], signal.SIGKILL)
    lines = statsd.wait_for(lambda lines: lines[start:].count("myapp.workers:2|g") == 1)[start:]
    assert "myapp.worker.restarts:1|c" in lines and "myapp.worker.restarts.crash:1|c" in lines
    assert lines.index("myapp.workers:1|g") < lines.index("myapp.workers:2|g")  # dip, refill


def test_statsd_tells_a_recycled_worker_from_a_crashed_one(start_server, statsd):
    server = start_server(
        LOOPBACK, "-w", "1", "--max-requests", "2", "--statsd-host", statsd.address
    )
    for _ in range(2):
        assert get(server.port, "/hello/").status == 200
    lines = statsd.wait_for(lambda lines: "gunicorn.worker.restarts.recycle:1|c" in lines)
    assert "gunicorn.worker.restarts.crash:1|c" not in lines


def test_planned_worker_exits_are_not_restarts(start_server, statsd):
    server = start_server(LOOPBACK, "-w", "2", "--statsd-host", statsd.address)
    statsd.wait_for(lambda lines: "gunicorn.workers:2|g" in lines)
    start = server.mark()
    server.signal(signal.SIGHUP)  # a new generation; the old one is stopped on purpose
    server.wait_for(r"Ready: 2 worker", start=start)
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    lines = statsd.wait_for(lambda lines: "gunicorn.workers:0|g" in lines)
    assert not [line for line in lines if "restarts" in line]


def test_serving_goes_on_when_nothing_listens_for_statsd(start_server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
        gone.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{gone.getsockname()[1]}"
    server = start_server(LOOPBACK, "-w", "1", "--statsd-host", address)
    # Each datagram to a closed port makes the next send fail (ICMP); the worker shrugs it off.
    for _ in range(20):
        assert get(server.port, "/hello/").status == 200
    assert "Traceback" not in server.output


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"statsd_host": "localhost:8125"}, None),
        ({"statsd_host": "[::1]:8125"}, None),
        ({"statsd_host": "localhost"}, "must be HOST:PORT"),
        ({"statsd_host": "::1:8125"}, "must be HOST:PORT"),
        ({"statsd_host": "host:70000"}, "must be HOST:PORT"),
        ({"statsd_prefix": ""}, None),
        ({"statsd_prefix": "app|x"}, "must be letters, digits"),
        ({"request_id_header": "X-Request-ID"}, None),
        ({"request_id_header": "X_Request_ID"}, "must be a header name"),
        ({"prometheus_path": "metrics"}, "must be a URL path"),
    ],
)
def test_metric_settings_are_validated(settings, error):
    _, _, problems = resolve(settings, {}, {})
    if error is None:
        assert problems == []
    else:
        assert len(problems) == 1 and error in problems[0].message


def test_prometheus_path_without_prometheus_client_is_a_check_error_naming_the_extra(
    monkeypatch,
):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    with override_settings(PRODSERVE={"prometheus_path": "/-/metrics"}):
        errors = [m for m in run_checks(tags=["prodserve"]) if m.id == "prodserve.E003"]
    assert len(errors) == 1
    assert "prometheus_path" in errors[0].msg
    assert "pip install 'django-prodserve[prometheus]'" in errors[0].msg


# Prometheus


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """The endpoint's samples, keyed by (name, labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    response = get(port, "/-/metrics")
    assert response.status == 200
    assert response.header("Content-Type").startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.body.decode())
        for sample in family.samples
    }


def requests_total(metrics: dict, method: str, status: str) -> float:
    return metrics.get(
        ("prodserve_requests_total", frozenset({("method", method), ("status", status)})), 0
    )


IN_FLIGHT = ("prodserve_requests_in_flight", frozenset())
LATENCY_COUNT = ("prodserve_request_duration_seconds_count", frozenset())


def restarts(metrics: dict, reason: str) -> float:
    return metrics[("prodserve_worker_restarts_total", frozenset({("reason", reason)}))]


@needs_prometheus
def test_prometheus_endpoint_merges_every_workers_requests_latency_and_in_flight(start_server):
    server = start_server(LOOPBACK, "-w", "2", "--prometheus-path", "/-/metrics")
    with Connection(server.host, server.port) as busy:
        # One worker sits in a slow view; the other serves everything below, until it is done.
        busy.send(b"GET /slow/?s=1.5 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        time.sleep(0.3)
        for _ in range(3):
            assert get(server.port, "/hello/").status == 200
        propfind = b"PROPFIND /hello/ HTTP/1.1\r\nHost: localhost\r\n\r\n"
        assert request(server.port, propfind).status == 200
        during = scrape(server.port)
        assert during[IN_FLIGHT] == 2  # the slow request and the scrape itself
        assert busy.read_response().status == 200
        busy.send(b"GET /hello/ HTTP/1.1\r\nHost: localhost\r\n\r\n")  # the first worker again
        assert busy.read_response().status == 200
    # A response can reach us a moment before its worker has recorded it, and the next connection
    # can go to the other worker (always possible; often on the selectors loop, where both wake):
    # scrape until every request is in. Each scrape before that is a GET the next one counts.
    for earlier in range(50):
        after = scrape(server.port)
        if requests_total(after, "GET", "200") == 6 + earlier and after[IN_FLIGHT] == 1:
            break
    # slow + 3 hello + the first scrape + hello on the kept-alive connection, over both workers
    assert requests_total(after, "GET", "200") == 6 + earlier
    assert requests_total(after, "other", "200") == 1  # PROPFIND: no label per client's method
    assert after[LATENCY_COUNT] == 7 + earlier
    assert after[IN_FLIGHT] == 1
    assert after[("prodserve_workers", frozenset())] == 2


@needs_prometheus
def test_prometheus_counts_restarts_and_drops_dead_workers_in_flight(start_server):
    server = start_server(LOOPBACK, "-w", "2", "--prometheus-path", "/-/metrics")
    before = scrape(server.port)
    assert restarts(before, "crash") == restarts(before, "timeout") == 0
    workers = server.worker_pids()
    with Connection(server.host, server.port) as busy:
        busy.send(b"GET /slow/?s=5 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        time.sleep(0.3)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)  # one of them in the middle of the slow request
    assert wait_until(lambda: len(set(server.worker_pids()) - set(workers)) == 2)
    after = scrape(server.port)
    assert restarts(after, "crash") == 2 and restarts(after, "recycle") == 0
    assert after[IN_FLIGHT] == 1  # the scrape; the killed request no longer counts
    assert requests_total(after, "GET", "200") == 1  # the dead workers' counts are kept


@needs_prometheus
def test_multiprocess_dir_is_ours_per_run_or_the_operators_emptied_first(start_server, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"TMPDIR": str(temp), "PROMETHEUS_MULTIPROC_DIR": ""}
    server = start_server(LOOPBACK, "--prometheus-path", "/-/metrics", env=env)
    scrape(server.port)
    [ours] = temp.glob("prodserve-prometheus-*")
    assert list(ours.glob("*.db"))
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert not ours.exists()

    given = tmp_path / "given"
    given.mkdir()
    (given / "counter_999999.db").write_bytes(b"from the last run")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(given)}
    server = start_server(LOOPBACK, "--prometheus-path", "/-/metrics", env=env)
    assert not (given / "counter_999999.db").exists()
    assert ("prodserve_workers", frozenset()) in scrape(server.port)
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert given.is_dir()


def test_metrics_path_is_off_by_default(start_module_server):
    server = start_module_server()
    assert get(server.port, "/-/metrics").status == 404  # Django's: nothing in front of it
