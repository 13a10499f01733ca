"""The tagging walk of the JSON serializer: what is written for each non-JSON type, and
how it is read back. See ``conveyor.serialization`` for the format."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import importlib
import math
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from conveyor.errors import SerializationError

# decimal and zoneinfo are not imported here: together they cost a worker about 0.6 MB of
# RSS (zoneinfo loads sysconfig) whether or not a job ever carries one. A Decimal or a
# ZoneInfo value can only exist once its module is loaded, so dumps looks the type up in
# sys.modules, and loads imports the module when a payload first carries its tag.

DEFAULT_SERIALIZER = "json"
MARKER = "__conveyor__"
_HINT = (
    "use JSON types, datetime, date, UUID, Decimal, bytes, tuples or dataclasses; "
    'or App(serializer="pickle")'
)
_SCALARS = frozenset({str, int, float, bool, type(None)})


class Serializer(Protocol):
    name: str

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class _PathError(SerializationError):
    """A value that cannot be serialised, and where it sits.

    The segments are added while the error unwinds through the containers, so the walk pays
    nothing for paths unless something fails; ``encode_call`` re-roots the path at ``args``
    or ``kwargs``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.root = "value"
        self.segments: list[str] = []  # innermost first

    def __str__(self) -> str:
        return f"{self.root}{''.join(reversed(self.segments))}: {self.reason}"


def _key_segment(key: object) -> str:
    text = repr(key)
    return f"[{text if len(text) <= 60 else text[:57] + '...'}]"


# --- dumps ------------------------------------------------------------------------------


def _is_plain(v: Any) -> bool:
    """True when JSON carries ``v`` unchanged: no tuple, no odd dict key, nothing to tag."""
    t = type(v)
    if t in _SCALARS:
        return True
    if t is list:
        if _SCALARS.issuperset(map(type, v)):  # a long list of numbers: one C-speed pass
            return True
        for x in v:  # noqa: SIM110 - a plain loop beats all() and its generator here
            if type(x) not in _SCALARS and not _is_plain(x):
                return False
        return True
    if t is dict:
        if MARKER in v:
            return False
        for k, x in v.items():
            if type(k) is not str or (type(x) not in _SCALARS and not _is_plain(x)):
                return False
        return True
    return False


def _tagged(tag: str, *body: Any) -> dict[str, Any]:
    return {MARKER: [tag, *body]}


def _tag(v: Any) -> Any:
    """``v`` as a tree of plain JSON values, with tags where JSON has no equivalent."""
    t = type(v)
    if t is str or t is bool or v is None:
        return v
    if t is int:
        return _tag_int(v)
    if t is float:
        return v if math.isfinite(v) else _tagged("float", repr(v))
    if t is list:
        return _tag_items(v)
    if t is dict:
        return _tag_dict(v)
    encoder = _EXACT.get(t) or _encoder_for(v)
    return encoder(v)


def _tag_int(v: int) -> Any:
    # json writes ints with str(), which refuses past sys.get_int_max_str_digits(); hex has
    # no such limit. 3 bits per limit digit keeps well under it (a digit is ~3.32 bits).
    limit = sys.get_int_max_str_digits()
    return _tagged("int", hex(v)) if limit and v.bit_length() > 3 * limit else v


def _tag_items(items: Iterable[Any], *, member: bool = False) -> list[Any]:
    out = []
    for i, x in enumerate(items):
        try:
            out.append(_tag(x))
        except _PathError as e:
            e.segments.append("<member>" if member else f"[{i}]")
            raise
    return out


def _tag_dict(d: Mapping[Any, Any]) -> Any:
    pairs = []
    for k, x in d.items():
        try:
            tagged_key = _tag(k)
        except _PathError as e:
            e.segments.append("<key>")
            raise
        try:
            pairs.append([tagged_key, _tag(x)])
        except _PathError as e:
            e.segments.append(_key_segment(k))
            raise
    if MARKER not in d and all(type(k) is str for k in d):
        return dict(pairs)
    return _tagged("dict", pairs)


