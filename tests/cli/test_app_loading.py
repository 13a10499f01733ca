"""-A and CONVEYOR_APP: how the app is found, and what a mistake in naming it looks like."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import AppModule, assert_user_error, run


def test_the_app_module_is_found_in_the_current_directory(
    tmp_path: Path, app_module: AppModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    name = f"{app_module.name}_here"
    source = (app_module.path / f"{app_module.name}.py").read_text()
    (project / f"{name}.py").write_text(source)
    monkeypatch.chdir(project)  # not on sys.path: -A adds the current directory, as uvicorn does
    assert app_module.app.backend.list_jobs() == []  # the store exists (schedules never makes one)
    try:
        result = run("-A", f"{name}:app", "schedules", "--json")
        assert result.exit_code == 0, result.output
        assert f"{name}.hourly" in {row["task"] for row in json.loads(result.stdout)}
    finally:
        sys.modules.pop(name, None)


def test_conveyor_app_names_the_app_when_a_is_not_given(
    app_module: AppModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_APP", app_module.spec)
    result = run("schedules", "--json")
    assert result.exit_code == 0, result.output
    assert app_module.task("hourly") in result.stdout


def test_the_attribute_defaults_to_app(app_module: AppModule) -> None:
    result = run("-A", app_module.name, "schedules", "--json")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("no_such_module_here:app", "no module named 'no_such_module_here'"),
        ("{module}:nothing", "has no attribute 'nothing'"),
        ("{module}:add", "not a conveyor.App"),
        ("not a module", "is not module:attribute"),
    ],
)
def test_a_bad_app_is_one_line_and_exit_2(app_module: AppModule, spec: str, says: str) -> None:
    result = run("-A", spec.format(module=app_module.name), "worker")
    assert_user_error(result, says)


def test_a_module_that_raises_on_import_is_one_line_pointing_at_its_traceback(
    app_module: AppModule,
) -> None:
    (app_module.path / "broken_tasks.py").write_text("import conveyor\n1 / 0\n")
    result = run("-A", "broken_tasks:app", "worker")
    assert_user_error(result, "ZeroDivisionError", "python -c 'import broken_tasks'")


def test_a_bad_backend_url_is_one_line_and_exit_2(
    app_module: AppModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_URL", "nosuch://somewhere")
    assert_user_error(run("jobs"), "unknown backend URL scheme 'nosuch'")


def test_worker_and_scheduler_need_the_app(app_module: AppModule) -> None:
    assert_user_error(run("worker"), "needs your app's tasks")
    assert_user_error(run("scheduler"), "needs your app's tasks")


def test_bad_worker_option_values_exit_2_without_a_traceback(app_module: AppModule) -> None:
    for args in (["-c", "0"], ["--pool", "fork"], ["--lease-seconds", "0.1"], ["-Q", ","]):
        result = run("-A", app_module.spec, "worker", *args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
