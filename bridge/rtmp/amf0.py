"""AMF0 codec (Adobe "Action Message Format -- AMF 0" specification; rtmp.md §6).

RTMP commands and data messages are a sequence of AMF0 values: name, transaction id,
command object, arguments. `decode` returns them all; `encode` builds one such sequence.

Decoding treats every byte as hostile: lengths and counts are checked against the bytes
left before allocating, count hints (ECMA array) are ignored, nesting and the total number
of values are bounded, and only `AmfError` escapes. A reference (0x07) returns the earlier
value itself; references to a value still being decoded (a cycle) are refused and a
referenced value's size is charged again to the budget, so the result is always a bounded
tree that can be re-encoded safely.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from bridge.rtmp import amf3
from bridge.rtmp.amfvalues import (
    DEPTH_CEILING,
    UNDEFINED,
    AmfDate,
    Budget,
    EcmaArray,
    TypedObject,
    Undefined,
    XmlDocument,
    check_max_depth,
)
from bridge.rtmp.errors import AmfError

__all__ = [
    "UNDEFINED",
    "AmfDate",
    "AmfError",
    "EcmaArray",
    "TypedObject",
    "Undefined",
    "XmlDocument",
    "decode",
    "decode_one",
    "encode",
]

NUMBER = 0x00
BOOLEAN = 0x01
STRING = 0x02
OBJECT = 0x03
NULL = 0x05
UNDEFINED_MARKER = 0x06
REFERENCE = 0x07
ECMA_ARRAY = 0x08
OBJECT_END = 0x09
STRICT_ARRAY = 0x0A
DATE = 0x0B
LONG_STRING = 0x0C
UNSUPPORTED = 0x0D
XML_DOCUMENT = 0x0F
TYPED_OBJECT = 0x10
AVMPLUS = 0x11

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DOUBLE = struct.Struct(">d")
_DATE = struct.Struct(">dh")
_NUMBER_VALUE = struct.Struct(">Bd")
_SHORT_HEADER = struct.Struct(">BH")
_LONG_HEADER = struct.Struct(">BI")
_END = b"\x00\x00\x09"


# --------------------------------------------------------------------------- decoding


def decode(data: bytes | memoryview, *, max_depth: int = 64, max_items: int = 65536) -> list[Any]:
    """Decode every AMF0 value in `data`, in order. Raises AmfError on anything malformed."""
    check_max_depth(max_depth)
    decoder = _Decoder(_as_bytes(data), 0, max_depth, Budget(max_items))
    end = len(decoder.data)
    values = []
    while decoder.pos < end:
        values.append(decoder.first_value())
    return values


def decode_one(
    data: bytes | memoryview, offset: int = 0, *, max_depth: int = 64, max_items: int = 65536
) -> tuple[Any, int]:
    """Decode the one AMF0 value at `offset`; return it and the offset after it."""
    check_max_depth(max_depth)
    raw = _as_bytes(data)
    if not 0 <= offset <= len(raw):
        raise ValueError("offset outside the buffer")
    decoder = _Decoder(raw, offset, max_depth, Budget(max_items))
    return decoder.first_value(), decoder.pos


def _as_bytes(data: bytes | memoryview) -> bytes:
    return data if isinstance(data, bytes) else bytes(data)


class _Decoder:
    __slots__ = ("budget", "costs", "data", "max_depth", "pos", "refs")

    def __init__(self, data: bytes, pos: int, max_depth: int, budget: Budget) -> None:
        self.data = data
        self.pos = pos
        self.max_depth = max_depth
        self.budget = budget
        # Complex values in order of appearance, for 0x07 references [AMF0 spec 2.9], and
        # their (items, encoded bytes); None while the value is still being decoded.
        self.refs: list[Any] = []
        self.costs: list[tuple[int, int] | None] = []

    def _take(self, n: int) -> bytes:
        pos = self.pos
        if n > len(self.data) - pos:
            raise AmfError("truncated AMF0 value")
        self.pos = pos + n
        return self.data[pos : pos + n]

    def _u8(self) -> int:
        pos = self.pos
        if pos >= len(self.data):
            raise AmfError("truncated AMF0 value")
        self.pos = pos + 1
        return self.data[pos]

    def _u16(self) -> int:
        return int(_U16.unpack(self._take(2))[0])

    def _u32(self) -> int:
        return int(_U32.unpack(self._take(4))[0])

    def _utf8(self, n: int) -> str:
        try:
            return self._take(n).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AmfError("invalid UTF-8 in AMF0 string") from exc

    def first_value(self) -> Any:
        try:
            return self.value(0)
        except RecursionError as exc:
            # Only reachable when the caller's stack is already deep: max_depth keeps ours short.
            raise AmfError("AMF0 nesting too deep for the Python stack") from exc

    def value(self, depth: int) -> Any:
        if depth > self.max_depth:
            raise AmfError("AMF0 nesting too deep")
        self.budget.spend_items(1)
        start = self.pos
        marker = self._u8()
        if marker == STRING:
            return self._utf8(self._u16())
        if marker == NUMBER:
            return _DOUBLE.unpack(self._take(8))[0]
        if marker == BOOLEAN:
            return self._u8() != 0
        if marker == NULL:
            return None
        if marker in (UNDEFINED_MARKER, UNSUPPORTED):
            return UNDEFINED
        if marker == LONG_STRING:
            return self._utf8(self._u32())
        if marker == XML_DOCUMENT:
            return XmlDocument(self._utf8(self._u32()))
        if marker == DATE:
            millis, timezone = _DATE.unpack(self._take(10))
            return AmfDate(millis, timezone)
        if marker == REFERENCE:
            return self._deref(self._u16())
        if marker == AVMPLUS:
            tables = amf3.Amf3Tables(self.budget)
            result, self.pos = amf3.decode_value(
                self.data, self.pos, depth=depth, max_depth=self.max_depth, tables=tables
            )
            return result
        if marker == OBJECT:
            slot = self._open(start)
            return self._close(slot, self._pairs({}, depth))
        if marker == ECMA_ARRAY:
            self._u32()  # count: only a hint, often wrong, so never trusted
            slot = self._open(start)
            return self._close(slot, self._pairs(EcmaArray(), depth))
        if marker == STRICT_ARRAY:
            count = self._u32()
            # Every value takes at least one byte: refuse a lying count before the loop.
            if count > len(self.data) - self.pos or count > self.budget.items_left:
                raise AmfError("AMF0 strict array count exceeds the data")
            slot = self._open(start)
            # A plain loop, not a comprehension: one Python frame per nesting level, not two.
            items = []
            for _ in range(count):
                items.append(self.value(depth + 1))
            return self._close(slot, items)
        if marker == TYPED_OBJECT:
            class_name = self._utf8(self._u16())
            slot = self._open(start)
            return self._close(slot, TypedObject(class_name, self._pairs({}, depth)))
        if marker == OBJECT_END:
            raise AmfError("AMF0 object-end marker where a value was expected")
        raise AmfError(f"unknown AMF0 marker 0x{marker:02x}")

    def _pairs(self, target: dict[str, Any], depth: int) -> dict[str, Any]:
        """Read (u16 key, value) pairs up to 00 00 09. An empty key followed by something
        other than 0x09 is an ordinary property named "", as librtmp reads it."""
        data = self.data
        while True:
            pos = self.pos
            if data[pos : pos + 3] == _END:
                self.pos = pos + 3
                return target
            key = self._utf8(self._u16())
            target[key] = self.value(depth + 1)

    def _open(self, start: int) -> tuple[int, int, int, int]:
        """Take the next reference index; it is assigned before the children's."""
        self.refs.append(None)
        self.costs.append(None)
        budget = self.budget
        return len(self.refs) - 1, start, budget.items_left, budget.ref_bytes_left

    def _close(self, slot: tuple[int, int, int, int], value: Any) -> Any:
        index, start, items_before, ref_bytes_before = slot
        budget = self.budget
        items = items_before - budget.items_left + 1  # +1: the value itself
        size = self.pos - start + ref_bytes_before - budget.ref_bytes_left
        self.refs[index] = value
        self.costs[index] = (items, size)
        return value

    def _deref(self, index: int) -> Any:
        if index >= len(self.refs):
            raise AmfError("AMF0 reference out of range")
        cost = self.costs[index]
        if cost is None:
            raise AmfError("circular AMF0 reference")
        self.budget.spend_items(cost[0])
        self.budget.spend_ref_bytes(cost[1])
        return self.refs[index]


