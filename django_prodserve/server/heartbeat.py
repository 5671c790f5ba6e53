"""Worker heartbeats in shared memory: no file, no disk that can block (gunicorn's FAQ problem).

Each worker slot holds a monotonic timestamp (the last beat) and a flag the worker raises when it
retires by itself (max_requests, memory, lifetime), so the master starts its replacement at once.
One more field, written by the master, says how many workers share the listening sockets now.
"""

from __future__ import annotations

import mmap
import struct
import time

STAMP = struct.Struct("d")
COUNT = struct.Struct("q")


class Heartbeat:
    """An anonymous mapping shared across fork(): timestamps, one flag byte per slot, a count."""

    def __init__(self, slots: int = 1024) -> None:
        self.slots = slots
        self._flags = STAMP.size * slots
        self._count = self._flags + slots
        self._map = mmap.mmap(-1, self._count + COUNT.size)

    def beat(self, slot: int) -> None:
        STAMP.pack_into(self._map, slot * STAMP.size, time.monotonic())

    def last(self, slot: int) -> float:
        return STAMP.unpack_from(self._map, slot * STAMP.size)[0]

    def reset(self, slot: int) -> float:
        """A fresh slot for a new worker: beat now, flag down. Returns the stamp."""
        self._map[self._flags + slot] = 0
        self.beat(slot)
        return self.last(slot)

    def retire(self, slot: int) -> None:
        self._map[self._flags + slot] = 1

    def retiring(self, slot: int) -> bool:
        return self._map[self._flags + slot] == 1

    def set_workers(self, count: int) -> None:
        """The master: this many worker processes are running (old generations included)."""
        COUNT.pack_into(self._map, self._count, count)

    def workers(self) -> int:
        return COUNT.unpack_from(self._map, self._count)[0]
