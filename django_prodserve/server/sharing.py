"""Which worker takes the clients waiting in a shared listen backlog: a decision, not I/O.

Workers share each listening socket. Rotation in the loop (a worker re-registers the socket after
an accept, so the kernel wakes the next one) spreads clients that arrive one by one, but not a
burst that is all in the backlog before a worker wakes: the first one awake would take it all at
its pace, and keep-alive keeps it that way. So workers publish their connection counts in the
heartbeat mapping, and each takes clients only up to SHARE_MARGIN more than its lightest sibling.
One with no room nudges that sibling (a signal that wakes its loop, which takes its share) and
leaves the clients to it; one that fills its room while clients may still wait nudges it too, so
a burst drains in turns of a few clients each. A sibling busy in a long request cannot take its
turn: if it took none within SHARE_WAIT, this worker takes the clients itself and stops sharing
for SHARE_BACKOFF. The only worker of an instance takes the whole backlog at once.

`Sharing.turn()` decides from a clock reading and the heartbeat mapping; the accepting is a
function it is given, so tests drive it with a fake clock and a real mapping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from .heartbeat import Heartbeat

#: Clients accepted per call by a worker that takes the whole backlog: the only worker of an
#: instance, and any worker draining on a graceful stop.
ACCEPT_BATCH = 64
SHARE_MARGIN = 2
SHARE_WAIT = 0.005
SHARE_BACKOFF = 1.0


class Turn(NamedTuple):
    """What one turn at the backlog came to."""

    taken: int  # clients this worker accepted
    more: bool  # clients may still wait for this worker: come back for them (paced)
    nudge: int  # the pid of the sibling whose turn it is now, to wake; 0 for none


class Sharing:
    """One worker's side of sharing the backlog with its siblings (see the module docstring)."""

    __slots__ = ("heartbeat", "slot", "deferred_until", "deferred_to", "share_after")

    def __init__(self, heartbeat: Heartbeat, slot: int) -> None:
        self.heartbeat = heartbeat
        self.slot = slot
        self.deferred_until = 0.0  # waiting clients are a nudged sibling's until then
        self.deferred_to = (0, 0)  # that sibling's slot and connection count when nudged
        self.share_after = 0.0  # no deferring to siblings before then

    def turn(self, now: float, held: int, accept: Callable[[int], int]) -> Turn:
        """Take this worker's share of the waiting clients: `accept(n)` accepts up to n and
        returns how many it did; `held` is how many connections this worker has now."""
        heartbeat = self.heartbeat
        if heartbeat.workers() < 2:  # the only worker: take all who wait
            return Turn(accept(ACCEPT_BATCH), False, 0)
        if self.deferred_until:
            slot, before = self.deferred_to
            if heartbeat.connections(slot) > before:
                self.deferred_until = 0.0  # it took its turn
            elif now < self.deferred_until:
                return Turn(0, True, 0)  # still its turn
            else:  # it took none: inside a long request
                self.deferred_until = 0.0
                self.share_after = now + SHARE_BACKOFF
        lightest = heartbeat.lightest_sibling(self.slot) if now >= self.share_after else None
        if lightest is None:
            taken = accept(1)
            return Turn(taken, taken > 0, 0)
        slot, pid, count = lightest
        room = count + SHARE_MARGIN - held
        taken = accept(min(room, ACCEPT_BATCH)) if room > 0 else 0
        if room <= 0 or taken == room >= SHARE_MARGIN:  # the clients still waiting are its
            self.deferred_until = now + SHARE_WAIT
            self.deferred_to = (slot, count)
            return Turn(taken, True, pid)
        return Turn(taken, taken > 0, 0)
