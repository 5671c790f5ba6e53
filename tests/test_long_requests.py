"""Long requests: a slow view, a hung view or a client that does not read must not hold the other
connections of their worker, and a hung request is aborted by its age (issue 15).

Real servers on loopback, raw sockets. The worker runs one process (`-w 1`), so every connection of
a test is that worker's.
"""

from __future__ import annotations

import os
import select
import socket
import time

import pytest

from tests.client import Connection
from tests.conftest import sleeping_in_view, wait_until

LOOPBACK = "127.0.0.1:0"
SLOW = b"GET /slow/?s=%s HTTP/1.1\r\nHost: localhost\r\n\r\n"
HELLO = b"GET /hello/ HTTP/1.1\r\nHost: localhost\r\n\r\n"


def threads_in_view(pid: int) -> int:
    """How many of the worker's threads sleep in a view (/slow/ sleeps; a loop waits in epoll)."""
    count = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                count += sleeping_in_view(f.read())
        except OSError:
            pass  # the thread ended meanwhile
    return count


def wait_in_views(pid: int, count: int) -> None:
    """Wait until `count` threads of the worker are inside /slow/ (the requests reached the app)."""
    assert wait_until(lambda: threads_in_view(pid) >= count, timeout=10), (
        f"worker {pid}: {threads_in_view(pid)} threads in the view, expected {count}"
    )


def cpu_seconds(pid: int) -> float:
    """CPU time the process has used (user + system)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def answered(conn: Connection) -> bool:
    """Has the server sent anything on this connection yet? (Never blocks.)"""
    return bool(conn.buffer) or bool(select.select([conn.sock], [], [], 0)[0])


def test_a_fast_request_is_answered_while_a_slow_one_runs_on_the_same_worker(start_server):
    """The default configuration: a view that sleeps does not hold the worker's other clients."""
    server = start_server(LOOPBACK, "-w", "1")
    (worker,) = server.worker_pids()
    with (
        Connection(server.host, server.port) as slow,
        Connection(server.host, server.port) as fast,
    ):
        slow.send(SLOW % b"3")
        wait_in_views(worker, 1)
        started = time.monotonic()
        fast.send(HELLO)
        assert fast.read_response().status == 200
        assert time.monotonic() - started < 1.5
        assert not answered(slow), "the slow view is still running"
        # Bytes the busy connection receives meanwhile wait for its request to finish: the thread
        # that owns the loop now must not read them (or answer them out of order).
        slow.send(HELLO)
        fast.send(HELLO)
        assert fast.read_response().status == 200
        cpu = cpu_seconds(worker)
        first, second = slow.read_response(), slow.read_response()
        assert (first.body, second.body) == (b"slow done", b"Hello, world!")
        # Nor may they be reported to it over and over (level-triggered) while it waits.
        assert cpu_seconds(worker) - cpu < 0.5
        # The connection went back to the loop: it is served inline again.
        slow.send(HELLO)
        assert slow.read_response().status == 200


@pytest.mark.parametrize(
    "mode", [(), ("--spare-threads", "0"), ("--threads", "4")], ids=["default", "inline", "threads"]
)
def test_a_client_pipelining_a_thousand_requests_does_not_hold_the_worker_s_other_clients(
    start_server, mode
):
    """One read can hold ~1,500 small pipelined requests; served all at once, they held every
    other client of the worker (~130 ms for the Django hello). Each connection's pipeline is
    served PIPELINE_TURN requests per turn of the loop, the others' events in between."""
    server = start_server(LOOPBACK, "-w", "1", *mode)
    count = 1500
    with (
        Connection(server.host, server.port) as piper,
        Connection(server.host, server.port) as other,
    ):
        piper.send(HELLO * count)  # ~63 KB: one read
        assert piper.read_response().status == 200  # the pipeline is being served
        other.send(HELLO)
        assert other.read_response().status == 200
        ahead = piper.received().count(b"HTTP/1.1 ")  # answered before the other's
        assert ahead < count // 2, f"{ahead} of the pipeline's {count} answered before the other"
        for _ in range(count - 1):  # and the pipeline is served whole, in order
            assert piper.read_response().body == b"Hello, world!"
        other.send(HELLO)
        piper.send(HELLO)
        assert (other.read_response().status, piper.read_response().status) == (200, 200)


def test_a_client_that_hangs_up_during_a_long_request_does_not_disturb_the_worker(start_server):
    server = start_server(LOOPBACK, "-w", "1")
    (worker,) = server.worker_pids()
    with Connection(server.host, server.port) as fast:
        with Connection(server.host, server.port) as slow:
            slow.send(SLOW % b"1")
            wait_in_views(worker, 1)
            fast.send(HELLO)
            assert fast.read_response().status == 200
            slow.sock.shutdown(socket.SHUT_WR)  # a hang-up epoll would report to the loop
        for _ in range(3):
            fast.send(HELLO)
            assert fast.read_response().status == 200
        assert wait_until(lambda: threads_in_view(worker) == 0, timeout=5)
        fast.send(HELLO)
        assert fast.read_response().status == 200
    assert server.worker_pids() == [worker]


