"""Timestamp arithmetic shared by inputs: unwrapping 32-bit RTMP clocks."""

from __future__ import annotations

_WRAP = 1 << 32
_HALF = 1 << 31


class Unwrapper:
    """Turns a wrapping 32-bit millisecond clock into an unbounded one.

    Adjacent values are compared with serial arithmetic (RTMP 1.0 §4: within 2^31-1 of each
    other), so a small step back stays a step back instead of becoming a jump of 49 days.
    """

    __slots__ = ("_last_raw", "_value")

    def __init__(self) -> None:
        self._last_raw: int | None = None
        self._value = 0

    def unwrap(self, raw: int) -> int:
        raw &= 0xFFFFFFFF
        if self._last_raw is None:
            self._value = raw
        else:
            delta = (raw - self._last_raw) % _WRAP
            if delta >= _HALF:
                delta -= _WRAP
            self._value += delta
        self._last_raw = raw
        return self._value
