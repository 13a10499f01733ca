"""Declaring tasks and calling them: options are validated when the task is declared."""

from __future__ import annotations

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
