"""The ``concurrent.futures`` face: ``app.executor()``, an Executor whose submissions are
durable jobs (``durable.py``), run by the internal task of ``calls.py``.

Security: the internal task unpickles and calls what the store holds, so whoever can write to
the store can run code on the workers, as with ``serializer="pickle"`` or
``ProcessPoolExecutor``'s pipes (docs/executor.md).
"""

from typing import TYPE_CHECKING, Any

from conveyor.executor.calls import (
    EXECUTOR_QUEUE,
    EXECUTOR_TASK,
    RemoteTraceback,
    call_chunk,
    dumps,
    run_pickled,
)

if TYPE_CHECKING:
    from conveyor.executor.durable import BrokenConveyorExecutor, DurableExecutor

__all__ = [
    "EXECUTOR_QUEUE",
    "EXECUTOR_TASK",
    "BrokenConveyorExecutor",
    "DurableExecutor",
    "RemoteTraceback",
    "call_chunk",
    "dumps",
    "run_pickled",
]


def __getattr__(name: str) -> Any:
    # the Executor itself is loaded by app.executor(), not by every worker (issue 15)
    if name in ("BrokenConveyorExecutor", "DurableExecutor"):
        from conveyor.executor import durable

        return getattr(durable, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
