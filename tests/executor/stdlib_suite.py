"""CPython's own ``test.test_concurrent_futures`` run against ``app.executor``.

Run under Python 3.13 (which ships the suite) by ``test_stdlib_suite.py``:
``python -m unittest tests.executor.stdlib_suite``. The standard library builds its test
classes from an executor mixin (``executor_type``) and the test mixins; ``ConveyorMixin`` is
one more executor mixin, so the tests are the standard library's own, unchanged. Each
executor gets an app on a SQLite file of its own, and runs its jobs on its embedded worker.

What does not apply, and why (docs/executor.md says the same):

- tests that start ``python -c "from concurrent.futures import <executor_type.__name__>"``
  (interpreter shutdown, submit after interpreter shutdown, gh-83386): they name a class of
  ``concurrent.futures``; ``test_executor.py`` checks the same behaviour with app.executor;
- the thread- and process-pool-only classes (``ThreadPool*``, ``ProcessPool*``,
  ``test_deadlock``, ``FailingInitializerResourcesTest``): they inspect ``_threads``,
  ``_processes``, multiprocessing contexts and the pipes of ``ProcessPoolExecutor``;
- ``test_future``: it tests the ``Future`` class, which ``submit`` returns unchanged;
- ``test_cancel_futures``: it needs one of 50 quick submissions to have started before
  ``shutdown``, which a thread pool's threads (started inside ``submit``) do and an embedded
  worker, claiming a moment later, does only sometimes; ``test_executor.py`` checks the
  behaviour itself (a started job finishes, the waiting ones are cancelled with their jobs).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import unittest
import uuid
from typing import Any

from test.test_concurrent_futures import executor as executor_tests
from test.test_concurrent_futures import test_as_completed, test_init, test_shutdown, test_wait
from test.test_concurrent_futures.util import BaseTestCase, ExecutorMixin, create_executor_tests

import conveyor

_root = tempfile.mkdtemp(prefix="conveyor-stdlib-")
_apps: list[conveyor.App] = []


@atexit.register
def _clean() -> None:
    for app in _apps:
        app.close()
    shutil.rmtree(_root, ignore_errors=True)


def conveyor_executor(max_workers: int | None = None, **kwargs: Any) -> Any:
    """``executor_type``: a fresh app on its own SQLite file, and its executor."""
    app = conveyor.App(f"sqlite:///{_root}/{uuid.uuid4().hex}.db")
    _apps.append(app)
    return app.executor(max_workers=max_workers, **kwargs)


class ConveyorMixin(ExecutorMixin):
    executor_type = staticmethod(conveyor_executor)


NOT_APPLICABLE = {
    "test_interpreter_shutdown": "spells `from concurrent.futures import <executor type>`",
    "test_submit_after_interpreter_shutdown": "spells `from concurrent.futures import ...`",
    "test_hang_gh83386": "spells `from concurrent.futures import <executor type>`",
    "test_cancel_futures": "needs a job started within 50 submits (threads start in submit; "
    "the embedded worker claims a moment later): test_executor.py checks cancel_futures",
}


def adapt(mixin: type, bases: tuple[type, ...] = (BaseTestCase,)) -> None:
    """The standard library's classes for ``mixin`` over ``ConveyorMixin``, into this module."""
    made: dict[str, Any] = {"__name__": __name__}
    create_executor_tests(made, mixin, bases=bases, executor_mixins=(ConveyorMixin,))
    for name, cls in made.items():
        if name == "__name__":
            continue
        for test, reason in NOT_APPLICABLE.items():
            if hasattr(cls, test):
                setattr(cls, test, unittest.skip(f"does not apply: {reason}")(getattr(cls, test)))
        globals()[name] = cls


adapt(executor_tests.ExecutorTest)
adapt(test_wait.WaitTests)
adapt(test_as_completed.AsCompletedTests)
adapt(test_shutdown.ExecutorShutdownTest)
adapt(test_init.InitializerMixin)
adapt(test_init.FailingInitializerMixin)


if __name__ == "__main__":
    unittest.main()
