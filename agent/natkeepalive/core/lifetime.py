"""The lifetime search, sans-I/O: which idle time the next discovery trial tries.

The search grows the idle time (doubling from `start`) until a trial expires or `max_idle` is
reached, then bisects until hi - lo <= max(resolution_min, resolution * lo). `lo` is the largest
idle that survived, `hi` the smallest that expired; the lifetime lies between them.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from natkeepalive.record import dataclass


@dataclass(frozen=True)
class SearchResult:
    lifetime_s: float | None  # the largest idle that survived (None: not even `start`)
    lo_s: float
    hi_s: float | None  # None: nothing expired up to max_idle
    trials: int
    method: str


class LifetimeSearch:
    """Grow, then bisect. Pure bookkeeping: which idle time to try next, and when to stop."""

    def __init__(
        self,
        start: float = 5.0,
        max_idle: float = 600.0,
        resolution: float = 0.1,
        resolution_min: float = 1.0,
    ) -> None:
        self.start = min(start, max_idle)
        self.max_idle = max_idle
        self.resolution = resolution
        self.resolution_min = resolution_min
        self.lo = 0.0
        self.hi: float | None = None
        self.trials = 0

    def next_idle(self) -> float | None:
        if self.hi is None:
            if self.lo >= self.max_idle:
                return None
            candidate = self.start if self.lo == 0.0 else self.lo * 2.0
            return min(candidate, self.max_idle)
        if self.hi - self.lo <= max(self.resolution_min, self.resolution * self.lo):
            return None
        return round((self.lo + self.hi) / 2.0, 3)

    def record(self, idle: float, survived: bool) -> None:
        self.trials += 1
        if survived:
            self.lo = max(self.lo, idle)
        else:
            self.hi = idle if self.hi is None else min(self.hi, idle)

    def result(self, method: str) -> SearchResult:
        return SearchResult(self.lo if self.lo > 0 else None, self.lo, self.hi, self.trials, method)


def recommended_interval(
    lo_s: float, safety: float, interval_min: float, interval_max: float
) -> float:
    """safety × lo, inside [interval_min, interval_max]: jitter only ever shortens a wait."""
    return max(interval_min, min(interval_max, round(safety * lo_s, 3)))
