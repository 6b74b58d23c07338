"""Unwrapping 32-bit RTMP millisecond clocks (bridge.media.timestamps)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.media.timestamps import Unwrapper

WRAP = 1 << 32


@pytest.mark.parametrize(
    ("raws", "expected"),
    [
        # The first value is kept as is, whatever it is.
        ([0], [0]),
        ([123456789], [123456789]),
        ([0xFFFFFFF0], [0xFFFFFFF0]),
        # A wrap goes forward by the distance travelled modulo 2^32.
        ([0xFFFFFFF0, 0x10], [0xFFFFFFF0, 0xFFFFFFF0 + 0x20]),
        ([0xFFFFFFFF, 0, 1], [0xFFFFFFFF, WRAP, WRAP + 1]),
        # Two wraps in a row keep counting.
        (
            [0xFFFFFF00, 0x7FFFFE00, 0xFFFFFD00, 0x100],
            [0xFFFFFF00, WRAP + 0x7FFFFE00, WRAP + 0xFFFFFD00, 2 * WRAP + 0x100],
        ),
        # A small step back stays a small step back (not +49 days).
        ([1000, 990], [1000, 990]),
        ([0x10, 0xFFFFFFF0], [0x10, -0x10]),
        ([0xFFFFFFF0, 0x10, 0xFFFFFFF8], [0xFFFFFFF0, WRAP + 0x10, WRAP - 8]),
        # Repeats are fine.
        ([5, 5, 5], [5, 5, 5]),
        # Bits above 32 are ignored (the field is 32 bits).
        ([WRAP + 7], [7]),
    ],
)
def test_unwrap_table(raws: list[int], expected: list[int]) -> None:
    unwrapper = Unwrapper()
    assert [unwrapper.unwrap(raw) for raw in raws] == expected


def test_step_of_just_under_half_range_goes_forward_and_half_goes_back() -> None:
    forward = Unwrapper()
    forward.unwrap(0)
    assert forward.unwrap((1 << 31) - 1) == (1 << 31) - 1
    back = Unwrapper()
    back.unwrap(0)
    assert back.unwrap(1 << 31) == -(1 << 31)


@given(
    start=st.integers(0, 0xFFFFFFFF),
    steps=st.lists(st.integers(-(1 << 31) + 1, (1 << 31) - 1), max_size=50),
)
def test_unwrapped_deltas_equal_true_deltas(start: int, steps: list[int]) -> None:
    """Feed a true (unbounded) clock truncated to 32 bits: the output is the true clock."""
    unwrapper = Unwrapper()
    true = start
    assert unwrapper.unwrap(true & 0xFFFFFFFF) == true
    for step in steps:
        true += step
        assert unwrapper.unwrap(true & 0xFFFFFFFF) == true
