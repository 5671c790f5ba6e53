"""Worker heartbeats in shared memory: no file, no disk that can block (gunicorn's FAQ problem).

Each worker slot holds a monotonic timestamp (the last beat) and a flag the worker raises when it
retires by itself (max_requests, memory, lifetime), so the master starts its replacement at once.
"""

from __future__ import annotations

import mmap
import struct
import time

STAMP = struct.Struct("d")


class Heartbeat:
    """An anonymous mapping shared across fork(): timestamps first, then one flag byte per slot."""

    def __init__(self, slots: int = 1024) -> None:
        self.slots = slots
        self._map = mmap.mmap(-1, (STAMP.size + 1) * slots)
        self._flags = STAMP.size * slots

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
