"""When the daemon's routine work is due: the local-address check, the counters' status write,
the drop report and the service manager's watchdog.

Routine work runs up to EARLY of its period ahead of time when the loop is awake anyway, and
waits up to LATE of a period for such a wake-up: with keepalives more frequent than that it never
wakes the process on its own. The drop report is a rate limit: late is fine, early is not.
"""

from __future__ import annotations

EARLY = 1 / 3
LATE = 1 / 2
NETWATCH_EVERY = 30.0
STATUS_COUNTERS_EVERY = 30.0
DROP_REPORT_EVERY = 60.0
WATCHDOG_DEFAULT = 30.0  # when the service manager asked for pings but gave no interval


class Periodic:
    """A task due every `period` seconds from `now`."""

    __slots__ = ("at", "early", "period")

    def __init__(self, period: float, now: float, *, early: bool = True) -> None:
        self.period = period
        self.early = period * EARLY if early else 0.0
        self.at = now + period

    def due(self, now: float) -> bool:
        return now >= self.at - self.early

    def done(self, now: float) -> None:
        self.at = now + self.period

    def latest(self) -> float:
        """When the loop must wake for it at the latest."""
        return self.at + self.period * LATE


class Housekeeping:
    """The routine tasks' deadlines; the daemon asks which are due and does them."""

    def __init__(self, now: float, watchdog: bool) -> None:
        # module globals read here, so a test may change them before the daemon starts
        self.netwatch = Periodic(NETWATCH_EVERY, now)
        self.counters = Periodic(STATUS_COUNTERS_EVERY, now)
        self.drops = Periodic(DROP_REPORT_EVERY, now, early=False)
        self.recheck_at: float | None = None  # a local-address check asked for, not routine
        self.watchdog_at: float | None = now if watchdog else None
        self.drops_reported = 0
        self.drops_since = now

    def recheck(self, at: float) -> None:
        """Check every binding's local address at `at` (or sooner if already asked)."""
        self.recheck_at = at if self.recheck_at is None else min(self.recheck_at, at)

    def netwatch_due(self, now: float) -> bool:
        """Whether to check local addresses now; if so, counted as done."""
        if (self.recheck_at is not None and now >= self.recheck_at) or self.netwatch.due(now):
            self.netwatch.done(now)
            self.recheck_at = None
            return True
        return False

    def watchdog_due(self, now: float, interval: float | None) -> bool:
        if self.watchdog_at is None or now < self.watchdog_at:
            return False
        self.watchdog_at = now + (interval or WATCHDOG_DEFAULT)
        return True

    def drop_report(self, now: float, dropped: int) -> tuple[int, float] | None:
        """When the report is due: (datagrams dropped since the last report, over how many
        seconds), or None if none were; `dropped` is the running total."""
        if not self.drops.due(now):
            return None
        self.drops.done(now)
        report = None
        if dropped > self.drops_reported:
            report = dropped - self.drops_reported, round(now - self.drops_since, 0)
            self.drops_reported = dropped
        self.drops_since = now
        return report

    def counters_due(self, now: float) -> bool:
        if self.counters.due(now):
            self.counters.done(now)
            return True
        return False

    def wake_by(self) -> float:
        """The latest the loop may sleep until for these tasks."""
        wake = min(self.netwatch.latest(), self.counters.latest(), self.drops.latest())
        if self.recheck_at is not None:
            wake = min(wake, self.recheck_at)
        if self.watchdog_at is not None:
            wake = min(wake, self.watchdog_at)
        return wake
