"""Retry arithmetic: when the next attempt of a failed job may start. Pure; randomness is
passed in so tests are exact."""

from __future__ import annotations

import random
from collections.abc import Callable


def retry_delay(
    failures: int,
    *,
    delay: float,
    backoff: float,
    max_delay: float,
    jitter: bool,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds before retry number ``failures`` (1 for the first retry).

    min(delay × backoff^(n−1), max_delay); with jitter, "full jitter": uniform in [0, that],
    which spreads a thundering herd of retries best (AWS Architecture Blog, 2015).
    """
    n = max(failures, 1)
    try:
        base = delay * backoff ** (n - 1)
    except OverflowError:
        base = max_delay
    capped = min(base, max_delay)
    return capped * rand() if jitter else capped
