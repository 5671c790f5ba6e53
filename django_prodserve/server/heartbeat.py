"""Worker heartbeats in shared memory: no file, no disk that can block (gunicorn's FAQ problem).

Each worker slot holds a monotonic timestamp (the last beat) and a flag the worker raises when it
retires by itself (max_requests, memory, lifetime), so the master starts its replacement at once.
The master also writes how many workers share the listening sockets now, and each taking worker's
pid; each worker writes how many connections it holds, so workers can share clients fairly.
"""

from __future__ import annotations

import mmap
import struct
import time

STAMP = struct.Struct("d")
COUNT = struct.Struct("q")
SLOT_INT = struct.Struct("i")


class Heartbeat:
    """An anonymous mapping shared across fork(): per slot a timestamp, a flag byte, a pid and a
    connection count; then the number of workers and how many slots are in use."""

    def __init__(self, slots: int = 1024) -> None:
        self.slots = slots
        self._flags = STAMP.size * slots
        self._pids = self._flags + slots
        self._conns = self._pids + SLOT_INT.size * slots
        self._count = self._conns + SLOT_INT.size * slots
        self._span = self._count + COUNT.size
        self._map = mmap.mmap(-1, self._span + COUNT.size)

    def beat(self, slot: int) -> None:
        STAMP.pack_into(self._map, slot * STAMP.size, time.monotonic())

    def last(self, slot: int) -> float:
        return STAMP.unpack_from(self._map, slot * STAMP.size)[0]

    def reset(self, slot: int) -> float:
        """A fresh slot for a new worker: beat now, flag down. Returns the stamp."""
        self._map[self._flags + slot] = 0
        self.set_connections(slot, 0)
        self.beat(slot)
        return self.last(slot)

    def retire(self, slot: int) -> None:
        self._map[self._flags + slot] = 1

    def retiring(self, slot: int) -> bool:
        return self._map[self._flags + slot] == 1

    def set_workers(self, count: int, span: int) -> None:
        """The master: this many worker processes are running (old generations included), all
        in slots below `span`."""
        COUNT.pack_into(self._map, self._count, count)
        COUNT.pack_into(self._map, self._span, span)

    def workers(self) -> int:
        return COUNT.unpack_from(self._map, self._count)[0]

    def set_pid(self, slot: int, pid: int) -> None:
        """The master: the worker in `slot` takes clients (pid), or no longer does (0)."""
        SLOT_INT.pack_into(self._map, self._pids + slot * SLOT_INT.size, pid)

    def set_connections(self, slot: int, count: int) -> None:
        SLOT_INT.pack_into(self._map, self._conns + slot * SLOT_INT.size, count)

    def connections(self, slot: int) -> int:
        return SLOT_INT.unpack_from(self._map, self._conns + slot * SLOT_INT.size)[0]

    def lightest_sibling(self, slot: int) -> tuple[int, int, int] | None:
        """(slot, pid, connections) of the taking worker other than `slot`'s with the fewest
        connections; None when there is no other."""
        span = COUNT.unpack_from(self._map, self._span)[0]
        ints = _ints.get(span) or _ints.setdefault(span, struct.Struct(f"{span}i"))
        conns = ints.unpack_from(self._map, self._conns)
        best = None
        fewest = 1 << 31
        for other, count in enumerate(conns):
            if count < fewest and other != slot:
                pid = SLOT_INT.unpack_from(self._map, self._pids + other * SLOT_INT.size)[0]
                if pid:
                    best, fewest = (other, pid, count), count
        return best


_ints: dict[int, struct.Struct] = {}  # span → the Struct of that many ints
