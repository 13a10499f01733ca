"""Settings: one frozen dataclass, filled from keyword arguments, then ``CONVEYOR_*``
environment variables, then defaults; validated once, at construction."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from conveyor.errors import ConfigurationError

DEFAULT_URL = "sqlite:///conveyor.db"
SERIALIZERS = ("json", "pickle")
_NAMESPACE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class Settings:
    url: str = DEFAULT_URL
    namespace: str = "conveyor"
    eager: bool = False
    serializer: str = "json"
    token: str | None = None
    max_crashes: int = 3

    def __post_init__(self) -> None:
        if "://" not in self.url:
            raise ConfigurationError(
                f"url {self.url!r} is not a URL: use sqlite:///path.db, redis://host:6379/0, "
                "postgresql://user@host/db or memory://"
            )
        if not _NAMESPACE.match(self.namespace):
            raise ConfigurationError(
                f"namespace {self.namespace!r} must be letters, digits and underscores, "
                "starting with a letter or underscore (at most 63 characters)"
            )
        if self.serializer not in SERIALIZERS:
            raise ConfigurationError(
                f"serializer {self.serializer!r} is unknown; use one of {', '.join(SERIALIZERS)}"
            )
        if self.max_crashes < 1:
            raise ConfigurationError(f"max_crashes must be at least 1, not {self.max_crashes}")

    @classmethod
    def load(
        cls,
        *,
        url: str | None = None,
        namespace: str | None = None,
        eager: bool | None = None,
        serializer: str | None = None,
        token: str | None = None,
        max_crashes: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Keyword arguments first, then the environment, then the defaults."""
        env = os.environ if environ is None else environ
        return cls(
            url=url or env.get("CONVEYOR_URL") or DEFAULT_URL,
            namespace=namespace or env.get("CONVEYOR_NAMESPACE") or "conveyor",
            eager=bool(eager),
            serializer=serializer or "json",
            token=token or env.get("CONVEYOR_TOKEN") or None,
            max_crashes=3 if max_crashes is None else max_crashes,
        )
