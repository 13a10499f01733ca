"""Declaring tasks and calling them: options are validated when the task is declared."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import conveyor
from conveyor.task import CallOptions


@pytest.fixture
def app() -> conveyor.App:
    return conveyor.App("memory://")


def test_a_task_is_still_a_plain_function_when_called(app: conveyor.App) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        """Adds."""
        return x + y

    assert add(2, 3) == 5
    assert add.__doc__ == "Adds."
    assert add.name.endswith("add")


def test_the_name_option_registers_the_task_under_that_name(app: conveyor.App) -> None:
    @app.task(name="reports.build", queue="reports", priority=5)
    def build() -> None: ...

    assert app.registry.get("reports.build") is build
    assert (build.options.queue, build.options.priority) == ("reports", 5)
    assert app.registry.queues() == ["default", "reports"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": 101}, "priority must be between 0 and 100"),
        ({"retries": -1}, "retries must be 0 or more"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"soft_timeout": 10, "timeout": 5}, "soft_timeout must be shorter than timeout"),
        ({"retry_backoff": 0.5}, "retry_backoff must be 1 or more"),
        ({"retry_on": ("x",)}, "retry_on must be a tuple of exception types"),
        ({"colour": "red"}, "unknown option"),
    ],
)
def test_a_wrong_option_fails_at_declaration_naming_it(
    app: conveyor.App, options: dict[str, object], message: str
) -> None:
    with pytest.raises(conveyor.ConfigurationError, match=message):
        app.task(**options)(lambda: None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate_limit": "10/d"}, "rate '10/d' is not a rate"),
        ({"rate_limit": "0/s"}, "allows no start"),
        ({"concurrency": 0}, "concurrency must be a whole number of 1 or more"),
        ({"limits": "api"}, "limits must be a list"),
        ({"limits": ["task:x"]}, "not the name of an app.limit"),
        ({"limit_key": lambda x: x}, "limit_key needs rate_limit, concurrency or limits"),
        ({"concurrency": 1, "limit_key": "user"}, "limit_key must be a function"),
    ],
)
def test_a_wrong_limit_option_fails_at_declaration_naming_it(
    app: conveyor.App, options: dict[str, object], message: str
) -> None:
    with pytest.raises(conveyor.ConfigurationError, match=message):
        app.task(**options)(lambda: None)


def test_two_functions_under_one_name_are_refused(app: conveyor.App) -> None:
    app.task(name="same")(lambda: 1)
    with pytest.raises(conveyor.ConfigurationError, match="two tasks are named 'same'"):
        app.task(name="same")(lambda: 2)


def test_a_signature_carries_arguments_and_call_options(app: conveyor.App) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    sig = add.s(2, 3).set(queue="fast", priority=7)
    assert (sig.args, sig.options.queue, sig.options.priority) == ((2, 3), "fast", 7)
    job = sig.delay()
    info = job.info()
    assert (info.queue, info.priority, info.args) == ("fast", 7, (2, 3))
    with pytest.raises(conveyor.ConfigurationError, match="unknown call option"):
        sig.set(colour="red")


def test_call_options_are_validated() -> None:
    with pytest.raises(conveyor.ConfigurationError, match="countdown or eta"):
        CallOptions(countdown=1, eta=2.0)
    with pytest.raises(conveyor.ConfigurationError, match="timezone-aware"):
        from datetime import datetime

        CallOptions(eta=datetime(2030, 1, 1))


# -- arguments checked at the call site ------------------------------------------------------


def test_delay_with_arguments_that_do_not_fit_raises_type_error_and_stores_nothing(
    app: conveyor.App,
) -> None:
    @app.task
    def add(x: int, y: int = 0) -> int:
        return x + y

    for args, kwargs, says in [
        ((1, 2, 3), {}, "too many positional arguments"),
        ((), {}, "missing a required argument: 'x'"),
        ((1,), {"z": 2}, "unexpected keyword argument 'z'"),
        ((1,), {"x": 2}, "multiple values for argument 'x'"),
    ]:
        with pytest.raises(TypeError, match=says) as caught:
            add.delay(*args, **kwargs)  # type: ignore[call-arg]
        assert f"{add.name}(x, y=0)" in str(caught.value)
        with pytest.raises(TypeError, match=says):
            add.apply_async(args, kwargs)
    assert app.backend.list_jobs() == []
    add.delay(1)  # fitting calls are enqueued
    add.apply_async((1,), {"y": 2})
    assert len(app.backend.list_jobs()) == 2


def test_keyword_only_and_variadic_signatures_are_checked_too(app: conveyor.App) -> None:
    @app.task
    def tag(*items: str, sep: str) -> str:
        return sep.join(items)

    @app.task
    def anything(*args: object, **kwargs: object) -> None: ...

    with pytest.raises(TypeError, match="missing a required argument: 'sep'"):
        tag.delay("a", "b")  # type: ignore[call-arg]
    tag.delay("a", "b", sep=",")
    anything.delay(1, 2, 3, x=4)


async def _adelay_checks(app: conveyor.App) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(TypeError, match="too many positional arguments"):
        await add.adelay(1, 2, 3)  # type: ignore[call-arg]


def test_adelay_checks_arguments_too(app: conveyor.App) -> None:
    import asyncio

    asyncio.run(_adelay_checks(app))


def test_a_builtin_without_a_signature_is_not_checked(app: conveyor.App) -> None:
    task = app.task(name="builtins.max")(max)
    task.delay(1, 2, 3)


# -- tasks registered from __main__ ------------------------------------------------------------


def test_a_task_registered_from_main_warns_with_the_fix(tmp_path: Path) -> None:
    script = tmp_path / "shop.py"
    script.write_text(
        "import conveyor\n"
        "app = conveyor.App('memory://')\n\n"
        "@app.task\n"
        "def send(x):\n"
        "    return x\n\n"
        "@app.task(name='shop.named')\n"
        "def named(x):\n"
        "    return x\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    lines = [line for line in done.stderr.splitlines() if "RuntimeWarning" in line]
    assert len(lines) == 1, done.stderr  # send warns; named, with a name, does not
    assert f"{script}:4: RuntimeWarning: task '__main__.send'" in lines[0]
    assert "@app.task(name='send')" in lines[0] and "python -m shop" in lines[0]
