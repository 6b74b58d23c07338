"""AMF3 decoding (Adobe "Action Message Format -- AMF 3" specification).

Decode only: the server always answers in AMF0. AMF3 reaches us as one value after the AMF0
avmplus marker 0x11 (rtmp.md §5, §6), so amf0 calls `decode_value` with fresh `Amf3Tables`.

Choices a peer cannot exploit:
- every length and count is checked against the bytes left before anything is allocated;
- nesting depth and the total number of values are bounded (shared with the AMF0 caller);
- a reference to an object still being decoded (a cycle) is refused, and references are
  charged their expanded size, so the result is always a finite tree of bounded size.

Value mapping: undefined -> UNDEFINED, null -> None, integer -> int, double -> float,
string -> str, xml/xml-doc -> XmlDocument, date -> AmfDate(ms, 0), array -> list (or
EcmaArray when it has an associative part), object -> dict (TypedObject when it has a class
name), byte-array -> bytes, vectors -> list, dictionary -> dict.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from bridge.rtmp.amfvalues import (
    UNDEFINED,
    AmfDate,
    Budget,
    EcmaArray,
    TypedObject,
    XmlDocument,
    check_max_depth,
)
from bridge.rtmp.errors import AmfError

_DOUBLE = struct.Struct(">d")

# vector-int, vector-uint, vector-double: struct code and size of one element.
_VECTOR_ITEMS = {0x0D: ("i", 4), 0x0E: ("I", 4), 0x0F: ("d", 8)}

_INT29_SIGN = 0x10000000
_INT29_SPAN = 0x20000000


@dataclass(frozen=True, slots=True)
class _Traits:
    class_name: str
    sealed: tuple[str, ...]
    dynamic: bool


class Amf3Tables:
    """The three AMF3 reference tables (strings, objects, traits) of one decode, plus the
    budget they draw from. Pass the same instance to successive `decode_value` calls that
    share reference tables."""

    __slots__ = ("budget", "object_costs", "objects", "string_sizes", "strings", "traits")

    def __init__(self, budget: Budget | None = None, *, max_items: int = 65536) -> None:
        self.budget = budget if budget is not None else Budget(max_items)
        self.strings: list[str] = []
        self.string_sizes: list[int] = []
        self.objects: list[Any] = []
        # (items, encoded bytes) of each finished object; None while it is being decoded.
        self.object_costs: list[tuple[int, int] | None] = []
        self.traits: list[_Traits] = []


def read_u29(data: bytes | memoryview, offset: int) -> tuple[int, int]:
    """Read an AMF3 U29 (1-4 bytes, 7 bits per byte then a full 8-bit fourth byte)."""
    result = 0
    end = len(data)
    for _ in range(3):
        if offset >= end:
            raise AmfError("truncated AMF3 U29")
        b = data[offset]
        offset += 1
        if b < 0x80:
            return (result << 7) | b, offset
        result = (result << 7) | (b & 0x7F)
    if offset >= end:
        raise AmfError("truncated AMF3 U29")
    return (result << 8) | data[offset], offset + 1


def decode_value(
    data: bytes | memoryview,
    offset: int,
    *,
    depth: int = 0,
    max_depth: int = 64,
    tables: Amf3Tables | None = None,
    max_items: int = 65536,
) -> tuple[Any, int]:
    """Decode one AMF3 value at `offset`; return it and the offset after it.

    `max_items` only applies when no `tables` are given (otherwise their budget is used).
    Raises AmfError on anything malformed or over a limit.
    """
    check_max_depth(max_depth)
    if not isinstance(data, bytes):
        data = bytes(data)
    if not 0 <= offset <= len(data):
        raise ValueError("offset outside the buffer")
    if tables is None:
        tables = Amf3Tables(max_items=max_items)
    decoder = _Decoder(data, offset, max_depth, tables)
    try:
        value = decoder.value(depth)
    except RecursionError as exc:
        # Only reachable when the caller's stack is already deep: max_depth keeps ours short.
        raise AmfError("AMF3 nesting too deep for the Python stack") from exc
    return value, decoder.pos


class _Decoder:
    __slots__ = ("budget", "data", "max_depth", "pos", "tables")

    def __init__(self, data: bytes, pos: int, max_depth: int, tables: Amf3Tables) -> None:
        self.data = data
        self.pos = pos
        self.max_depth = max_depth
        self.tables = tables
        self.budget = tables.budget

    # -- primitives -------------------------------------------------------------------

    def _u8(self) -> int:
        pos = self.pos
        if pos >= len(self.data):
            raise AmfError("truncated AMF3 value")
        self.pos = pos + 1
        return self.data[pos]

    def _u29(self) -> int:
        value, self.pos = read_u29(self.data, self.pos)
        return value

    def _need(self, n: int) -> None:
        """Refuse a length or count the remaining bytes cannot possibly hold."""
        if n > len(self.data) - self.pos:
            raise AmfError("AMF3 length exceeds the data")

    def _take(self, n: int) -> bytes:
        self._need(n)
        pos = self.pos
        self.pos = pos + n
        return self.data[pos : pos + n]

    def _utf8(self, n: int) -> str:
        try:
            return self._take(n).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AmfError("invalid UTF-8 in AMF3 string") from exc

    def _string(self) -> str:
        """UTF-8-vr: an inline string or a string-table reference."""
        head = self._u29()
        tables = self.tables
        if not head & 1:
            index = head >> 1
            if index >= len(tables.strings):
                raise AmfError("AMF3 string reference out of range")
            self.budget.spend_ref_bytes(tables.string_sizes[index])
            return tables.strings[index]
        n = head >> 1
        text = self._utf8(n)
        if n:  # the empty string is never put in the table [AMF3 spec 1.3.2]
            tables.strings.append(text)
            tables.string_sizes.append(n)
        return text

    # -- object table -----------------------------------------------------------------

    def _deref(self, index: int) -> Any:
        tables = self.tables
        if index >= len(tables.objects):
            raise AmfError("AMF3 object reference out of range")
        cost = tables.object_costs[index]
        if cost is None:
            raise AmfError("circular AMF3 reference")
        self.budget.spend_items(cost[0])
        self.budget.spend_ref_bytes(cost[1])
        return tables.objects[index]

    def _open(self, start: int) -> tuple[int, int, int, int]:
        """Reserve the next object-table slot; its index is fixed before the children."""
        tables = self.tables
        tables.objects.append(None)
        tables.object_costs.append(None)
        budget = self.budget
        return len(tables.objects) - 1, start, budget.items_left, budget.ref_bytes_left

    def _close(self, slot: tuple[int, int, int, int], value: Any) -> Any:
        index, start, items_before, ref_bytes_before = slot
        budget = self.budget
        items = items_before - budget.items_left + 1  # +1: the value itself
        size = self.pos - start + ref_bytes_before - budget.ref_bytes_left
        self.tables.objects[index] = value
        self.tables.object_costs[index] = (items, size)
        return value

    # -- values -----------------------------------------------------------------------

    def value(self, depth: int) -> Any:
        if depth > self.max_depth:
            raise AmfError("AMF3 nesting too deep")
        self.budget.spend_items(1)
        start = self.pos
        marker = self._u8()
        if marker <= 0x03:
            return (UNDEFINED, None, False, True)[marker]
        if marker == 0x04:
            n = self._u29()
            return n - _INT29_SPAN if n & _INT29_SIGN else n
        if marker == 0x05:
            return _DOUBLE.unpack(self._take(8))[0]
        if marker == 0x06:
            return self._string()
        if marker > 0x11:
            raise AmfError(f"unknown AMF3 marker 0x{marker:02x}")

        # Everything else lives in the object table: a reference, or an inline value.
        head = self._u29()
        if not head & 1:
            return self._deref(head >> 1)
        slot = self._open(start)
        n = head >> 1
        if marker in (0x07, 0x0B):  # xml-doc, xml
            result: Any = XmlDocument(self._utf8(n))
        elif marker == 0x08:  # date: the rest of the U29 is unused
            result = AmfDate(_DOUBLE.unpack(self._take(8))[0], 0)
        elif marker == 0x09:
            result = self._array(n, depth)
        elif marker == 0x0A:
            result = self._object(head, depth)
        elif marker == 0x0C:
            result = self._take(n)
        elif marker == 0x10:
            result = self._vector_object(n, depth)
        elif marker == 0x11:
            result = self._dictionary(n, depth)
        else:
            result = self._vector_number(marker, n)
        return self._close(slot, result)

    def _array(self, dense_count: int, depth: int) -> list[Any] | EcmaArray:
        self._need(dense_count)  # every value takes at least one byte
        assoc: dict[str, Any] = {}
        while True:
            key = self._string()
            if not key:
                break
            assoc[key] = self.value(depth + 1)
        dense = []
        for _ in range(dense_count):  # a loop, not a helper: Python frames per level stay at 2
            dense.append(self.value(depth + 1))
        if not assoc:
            return dense
        # ActionScript arrays are one property bag; dense slots are the keys "0", "1", ...
        mixed = EcmaArray((str(i), v) for i, v in enumerate(dense))
        mixed.update(assoc)
        return mixed

    def _object(self, head: int, depth: int) -> dict[str, Any] | TypedObject:
        tables = self.tables
        if not head & 0b10:
            index = head >> 2
            if index >= len(tables.traits):
                raise AmfError("AMF3 traits reference out of range")
            traits = tables.traits[index]
        elif head & 0b100:
            raise AmfError("externalizable not supported")
        else:
            count = head >> 4
            self._need(count)  # each sealed name takes at least one byte
            class_name = self._string()
            sealed = tuple(self._string() for _ in range(count))
            traits = _Traits(class_name, sealed, bool(head & 0b1000))
            tables.traits.append(traits)
        self._need(len(traits.sealed))
        fields: dict[str, Any] = {}
        for name in traits.sealed:
            fields[name] = self.value(depth + 1)
        if traits.dynamic:
            while True:
                key = self._string()
                if not key:
                    break
                fields[key] = self.value(depth + 1)
        if traits.class_name:
            return TypedObject(traits.class_name, fields)
        return fields

    def _vector_number(self, marker: int, count: int) -> list[Any]:
        self._u8()  # fixed-length flag: meaningless to us
        code, size = _VECTOR_ITEMS[marker]
        raw = self._take(count * size)
        self.budget.spend_items(count)
        return list(struct.unpack(f">{count}{code}", raw))

    def _vector_object(self, count: int, depth: int) -> list[Any]:
        self._u8()  # fixed-length flag
        self._string()  # element type name, e.g. "" for Vector.<*>
        self._need(count)
        items = []
        for _ in range(count):
            items.append(self.value(depth + 1))
        return items

    def _dictionary(self, count: int, depth: int) -> dict[Any, Any]:
        self._u8()  # weak-keys flag
        self._need(2 * count)
        result: dict[Any, Any] = {}
        for _ in range(count):
            key = self.value(depth + 1)
            item = self.value(depth + 1)
            try:
                result[key] = item
            except TypeError as exc:
                raise AmfError("unhashable AMF3 dictionary key") from exc
        return result
