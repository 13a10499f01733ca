"""The ``concurrent.futures`` face: ``app.executor()``, an Executor whose submissions are
durable jobs (``durable.py``), run by the internal task of ``calls.py``.

Security: the internal task unpickles and calls what the store holds, so whoever can write to
the store can run code on the workers, as with ``serializer="pickle"`` or
``ProcessPoolExecutor``'s pipes (docs/executor.md).
"""

from conveyor.executor.calls import (
    EXECUTOR_QUEUE,
    EXECUTOR_TASK,
    RemoteTraceback,
    call_chunk,
    dumps,
    run_pickled,
)
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