def _tag_clock(tag: str) -> Callable[[Any], Any]:
    # The ISO text keeps microseconds and the UTC offset; a ZoneInfo zone is kept by its key
    # too, so arithmetic across DST after loading still follows the zone's rules.
    def encode(v: dt.datetime | dt.time) -> Any:
        zoneinfo = sys.modules.get("zoneinfo")
        if zoneinfo is not None and isinstance(v.tzinfo, zoneinfo.ZoneInfo) and v.tzinfo.key:
            return _tagged(tag, v.isoformat(), v.tzinfo.key)
        offset = v.utcoffset()
        if offset is not None and offset.microseconds:  # fromisoformat (3.11) would drop them
            naive = v.replace(tzinfo=None).isoformat()
            return _tagged(tag, naive, None, offset // dt.timedelta(microseconds=1))
        return _tagged(tag, v.isoformat())

    return encode


def _class_ref(cls: type, kind: str) -> str:
    qualname = cls.__qualname__
    if "<locals>" in qualname:
        raise _PathError(
            f"cannot serialise {kind} {qualname!r}: it is defined inside a function, so a "
            "worker cannot import it (define it at module level)"
        )
    return f"{cls.__module__}:{qualname}"


def _tag_dataclass(v: Any) -> Any:
    cls = type(v)
    ref = _class_ref(cls, "dataclass")
    if not cls.__dataclass_params__.init:
        raise _PathError(f"cannot serialise dataclass {ref!r}: it has init=False")
    # Only init fields are stored: the others are __init__'s or __post_init__'s to compute.
    values = {}
    for f in dataclasses.fields(v):
        if f.init:
            try:
                values[f.name] = _tag(getattr(v, f.name))
            except _PathError as e:
                e.segments.append(f".{f.name}")
                raise
    if MARKER in values:  # a field named like the marker: escape it as any dict would be
        values = _tagged("dict", [[k, x] for k, x in values.items()])
    return _tagged("dataclass", ref, values)


def _tag_enum(v: enum.Enum) -> Any:
    ref = _class_ref(type(v), "enum")
    try:
        return _tagged("enum", ref, _tag(v.value))
    except _PathError as e:
        e.segments.append(".value")
        raise


_EXACT: dict[type, Callable[[Any], Any]] = {
    tuple: lambda v: _tagged("tuple", _tag_items(v)),
    set: lambda v: _tagged("set", _tag_items(v, member=True)),
    frozenset: lambda v: _tagged("frozenset", _tag_items(v, member=True)),
    dt.datetime: _tag_clock("datetime"),
    dt.date: lambda v: _tagged("date", v.isoformat()),
    dt.time: _tag_clock("time"),
    dt.timedelta: lambda v: _tagged("timedelta", v.days, v.seconds, v.microseconds),
    uuid.UUID: lambda v: _tagged("uuid", str(v)),
    bytes: lambda v: _tagged("bytes", base64.b64encode(v).decode("ascii")),
}

# Subclasses of the supported types (a namedtuple, an OrderedDict, a str subclass) come back
# as their base type. Order matters where one base derives from another: _EXACT lists
# datetime before date.
_BASES: list[tuple[type, Callable[[Any], Any]]] = [
    (int, lambda v: _tag_int(int.__int__(v))),
    (float, lambda v: _tag(float.__float__(v))),
    (str, str.__str__),
    (list, _tag_items),
    (dict, _tag_dict),
    *_EXACT.items(),
]


def _tag_decimal(v: Any) -> Any:
    return _tagged("decimal", str(v))


def _encoder_for(v: Any) -> Callable[[Any], Any]:
    decimal = sys.modules.get("decimal")  # loaded if v is a Decimal (see the imports)
    if decimal is not None and isinstance(v, decimal.Decimal):
        return _tag_decimal
    if isinstance(v, enum.Enum):  # before int and str: IntEnum and StrEnum derive from them
        return _tag_enum
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return _tag_dataclass
    for base, encoder in _BASES:
        if isinstance(v, base):
            return encoder
    raise _PathError(f"cannot serialise object of type {type(v).__qualname__!r} to JSON ({_HINT})")


# --- loads ------------------------------------------------------------------------------


def _resolve(ref: str, kind: str, check: Callable[[Any], bool]) -> Any:
    module_name, _, qualname = ref.partition(":")
    try:
        obj: Any = sys.modules.get(module_name) or importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as e:
        raise SerializationError(f"cannot load {ref!r}: {e}") from e
    if not check(obj):
        raise SerializationError(f"corrupt payload: {ref!r} is not {kind}")
    return obj


def _load_dataclass(ref: str, values: dict[str, Any]) -> Any:
    # The payload names the class, so anyone who can write to the backend chooses what gets
    # called. Only dataclass types are accepted: their generated __init__ just assigns fields,
    # whereas an arbitrary callable (os:system, subprocess:Popen) would make loading a way to
    # run code, which is exactly the risk that keeps pickle opt-in. (Importing the module runs
    # only code already installed, as loading the task itself does.)
    cls = _resolve(
        ref, "a dataclass", lambda o: isinstance(o, type) and dataclasses.is_dataclass(o)
    )
    return cls(**values)


def _load_enum(ref: str, value: Any) -> Any:
    # As for dataclasses: only an Enum subclass, whose lookup by value runs no payload code.
    cls = _resolve(ref, "an enum", lambda o: isinstance(o, type) and issubclass(o, enum.Enum))
    return cls(value)


def _fixed(microseconds: int) -> dt.timezone:
    return dt.timezone(dt.timedelta(microseconds=microseconds))


def _load_datetime(text: str, key: str | None = None, offset: int | None = None) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    if key is None:
        return value if offset is None else value.replace(tzinfo=_fixed(offset))
    from zoneinfo import ZoneInfo

    local = value.replace(tzinfo=ZoneInfo(key))
    # The stored offset tells which of two ambiguous wall times (a DST fall-back) it was.
    return local if local.utcoffset() == value.utcoffset() else local.replace(fold=1)


def _load_time(text: str, key: str | None = None, offset: int | None = None) -> dt.time:
    value = dt.time.fromisoformat(text)
    if key is None:
        return value if offset is None else value.replace(tzinfo=_fixed(offset))
    from zoneinfo import ZoneInfo

    return value.replace(tzinfo=ZoneInfo(key))


def _load_decimal(text: str) -> Any:
    from decimal import Decimal

    return Decimal(str(text))


def _load_items(kind: Callable[[list[Any]], Any]) -> Callable[[list[Any]], Any]:
    def load(items: list[Any]) -> Any:
        if type(items) is not list:
            raise TypeError("expected a list")
        return kind(items)

    return load


_DECODERS: dict[str, Callable[..., Any]] = {
    "tuple": _load_items(tuple),
    "set": _load_items(set),
    "frozenset": _load_items(frozenset),
    "dict": _load_items(dict),
    "float": float,
    "int": lambda text: int(text, 16),
    "datetime": _load_datetime,
    "date": dt.date.fromisoformat,
    "time": _load_time,
    "timedelta": dt.timedelta,
    "uuid": uuid.UUID,
    "decimal": _load_decimal,
    "bytes": lambda text: base64.b64decode(text, validate=True),
    "dataclass": _load_dataclass,
    "enum": _load_enum,
}


def _untag(d: dict[str, Any]) -> Any:
    if len(d) != 1 or MARKER not in d:
        return d
    body = d[MARKER]
    tag = body[0] if type(body) is list and body and type(body[0]) is str else None
    decoder = _DECODERS.get(tag) if tag is not None else None
    if decoder is None:
        raise SerializationError(f"corrupt payload: unknown tag {str(body)[:60]}")
    try:
        return decoder(*body[1:])
    except SerializationError:
        raise
    except Exception as e:  # whatever the stdlib or a dataclass's __init__ made of bad data
        raise SerializationError(
            f"corrupt payload: bad {body[0]} value ({type(e).__name__}: {e})"
        ) from e
