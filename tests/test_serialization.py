"""Serialisation: every supported value comes back equal and of the same type, and what cannot
be serialised or loaded fails with a SerializationError that says where and why."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import json
import math
import subprocess
import sys
import threading
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.errors import ConfigurationError, SerializationError
from conveyor.serialization import (
    MARKER,
    JsonSerializer,
    PickleSerializer,
    Serializer,
    decode_call,
    encode_call,
    get_serializer,
)

JSON = JsonSerializer()
PICKLE = PickleSerializer()
HINT = 'or App(serializer="pickle"))'


@dataclasses.dataclass(frozen=True)
class Point:
    x: Any
    y: Any = None


@dataclasses.dataclass
class Box:
    items: Any
    label: str = "box"
    size: int = dataclasses.field(init=False, default=0)

    def __post_init__(self) -> None:
        self.size = len(self.label)


@dataclasses.dataclass
class MarkerField:
    __conveyor__: Any


class Color(enum.Enum):
    RED = "red"
    GREEN = (0, 255, 0)


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


# --- strategies -------------------------------------------------------------------------


def named(name: str, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``strategy`` under a short name: hypothesis prints a strategy's repr when it retries a
    draw, and the repr of these nested strategies runs past its 30 kB warning."""

    def draw(draw: st.DrawFn) -> Any:
        return draw(strategy)

    draw.__name__ = draw.__qualname__ = name
    return st.composite(draw)()


keys = st.one_of(st.text(max_size=6), st.just(MARKER))
fixed_zones = st.builds(
    timezone,
    st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23)),
)
zones = st.one_of(st.none(), st.just(UTC), fixed_zones, st.timezones())
scalars = named(
    "scalars",
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(),
        keys,
        st.binary(),
        st.dates(),
        st.datetimes(timezones=zones),
        st.times(timezones=zones),
        st.timedeltas(),
        st.uuids(),
        st.decimals(allow_nan=False),
        st.sampled_from(list(Color) + list(Level)),
    ),
)
hashables = named(
    "hashables",
    st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3).map(tuple),
            st.frozensets(inner, max_size=3),
            st.builds(Point, inner, inner),
        ),
        max_leaves=8,
    ),
)
values = named(
    "values",
    st.recursive(
        hashables,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.lists(inner, max_size=4).map(tuple),
            st.dictionaries(keys, inner, max_size=4),
            st.dictionaries(hashables, inner, max_size=4),
            st.sets(hashables, max_size=4),
            st.frozensets(hashables, max_size=4),
            st.builds(Box, inner, st.text(max_size=4)),
            st.builds(MarkerField, inner),
        ),
        max_leaves=20,
    ),
)
plain_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


