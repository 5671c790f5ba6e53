"""Serving where there is no fork (Windows), run here with tests/nofork's sitecustomize in the
server's interpreter: no fork, no epoll, no pipe2, no sendfile (issue 19). Each test starts a real
`manage.py prodserve` that takes the paths Windows and macOS take."""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from tests.client import get
from tests.conftest import nofork_environ, server_environ, wait_until

NOFORK = {"PYTHONPATH": nofork_environ(server_environ())["PYTHONPATH"]}


@pytest.fixture
def server(start_server):
    return start_server("-w", "3", env=NOFORK)


def test_workers_become_threads_of_one_process_with_a_warning(server):
    assert "prodserve.W041" in server.output
    assert "cannot fork: prodserve serves in one process, with workers × threads = 3" in (
        server.output
    )
    assert "1 worker × 3 threads" in server.output
    assert "(one process: no fork here)" in server.output
    assert server.worker_pids() == []
    assert get(server.port, "/hello/").body == b"Hello, world!"


def test_the_threads_serve_slow_requests_side_by_side(server):
    """Three 0.5 s requests on three threads end together, not one after another."""
    statuses = []

    def fetch() -> None:
        statuses.append(get(server.port, "/slow/?s=0.5").status)

    start = time.monotonic()
    clients = [threading.Thread(target=fetch) for _ in range(3)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(10)
    assert statuses == [200, 200, 200]
    assert time.monotonic() - start < 1.4


def test_a_file_goes_out_byte_exact_without_sendfile(server):
    response = get(server.port, "/download/?mb=3")
    assert response.status == 200
    assert response.body == (bytes(range(256)) * 4096) * 3


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_term_stop_it_cleanly(start_server, sig):
    server = start_server(env=NOFORK)
    server.signal(sig)
    assert server.wait_exit(10) == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=2).close()
    assert "Traceback" not in server.output


def test_the_selectors_loop_serves_keep_alive_and_pipelined_requests(server):
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"GET /hello/ HTTP/1.1\r\nHost: localhost\r\n\r\n" * 2)
        data = b""
        while data.count(b"Hello, world!") < 2:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 2


def test_recycling_is_off_as_the_worker_is_the_server(start_server):
    server = start_server("-w", "1", "--max-requests", "2", env=NOFORK)
    assert "prodserve.W042" in server.output
    assert "max_requests would recycle the worker" in server.output
    for _ in range(5):
        assert get(server.port, "/hello/").status == 200
    assert server.proc.poll() is None


def test_reload_serves_an_edit_without_fork(start_copy, project_copy):
    """In the main suite too, so a fork added to the development path fails here, not only in
    .ci/run's no-fork run."""
    server = start_copy("--reload", env=NOFORK)
    assert get(server.port, "/hello/").body == b"Hello, world!"
    views = project_copy / "demo" / "views.py"
    views.write_text(views.read_text().replace("Hello, world!", "Hello, no fork!"))
    assert wait_until(lambda: get(server.port, "/hello/").body == b"Hello, no fork!", 10)
    assert "Traceback" not in server.output