# --------------------------------------------------------------------------- encoding


def encode(*values: Any) -> bytes:
    """Encode values as consecutive AMF0 values.

    Raises TypeError for a type AMF0 cannot carry and ValueError for a value it cannot
    (key over 65535 bytes, number out of float range, nesting too deep or cyclic).
    """
    out: list[bytes] = []
    for value in values:
        _encode_into(out, value, 0)
    return b"".join(out)


def _encode_into(out: list[bytes], value: Any, depth: int) -> None:
    if depth > DEPTH_CEILING:
        raise ValueError("AMF0 value nested too deeply (or cyclic)")
    if value is None:
        out.append(b"\x05")
    elif isinstance(value, bool):  # before int: bool is an int
        out.append(b"\x01\x01" if value else b"\x01\x00")
    elif isinstance(value, (int, float)):
        try:
            out.append(_NUMBER_VALUE.pack(NUMBER, float(value)))
        except OverflowError as exc:
            raise ValueError(f"number out of AMF0 range: {value}") from exc
    elif isinstance(value, XmlDocument):  # before str: it is a str
        raw = value.encode("utf-8")
        out.append(_LONG_HEADER.pack(XML_DOCUMENT, _check_u32(len(raw))))
        out.append(raw)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) <= 0xFFFF:
            out.append(_SHORT_HEADER.pack(STRING, len(raw)))
        else:
            out.append(_LONG_HEADER.pack(LONG_STRING, _check_u32(len(raw))))
        out.append(raw)
    elif isinstance(value, Undefined):
        out.append(b"\x06")
    elif isinstance(value, EcmaArray):  # before Mapping: it is a dict
        out.append(_LONG_HEADER.pack(ECMA_ARRAY, _check_u32(len(value))))
        _encode_pairs(out, value, depth)
    elif isinstance(value, Mapping):
        out.append(b"\x03")
        _encode_pairs(out, value, depth)
    elif isinstance(value, (list, tuple)):
        out.append(_LONG_HEADER.pack(STRICT_ARRAY, _check_u32(len(value))))
        for item in value:
            _encode_into(out, item, depth + 1)
    elif isinstance(value, TypedObject):
        out.append(bytes((TYPED_OBJECT,)))
        out.append(_short_utf8(value.class_name, "class name"))
        _encode_pairs(out, value.fields, depth)
    elif isinstance(value, AmfDate):
        try:
            out.append(bytes((DATE,)) + _DATE.pack(value.milliseconds, value.timezone))
        except (struct.error, OverflowError) as exc:
            raise ValueError(f"AMF0 date out of range: {value}") from exc
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def _encode_pairs(out: list[bytes], mapping: Mapping[Any, Any], depth: int) -> None:
    for key, item in mapping.items():
        if not isinstance(key, str):
            raise TypeError(f"AMF0 object keys must be str, not {type(key).__name__}")
        out.append(_short_utf8(key, "object key"))
        _encode_into(out, item, depth + 1)
    out.append(_END)


def _short_utf8(text: str, what: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError(f"AMF0 {what} longer than 65535 bytes")
    return _U16.pack(len(raw)) + raw


def _check_u32(n: int) -> int:
    if n > 0xFFFFFFFF:
        raise ValueError("AMF0 length over 2**32 - 1")
    return n
