"""The worker side of ``app.executor()``: the internal task that unpickles a call and runs
it, and how calls, values and exceptions are pickled (``__main__``'s functions by the name
``python -m`` gave their module)."""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import sys
import types
from collections.abc import Callable
from typing import Any

# pickle is imported by the functions that use it, not here: every worker imports this
# module (it serves app.executor()'s jobs), and pickle is ~0.4 MB of RSS a worker whose apps
# never use the executor does not need (issue 15).

#: the internal task's name; its jobs carry ``pickle((fn, args, kwargs))``
EXECUTOR_TASK = "conveyor.executor"
#: the queue executor jobs go to unless ``app.executor(queue=...)`` says otherwise
EXECUTOR_QUEUE = "executor"


class RemoteTraceback(Exception):
    """The worker-side traceback of an exception raised by a submitted call, set as its
    ``__cause__`` (pickling drops tracebacks)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


def run_pickled(call: bytes) -> bytes:
    """The internal task: unpickle ``(fn, args, kwargs)``, call it, return the pickled
    value. An exception leaves as it is (the job fails with its type, message and traceback)
    carrying its pickled self as ``conveyor_result``, which the worker keeps with the failed
    job so the submitter's future raises the original."""
    try:
        fn, args, kwargs = loads(call)
        return dumps(fn(*args, **kwargs))
    except BaseException as exc:
        # Unpicklable: the future gets a JobFailed with the same type and message instead.
        with contextlib.suppress(Exception):
            exc.conveyor_result = dumps(exc)  # type: ignore[attr-defined]
        raise


def main_attribute(module: str, qualname: str) -> Any:
    """What a ``__main__`` reference became: the attribute of the module the main script
    was run as (``python -m package.module``), imported by name in the worker."""
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


@functools.cache
def _main_by_name() -> type[Any]:
    import pickle

    class MainByName(pickle.Pickler):
        """Pickles functions and classes of ``__main__`` by the name the main module has when
        it was run with ``python -m``, so another process (whose ``__main__`` is something
        else, a ``conveyor worker`` say) finds them; as spawn's ``__mp_main__`` does for
        multiprocessing."""

        def __init__(self, file: io.BytesIO, main_name: str) -> None:
            super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
            self._main_name = main_name

        def reducer_override(self, obj: Any) -> Any:
            if (
                isinstance(obj, type | types.FunctionType)
                and getattr(obj, "__module__", None) == "__main__"
            ):
                return main_attribute, (self._main_name, obj.__qualname__)
            return NotImplemented

    return MainByName


def dumps(value: Any) -> bytes:
    """Pickle a call or a value; see ``_main_by_name``."""
    import pickle

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    main_name = getattr(spec, "name", None)
    if not main_name or main_name == "__main__":
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    buffer = io.BytesIO()
    _main_by_name()(buffer, main_name).dump(value)
    return buffer.getvalue()


def loads(data: bytes) -> Any:
    """Unpickle what ``dumps`` wrote."""
    import pickle

    return pickle.loads(data)


def call_chunk(fn: Callable[..., Any], chunk: list[tuple[Any, ...]]) -> list[Any]:
    """``map(chunksize=n)``: one job calls ``fn`` for n argument tuples."""
    return [fn(*args) for args in chunk]
