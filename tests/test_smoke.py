import os

from tests.client import get


def test_serves_the_project_hello_view(start_server):
    server = start_server("-w", "2")
    response = get(server.port, "/hello/")
    assert response.status == 200
    assert response.body == b"Hello, world!"
    assert len(server.worker_pids()) == (2 if hasattr(os, "fork") else 0)  # tests/nofork: 1 process
