"""runtime/housekeeping.py: when routine work is due, on a plain number line for a clock."""

from __future__ import annotations

from natkeepalive.runtime.housekeeping import (
    DROP_REPORT_EVERY,
    NETWATCH_EVERY,
    STATUS_COUNTERS_EVERY,
    Housekeeping,
    Periodic,
)


def test_a_periodic_task_may_run_a_third_early_and_waits_half_a_period_at_most() -> None:
    task = Periodic(30.0, 100.0)
    assert not task.due(119.9)
    assert task.due(120.0)  # 10 s early: the loop is awake anyway
    assert task.latest() == 145.0
    task.done(121.0)
    assert task.at == 151.0


def test_a_rate_limit_is_never_early() -> None:
    task = Periodic(60.0, 0.0, early=False)
    assert not task.due(59.9) and task.due(60.0)


def test_the_drop_report_counts_since_the_last_one() -> None:
    routine = Housekeeping(0.0, watchdog=False)
    assert routine.drop_report(DROP_REPORT_EVERY - 1, 5) is None  # not yet due
    assert routine.drop_report(DROP_REPORT_EVERY, 5) == (5, DROP_REPORT_EVERY)
    assert routine.drop_report(2 * DROP_REPORT_EVERY + 3, 5) is None  # none since
    assert routine.drop_report(3 * DROP_REPORT_EVERY + 10, 9) == (4, DROP_REPORT_EVERY + 7)


def test_a_recheck_brings_the_address_check_forward_once() -> None:
    routine = Housekeeping(0.0, watchdog=False)
    routine.recheck(5.0)
    routine.recheck(8.0)  # a later request keeps the earlier one
    assert routine.wake_by() == 5.0
    assert not routine.netwatch_due(4.9)
    assert routine.netwatch_due(5.0)
    assert routine.recheck_at is None and not routine.netwatch_due(6.0)
    assert routine.netwatch.at == 5.0 + NETWATCH_EVERY  # the routine check counts from here


def test_the_watchdog_is_pinged_at_start_and_then_every_interval() -> None:
    routine = Housekeeping(0.0, watchdog=True)
    assert routine.wake_by() == 0.0
    assert routine.watchdog_due(0.0, 10.0)
    assert not routine.watchdog_due(9.9, 10.0)
    assert routine.watchdog_due(10.0, 10.0)
    assert not Housekeeping(0.0, watchdog=False).watchdog_due(1000.0, 10.0)


def test_without_anything_asked_the_loop_wakes_for_the_earliest_routine_task() -> None:
    routine = Housekeeping(0.0, watchdog=False)
    assert routine.wake_by() == min(NETWATCH_EVERY, STATUS_COUNTERS_EVERY, DROP_REPORT_EVERY) * 1.5
    assert not routine.counters_due(STATUS_COUNTERS_EVERY * 2 / 3 - 0.1)
    assert routine.counters_due(STATUS_COUNTERS_EVERY * 2 / 3)
