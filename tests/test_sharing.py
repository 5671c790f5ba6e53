"""Sharing: which worker takes the clients waiting in the backlog, decided from a clock reading and
the heartbeat mapping (a real one; the clock is ours, and so is the backlog)."""

from __future__ import annotations

import pytest

from django_prodserve.server.heartbeat import Heartbeat
from django_prodserve.server.sharing import (
    ACCEPT_BATCH,
    SHARE_BACKOFF,
    SHARE_MARGIN,
    SHARE_WAIT,
    Sharing,
    Turn,
)

ME, SIBLING = 0, 1
SIBLING_PID = 4242


class Backlog:
    """Clients waiting to be accepted: accept(n) takes up to n of them."""

    def __init__(self, waiting: int) -> None:
        self.waiting = waiting
        self.asked: list[int] = []

    def accept(self, n: int) -> int:
        self.asked.append(n)
        taken = min(n, self.waiting)
        self.waiting -= taken
        return taken


@pytest.fixture
def heartbeat() -> Heartbeat:
    """Two workers taking clients: this one in slot 0, its sibling in slot 1."""
    beats = Heartbeat(slots=4)
    beats.set_workers(2, 2)
    beats.set_pid(ME, 1000)
    beats.set_pid(SIBLING, SIBLING_PID)
    return beats


def test_the_only_worker_takes_the_whole_backlog_at_once():
    beats = Heartbeat(slots=4)
    beats.set_workers(1, 1)
    backlog = Backlog(100)
    assert Sharing(beats, ME).turn(0.0, 0, backlog.accept) == Turn(ACCEPT_BATCH, False, 0)
    assert backlog.asked == [ACCEPT_BATCH]


def test_a_worker_takes_up_to_its_margin_over_the_lightest_sibling_then_nudges_it(heartbeat):
    sharing, backlog = Sharing(heartbeat, ME), Backlog(50)
    assert sharing.turn(0.0, 0, backlog.accept) == Turn(SHARE_MARGIN, True, SIBLING_PID)
    # The sibling's turn: nothing for this worker until it takes some or its time is up.
    assert sharing.turn(SHARE_WAIT / 2, SHARE_MARGIN, backlog.accept) == Turn(0, True, 0)
    assert backlog.asked == [SHARE_MARGIN]


def test_once_the_nudged_sibling_took_its_share_the_turns_go_on(heartbeat):
    sharing, backlog = Sharing(heartbeat, ME), Backlog(50)
    sharing.turn(0.0, 0, backlog.accept)
    heartbeat.set_connections(SIBLING, 3)  # it woke and took three
    room = 3 + SHARE_MARGIN - SHARE_MARGIN  # up to the margin over the sibling's three
    assert sharing.turn(0.001, SHARE_MARGIN, backlog.accept) == Turn(room, True, SIBLING_PID)


def test_a_worker_far_ahead_of_its_sibling_takes_none_and_nudges_it(heartbeat):
    heartbeat.set_connections(SIBLING, 1)
    backlog = Backlog(5)
    turn = Sharing(heartbeat, ME).turn(0.0, 1 + SHARE_MARGIN, backlog.accept)
    assert turn == Turn(0, True, SIBLING_PID)
    assert backlog.asked == []


def test_a_sibling_that_takes_nothing_in_time_is_left_out_for_the_backoff(heartbeat):
    """Inside a long request it cannot take its turn: this worker serves the clients itself."""
    sharing, backlog = Sharing(heartbeat, ME), Backlog(50)
    sharing.turn(0.0, 0, backlog.accept)
    late = SHARE_WAIT * 2
    assert sharing.turn(late, SHARE_MARGIN, backlog.accept) == Turn(1, True, 0)
    assert sharing.turn(late + 0.001, 3, backlog.accept) == Turn(1, True, 0)  # one at a time
    # After the backoff, sharing resumes: this worker is ahead, so the sibling is nudged again.
    turn = sharing.turn(late + SHARE_BACKOFF + 0.001, 4, backlog.accept)
    assert turn == Turn(0, True, SIBLING_PID)


def test_a_turn_with_no_one_waiting_says_so(heartbeat):
    sharing, backlog = Sharing(heartbeat, ME), Backlog(0)
    heartbeat.set_connections(SIBLING, 5)
    assert sharing.turn(0.0, 0, backlog.accept) == Turn(0, False, 0)


def test_a_sibling_no_longer_taking_clients_is_not_waited_for(heartbeat):
    heartbeat.set_pid(SIBLING, 0)  # draining: the master took it out
    backlog = Backlog(5)
    assert Sharing(heartbeat, ME).turn(0.0, 10, backlog.accept) == Turn(1, True, 0)
