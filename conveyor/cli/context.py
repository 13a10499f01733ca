"""What every command shares: the app named by ``-A`` (loaded lazily, once), and the one way
a user's mistake is reported: ``error: ...`` on one line of stderr, exit status 2."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import IO, Any

import click

from conveyor.app import App
from conveyor.backends import describe_store, store_file


class UserError(click.ClickException):
    """A mistake of the user's: one line on stderr and exit status 2, never a traceback."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class CliState:
    """The ``-A`` option and the app it names, loaded on first use. The default app, which
    the command line made itself, is closed when the command ends."""

    def __init__(self, app_spec: str | None) -> None:
        self.app_spec = app_spec
        self._app: App | None = None
        self._owned = False  # an app named by -A belongs to its module, which may still use it

    def app(self, *, needs_tasks: str | None = None) -> App:
        """The app. ``needs_tasks`` names a command that cannot work without ``-A``; the
        inspecting commands work on the embedded default (``CONVEYOR_URL`` or
        ``sqlite:///conveyor.db``) as well."""
        if self._app is None:
            if self.app_spec:
                self._app = load_app(self.app_spec)
            elif needs_tasks:
                raise UserError(
                    f"'conveyor {needs_tasks}' needs your app's tasks: name the app with "
                    f"-A module:attribute or CONVEYOR_APP, e.g. conveyor -A tasks:app {needs_tasks}"
                )
            else:
                self._app, self._owned = App(), True
                click.get_current_context().call_on_close(self.close)
        return self._app

    def store_app(self, command: str) -> App:
        """The app, for a command that reads or changes what a store holds (jobs, cancel,
        purge...): such a command never creates a store, so a missing SQLite file is a
        mistake to name, not an empty store to make."""
        app = self.app()
        path = store_file(app.settings.url)
        if path is not None and not os.path.exists(path):
            if self.app_spec:
                source = f"the URL of -A {self.app_spec}"
            elif os.environ.get("CONVEYOR_URL"):
                source = "from CONVEYOR_URL"
            else:
                source = "the default, sqlite:///conveyor.db in the current directory"
            raise UserError(
                f"no conveyor store at {path} ({source}); 'conveyor {command}' never creates "
                "one: run it where your database is, or name it with -A module:app or "
                "CONVEYOR_URL=sqlite:///path/to/jobs.db"
            )
        return app

    def store_name(self) -> str:
        """The store the app reads, as a user may be shown it (never a password)."""
        return describe_store(self.app().settings.url)

    @property
    def has_app_spec(self) -> bool:
        return bool(self.app_spec)

    def close(self) -> None:
        if self._app is not None and self._owned:
            self._app.close()
        self._app = None


pass_state = click.make_pass_decorator(CliState)

#: the handler the command line puts on the ``conveyor`` logger (a worker replaces it)
HANDLER_NAME = "conveyor-cli"


class _WarningLine(logging.Handler):
    """conveyor's warnings (a queue no worker serves...) as ``warning: ...`` on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"{record.levelname.lower()}: {record.getMessage()}", err=True)


def show_warnings(ctx: click.Context) -> None:
    """For the command's run: print what conveyor logs at WARNING and above on stderr."""
    logger = logging.getLogger("conveyor")
    handler = _WarningLine(logging.WARNING)
    handler.set_name(HANDLER_NAME)
    logger.handlers[:] = [h for h in logger.handlers if h.get_name() != HANDLER_NAME]
    logger.addHandler(handler)
    ctx.call_on_close(lambda: logger.removeHandler(handler))


def load_app(spec: str) -> App:
    """``module:attribute`` (the attribute defaults to ``app``), imported with the current
    directory on ``sys.path`` as uvicorn does, so ``-A tasks:app`` finds ./tasks.py."""
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or "app"
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise UserError(f"-A {spec!r} is not module:attribute, e.g. -A tasks:app")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise UserError(
                f"-A {spec}: no module named {exc.name!r} in the current directory or on "
                "sys.path (set PYTHONPATH, or run conveyor from your project's directory)"
            ) from None
        raise _import_failed(module_name, exc) from None
    except Exception as exc:
        raise _import_failed(module_name, exc) from None
    obj: Any = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UserError(
                f"-A {spec}: module {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not isinstance(obj, App):
        raise UserError(f"-A {spec}: that is a {type(obj).__name__}, not a conveyor.App")
    return obj


def _import_failed(module_name: str, exc: BaseException) -> UserError:
    # The user's module is broken, not the command line: say where to see the traceback.
    return UserError(
        f"importing {module_name!r} raised {type(exc).__name__}: {exc} "
        f"(python -c 'import {module_name}' shows the traceback)"
    )
