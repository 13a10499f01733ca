"""Retry arithmetic: exponential backoff, capped, with full jitter."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from conveyor.retry import retry_delay


def test_delay_grows_by_the_backoff_and_stops_at_the_cap() -> None:
    delays = [
        retry_delay(n, delay=1.0, backoff=2.0, max_delay=10.0, jitter=False) for n in range(1, 7)
    ]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_full_jitter_scales_the_capped_delay() -> None:
    assert retry_delay(3, delay=1, backoff=2, max_delay=600, jitter=True, rand=lambda: 0.5) == 2.0


@given(
    n=st.integers(1, 10_000),
    delay=st.floats(0, 1e6),
    backoff=st.floats(1, 100),
    cap=st.floats(0, 1e6),
    r=st.floats(0, 1),
)
def test_a_delay_is_never_negative_nor_above_the_cap(
    n: int, delay: float, backoff: float, cap: float, r: float
) -> None:
    d = retry_delay(n, delay=delay, backoff=backoff, max_delay=cap, jitter=True, rand=lambda: r)
    assert 0 <= d <= cap
