"""What differs between platforms, decided in one place (issue 19).

Linux is the reference: epoll, pipe2, /proc, prctl, os.sendfile. macOS and the BSDs fork too but have
no epoll (the selectors module picks kqueue there), no pipe2 (macOS), no /proc; Windows has neither
fork nor epoll. Each function here is what a Linux-only call becomes elsewhere.
"""

from __future__ import annotations

import select

HAS_EPOLL = hasattr(select, "epoll")


def event_loop(choice: str) -> str:
    """The `event_loop` setting as the workers run it: 'auto' is epoll where the kernel has it."""
    if choice == "auto":
        return "epoll" if HAS_EPOLL else "selectors"
    return choice
