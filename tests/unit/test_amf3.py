"""AMF3 decoder: cases hand-assembled from the AMF3 specification, hostile inputs, fuzzing."""

from __future__ import annotations

import struct
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.rtmp import amf0
from bridge.rtmp.amf3 import Amf3Tables, decode_value, read_u29
from bridge.rtmp.amfvalues import UNDEFINED, AmfDate, EcmaArray, TypedObject, XmlDocument
from bridge.rtmp.errors import AmfError


def f64(x: float) -> bytes:
    return struct.pack(">d", x)


def u29(n: int) -> bytes:
    """Test-side U29 writer, for cases too big to spell out (checked against the spec below)."""
    if n < 0x80:
        return bytes([n])
    if n < 0x4000:
        return bytes([0x80 | n >> 7, n & 0x7F])
    if n < 0x200000:
        return bytes([0x80 | n >> 14, 0x80 | (n >> 7) & 0x7F, n & 0x7F])
    return bytes([0x80 | n >> 22, 0x80 | (n >> 15) & 0x7F, 0x80 | (n >> 8) & 0x7F, n & 0xFF])


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, TypedObject):
        return a.class_name == b.class_name and same(a.fields, b.fields)
    return bool(a == b)


def decode_all(raw: bytes) -> Any:
    value, end = decode_value(raw, 0)
    assert end == len(raw), "decoder did not consume exactly the value"
    return value


U29_FORMS = [
    ("1 byte zero", b"\x00", 0),
    ("1 byte max", b"\x7f", 0x7F),
    ("2 bytes min", b"\x81\x00", 0x80),
    ("2 bytes max", b"\xff\x7f", 0x3FFF),
    ("3 bytes min", b"\x81\x80\x00", 0x4000),
    ("3 bytes max", b"\xff\xff\x7f", 0x1FFFFF),
    ("4 bytes min", b"\x80\xc0\x80\x00", 0x200000),
    ("4 bytes max", b"\xff\xff\xff\xff", 0x1FFFFFFF),
    ("4 bytes, full last byte", b"\x80\x80\x80\xff", 0xFF),
]


@pytest.mark.parametrize(
    ("raw", "value"), [c[1:] for c in U29_FORMS], ids=[c[0] for c in U29_FORMS]
)
def test_u29_forms(raw: bytes, value: int) -> None:
    assert read_u29(raw + b"\xaa", 0) == (value, len(raw))  # the trailing byte is not read
    assert u29(value) == raw or value == 0xFF


CASES: list[tuple[str, bytes, Any]] = [
    ("undefined", b"\x00", UNDEFINED),
    ("null", b"\x01", None),
    ("false", b"\x02", False),
    ("true", b"\x03", True),
    ("integer 0", b"\x04\x00", 0),
    ("integer 127", b"\x04\x7f", 127),
    ("integer 128", b"\x04\x81\x00", 128),
    ("integer 2**21", b"\x04\x80\xc0\x80\x00", 0x200000),
    ("integer max", b"\x04\xbf\xff\xff\xff", 0x0FFFFFFF),
    ("integer -1 (U29 0x1FFFFFFF)", b"\x04\xff\xff\xff\xff", -1),
    ("integer -2", b"\x04\xff\xff\xff\xfe", -2),
    ("integer min", b"\x04\xc0\x80\x80\x00", -0x10000000),
    ("double", b"\x05" + f64(1.5), 1.5),
    ("empty string", b"\x06\x01", ""),
    ("string", b"\x06\x07abc", "abc"),
    ("utf-8 string", b"\x06\x05\xc3\xa9", "é"),
    ("xml-doc", b"\x07\x09<a/>", XmlDocument("<a/>")),
    ("xml", b"\x0b\x09<b/>", XmlDocument("<b/>")),
    ("date", b"\x08\x01" + f64(1e12), AmfDate(1e12, 0)),
    ("empty array", b"\x09\x01\x01", []),
    ("dense array", b"\x09\x05\x01\x04\x01\x06\x03a", [1, "a"]),
    # dense count 1, assoc "a"=1, end, dense 2
    ("mixed array", b"\x09\x03\x03a\x04\x01\x01\x04\x02", EcmaArray({"0": 2, "a": 1})),
    ("assoc-only array", b"\x09\x01\x03k\x01\x01", EcmaArray(k=None)),
    # traits 0b1011: inline, dynamic, 0 sealed; class ""; member a=1; end
    ("anonymous dynamic object", b"\x0a\x0b\x01\x03a\x04\x01\x01", {"a": 1}),
    # traits 0b10011: inline, sealed count 1; class "Foo"; member name "x"; value 5
    ("typed sealed object", b"\x0a\x13\x07Foo\x03x\x04\x05", TypedObject("Foo", {"x": 5})),
    # sealed "x" then dynamic "y"
    ("sealed and dynamic", b"\x0a\x1b\x01\x03x\x04\x01\x03y\x04\x02\x01", {"x": 1, "y": 2}),
    ("byte array", b"\x0c\x07\x01\x02\x03", b"\x01\x02\x03"),
    ("empty byte array", b"\x0c\x01", b""),
    ("vector int", b"\x0d\x05\x00\xff\xff\xff\xff\x00\x00\x00\x01", [-1, 1]),
    ("vector uint", b"\x0e\x05\x01\xff\xff\xff\xff\x00\x00\x00\x01", [0xFFFFFFFF, 1]),
    ("vector double", b"\x0f\x03\x00" + f64(-0.5), [-0.5]),
    ("vector object", b"\x10\x05\x00\x01\x04\x01\x06\x03a", [1, "a"]),
    ("typed vector object", b"\x10\x03\x00\x07Foo\x01", [None]),
    ("dictionary", b"\x11\x05\x00\x04\x01\x06\x03a\x06\x03b\x02", {1: "a", "b": False}),
]


