"""Reachability of a binding's server, with hysteresis.

Rules:
- Inputs are probe outcomes: FAST (answered, RTT <= lagged_ms), SLOW (answered, RTT above it),
  FAIL (timed out, or a non-2xx answer under require_2xx).
- The table maps (state, input) to (next state, gate). Gate NOW moves at once; gate OK moves after
  `ok_threshold` consecutive answers; gate FAIL after `fail_threshold` consecutive failures.
- An event is produced on every change of state and on no other input.
"""

from __future__ import annotations

from natkeepalive import events as ev
from natkeepalive.errors import LocalProtocolError

UNKNOWN, REACHABLE, LAGGED, UNREACHABLE = "unknown", "reachable", "lagged", "unreachable"
STATES = (UNKNOWN, REACHABLE, LAGGED, UNREACHABLE)
FAST, SLOW, FAIL = "fast", "slow", "fail"
INPUTS = (FAST, SLOW, FAIL)
NOW, OK, FAILS = "now", "ok", "fails"

TRANSITIONS: dict[tuple[str, str], tuple[str, str]] = {
    (UNKNOWN, FAST): (REACHABLE, OK),
    (UNKNOWN, SLOW): (LAGGED, OK),
    (UNKNOWN, FAIL): (UNREACHABLE, FAILS),
    (REACHABLE, FAST): (REACHABLE, NOW),
    (REACHABLE, SLOW): (LAGGED, NOW),
    (REACHABLE, FAIL): (UNREACHABLE, FAILS),
    (LAGGED, FAST): (REACHABLE, NOW),
    (LAGGED, SLOW): (LAGGED, NOW),
    (LAGGED, FAIL): (UNREACHABLE, FAILS),
    (UNREACHABLE, FAST): (REACHABLE, OK),
    (UNREACHABLE, SLOW): (LAGGED, OK),
    (UNREACHABLE, FAIL): (UNREACHABLE, NOW),
}


class Reachability:
    __slots__ = (
        "answers",
        "binding",
        "fail_threshold",
        "failures",
        "lagged_ms",
        "ok_threshold",
        "state",
    )

    def __init__(
        self, binding: str, fail_threshold: int, ok_threshold: int, lagged_ms: int
    ) -> None:
        self.binding = binding
        self.fail_threshold = fail_threshold
        self.ok_threshold = ok_threshold
        self.lagged_ms = lagged_ms
        self.state = UNKNOWN
        self.answers = 0  # consecutive
        self.failures = 0  # consecutive

    def classify(self, rtt_ms: float | None) -> str:
        if rtt_ms is None:
            return FAIL
        return SLOW if rtt_ms > self.lagged_ms else FAST

    def feed(self, rtt_ms: float | None, reason: str = "no answer") -> ev.Event | None:
        """One probe outcome (None = failed, for `reason`); returns the transition's event."""
        if self.state == REACHABLE and rtt_ms is not None and rtt_ms <= self.lagged_ms:
            # (REACHABLE, FAST) -> (REACHABLE, NOW): nearly every answer, so without the table
            self.answers += 1
            self.failures = 0
            return None
        kind = self.classify(rtt_ms)
        if kind == FAIL:
            self.failures += 1
            self.answers = 0
        else:
            self.answers += 1
            self.failures = 0
        try:
            target, gate = TRANSITIONS[(self.state, kind)]
        except KeyError:  # pragma: no cover - the table is total; this guards edits
            raise LocalProtocolError(f"no transition for {(self.state, kind)}") from None
        if gate == OK and self.answers < self.ok_threshold:
            return None
        if gate == FAILS and self.failures < self.fail_threshold:
            return None
        if target == self.state:
            return None
        self.state = target
        if target == UNREACHABLE:
            return ev.Unreachable(self.binding, self.failures, reason)
        assert rtt_ms is not None
        if target == LAGGED:
            return ev.Lagged(self.binding, round(rtt_ms, 2), self.lagged_ms)
        return ev.Reachable(self.binding, round(rtt_ms, 2))
