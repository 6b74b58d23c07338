"""The GOP cache: the units from the latest keyframe on, so a new reader starts at once."""

from __future__ import annotations

from bridge.media.units import MediaUnit


class GopCache:
    """Holds the current group of pictures, bounded in bytes.

    A GOP that outgrows the bound is dropped whole (a partial GOP is useless to a decoder);
    readers that join before the next keyframe then wait for it, as nginx-rtmp readers do.
    """

    __slots__ = ("max_bytes", "units", "bytes", "_overflow")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.units: list[MediaUnit] = []
        self.bytes = 0
        self._overflow = False

    def add(self, unit: MediaUnit, starts_gop: bool) -> None:
        if self.max_bytes <= 0:
            return
        size = unit.size
        if starts_gop:
            if size > self.max_bytes:
                self.clear()
                self._overflow = True
                return
            self.units = [unit]
            self.bytes = size
            self._overflow = False
            return
        if self._overflow or not self.units:
            return
        if self.bytes + size > self.max_bytes:
            self.clear()
            self._overflow = True
            return
        self.units.append(unit)
        self.bytes += size

    def clear(self) -> None:
        self.units = []
        self.bytes = 0
