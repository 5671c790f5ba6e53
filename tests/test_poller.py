"""The worker loop's pollers, side by side on real sockets: the selectors one (macOS, the BSDs,
Windows; issue 19) must report exactly what epoll reports for each way a connection can wait."""

from __future__ import annotations

import errno
import socket

import pytest

from django_prodserve.server import poller as pollers
from django_prodserve.server.poller import DISARMED, READABLE, READABLE_ONCE

KINDS = [
    pytest.param(
        "EpollPoller",
        marks=pytest.mark.skipif(not hasattr(pollers.select, "epoll"), reason="no epoll here"),
    ),
    "SelectorsPoller",
]


@pytest.fixture(params=KINDS)
def poller(request):
    instance = getattr(pollers, request.param)()
    yield instance
    instance.close()


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def reported(poller) -> list[int]:
    return [fd for fd, _ in poller.poll(0.05)]


def test_readable_is_reported_for_as_long_as_bytes_wait(poller, pair):
    ours, theirs = pair
    poller.register(ours.fileno(), READABLE)
    assert reported(poller) == []
    theirs.send(b"x")
    assert reported(poller) == [ours.fileno()]
    assert reported(poller) == [ours.fileno()]
    ours.recv(1)
    assert reported(poller) == []


def test_readable_once_is_reported_once_then_disarmed_until_modified(poller, pair):
    ours, theirs = pair
    poller.register(ours.fileno(), READABLE_ONCE)
    theirs.send(b"x")
    assert reported(poller) == [ours.fileno()]
    assert reported(poller) == []  # still unread: a request thread owns the socket
    poller.modify(ours.fileno(), READABLE_ONCE)
    assert reported(poller) == [ours.fileno()]


def test_a_hang_up_is_reported_while_armed_and_at_most_once_while_disarmed(poller, pair):
    """epoll reports a hang-up once even to a disarmed fd (the loop ignores events of a connection
    a thread owns); selectors does not report it at all."""
    ours, theirs = pair
    poller.register(ours.fileno(), DISARMED)
    theirs.close()
    reported(poller)
    assert reported(poller) == []
    poller.modify(ours.fileno(), READABLE)
    assert reported(poller) == [ours.fileno()]
    assert ours.recv(1) == b""


def test_a_new_client_is_reported_on_a_listener(poller):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    try:
        poller.register_listener(listener.fileno())
        assert reported(poller) == []
        with socket.create_connection(listener.getsockname()):
            assert reported(poller) == [listener.fileno()]
            listener.accept()[0].close()
            assert reported(poller) == []
    finally:
        listener.close()


def test_unregistering_what_is_not_registered_is_an_oserror(poller, pair):
    ours, _ = pair
    with pytest.raises(OSError) as info:
        poller.unregister(ours.fileno())
    assert info.value.errno == errno.ENOENT
    poller.register(ours.fileno(), READABLE_ONCE)
    poller.unregister(ours.fileno())
    with pytest.raises(OSError):
        poller.unregister(ours.fileno())
