"""Worker heartbeats in shared memory: no file, no disk that can block (gunicorn's FAQ problem)."""

from __future__ import annotations

import mmap
import struct
import time

SLOT = struct.Struct("d")


class Heartbeat:
    """One monotonic timestamp per worker slot, in an anonymous mapping shared across fork()."""

    def __init__(self, slots: int = 1024) -> None:
        self.slots = slots
        self._map = mmap.mmap(-1, SLOT.size * slots)

    def beat(self, slot: int) -> None:
        SLOT.pack_into(self._map, slot * SLOT.size, time.monotonic())

    def last(self, slot: int) -> float:
        return SLOT.unpack_from(self._map, slot * SLOT.size)[0]
