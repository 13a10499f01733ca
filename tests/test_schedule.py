"""The schedule model: due times, time zones and DST as croniter and zoneinfo define them, and
the decision one scheduler tick makes. Pure; the clock is a number passed in."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.errors import ConfigurationError
from conveyor.schedule import (
    MIN_GRACE_SECONDS,
    Cron,
    Decision,
    Every,
    PeriodicSpec,
    Schedule,
    due_now,
    make_schedule,
)

BERLIN = ZoneInfo("Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def berlin(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, fold: int = 0
) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN, fold=fold).timestamp()


def croniter_next(expr: str, tz: ZoneInfo, after: float) -> float:
    return float(croniter(expr, datetime.fromtimestamp(math.floor(after), tz)).get_next(float))


def spec(schedule: Schedule, **kwargs: object) -> PeriodicSpec:
    return PeriodicSpec("tasks.tick", schedule, **kwargs)  # type: ignore[arg-type]


# -- cron ------------------------------------------------------------------------------------


def test_cron_next_due_is_strictly_after_the_given_time() -> None:
    cron = Cron("*/5 * * * *")
    assert cron.next_due(utc(2024, 5, 1, 12, 4, 59)) == utc(2024, 5, 1, 12, 5)
    assert cron.next_due(utc(2024, 5, 1, 12, 5)) == utc(2024, 5, 1, 12, 10)
    assert cron.next_due(utc(2024, 5, 1, 12, 5) + 0.5) == utc(2024, 5, 1, 12, 10)
    assert cron.next_due(utc(2024, 5, 1, 12, 5) - 0.5) == utc(2024, 5, 1, 12, 5)


def test_cron_latest_due_includes_the_given_time() -> None:
    cron = Cron("*/5 * * * *")
    assert cron.latest_due(utc(2024, 5, 1, 12, 5)) == utc(2024, 5, 1, 12, 5)
    assert cron.latest_due(utc(2024, 5, 1, 12, 5) + 0.5) == utc(2024, 5, 1, 12, 5)
    assert cron.latest_due(utc(2024, 5, 1, 12, 5) - 0.5) == utc(2024, 5, 1, 12, 0)
    assert cron.latest_due(utc(2024, 5, 1, 12, 9, 59)) == utc(2024, 5, 1, 12, 5)


def test_cron_describes_itself_with_its_time_zone() -> None:
    assert Cron("*/5 * * * *", "Europe/Berlin").describe() == "cron */5 * * * * (Europe/Berlin)"
    assert Cron("@hourly").describe() == "cron @hourly (UTC)"


def test_cron_period_is_the_longest_gap_between_due_times() -> None:
    assert Cron("*/5 * * * *").period_seconds == 300
    assert Cron("@hourly").period_seconds == 3600
    assert Cron("0 9 * * 1-5").period_seconds == 3 * 86400  # Friday to Monday


def test_cron_in_a_time_zone_follows_local_wall_clock_time() -> None:
    nine_berlin = Cron("0 9 * * *", "Europe/Berlin")
    assert nine_berlin.next_due(utc(2024, 1, 15)) == utc(2024, 1, 15, 8)  # CET, UTC+1
    assert nine_berlin.next_due(utc(2024, 7, 15)) == utc(2024, 7, 15, 7)  # CEST, UTC+2


def test_cron_daily_job_in_the_skipped_hour_runs_as_croniter_says_on_spring_forward() -> None:
    # 2024-03-31 in Berlin: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist that day.
    cron = Cron("30 2 * * *", "Europe/Berlin")
    due = cron.next_due(berlin(2024, 3, 30, 12))
    assert due == croniter_next("30 2 * * *", BERLIN, berlin(2024, 3, 30, 12))
    assert berlin(2024, 3, 31) < due < berlin(2024, 4, 1)  # once that day, not skipped
    assert cron.next_due(due) == berlin(2024, 4, 1, 2, 30)


def test_cron_hourly_job_runs_each_absolute_hour_across_fall_back() -> None:
    # 2024-10-27 in Berlin: 03:00 CEST falls back to 02:00 CET, so 02:00 happens twice.
    cron = Cron("0 * * * *", "Europe/Berlin")
    due = berlin(2024, 10, 26, 23)
    dues = []
    for _ in range(8):
        due = cron.next_due(due)
        dues.append(due)
    assert [b - a for a, b in itertools.pairwise(dues)] == [3600.0] * 7
    assert berlin(2024, 10, 27, 2, fold=0) in dues
    assert berlin(2024, 10, 27, 2, fold=1) in dues


DST_EXPRESSIONS = ["30 2 * * *", "0 2 * * *", "0 3 * * *", "0 * * * *", "*/15 * * * *", "@daily"]


def around(start: float, end: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=start, max_value=end, allow_nan=False, allow_infinity=False)


SPRING_FORWARD = around(berlin(2024, 3, 29), berlin(2024, 4, 2))
FALL_BACK = around(berlin(2024, 10, 25), berlin(2024, 10, 29))


@pytest.mark.parametrize("window", [SPRING_FORWARD, FALL_BACK], ids=["spring", "fall"])
@pytest.mark.parametrize("expr", DST_EXPRESSIONS)
def test_cron_due_times_around_dst_agree_with_croniter_and_only_increase(
    expr: str, window: st.SearchStrategy[float]
) -> None:
    cron = Cron(expr, "Europe/Berlin")

    @settings(max_examples=60, deadline=None)
    @given(t=window)
    def check(t: float) -> None:
        nxt, latest = cron.next_due(t), cron.latest_due(t)
        assert nxt == croniter_next(expr, BERLIN, t)
        assert latest is not None and latest <= t < nxt
        # Nothing is due between the latest and the next due time: one tick's view is whole.
        assert cron.next_due(latest) == nxt
        assert cron.latest_due(nxt) == nxt
        dues = [nxt]
        for _ in range(30):
            dues.append(cron.next_due(dues[-1]))
        assert all(a < b for a, b in itertools.pairwise(dues))

    check()


@pytest.mark.parametrize("window", [SPRING_FORWARD, FALL_BACK], ids=["spring", "fall"])
@pytest.mark.parametrize("expr", DST_EXPRESSIONS)
def test_cron_latest_due_never_goes_backwards_as_time_passes(
    expr: str, window: st.SearchStrategy[float]
) -> None:
    cron = Cron(expr, "Europe/Berlin")

    @settings(max_examples=60, deadline=None)
    @given(a=window, b=window)
    def check(a: float, b: float) -> None:
        early, late = sorted((a, b))
        assert (cron.latest_due(early) or 0.0) <= (cron.latest_due(late) or 0.0)

    check()


# -- every -----------------------------------------------------------------------------------


def test_every_due_times_are_multiples_of_the_period_since_the_epoch() -> None:
    hourly = Every(3600)
    assert hourly.next_due(utc(2024, 5, 1, 12, 17, 3)) == utc(2024, 5, 1, 13)
    assert hourly.latest_due(utc(2024, 5, 1, 12, 17, 3)) == utc(2024, 5, 1, 12)
    assert Every(7).next_due(100.0) == 105.0
    assert Every(7).latest_due(105.0) == 105.0


@settings(max_examples=300)
@given(
    period=st.floats(min_value=1, max_value=10 * 86400, allow_nan=False),
    t=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    later=st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
def test_every_gives_the_same_due_times_whenever_a_scheduler_asks(
    period: float, t: float, later: float
) -> None:
    every = Every(period)
    latest = every.latest_due(t)
    assert latest is not None and latest <= t < every.next_due(t)
    assert every.next_due(t) == latest + period
    # A second scheduler asking later in the same period computes the very same due time.
    if t + later < every.next_due(t):
        assert every.latest_due(t + later) == latest


def test_every_describes_itself_in_the_largest_whole_unit() -> None:
    assert Every(3600).describe() == "every 1h"
    assert Every(86400 * 2).describe() == "every 2d"
    assert Every(300).describe() == "every 5m"
    assert Every(90).describe() == "every 90s"
    assert Every(1.5).describe() == "every 1.5s"


# -- make_schedule ---------------------------------------------------------------------------


def test_make_schedule_builds_cron_and_every_schedules() -> None:
    assert make_schedule(cron="*/5 * * * *", every=None, tz="Europe/Berlin") == Cron(
        "*/5 * * * *", "Europe/Berlin"
    )
    assert make_schedule(cron=None, every=timedelta(hours=1)) == Every(3600)
    assert make_schedule(cron=None, every=1) == Every(1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cron": None, "every": None}, "exactly one of cron"),
        ({"cron": "* * * * *", "every": 60}, "exactly one of cron"),
        ({"cron": "61 * * * *", "every": None}, "bad cron expression '61 * * * *'"),
        ({"cron": "every five minutes", "every": None}, "bad cron expression"),
        ({"cron": "* * * *", "every": None}, "bad cron expression"),
        ({"cron": "*/5 * * * *", "every": None, "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"cron": "*/5 * * * *", "every": None, "tz": "../etc"}, "unknown time zone"),
        ({"cron": None, "every": 0.5}, "at least 1 second"),
        ({"cron": None, "every": 0}, "at least 1 second"),
        ({"cron": None, "every": -60}, "at least 1 second"),
        ({"cron": None, "every": timedelta(milliseconds=500)}, "at least 1 second"),
        ({"cron": None, "every": math.inf}, "at least 1 second"),
        ({"cron": None, "every": "60"}, "seconds or a timedelta"),
    ],
)
def test_make_schedule_rejects_bad_input_with_a_clear_message(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("*", r"\*")):
        make_schedule(**kwargs)  # type: ignore[arg-type]


def test_negative_misfire_grace_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="misfire_grace"):
        spec(Every(60), misfire_grace=-1)


def test_misfire_grace_defaults_to_one_period() -> None:
    assert spec(Every(60)).grace_seconds == 60
    assert spec(Every(60), misfire_grace=5).grace_seconds == 5
    assert spec(Cron("0 9 * * 1-5")).grace_seconds == 3 * 86400


def test_a_due_time_noticed_within_the_schedulers_own_latency_is_never_a_misfire() -> None:
    strict = spec(Every(HOUR), misfire_grace=0)
    assert strict.grace_seconds == MIN_GRACE_SECONDS
    assert due_now(strict, T - HOUR, T + 1.5).due == T
    assert due_now(strict, T - HOUR, T + MIN_GRACE_SECONDS + 0.5).due is None


# -- one tick's decision ---------------------------------------------------------------------

HOUR = 3600.0
T = utc(2024, 5, 1, 12)  # a due time of an hourly schedule


def test_a_due_time_reached_since_the_last_one_is_enqueued() -> None:
    decision = due_now(spec(Every(HOUR)), T - HOUR, T + 0.3)
    assert decision == Decision(due=T, next_check=T + HOUR, skip_if_active=False)


def test_nothing_is_due_between_due_times() -> None:
    decision = due_now(spec(Every(HOUR)), T, T + 1800)
    assert decision.due is None
    assert not decision.skipped
    assert decision.next_check == T + HOUR


def test_first_start_does_not_back_fill_earlier_due_times() -> None:
    # Nothing recorded: the scheduler passes the time it first saw the task (or None).
    assert due_now(spec(Every(HOUR)), None, T + 10).due is None
    assert due_now(spec(Every(HOUR)), T + 10, T + 10).due is None
    after_start = due_now(spec(Every(HOUR)), T + 10, T + HOUR + 0.5)
    assert after_start.due == T + HOUR
    assert not after_start.skipped


def test_missed_due_times_within_grace_run_the_latest_once_and_skip_the_rest() -> None:
    decision = due_now(spec(Every(HOUR)), T - 10 * HOUR, T + 20 * 60)
    assert decision.due == T
    assert (decision.skipped_first, decision.skipped_last) == (T - 9 * HOUR, T - HOUR)
    assert decision.next_check == T + HOUR


def test_one_missed_due_time_within_grace_runs_without_skipping_any() -> None:
    decision = due_now(spec(Every(HOUR), misfire_grace=600), T - HOUR, T + 599)
    assert decision.due == T
    assert not decision.skipped


def test_a_due_time_later_than_its_grace_is_skipped_not_run() -> None:
    decision = due_now(spec(Every(HOUR), misfire_grace=600), T - 3 * HOUR, T + 601)
    assert decision.due is None
    assert (decision.skipped_first, decision.skipped_last) == (T - 2 * HOUR, T)
    assert decision.next_check == T + HOUR


def test_a_cron_misfire_is_judged_by_its_own_due_times() -> None:
    weekdays = spec(Cron("0 9 * * 1-5"), misfire_grace=3600)
    friday, monday = utc(2024, 5, 3, 9), utc(2024, 5, 6, 9)
    late = due_now(weekdays, friday - 86400, friday + 7200)
    assert late.due is None and late.skipped_last == friday
    assert late.next_check == monday


@settings(max_examples=200)
@given(
    period=st.integers(min_value=1, max_value=86400),
    last=st.floats(min_value=1e9, max_value=2e9, allow_nan=False),
    down=st.floats(min_value=0, max_value=1e7, allow_nan=False),
)
def test_with_the_default_grace_the_latest_missed_due_time_always_runs(
    period: int, last: float, down: float
) -> None:
    every = Every(period)
    now = last + down
    decision = due_now(spec(every), last, now)
    latest = every.latest_due(now)
    assert latest is not None
    assert decision.due == (latest if latest > last else None)
    assert decision.next_check > now


def test_overlap_false_asks_the_backend_to_skip_while_the_previous_run_is_active() -> None:
    assert due_now(spec(Every(HOUR), overlap=False), T - HOUR, T).skip_if_active
    assert not due_now(spec(Every(HOUR)), T - HOUR, T).skip_if_active


def test_a_due_time_recorded_ahead_of_this_clock_is_not_repeated() -> None:
    # Another scheduler with a clock running ahead recorded the next due time already.
    decision = due_now(spec(Every(HOUR)), T + HOUR, T + 1800)
    assert decision.due is None
    assert decision.next_check == T + 2 * HOUR