@pytest.mark.parametrize("mode", [(), ("--threads", "4")], ids=["default", "threads"])
def test_a_hung_request_is_aborted_by_its_age_with_its_stack_and_the_worker_replaced(
    start_server, mode
):
    """A request older than timeout: its stack and request line, a 500 to its client, a new
    worker; the worker's other request in flight still gets its response (graceful_timeout)."""
    server = start_server(LOOPBACK, "-w", "1", "--timeout", "2", *mode)
    (worker,) = server.worker_pids()
    mark = server.mark()
    with (
        Connection(server.host, server.port, timeout=15) as hung,
        Connection(server.host, server.port, timeout=15) as other,
    ):
        hung.send(SLOW % b"60")
        wait_in_views(worker, 1)
        other.send(SLOW % b"5")  # older than timeout too by then, but only one abort per worker
        wait_in_views(worker, 2)
        response = hung.read_response()
        assert response.status == 500
        server.wait_for(
            rf"Worker {worker}: GET /slow/\?s=60 ran longer than timeout \(2\.0s\)", start=mark
        )
        server.wait_for(r'demo/views\.py", line \d+, in slow', timeout=5, start=mark)
        server.wait_for(r"Booting worker with pid", timeout=10, start=mark)
        assert other.read_response().body == b"slow done"
    replacement = wait_until(lambda: worker not in server.worker_pids(), timeout=40)
    assert replacement, "the old worker leaves once its other requests are done"
    with Connection(server.host, server.port) as conn:
        conn.send(HELLO)
        assert conn.read_response().status == 200


def test_a_client_that_does_not_read_a_big_response_holds_neither_the_worker_nor_others(
    start_server,
):
    """#18 item 4: a 40 MiB download to a client with a 4 KiB receive buffer that stops reading.
    Its request thread waits on it; the other clients are served meanwhile; after timeout with
    no progress only that client is dropped, and the worker lives on."""
    server = start_server(LOOPBACK, "-w", "1", "--timeout", "2")
    (worker,) = server.worker_pids()
    mark = server.mark()
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((server.host, server.port))
    with stalled, Connection(server.host, server.port) as fast:
        stalled.sendall(b"GET /download/?mb=40 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert stalled.recv(1024).startswith(b"HTTP/1.1 200")  # the response is under way
        for _ in range(5):
            started = time.monotonic()
            fast.send(HELLO)
            assert fast.read_response().status == 200
            assert time.monotonic() - started < 1.5
        # No progress for timeout: that client is closed (EOF or reset after what was sent).
        stalled.settimeout(10)
        time.sleep(3)  # the client's part: not reading, for longer than timeout
        received = 0
        try:
            while data := stalled.recv(1 << 20):
                received += len(data)
        except ConnectionResetError:
            pass
        assert received < 40 << 20
        fast.send(HELLO)
        assert fast.read_response().status == 200
    assert server.worker_pids() == [worker]
    assert not any("ran longer than timeout" in line for line in server.lines[mark:])


def test_a_slow_download_that_makes_progress_is_not_a_hung_request(start_server):
    """Reading slowly, for longer than timeout in all: the response keeps going."""
    server = start_server(LOOPBACK, "-w", "1", "--timeout", "1")
    (worker,) = server.worker_pids()
    mark = server.mark()
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect((server.host, server.port))
    reader.settimeout(5)
    with reader:
        reader.sendall(b"GET /download/?mb=40 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        received = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            data = reader.recv(65536)
            assert data, f"the server closed a reading client after {received} bytes"
            received += len(data)
            time.sleep(0.05)  # the client's pace: a few hundred KiB/s at most
    assert server.worker_pids() == [worker]
    assert not any("ran longer than timeout" in line for line in server.lines[mark:])


@pytest.mark.parametrize("path", ["/download/?mb=40", "/stream/?n=4000000"])
def test_a_client_that_stops_reading_is_closed_in_one_log_line_and_the_worker_lives(
    start_server, path
):
    """A client that stops reading is the client's doing: one warning line (no traceback as if
    the app had failed), the access log counts the bytes that left, and the worker is not
    replaced as if hung, though the write waits exactly timeout (the watchdog's own limit)."""
    server = start_server(LOOPBACK, "-w", "1", "--timeout", "2", "--access-logfile", "-")
    (worker,) = server.worker_pids()
    mark = server.mark()
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((server.host, server.port))
    with stalled:
        stalled.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        assert stalled.recv(1024).startswith(b"HTTP/1.1 200")
        warning = server.wait_for(r"\[WARNING\] Client 127\.0\.0\.1, GET (\S+): (.*)", start=mark)
        assert warning.groups() == (path, "read nothing of the response for 2s; connection closed")
        access = server.wait_for(r'"GET (\S+) HTTP/1\.1" 200 (\S+)', start=mark)
        assert access.group(1) == path and 0 < int(access.group(2)) < 40 << 20
    with Connection(server.host, server.port) as conn:
        conn.send(HELLO)
        assert conn.read_response().status == 200
    logged = server.lines[mark:]
    assert not [line for line in logged if "Traceback" in line or "Error handling" in line]
    assert not [line for line in logged if "ran longer than timeout" in line]
    assert server.worker_pids() == [worker]