def assert_same(a: Any, b: Any) -> None:
    """Equal, and of the same type all the way down (a tuple stays a tuple, True stays True)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, float):
        assert repr(a) == repr(b)  # tells -0.0 from 0.0, and nan compares as itself
    elif isinstance(a, Decimal):
        assert str(a) == str(b)  # Decimal("1.0") == Decimal("1.00"), but they are not the same
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        b_keys = {k: k for k in b}
        for k, x in a.items():
            assert_same(k, b_keys[k])
            assert_same(x, b[k])
    elif isinstance(a, set | frozenset):
        assert len(a) == len(b)
        b_members = {m: m for m in b}
        for m in a:
            assert_same(m, b_members[m])
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, datetime | time):
        assert a == b
        assert a.tzinfo == b.tzinfo
        assert a.utcoffset() == b.utcoffset()
    else:
        assert a == b


# --- round trips ------------------------------------------------------------------------


@given(values)
def test_every_supported_value_round_trips_equal_and_of_the_same_type(value: Any) -> None:
    assert_same(value, JSON.loads(JSON.dumps(value)))


@given(
    st.lists(values, max_size=4),
    st.dictionaries(st.from_regex(r"[a-z_]\w{0,5}", fullmatch=True), values, max_size=3),
)
def test_call_payloads_round_trip(args: list[Any], kwargs: dict[str, Any]) -> None:
    for serializer in (JSON, PICKLE):
        decoded_args, decoded_kwargs = decode_call(
            serializer, encode_call(serializer, tuple(args), kwargs)
        )
        assert_same(tuple(args), decoded_args)
        assert_same(kwargs, decoded_kwargs)


@given(plain_json)
def test_plain_json_values_are_written_as_plain_json_that_any_reader_understands(
    value: Any,
) -> None:
    data = JSON.dumps(value)
    assert MARKER.encode() not in data
    assert_same(value, json.loads(data))


@given(st.dictionaries(keys, values, max_size=3), values)
def test_user_dicts_that_contain_the_marker_key_round_trip(
    value: dict[str, Any], at_marker: Any
) -> None:
    value[MARKER] = at_marker
    assert_same(value, JSON.loads(JSON.dumps(value)))


def test_a_user_dict_that_looks_exactly_like_a_tag_stays_a_dict() -> None:
    lookalike = {MARKER: ["tuple", [1, 2]]}
    assert_same(lookalike, JSON.loads(JSON.dumps(lookalike)))
    assert_same([MARKER], JSON.loads(JSON.dumps([MARKER])))


def test_tuples_nested_in_lists_and_dict_keys_stay_tuples() -> None:
    value = [(1, (2, 3)), {(1, 2): (3,)}, ((),)]
    assert_same(value, JSON.loads(JSON.dumps(value)))


def test_datetimes_keep_microseconds_and_their_offset() -> None:
    offset = timezone(timedelta(hours=5, minutes=30))
    for value in (
        datetime(2024, 2, 29, 23, 59, 59, 999999),
        datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=offset),
        datetime(1, 1, 1, tzinfo=UTC),
        time(12, 0, 0, 7, tzinfo=offset),
    ):
        assert_same(value, JSON.loads(JSON.dumps(value)))


def test_a_zoneinfo_datetime_keeps_its_zone_and_which_side_of_a_dst_fall_back_it_is() -> None:
    new_york = ZoneInfo("America/New_York")
    for fold in (0, 1):
        value = datetime(2024, 11, 3, 1, 30, tzinfo=new_york, fold=fold)
        loaded = JSON.loads(JSON.dumps(value))
        assert loaded.tzinfo is new_york
        assert loaded.utcoffset() == value.utcoffset()
        assert loaded.fold == fold


def test_non_finite_floats_round_trip_as_strict_json() -> None:
    for value in (math.inf, -math.inf, math.nan):
        data = JSON.dumps([value])
        json.loads(data, parse_constant=pytest.fail)  # no bare NaN or Infinity in the output
        assert_same([value], JSON.loads(data))


def test_ints_too_long_for_str_round_trip() -> None:
    value = 7**20_000
    loaded = JSON.loads(JSON.dumps(value))
    assert type(loaded) is int
    assert loaded == value


def test_special_decimals_and_odd_strings_round_trip() -> None:
    for value in (Decimal("NaN"), Decimal("-0"), Decimal("1E+3"), "\ud800", "\x00", ""):
        assert str(JSON.loads(JSON.dumps(value))) == str(value)


def test_enum_members_come_back_as_the_same_member() -> None:
    assert JSON.loads(JSON.dumps([Color.GREEN, Level.HIGH])) == [Color.GREEN, Level.HIGH]
    assert JSON.loads(JSON.dumps(Color.GREEN)) is Color.GREEN


def test_dataclasses_are_recreated_through_their_init() -> None:
    value = Box([Point(1, (2, 3)), {date(2024, 1, 1)}], label="abc")
    loaded = JSON.loads(JSON.dumps(value))
    assert_same(value, loaded)
    assert loaded.size == 3  # an init=False field is recomputed by __post_init__, not stored


def test_subclasses_of_supported_types_come_back_as_their_base_type() -> None:
    Pair = collections.namedtuple("Pair", "a b")
    value = [Pair(1, 2), collections.OrderedDict(a=1), collections.defaultdict(list, b=[1])]
    assert_same([(1, 2), {"a": 1}, {"b": [1]}], JSON.loads(JSON.dumps(value)))


@given(values)
def test_the_pickle_serializer_round_trips_the_same_values(value: Any) -> None:
    assert_same(value, PICKLE.loads(PICKLE.dumps(value)))


def test_pickle_carries_what_json_cannot() -> None:
    value = {"lock_free": bytearray(b"x"), "complex": 1 + 2j}
    assert PICKLE.loads(PICKLE.dumps(value)) == value


# --- what cannot be serialised ----------------------------------------------------------


def _error(serializer: Serializer, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    with pytest.raises(SerializationError) as caught:
        encode_call(serializer, args, kwargs)
    assert type(caught.value) is SerializationError
    return str(caught.value)


def test_an_unserialisable_argument_is_named_by_its_path_and_type() -> None:
    message = _error(JSON, (1, {"when": threading.Lock()}), {})
    assert message.startswith("args[1]['when']: cannot serialise object of type 'lock' to JSON")
    assert "datetime, date, UUID, Decimal, bytes, tuples or dataclasses" in message
    assert message.endswith(HINT)


@pytest.mark.parametrize(
    ("args", "kwargs", "path"),
    [
        ((), {"report": [1, object()]}, "kwargs['report'][1]: "),
        ((Box([1, object()]),), {}, "args[0].items[1]: "),
        (({1, object()},), {}, "args[0]<member>: "),
        (({object(): 1},), {}, "args[0]<key>: "),
        (((1, {2: [object()]}),), {}, "args[0][1][2][0]: "),
        ((MarkerField(object()),), {}, "args[0].__conveyor__: "),
    ],
)
def test_the_path_reaches_into_containers_dataclasses_keys_and_members(
    args: tuple[Any, ...], kwargs: dict[str, Any], path: str
) -> None:
    message = _error(JSON, args, kwargs)
    assert message.startswith(path + "cannot serialise object of type 'object' to JSON")


def test_dumps_names_the_path_from_the_value_itself() -> None:
    with pytest.raises(SerializationError, match=r"^value\[0\]: .*'function'"):
        JSON.dumps([lambda: None])


def test_a_value_that_contains_itself_is_refused_with_its_argument_named() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert _error(JSON, ("ok", loop), {}) == "args[1]: nested too deeply, or it contains itself"


def test_a_dataclass_defined_inside_a_function_is_refused_at_the_call_site() -> None:
    @dataclasses.dataclass
    class Local:
        x: int

    message = _error(JSON, (Local(1),), {})
    assert "args[0]: cannot serialise dataclass" in message
    assert "define it at module level" in message


def test_keyword_argument_names_must_be_str() -> None:
    kwargs: dict[Any, Any] = {1: "x"}
    assert _error(JSON, (), kwargs) == "kwargs: argument names must be str, not 'int'"


def test_pickle_names_the_argument_it_cannot_pickle() -> None:
    message = _error(PICKLE, (1,), {"guard": threading.Lock()})
    assert message.startswith("kwargs['guard']: cannot pickle it (TypeError")


# --- what cannot be loaded --------------------------------------------------------------


def _tag(*body: Any) -> bytes:
    return json.dumps({MARKER: list(body)}).encode()


CORRUPT = [
    b"",
    b"\xff\xfe\x00",
    b'{"a": ',
    b"[" * 100_000,
    b'"\xc3\x28"',
    _tag("no-such-tag", 1),
    _tag(),
    json.dumps({MARKER: "tuple"}).encode(),
    _tag("tuple", "abc"),
    _tag("datetime", "yesterday"),
    _tag("bytes", "not base64!"),
    _tag("uuid", 42),
    _tag("timedelta", "a", "b"),
    _tag("dict", [[[1], 2]]),
    _tag("time", "12:00", "Not/AZone"),
    _tag("dataclass", "tests.test_serialization:Point", {"nope": 1}),
    _tag("dataclass", "tests.test_serialization:Nowhere", {}),
    _tag("dataclass", "no_such_module_here:Point", {}),
]


@pytest.mark.parametrize("data", CORRUPT)
def test_corrupt_payloads_raise_serialization_error(data: bytes) -> None:
    with pytest.raises(SerializationError):
        JSON.loads(data)
    with pytest.raises(SerializationError):
        decode_call(JSON, data)


@pytest.mark.parametrize(
    "ref", ["os:system", "subprocess:Popen", "builtins:dict", "tests.test_serialization:Color"]
)
def test_loading_refuses_to_call_anything_but_a_dataclass(ref: str) -> None:
    with pytest.raises(SerializationError, match="is not a dataclass"):
        JSON.loads(_tag("dataclass", ref, {"args": "echo owned"}))


def test_loading_refuses_an_enum_reference_that_is_not_an_enum() -> None:
    with pytest.raises(SerializationError, match="is not an enum"):
        JSON.loads(_tag("enum", "os:system", "echo owned"))


@given(st.binary())
def test_arbitrary_bytes_load_or_raise_serialization_error(data: bytes) -> None:
    with contextlib.suppress(SerializationError):
        JSON.loads(data)


@given(
    st.sampled_from(["tuple", "set", "dict", "datetime", "time", "decimal", "bytes"]), plain_json
)
def test_tags_with_arbitrary_bodies_load_or_raise_serialization_error(tag: str, body: Any) -> None:
    with contextlib.suppress(SerializationError):
        JSON.loads(_tag(tag, body))


@pytest.mark.parametrize("value", [{"args": []}, [[1], {}, 3], [{}, []], [[], {"x": 1}, None]])
def test_a_payload_that_is_not_args_and_kwargs_is_refused(value: Any) -> None:
    with pytest.raises(SerializationError, match=r"a job payload is \[args, kwargs\]"):
        decode_call(JSON, JSON.dumps(value))


def test_corrupt_pickle_raises_serialization_error() -> None:
    with pytest.raises(SerializationError, match="cannot unpickle"):
        PICKLE.loads(b"\x80\x05not a pickle")


# --- choosing a serializer --------------------------------------------------------------


def test_get_serializer_knows_json_and_pickle() -> None:
    assert isinstance(get_serializer("json"), JsonSerializer)
    assert get_serializer("json").name == "json"
    assert isinstance(get_serializer("pickle"), PickleSerializer)
    assert get_serializer("pickle").name == "pickle"


def test_get_serializer_names_the_choices_for_an_unknown_name() -> None:
    with pytest.raises(ConfigurationError, match=r"serializer='yaml' is unknown: use 'json'"):
        get_serializer("yaml")


def test_importing_conveyor_loads_neither_decimal_zoneinfo_nor_pickle() -> None:
    # Each costs a worker's RSS whether or not a job carries one (issue 15): the serializer
    # finds their types in sys.modules once a value of theirs exists.
    code = "import sys, conveyor; print(sorted({'decimal', 'pickle', 'zoneinfo'} & {*sys.modules}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