@pytest.mark.parametrize(("raw", "value"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decode_table(raw: bytes, value: Any) -> None:
    assert same(decode_all(raw), value)


@pytest.mark.parametrize(("raw", "value"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decode_table_via_amf0_avmplus(raw: bytes, value: Any) -> None:
    assert same(amf0.decode(b"\x11" + raw + b"\x05"), [value, None])


def test_string_reference() -> None:
    # array of 2: "abc" inline, then string ref 0
    assert decode_all(b"\x09\x05\x01\x06\x07abc\x06\x00") == ["abc", "abc"]


def test_empty_string_is_never_in_the_table() -> None:
    # "", "abc", ref 0: the reference must mean "abc"
    assert decode_all(b"\x09\x07\x01\x06\x01\x06\x07abc\x06\x00") == ["", "abc", "abc"]


def test_member_names_and_class_names_share_the_string_table() -> None:
    # object class "Foo" with dynamic member "Foo" given as string ref 0
    assert same(
        decode_all(b"\x0a\x0b\x07Foo\x00\x04\x01\x01"),
        TypedObject("Foo", {"Foo": 1}),
    )


def test_traits_reference() -> None:
    first = b"\x0a\x13\x07Foo\x03x\x04\x05"
    second = b"\x0a\x01\x04\x06"  # 0b01: traits reference 0, then the sealed value
    got = decode_all(b"\x09\x05\x01" + first + second)
    assert same(got, [TypedObject("Foo", {"x": 5}), TypedObject("Foo", {"x": 6})])


def test_dynamic_traits_reference() -> None:
    first = b"\x0a\x0b\x01\x03a\x04\x01\x01"
    second = b"\x0a\x01\x03b\x04\x02\x01"  # same (dynamic) traits; its own dynamic members
    assert decode_all(b"\x09\x05\x01" + first + second) == [{"a": 1}, {"b": 2}]


def test_object_reference_is_the_same_object() -> None:
    # array is object 0, the dynamic object is object 1, then reference 1
    got = decode_all(b"\x09\x05\x01\x0a\x0b\x01\x03a\x04\x01\x01\x0a\x02")
    assert got == [{"a": 1}, {"a": 1}] and got[0] is got[1]


def test_dates_xml_and_byte_arrays_take_object_slots() -> None:
    items = b"\x08\x01" + f64(0.0) + b"\x0c\x03\xff" + b"\x07\x03x" + b"\x08\x02\x0c\x04\x0b\x06"
    got = decode_all(b"\x09\x0d\x01" + items)
    assert got == [
        AmfDate(0.0, 0),
        b"\xff",
        XmlDocument("x"),
        AmfDate(0.0, 0),
        b"\xff",
        XmlDocument("x"),
    ]


def test_tables_persist_across_calls_when_shared() -> None:
    raw = b"\x06\x07abc\x06\x00"
    tables = Amf3Tables()
    value, offset = decode_value(raw, 0, tables=tables)
    assert (value, offset) == ("abc", 5)
    assert decode_value(raw, offset, tables=tables) == ("abc", 7)
    with pytest.raises(AmfError):
        decode_value(raw, offset)  # fresh tables: nothing to refer to


def test_each_avmplus_value_gets_fresh_tables() -> None:
    assert amf0.decode(b"\x11\x06\x07abc\x11\x06\x07abc") == ["abc", "abc"]
    with pytest.raises(AmfError):
        amf0.decode(b"\x11\x06\x07abc\x11\x06\x00")


def test_memoryview_and_offset() -> None:
    raw = memoryview(b"junk\x04\x81\x00")
    assert decode_value(raw, 4) == (128, 7)


BAD: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("truncated U29", b"\x04\x80"),
    ("truncated 4-byte U29", b"\x04\xff\xff\xff"),
    ("truncated double", b"\x05\x00\x00"),
    ("unknown marker", b"\x12"),
    ("marker 0xff", b"\xff"),
    ("string length lies", b"\x06\x09ab"),
    ("invalid utf-8", b"\x06\x05\xff\xfe"),
    ("string reference out of range", b"\x06\x00"),
    ("object reference out of range", b"\x0a\x00"),
    ("traits reference out of range", b"\x0a\x01"),
    ("externalizable", b"\x0a\x07\x07Foo\x00"),
    ("externalizable via U29O-traits flag", b"\x0a\x0f\x07Foo"),
    ("circular array", b"\x09\x03\x01\x09\x00"),
    ("circular object", b"\x0a\x0b\x01\x03a\x0a\x00\x01"),
    ("unterminated dynamic object", b"\x0a\x0b\x01\x03a\x04\x01"),
    ("sealed values missing", b"\x0a\x23\x01\x03x\x03y\x04\x01"),
    ("array dense part short", b"\x09\x05\x01\x04\x01"),
    ("date truncated", b"\x08\x01\x00"),
    ("xml length lies", b"\x07\x21<a/>"),
    ("byte array length lies", b"\x0c\xff\xff\xff\x7f\x00"),
    ("vector int short", b"\x0d\x05\x00\x00\x00\x00\x01"),
    ("vector double short", b"\x0f\x03\x00\x00"),
    ("vector without fixed flag", b"\x0d\x01"),
    ("dictionary with list key", b"\x11\x03\x00\x09\x01\x01\x04\x01"),
    ("dictionary with dict key", b"\x11\x03\x00\x0a\x0b\x01\x01\x04\x01"),
    ("dictionary with typed object key", b"\x11\x03\x00\x0a\x03\x03T\x04\x01"),
    ("dictionary short", b"\x11\x05\x00\x04\x01\x04\x02"),
]


@pytest.mark.parametrize("raw", [c[1] for c in BAD], ids=[c[0] for c in BAD])
def test_decode_refuses(raw: bytes) -> None:
    with pytest.raises(AmfError):
        decode_value(raw, 0)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\x09\xff\xff\xff\xff\x01", id="array dense count"),
        pytest.param(b"\x0c\xff\xff\xff\xff", id="byte array length"),
        pytest.param(b"\x06\xff\xff\xff\xff", id="string length"),
        pytest.param(b"\x07\xff\xff\xff\xff", id="xml length"),
        pytest.param(b"\x0d\xff\xff\xff\xff\x00", id="vector int count"),
        pytest.param(b"\x0f\xff\xff\xff\xff\x00", id="vector double count"),
        pytest.param(b"\x10\xff\xff\xff\xff\x00\x01", id="vector object count"),
        pytest.param(b"\x11\xff\xff\xff\xff\x00", id="dictionary count"),
        pytest.param(b"\x0a\xff\xff\xff\xf3\x01", id="sealed member count"),
    ],
)
def test_huge_lengths_fail_fast(raw: bytes) -> None:
    start = time.perf_counter()
    with pytest.raises(AmfError, match="exceeds"):
        decode_value(raw + bytes(32), 0)
    assert time.perf_counter() - start < 0.1


@pytest.mark.parametrize(
    "layer",
    [
        pytest.param(b"\x09\x03\x01", id="arrays"),
        pytest.param(b"\x09\x01\x03k", id="associative arrays"),
        pytest.param(b"\x0a\x0b\x01\x03a", id="dynamic objects"),
        pytest.param(b"\x10\x03\x00\x01", id="object vectors"),
        pytest.param(b"\x11\x03\x00\x04\x01", id="dictionaries"),
    ],
)
def test_50000_deep_nesting_raises_amf_error_quickly(layer: bytes) -> None:
    start = time.perf_counter()
    with pytest.raises(AmfError, match="deep"):
        decode_value(layer * 50_000, 0)
    assert time.perf_counter() - start < 1.0


def test_depth_limit_is_exact() -> None:
    assert decode_value(b"\x09\x03\x01" * 3 + b"\x01", 0, max_depth=3)[1] == 10
    with pytest.raises(AmfError):
        decode_value(b"\x09\x03\x01" * 4 + b"\x01", 0, max_depth=3)
    # a caller's starting depth counts (amf0 passes its own depth in)
    with pytest.raises(AmfError):
        decode_value(b"\x09\x03\x01" * 3 + b"\x01", 0, depth=1, max_depth=3)


def test_item_limit_is_exact() -> None:
    raw = b"\x09" + u29(100 << 1 | 1) + b"\x01" + b"\x01" * 100
    assert len(decode_value(raw, 0, max_items=101)[0]) == 100
    with pytest.raises(AmfError, match="too many"):
        decode_value(raw, 0, max_items=100)
    # numeric vector elements count as values too
    vector = b"\x0d" + u29(100 << 1 | 1) + b"\x00" + bytes(400)
    assert len(decode_value(vector, 0, max_items=101)[0]) == 100
    with pytest.raises(AmfError, match="too many"):
        decode_value(vector, 0, max_items=100)


def doubling(levels: int) -> bytes:
    """An array (object 0) of [None] (object 1) and `levels` arrays, each holding two
    references to the previous one: 2**levels nodes once expanded."""
    raw = b"\x09" + u29(levels + 1 << 1 | 1) + b"\x01" + b"\x09\x03\x01\x01"
    for index in range(1, levels + 1):
        raw += b"\x09\x05\x01" + (b"\x09" + u29(index << 1)) * 2
    return raw


def test_object_references_are_charged_their_expanded_items() -> None:
    with pytest.raises(AmfError, match="too many"):
        decode_value(doubling(40), 0)
    small = decode_all(doubling(5))  # 2**5 nodes: fine, and shared rather than copied
    assert small[5][0] is small[4] and small[5][1] is small[4]


def test_string_references_are_charged_their_bytes() -> None:
    head = b"\x09" + u29(301 << 1 | 1) + b"\x01" + b"\x06" + u29(60_000 << 1 | 1) + b"x" * 60_000
    with pytest.raises(AmfError, match="expand"):
        decode_value(head + b"\x06\x00" * 300, 0)  # 18 MB of text if re-encoded
    fewer = b"\x09" + u29(201 << 1 | 1) + b"\x01" + b"\x06" + u29(60_000 << 1 | 1) + b"x" * 60_000
    assert len(decode_value(fewer + b"\x06\x00" * 200, 0)[0]) == 201


@given(st.binary(max_size=300))
@settings(max_examples=1000)
def test_arbitrary_bytes_raise_only_amf_error(raw: bytes) -> None:
    try:
        _, end = decode_value(raw, 0)
    except AmfError:
        return
    assert 0 < end <= len(raw)


@given(
    st.sampled_from([c[1] for c in CASES]),
    st.lists(st.sampled_from([c[1] for c in CASES])),
    st.data(),
)
@settings(max_examples=500)
def test_mutated_valid_values_raise_only_amf_error(
    first: bytes, rest: list[bytes], data: st.DataObject
) -> None:
    raw = bytearray(b"\x09" + u29(len(rest) + 1 << 1 | 1) + b"\x01" + first + b"".join(rest))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        decode_value(bytes(raw[:cut]), 0)
    except AmfError:
        pass
