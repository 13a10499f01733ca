"""Job arguments and results as bytes: tagged JSON by default, pickle only when asked for.

JSON carries None, bool, int, float, str, lists and dicts with str keys as they are. Every
other supported value is written as a one-key object ``{"__conveyor__": [tag, ...]}``: tuple,
set, frozenset, datetime, date, time, timedelta, UUID, Decimal, bytes, enum members,
dataclasses, non-finite floats, ints too long for ``str()``, and dicts whose keys are not all
str or that contain the marker key themselves (so no user dict is ever read as a tag).

Most payloads need no tag at all, so ``dumps`` first walks the value without allocating and,
when it is plain JSON, hands it straight to the C encoder; ``loads`` skips the tag hook when
the marker does not occur in the bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from conveyor.errors import ConfigurationError, SerializationError
from conveyor.serialization.tags import (
    _SCALARS,
    DEFAULT_SERIALIZER,
    MARKER,
    Serializer,
    _is_plain,
    _PathError,
    _tag,
    _untag,
)

__all__ = [
    "DEFAULT_SERIALIZER",
    "MARKER",
    "JsonSerializer",
    "PickleSerializer",
    "Serializer",
    "decode_call",
    "encode_call",
    "get_serializer",
]

# --- the serializers --------------------------------------------------------------------

#: the marker key as it appears in a tagged payload. Looked for in the decoded text, not the
#: bytes: ``bytes in bytes`` first tries the needle as an int and formats a TypeError for it
#: (about 2,000 instructions a call on CPython 3.11), ``str in str`` does not.
_QUOTED_MARKER = f'"{MARKER}"'


def _one_shot(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """``encoder.encode``, with the C encoder made once: ``encode`` makes a new one on every
    call, a third of what encoding a small payload costs (``python -m bench.delay_cost``)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None or encoder.indent is not None or encoder.check_circular:  # pragma: no cover
        return encoder.encode
    chunks = make(
        None,  # no circular check (check_circular=False)
        encoder.default,
        json.encoder.encode_basestring_ascii
        if encoder.ensure_ascii
        else json.encoder.encode_basestring,
        None,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))

    return encode


class JsonSerializer:
    """Tagged JSON: the default. Loading never runs code the payload chooses."""

    name = "json"

    def __init__(self) -> None:
        # Built once: json.dumps with options builds a new encoder on every call. No circular
        # check: the walk before encoding already fails on a cycle (RecursionError).
        self._encode = _one_shot(
            json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False)
        )
        self._decode_tagged = json.JSONDecoder(object_hook=_untag).decode
        plain = json.JSONDecoder()
        # The C scanner that raw_decode wraps, called directly (JSONDecoder.__init__ sets it;
        # typeshed does not list it): no encoding detection, no whitespace regexes, no Python
        # frame. Our own payloads have no whitespace around them; anything else takes the
        # full decode.
        scan: Callable[[str, int], tuple[Any, int]] = plain.scan_once  # type: ignore[attr-defined]
        self._scan = scan
        self._decode_plain = plain.decode

    def dumps(self, value: Any) -> bytes:
        try:
            return self._dump(value)
        except _PathError as e:
            raise SerializationError(str(e)) from None

    def _dump(self, value: Any) -> bytes:
        """``dumps``, raising the error that still knows the path (for ``encode_call``)."""
        try:
            if _is_plain(value):
                try:
                    return self._encode(value).encode()
                except ValueError:
                    pass  # a nan or an infinity, or a huge int: the tagging walk handles them
            return self._encode(_tag(value)).encode()
        except RecursionError:
            raise _PathError("nested too deeply, or it contains itself") from None
        except ValueError as e:
            raise _PathError(f"cannot serialise to JSON: {e}") from None

    def loads(self, data: bytes) -> Any:
        try:
            if type(data) is not bytes:
                data = bytes(data)
            text = data.decode()
            if _QUOTED_MARKER in text:
                return self._decode_tagged(text)
            try:
                value, end = self._scan(text, 0)
                if end == len(text):
                    return value
            except (StopIteration, ValueError):
                pass
            return self._decode_plain(text)
        except (ValueError, TypeError, RecursionError) as e:  # incl. JSON and Unicode errors
            raise SerializationError(f"corrupt payload: not conveyor JSON ({e})") from None


