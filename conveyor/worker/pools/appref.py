"""How a process pool's children find the app: by an import reference, ``module:attribute``.

The parent finds the reference for the app it runs by looking through the loaded modules;
the child imports it. With multiprocessing's spawn, a script's ``__main__`` is re-imported
in the child as ``__mp_main__`` (its ``if __name__ == "__main__":`` block does not run), so
an app defined in a script works too.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from conveyor.errors import ConfigurationError
from conveyor.registry import Registry


def find_app_ref(registry: Registry) -> str:
    """``module:attribute`` of the app that owns ``registry``, found among loaded modules.

    A module the child can import by name is preferred; a script's ``__main__`` works too,
    as spawn re-imports it in the child (under ``if __name__ == "__main__":`` for the code
    that starts the worker)."""
    in_main: str | None = None
    for module_name, module in list(sys.modules.items()):
        if module_name == "__mp_main__" or module is None:
            continue
        try:
            attributes = list(vars(module).items())
        except TypeError:
            continue
        for attribute, value in attributes:
            if issubclass(type(value), types.ModuleType):  # type(): a proxy's __class__ runs code
                continue
            try:
                # no getattr: it could run arbitrary code on a proxy object
                found = object.__getattribute__(value, "__dict__").get("registry") is registry
            except Exception:
                continue
            if found and module_name != "__main__":
                return f"{module_name}:{attribute}"
            if found:
                in_main = in_main or attribute
    if in_main is not None:
        main = sys.modules["__main__"]
        if getattr(main, "__file__", None) or getattr(main, "__spec__", None):
            return f"__main__:{in_main}"
    raise ConfigurationError(
        "pool='process' needs the app importable by its child processes: define it at the "
        "top level of a module (or a script run with python), or name it with -A module:attr"
    )


def load_app(ref: str) -> Any:
    """The object named by ``module:attribute`` (the attribute may be dotted)."""
    module_name, _, attribute = ref.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"app reference {ref!r} must look like module:attribute")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    if not isinstance(getattr(obj, "registry", None), Registry):
        raise ConfigurationError(f"{ref!r} is not a conveyor.App")
    return obj
