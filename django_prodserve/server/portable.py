"""What differs between platforms, decided in one place (issue 19).

Linux is the reference: epoll, pipe2, /proc, prctl, os.sendfile. macOS and the BSDs fork too but have
no epoll (the selectors module picks kqueue there), no pipe2 (macOS), no /proc; Windows has neither
fork nor epoll. Each function here is what a Linux-only call becomes elsewhere; docs/architecture.md
("Platforms") says what each platform gets.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

HAS_EPOLL = hasattr(select, "epoll")
CAN_FORK = hasattr(os, "fork")  # not on Windows: server/inprocess.py
HAS_SENDFILE = hasattr(os, "sendfile")  # not on Windows
#: Linux (and DragonFly) spread the connections of a port over the sockets that share it with
#: SO_REUSEPORT; macOS and the other BSDs give them all to one socket; Windows has no such option.
HAS_REUSE_PORT = hasattr(socket, "SO_REUSEPORT")
REUSE_PORT_BALANCES = sys.platform.startswith(("linux", "dragonfly"))
#: Where this process's current resident set size is (Linux); elsewhere only its peak is known.
STATM = "/proc/self/statm" if os.path.exists("/proc/self/statm") else None


#: Filesystems whose changes made on the other side (the Windows host of WSL, the Mac of Docker
#: Desktop, a file server, a VM host) reach no inotify watch here: --reload polls them.
POLLED_FILESYSTEMS = frozenset(
    {
        "9p",  # WSL 2's /mnt/c
        "drvfs",  # WSL 1's /mnt/c
        "virtiofs",  # Docker Desktop, Lima, Podman machine host mounts
        "fakeowner",  # Docker Desktop for Mac (virtiofs, as containers see it)
        "fuse.grpcfuse",  # older Docker Desktop
        "osxfs",  # older still
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "fuse.sshfs",
        "vboxsf",  # VirtualBox shared folders (Vagrant)
        "fuse.vmhgfs-fuse",  # VMware shared folders
        "prl_fs",  # Parallels shared folders
    }
)


def filesystem_type(path: Path, mountinfo: str) -> str:
    """The type of the filesystem `path` is on, from /proc/self/mountinfo's text (proc(5)): the
    mount with the longest mount point that contains the path."""
    best, kind = -1, ""
    for line in mountinfo.splitlines():
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        mount_point = Path(parts[4].replace("\\040", " "))
        if path.is_relative_to(mount_point) and len(mount_point.parts) > best:
            best, kind = len(mount_point.parts), rest.split()[0]
    return kind


def polling_for(mode: str) -> Callable[[Path], bool]:
    """The `reload_polling` setting as a question per watched directory: poll it?"""
    forced = os.environ.get("WATCHFILES_FORCE_POLLING")
    if mode == "auto" and forced:  # watchfiles' own switch, read as watchfiles reads it
        mode = "off" if forced.lower() in ("false", "disable", "disabled") else "on"
    if mode != "auto":
        return lambda path: mode == "on"
    try:
        with open("/proc/self/mountinfo") as f:
            mountinfo = f.read()
    except OSError:  # not Linux: macOS's FSEvents and Windows' change notifications
        return lambda path: False
    return lambda path: filesystem_type(path, mountinfo) in POLLED_FILESYSTEMS


def event_loop(choice: str) -> str:
    """The `event_loop` setting as the workers run it: 'auto' is epoll where the kernel has it."""
    if choice == "auto":
        return "epoll" if HAS_EPOLL else "selectors"
    return choice


def wake_pipe() -> tuple[int, int]:
    """A non-blocking pipe closed on exec, for signals and threads to wake a loop. pipe2() makes it
    in one call; macOS has no pipe2, and os.pipe()'s ends are already not inheritable (PEP 446)."""
    if hasattr(os, "pipe2"):
        return os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    return read_end, write_end


def resident_memory() -> int:
    """Bytes of memory this process holds, for max_worker_memory.

    Linux: the current RSS, from /proc. Elsewhere the peak RSS getrusage() reports, which never
    goes down: a worker that once grew past the limit is recycled, which is what the limit is for
    (CPython seldom gives memory back to the system anyway). 0 where neither exists (Windows, where
    one process serves and there is nothing to recycle).
    """
    if STATM is not None:
        with open(STATM, "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return peak_memory()


def peak_memory() -> int:
    """The most memory this process has held, in bytes (ru_maxrss: bytes on macOS, KiB elsewhere)."""
    try:
        import resource
    except ImportError:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def die_with_parent(parent: int) -> None:
    """SIGTERM this process when `parent` dies, so a killed supervisor leaves no server behind.

    Linux: the kernel does it (PR_SET_PDEATHSIG). Elsewhere a daemon thread notices, within a
    second, that the parent changed (getppid: an orphan is adopted by another process).
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError, TypeError):
        watch_parent(parent)
    else:
        if os.getppid() != parent:  # it died before prctl took effect
            os._exit(0)


def watch_parent(parent: int, interval: float = 1.0) -> None:
    """The portable half of die_with_parent: a thread that polls getppid()."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="prodserve-parent-watch", daemon=True).start()