class PickleSerializer:
    """Opt-in only: any picklable value round-trips, but loading a payload can run any code
    its writer chose, so use it only where no one untrusted can write to the backend."""

    name = "pickle"

    def __init__(self) -> None:
        import pickle  # here, not at the top: a JSON app's workers never load it

        self._pickle = pickle

    def dumps(self, value: Any) -> bytes:
        try:
            return self._dump(value)
        except _PathError as e:
            raise SerializationError(str(e)) from None

    def _dump(self, value: Any) -> bytes:
        try:
            return self._pickle.dumps(value, protocol=self._pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # TypeError, PicklingError, AttributeError, RecursionError
            raise _PathError(f"cannot pickle it ({type(e).__name__}: {e})") from None

    def loads(self, data: bytes) -> Any:
        try:
            return self._pickle.loads(data)
        except Exception as e:
            raise SerializationError(
                f"corrupt payload: cannot unpickle ({type(e).__name__}: {e})"
            ) from None


_SERIALIZERS: Mapping[str, Callable[[], Serializer]] = {
    "json": JsonSerializer,
    "pickle": PickleSerializer,
}


def get_serializer(name: str) -> Serializer:
    try:
        return _SERIALIZERS[name]()
    except KeyError:
        raise ConfigurationError(
            f"serializer={name!r} is unknown: use 'json' (the default) or 'pickle'"
        ) from None


# --- job payloads -----------------------------------------------------------------------


def encode_call(serializer: Serializer, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """The payload of a job: ``[args, kwargs]``. Errors name the argument, e.g. ``args[1]``."""
    for name in kwargs:
        if type(name) is not str:
            raise SerializationError(
                f"kwargs: argument names must be str, not {type(name).__qualname__!r}"
            )
    if not kwargs and type(serializer) is JsonSerializer and _SCALARS.issuperset(map(type, args)):
        # the common call, scalars only: nothing to walk or tag (a nan, an infinity or a huge
        # int fails here and takes the walk)
        try:
            return serializer._encode([list(args), kwargs]).encode()
        except ValueError:
            pass
    # Our serializers have a _dump whose error still knows the path; another one's dumps
    # just raises its SerializationError as it is.
    dump: Callable[[Any], bytes] = getattr(serializer, "_dump", serializer.dumps)
    try:
        return dump([list(args), kwargs])
    except _PathError as e:
        raise SerializationError(str(_locate(dump, e, args, kwargs))) from None


def _locate(
    dump: Callable[[Any], bytes], error: _PathError, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> _PathError:
    if error.segments:  # the JSON walk knows the path: [0] is args, [1] is kwargs
        error.root = "args" if error.segments.pop() == "[0]" else "kwargs"
        return error
    # Otherwise (pickle, or a cycle) find the argument by serialising each on its own.
    located = [(f"args[{i}]", arg) for i, arg in enumerate(args)]
    located += [(f"kwargs[{k!r}]", v) for k, v in kwargs.items()]
    for root, value in located:
        try:
            dump(value)
        except _PathError as inner:
            inner.root = root
            return inner
    return error


def decode_call(serializer: Serializer, data: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
    value = serializer.loads(data)
    if type(value) is list and len(value) == 2:
        args, kwargs = value
        if (
            type(args) is list
            and type(kwargs) is dict
            and (not kwargs or all(type(k) is str for k in kwargs))
        ):
            return tuple(args), kwargs
    raise SerializationError("corrupt payload: a job payload is [args, kwargs]")
