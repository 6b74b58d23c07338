"""Python values for the AMF types that have no plain Python equivalent, shared by amf0 and amf3.

Also the decode budget both decoders draw from, so an AMF0 message that switches to AMF3
(avmplus marker 0x11) is bounded as one whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bridge.rtmp.errors import AmfError

# Hard ceiling on max_depth: the decoders recurse (about two Python frames per level), so a
# caller's max_depth must stay well under the interpreter's recursion limit.
DEPTH_CEILING = 200

# References (AMF0 0x07, AMF3 object/string references) let a small message describe a huge
# tree (each level referencing the previous one twice doubles it). Whoever re-encodes or logs
# such a value pays for the expanded size, so the expansion is charged to the budget: the
# items of a referenced value count again, and its encoded size counts against this cap.
MAX_REFERENCED_BYTES = 16 * 1024 * 1024


class Undefined:
    """AMF `undefined`: a falsy singleton, distinct from None (AMF null)."""

    _instance: Undefined | None = None
    __slots__ = ()

    def __new__(cls) -> Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __reduce__(self) -> str:
        return "UNDEFINED"


UNDEFINED = Undefined()


class EcmaArray(dict[str, Any]):
    """An AMF0 ECMA array (associative array), e.g. the body of onMetaData.

    A dict in every respect; the subclass only remembers to encode it back as 0x08.
    """

    def __repr__(self) -> str:
        return f"EcmaArray({dict.__repr__(self)})"


class XmlDocument(str):
    """An AMF XML document: the text, tagged so it encodes back as XML rather than a string."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class AmfDate:
    """An AMF date: milliseconds since the Unix epoch (UTC) and a timezone the spec says
    to ignore (AMF0 writes it as s16 minutes, AMF3 has none)."""

    milliseconds: float
    timezone: int = 0


@dataclass(frozen=True, slots=True)
class TypedObject:
    """An object with a class name (AMF0 0x10, or an AMF3 object with non-empty class)."""

    class_name: str
    fields: dict[str, Any] = field(default_factory=dict)


class Budget:
    """What is left of one decode's limits on values and on bytes created by references."""

    __slots__ = ("items_left", "ref_bytes_left")

    def __init__(self, max_items: int, max_ref_bytes: int = MAX_REFERENCED_BYTES) -> None:
        self.items_left = max_items
        self.ref_bytes_left = max_ref_bytes

    def spend_items(self, n: int) -> None:
        self.items_left -= n
        if self.items_left < 0:
            raise AmfError("too many AMF values")

    def spend_ref_bytes(self, n: int) -> None:
        self.ref_bytes_left -= n
        if self.ref_bytes_left < 0:
            raise AmfError("references expand to too much data")


def check_max_depth(max_depth: int) -> None:
    """Refuse a max_depth the recursive decoders could not honour (a caller bug)."""
    if not 0 <= max_depth <= DEPTH_CEILING:
        raise ValueError(f"max_depth must be between 0 and {DEPTH_CEILING}")
