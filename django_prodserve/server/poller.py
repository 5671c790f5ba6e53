"""The worker loop's view of the kernel's readiness API: exactly the calls the loop makes.

A connection waits in one of three ways: `READABLE` (level-triggered: reported while it has
bytes or has hung up), `READABLE_ONCE` (reported once, then disarmed until modified again, so
no event, not even a hang-up, reaches the loop while another thread owns the socket) or
`DISARMED` (registered, never reported). Listeners are registered apart, with exclusive wakeup:
a new client wakes one idle worker, not all of them.

`EpollPoller` is the Linux implementation; `SelectorsPoller` (issue 19) the one for every other
platform, and for any with `event_loop = "selectors"`. `new_poller()` picks one from the setting.
"""

from __future__ import annotations

import errno
import select
import selectors
from collections.abc import Callable

from .portable import event_loop

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


class SelectorsPoller:
    """The `selectors` module's best poller (kqueue on macOS and the BSDs, poll or select
    elsewhere), with the loop's two epoll semantics emulated (issue 19):

    - READABLE_ONCE: a reported connection leaves the selector until it is modified again, so
      no event reaches the loop while a request thread owns the socket.
    - Exclusive listeners: not emulated. Every idle worker wakes for a new client; one accepts
      it, the others find the backlog empty (accept's EAGAIN) and go back to waiting. That costs
      (workers - 1) wakeups per connection, not per request: nothing for one worker, and small
      beside a request on a laptop's handful of workers. Linux keeps epoll by default.
    """

    __slots__ = ("_selector", "_oneshot", "_disarmed")

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._oneshot: set[int] = set()  # armed once: leaves the selector when reported
        self._disarmed: set[int] = set()  # registered with the loop, not with the selector

    def register(self, fd: int, events: int) -> None:
        if events & READABLE:
            self._selector.register(fd, selectors.EVENT_READ)
        else:
            self._disarmed.add(fd)
        if events & _ONESHOT:
            self._oneshot.add(fd)

    def modify(self, fd: int, events: int) -> None:
        self.unregister(fd)
        self.register(fd, events)

    def unregister(self, fd: int) -> None:
        """As epoll: an fd that is not registered is an OSError (ENOENT)."""
        self._oneshot.discard(fd)
        if fd in self._disarmed:
            self._disarmed.discard(fd)
            return
        try:
            self._selector.unregister(fd)
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "not registered", fd) from None

    def register_listener(self, fd: int) -> None:
        self._selector.register(fd, selectors.EVENT_READ)

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        ready = []
        for key, _ in self._selector.select(timeout):
            fd = key.fd
            if fd in self._oneshot:
                self._selector.unregister(fd)
                self._disarmed.add(fd)
            ready.append((fd, READABLE))
        return ready

    def close(self) -> None:
        self._selector.close()


def write_waiter(fd: int) -> Callable[[float | None], bool]:
    """A wait for room to write on `fd`, up to a timeout in seconds (None: no limit); True once
    there is. poll() where it exists; select() on Windows, where it takes sockets."""
    if not hasattr(select, "poll"):
        return lambda timeout: bool(select.select((), (fd,), (), timeout)[1])
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return lambda timeout: bool(poller.poll(None if timeout is None else int(timeout * 1000)))


def new_poller(setting: str) -> EpollPoller | SelectorsPoller:
    """The poller the `event_loop` setting asks for ('auto': epoll where the kernel has it)."""
    return EpollPoller() if event_loop(setting) == "epoll" else SelectorsPoller()
