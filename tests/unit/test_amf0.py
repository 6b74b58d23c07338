"""AMF0 codec: one table drives decode and encode; hostile inputs; hypothesis fuzzing."""

from __future__ import annotations

import enum
import math
import struct
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.rtmp import amf0
from bridge.rtmp.amf0 import (
    UNDEFINED,
    AmfDate,
    EcmaArray,
    TypedObject,
    Undefined,
    XmlDocument,
    decode,
    decode_one,
    encode,
)
from bridge.rtmp.errors import AmfError, RtmpError


def f64(x: float) -> bytes:
    return struct.pack(">d", x)


def same(a: Any, b: Any) -> bool:
    """Equality that also checks types (EcmaArray vs dict, float vs int) and compares floats
    bit for bit (NaN equals NaN, -0.0 differs from 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return f64(a) == f64(b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, TypedObject):
        return a.class_name == b.class_name and same(a.fields, b.fields)
    if isinstance(a, AmfDate):
        return f64(a.milliseconds) == f64(b.milliseconds) and a.timezone == b.timezone
    return bool(a == b)


END = b"\x00\x00\x09"

# (python value, exact AMF0 bytes): decode(bytes) == [value] and encode(value) == bytes.
CASES: list[tuple[str, Any, bytes]] = [
    ("number one", 1.0, b"\x00\x3f\xf0\x00\x00\x00\x00\x00\x00"),
    ("number zero", 0.0, b"\x00" + bytes(8)),
    ("number negative zero", -0.0, b"\x00\x80" + bytes(7)),
    ("number -2.5", -2.5, b"\x00" + f64(-2.5)),
    ("number inf", math.inf, b"\x00\x7f\xf0\x00\x00\x00\x00\x00\x00"),
    ("true", True, b"\x01\x01"),
    ("false", False, b"\x01\x00"),
    ("string", "connect", b"\x02\x00\x07connect"),
    ("empty string", "", b"\x02\x00\x00"),
    ("utf-8 string", "é€", b"\x02\x00\x05\xc3\xa9\xe2\x82\xac"),
    ("null", None, b"\x05"),
    ("undefined", UNDEFINED, b"\x06"),
    ("empty object", {}, b"\x03" + END),
    (
        "object",
        {"a": 1.0, "b": "x"},
        b"\x03\x00\x01a" + b"\x00" + f64(1.0) + b"\x00\x01b\x02\x00\x01x" + END,
    ),
    ("object with empty key", {"": None}, b"\x03\x00\x00\x05" + END),
    ("empty ECMA array", EcmaArray(), b"\x08\x00\x00\x00\x00" + END),
    (
        "ECMA array",
        EcmaArray(duration=0.0),
        b"\x08\x00\x00\x00\x01\x00\x08duration\x00" + bytes(8) + END,
    ),
    ("empty strict array", [], b"\x0a\x00\x00\x00\x00"),
    (
        "strict array",
        [1.0, "a", None],
        b"\x0a\x00\x00\x00\x03\x00" + f64(1.0) + b"\x02\x00\x01a\x05",
    ),
    ("date", AmfDate(1e12, 0), b"\x0b" + f64(1e12) + b"\x00\x00"),
    ("date with timezone", AmfDate(0.0, -60), b"\x0b" + bytes(8) + b"\xff\xc4"),
    ("xml document", XmlDocument("<a/>"), b"\x0f\x00\x00\x00\x04<a/>"),
    ("typed object", TypedObject("Foo", {"x": None}), b"\x10\x00\x03Foo\x00\x01x\x05" + END),
    (
        "nested",
        {"l": [{"k": False}]},
        b"\x03\x00\x01l\x0a\x00\x00\x00\x01\x03\x00\x01k\x01\x00" + END + END,
    ),
]


@pytest.mark.parametrize(("value", "raw"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decode_table(value: Any, raw: bytes) -> None:
    assert same(decode(raw), [value])


@pytest.mark.parametrize(("value", "raw"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_encode_table(value: Any, raw: bytes) -> None:
    assert encode(value) == raw


def test_all_cases_in_one_buffer_and_byte_offsets() -> None:
    raw = b"".join(c[2] for c in CASES)
    assert same(decode(raw), [c[1] for c in CASES])
    assert encode(*(c[1] for c in CASES)) == raw
    offset = 0
    for _, value, one in CASES:
        got, nxt = decode_one(raw, offset)
        assert same(got, value)
        assert nxt == offset + len(one)
        offset = nxt
    assert offset == len(raw)


def test_memoryview_and_bytearray_input() -> None:
    raw = encode("onStatus", 0.0, None)
    assert decode(memoryview(raw)) == ["onStatus", 0.0, None]
    assert decode(bytearray(raw)) == ["onStatus", 0.0, None]  # type: ignore[arg-type]
    assert decode(b"") == []


# --------------------------------------------------------------------- real shapes


def test_connect_command_known_bytes() -> None:
    assert encode("connect", 1.0) == b"\x02\x00\x07connect\x00\x3f\xf0\x00\x00\x00\x00\x00\x00"
    assert encode("connect", 1) == encode("connect", 1.0)


def test_ffmpeg_publisher_connect_round_trip() -> None:
    # Shape of FFmpeg's gen_connect for a publisher (rtmp.md §7).
    command_object = {
        "app": "live",
        "type": "nonprivate",
        "flashVer": "FMLE/3.0 (compatible; Lavf61.7.100)",
        "tcUrl": "rtmp://localhost:1935/live",
    }
    raw = encode("connect", 1.0, command_object)
    assert raw.startswith(
        b"\x02\x00\x07connect\x00\x3f\xf0" + bytes(6) + b"\x03\x00\x03app\x02\x00\x04live"
    )
    assert raw.endswith(b"\x00\x05tcUrl\x02\x00\x1artmp://localhost:1935/live" + END)
    name, txn, obj = decode(raw)
    assert (name, txn, obj) == ("connect", 1.0, command_object)
    assert list(obj) == list(command_object)  # property order survives


def test_obs_connect_with_codecs() -> None:
    obj = {
        "app": "live",
        "type": "nonprivate",
        "flashVer": "FMLE/3.0 (compatible; FMSc/1.0)",
        "swfUrl": "rtmp://h/live",
        "tcUrl": "rtmp://h/live",
        "fpad": False,
        "capabilities": 15.0,
        "audioCodecs": 4071.0,
        "videoCodecs": 252.0,
        "videoFunction": 1.0,
    }
    assert same(decode(encode("connect", 1.0, obj)), ["connect", 1.0, obj])


def test_onmetadata_ecma_array() -> None:
    meta = EcmaArray(
        duration=0.0,
        width=1280.0,
        height=720.0,
        videodatarate=2500.0,
        framerate=30.0,
        videocodecid=7.0,
        audiodatarate=160.0,
        audiosamplerate=48000.0,
        audiosamplesize=16.0,
        stereo=True,
        audiocodecid=10.0,
        encoder="obs-output module (libobs version 30.0.0)",
        filesize=0.0,
    )
    raw = encode("@setDataFrame", "onMetaData", meta)
    assert raw[raw.index(b"\x08") : raw.index(b"\x08") + 5] == b"\x08\x00\x00\x00\x0d"
    got = decode(raw)
    assert got[:2] == ["@setDataFrame", "onMetaData"]
    assert type(got[2]) is EcmaArray and same(got[2], meta)


def test_ecma_array_count_hint_is_ignored() -> None:
    body = b"\x00\x01a\x05" + END
    for hint in (b"\x00\x00\x00\x00", b"\x00\x00\x00\x07", b"\xff\xff\xff\xff"):
        assert same(decode(b"\x08" + hint + body), [EcmaArray(a=None)])


# --------------------------------------------------------------------- decode-only forms

DECODE_ONLY: list[tuple[str, bytes, Any]] = [
    ("long string", b"\x0c\x00\x00\x00\x02hi", "hi"),
    ("unsupported", b"\x0d", UNDEFINED),
    ("boolean nonzero", b"\x01\x07", True),
    ("avmplus integer", b"\x11\x04\x05", 5),
    ("avmplus string", b"\x11\x06\x07abc", "abc"),
    ("avmplus dynamic object", b"\x11\x0a\x0b\x01\x03a\x04\x01\x01", {"a": 1}),
]


@pytest.mark.parametrize(
    ("raw", "value"), [c[1:] for c in DECODE_ONLY], ids=[c[0] for c in DECODE_ONLY]
)
def test_decode_only_forms(raw: bytes, value: Any) -> None:
    assert same(decode(raw), [value])


def test_reference_returns_the_same_object() -> None:
    # strict array (ref 0) holding an object (ref 1) and a reference to it
    raw = b"\x0a\x00\x00\x00\x02" + b"\x03\x00\x01a\x05" + END + b"\x07\x00\x01"
    [arr] = decode(raw)
    assert arr == [{"a": None}, {"a": None}]
    assert arr[0] is arr[1]
    # the table spans the whole buffer: a later top-level value may refer to an earlier one
    first, second = decode(encode([1.0]) + b"\x07\x00\x00")
    assert first is second


def test_typed_object_and_ecma_array_take_reference_slots() -> None:
    raw = encode(TypedObject("T", {}), EcmaArray(x=1.0)) + b"\x07\x00\x00\x07\x00\x01"
    t, e, t2, e2 = decode(raw)
    assert t2 is t and e2 is e


# --------------------------------------------------------------------- encode-only forms


def test_encode_long_string_switches_at_65536_bytes() -> None:
    assert encode("x" * 0xFFFF)[:3] == b"\x02\xff\xff"
    raw = encode("x" * 0x10000)
    assert raw[:5] == b"\x0c\x00\x01\x00\x00" and len(raw) == 5 + 0x10000
    assert decode(raw) == ["x" * 0x10000]


def test_encode_python_conveniences() -> None:
    class Level(enum.IntEnum):
        ONE = 1

    assert encode((1.0, "a")) == encode([1.0, "a"])
    assert encode(Level.ONE) == encode(1.0)
    assert encode(True) != encode(1.0)  # bool is checked before int
    assert encode(Undefined()) == b"\x06" and Undefined() is UNDEFINED
    assert not UNDEFINED and repr(UNDEFINED) == "UNDEFINED"


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (b"bytes", TypeError),
        ({1, 2}, TypeError),
        (object(), TypeError),
        ({1: "int key"}, TypeError),
        ({"k" * 0x10000: None}, ValueError),
        (TypedObject("c" * 0x10000, {}), ValueError),
        (10**400, ValueError),
        (AmfDate(0.0, 1 << 20), ValueError),
        ("\ud800", ValueError),  # lone surrogate has no UTF-8
    ],
)
def test_encode_refuses(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode(value)


def test_encode_refuses_cycles() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError):
        encode(cyclic)


# --------------------------------------------------------------------- hostile input

BAD: list[tuple[str, bytes]] = [
    ("truncated number", b"\x00\x3f\xf0"),
    ("truncated boolean", b"\x01"),
    ("string length lies", b"\x02\x00\x05ab"),
    ("truncated string length", b"\x02\x00"),
    ("invalid utf-8", b"\x02\x00\x02\xff\xfe"),
    ("invalid utf-8 key", b"\x03\x00\x01\xff\x05" + END),
    ("object end at top level", b"\x09"),
    ("object end as property value", b"\x03\x00\x01a\x09"),
    ("object end in strict array", b"\x0a\x00\x00\x00\x01\x09"),
    ("movieclip (reserved)", b"\x04"),
    ("recordset (reserved)", b"\x0e"),
    ("unknown marker", b"\x12"),
    ("marker 0xff", b"\xff"),
    ("reference out of range", b"\x07\x00\x00"),
    ("reference to a later slot", encode({}) + b"\x07\x00\x01"),
    ("circular reference", b"\x03\x00\x01a\x07\x00\x00" + END),
    ("unterminated object", b"\x03\x00\x01a\x05"),
    ("object with nothing", b"\x03"),
    ("half an end marker", b"\x03\x00\x00"),
    ("unterminated ECMA array", b"\x08\x00\x00\x00\x01\x00\x01a\x05"),
    ("ECMA array without count", b"\x08\x00\x00"),
    ("strict array short", b"\x0a\x00\x00\x00\x02\x05"),
    ("date without timezone", b"\x0b" + bytes(8)),
    ("long string length lies", b"\x0c\x00\x00\x01\x00abc"),
    ("xml length lies", b"\x0f\x00\x00\x00\x09<a/>"),
    ("typed object truncated name", b"\x10\x00\x05Fo"),
    ("avmplus with nothing after", b"\x11"),
    ("avmplus externalizable", b"\x11\x0a\x07\x07Foo"),
    ("valid value then garbage", b"\x05\x09"),
]


@pytest.mark.parametrize("raw", [c[1] for c in BAD], ids=[c[0] for c in BAD])
def test_decode_refuses(raw: bytes) -> None:
    with pytest.raises(AmfError):
        decode(raw)


def test_huge_long_string_length_fails_without_allocating() -> None:
    raw = b"\x0c\xff\xff\xff\xff" + b"abcde"
    assert len(raw) == 10
    with pytest.raises(AmfError):
        decode(raw)
    with pytest.raises(AmfError):
        decode(b"\x0f\xff\xff\xff\xff" + b"abcde")


def test_huge_strict_array_count_fails_fast() -> None:
    start = time.perf_counter()
    with pytest.raises(AmfError):
        decode(b"\x0a\xff\xff\xff\xff" + b"\x05" * 16)
    assert time.perf_counter() - start < 0.1


@pytest.mark.parametrize(
    ("prefix", "layer"),
    [
        pytest.param(b"", b"\x03\x00\x01a", id="objects"),
        pytest.param(b"", b"\x08\x00\x00\x00\x01\x00\x01a", id="ecma arrays"),
        pytest.param(b"", b"\x10\x00\x01T\x00\x01a", id="typed objects"),
        pytest.param(b"", b"\x0a\x00\x00\x00\x01", id="strict arrays"),
        # AMF3 has no way back to AMF0: one avmplus marker, then AMF3 all the way down
        pytest.param(b"\x11", b"\x09\x03\x01", id="avmplus amf3 arrays"),
        pytest.param(b"\x11", b"\x0a\x0b\x01\x03a", id="avmplus amf3 objects"),
        pytest.param(b"\x0a\x00\x00\x00\x01" * 30 + b"\x11", b"\x09\x03\x01", id="amf0 then amf3"),
    ],
)
def test_50000_deep_nesting_raises_amf_error_quickly(prefix: bytes, layer: bytes) -> None:
    raw = prefix + layer * 50_000
    start = time.perf_counter()
    with pytest.raises(AmfError, match="deep"):
        decode(raw)
    assert time.perf_counter() - start < 1.0


def nested_lists(levels: int) -> bytes:
    return b"\x0a\x00\x00\x00\x01" * levels + b"\x05"


def test_depth_limit_is_exact() -> None:
    # innermost null sits at depth == number of enclosing arrays
    assert decode(nested_lists(64)) != []
    with pytest.raises(AmfError):
        decode(nested_lists(65))
    assert decode(nested_lists(3), max_depth=3) != []
    with pytest.raises(AmfError):
        decode(nested_lists(4), max_depth=3)
    with pytest.raises(ValueError):
        decode(b"\x05", max_depth=100_000)  # a caller bug, not a peer's


def test_deep_caller_stack_still_gets_amf_error() -> None:
    # max_depth bounds our own recursion; if the caller's stack is already nearly full the
    # decoders still turn the interpreter's RecursionError into AmfError.
    def from_deep_stack(frames: int, raw: bytes) -> None:
        if frames:
            from_deep_stack(frames - 1, raw)
        else:
            decode(raw, max_depth=200)

    for raw in (nested_lists(200), b"\x11" + b"\x09\x03\x01" * 200 + b"\x01"):
        decode(raw, max_depth=200)  # fine from a shallow stack
        with pytest.raises(AmfError, match="stack"):
            from_deep_stack(900, raw)


def test_item_limit_is_exact() -> None:
    raw = encode([None] * 100)  # 101 values: the array and its items
    assert len(decode(raw, max_items=101)[0]) == 100
    with pytest.raises(AmfError):
        decode(raw, max_items=100)
    with pytest.raises(AmfError):
        decode(encode({str(i): None for i in range(100)}), max_items=100)
    with pytest.raises(AmfError):
        decode(b"\x05" * 70_000)  # top-level values count too


def test_references_are_charged_their_expanded_items() -> None:
    # Each strict array holds two references to the previous one: 2**40 nodes if expanded.
    raw = bytearray(encode([None]))
    for level in range(40):
        raw += b"\x0a\x00\x00\x00\x02" + (b"\x07" + struct.pack(">H", level)) * 2
    with pytest.raises(AmfError, match="too many"):
        decode(bytes(raw))
    # a few levels stay well within the limit and keep sharing
    small = decode(bytes(raw[: 6 + 11 * 9]))
    assert len(small) == 10
    assert small[3][0] is small[2]


def test_references_are_charged_their_expanded_bytes() -> None:
    big = encode(["x" * 60_000])  # reference slot 0
    refs = b"\x0a" + struct.pack(">I", 300) + b"\x07\x00\x00" * 300  # 300 x 60 kB = 18 MB
    with pytest.raises(AmfError, match="expand"):
        decode(big + refs)
    fewer = b"\x0a" + struct.pack(">I", 200) + b"\x07\x00\x00" * 200  # 12 MB: allowed
    assert len(decode(big + fewer)[1]) == 200


def test_only_amf_error_is_an_rtmp_error() -> None:
    assert issubclass(AmfError, RtmpError)
    assert amf0.AmfError is AmfError


# --------------------------------------------------------------------- hypothesis

scalars = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.just(UNDEFINED)
    | st.builds(AmfDate, st.floats(), st.integers(-32768, 32767))
    | st.builds(XmlDocument, st.text(max_size=20))
)
keys = st.text(max_size=12)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(keys, children, max_size=6)
        | st.dictionaries(keys, children, max_size=6).map(EcmaArray)
        | st.builds(
            TypedObject,
            st.text(min_size=1, max_size=8),
            st.dictionaries(keys, children, max_size=4),
        )
    ),
    max_leaves=40,
)


@given(st.lists(values, max_size=4))
@settings(max_examples=200)
def test_roundtrip_generated_values(vals: list[Any]) -> None:
    raw = encode(*vals)
    assert same(decode(raw), vals)


@given(st.binary(max_size=300))
@settings(max_examples=1000)
def test_arbitrary_bytes_raise_only_amf_error(raw: bytes) -> None:
    check_whatever_decodes_reencodes(raw)


@given(values, st.data())
@settings(max_examples=500)
def test_mutated_encodings_raise_only_amf_error(value: Any, data: st.DataObject) -> None:
    raw = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "cut":
            del raw[pos:]
        elif action == "insert" or pos == len(raw):
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
        else:
            raw[pos] = data.draw(st.integers(0, 255))
    check_whatever_decodes_reencodes(bytes(raw))


def loosen(value: Any) -> Any:
    """What AMF0 can say about an avmplus (AMF3) value: ints become numbers."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, list):
            return [loosen(v) for v in value]
        if isinstance(value, dict):
            return type(value)((k, loosen(v)) for k, v in value.items())
        if isinstance(value, TypedObject):
            return TypedObject(value.class_name, loosen(value.fields))
        return value
    return float(value)


def check_whatever_decodes_reencodes(raw: bytes) -> None:
    try:
        got = decode(raw)
    except AmfError:
        return
    try:
        again = encode(*got)
    except TypeError:
        # only AMF3 values (bytes, non-str dictionary keys) have no AMF0 form
        assert b"\x11" in raw
        return
    assert same(decode(again), loosen(got))
    assert encode(*decode(again)) == again
