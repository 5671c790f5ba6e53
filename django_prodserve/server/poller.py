"""The worker loop's view of the kernel's readiness API: exactly the calls the loop makes.

A connection waits in one of three ways: `READABLE` (level-triggered: reported while it has
bytes or has hung up), `READABLE_ONCE` (reported once, then disarmed until modified again, so
no event, not even a hang-up, reaches the loop while another thread owns the socket) or
`DISARMED` (registered, never reported). Listeners are registered apart, with exclusive wakeup:
a new client wakes one idle worker, not all of them.

`EpollPoller` is the Linux implementation. Issue 19 adds one on `selectors` for the other
platforms behind the same methods.
"""

from __future__ import annotations

import select

# epoll's bit values (Linux ABI), spelled out so this module imports where select has no epoll.
_IN, _ONESHOT, _EXCLUSIVE = 0x001, 1 << 30, 1 << 28
READABLE = _IN
READABLE_ONCE = _IN | _ONESHOT
#: Registered, not reported: a oneshot registration with nothing to wait for. (epoll still
#: reports a hang-up or an error once: the loop ignores events of a connection it does not own.)
DISARMED = _ONESHOT


class EpollPoller:
    """epoll. The methods are the epoll object's own, bound once, so the seam costs no call."""

    __slots__ = ("_epoll", "register", "modify", "unregister", "poll")

    def __init__(self) -> None:
        epoll = self._epoll = select.epoll()
        self.register = epoll.register  # (fd, READABLE | READABLE_ONCE | DISARMED)
        self.modify = epoll.modify  # (fd, READABLE | READABLE_ONCE | DISARMED)
        self.unregister = epoll.unregister  # (fd)
        self.poll = epoll.poll  # (timeout seconds) → [(fd, events)]

    def register_listener(self, fd: int) -> None:
        """Wake one waiting worker per new client, not every worker (EPOLLEXCLUSIVE)."""
        self._epoll.register(fd, _IN | _EXCLUSIVE)

    def close(self) -> None:
        self._epoll.close()
