"""The GOP cache: the units from the latest keyframe on, so a new reader starts at once."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar


class Sized(Protocol):
    @property
    def size(self) -> int: ...


T = TypeVar("T", bound=Sized)


class GopCache(Generic[T]):
    """Holds the current group of pictures, bounded in bytes.

    A GOP that outgrows the bound is dropped whole (a partial GOP is useless to a decoder);
    readers that join before the next keyframe then wait for it, as nginx-rtmp readers do.
    The bus keeps media units; outputs may keep their own converted forms (WebRTC packets).
    """

    __slots__ = ("max_bytes", "units", "bytes", "_overflow")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.units: list[T] = []
        self.bytes = 0
        self._overflow = False

    def add(self, unit: T, starts_gop: bool) -> None:
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
