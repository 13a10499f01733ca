"""Backends, chosen by the URL's scheme from lazy import paths: importing conveyor imports no
driver; ``redis://`` loads redis-py only when an app asks for it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from urllib.parse import urlsplit

from conveyor.backends.base import Backend
from conveyor.errors import ConfigurationError

#: scheme -> ("module:Class", the extra that provides its driver)
SCHEMES: dict[str, tuple[str, str | None]] = {
    "memory": ("conveyor.backends.memory:MemoryBackend", None),
    "sqlite": ("conveyor.backends.sqlite:SQLiteBackend", None),
    "redis": ("conveyor.backends.redis:RedisBackend", "redis"),
    "rediss": ("conveyor.backends.redis:RedisBackend", "redis"),
    "unix": ("conveyor.backends.redis:RedisBackend", "redis"),
    "valkey": ("conveyor.backends.redis:RedisBackend", "redis"),
    "valkeys": ("conveyor.backends.redis:RedisBackend", "redis"),
    "redis+cluster": ("conveyor.backends.redis:RedisBackend", "redis"),
    "rediss+cluster": ("conveyor.backends.redis:RedisBackend", "redis"),
    "valkey+cluster": ("conveyor.backends.redis:RedisBackend", "redis"),
    "valkeys+cluster": ("conveyor.backends.redis:RedisBackend", "redis"),
    "postgresql": ("conveyor.backends.postgres:PostgresBackend", "postgres"),
    "postgres": ("conveyor.backends.postgres:PostgresBackend", "postgres"),
}


def open_backend(
    url: str, *, namespace: str = "conveyor", clock: Callable[[], float] | None = None
) -> Backend:
    """The backend for ``url``; a clear ConfigurationError for an unknown scheme or a
    missing driver. ``clock`` replaces the store's own clock for lease stamps (tests)."""
    cls = backend_class(url)
    if clock is None:
        return cls(url, namespace=namespace)
    return cls(url, namespace=namespace, clock=clock)


def migrate_store(url: str, *, namespace: str = "conveyor") -> tuple[int, int] | None:
    """``conveyor migrate``: see ``Backend.migrate_store``."""
    return backend_class(url).migrate_store(url, namespace=namespace)


def backend_class(url: str) -> type[Backend]:
    """The backend class for ``url``'s scheme, its module imported on demand."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ConfigurationError(
            f"unknown backend URL scheme {scheme!r} in {url!r}; use one of {known}"
        )
    target, extra = SCHEMES[scheme]
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if extra is not None and not (exc.name or "").startswith("conveyor"):
            raise ConfigurationError(
                f"{scheme}:// needs: pip install 'conveyor[{extra}]' ({exc.name} is missing)"
            ) from exc
        if extra is not None:
            raise ConfigurationError(f"the {scheme}:// backend is not available yet") from exc
        raise
    cls: type[Backend] = getattr(module, class_name)
    return cls


def store_file(url: str) -> str | None:
    """The absolute path of the file a URL's store lives in (``sqlite://``), else None: what
    a command that must not create a store looks for before it opens one."""
    if urlsplit(url).scheme.lower() != "sqlite":
        return None
    from conveyor.backends.sqlite.store import parse_url

    return parse_url(url).path


def describe_store(url: str) -> str:
    """The URL to show a user: a file's absolute path, and never a password."""
    path = store_file(url)
    if path is not None:
        return f"sqlite:///{path}"
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()


__all__ = [
    "SCHEMES",
    "Backend",
    "backend_class",
    "describe_store",
    "migrate_store",
    "open_backend",
    "store_file",
]
