"""When a binding's next keepalive is due, sans-I/O: the engine's keepalive schedule.

Keepalives go `interval` (jittered down by up to `jitter`) after the previous one was sent, or
`retry_interval` while unreachable. A keepalive may go as soon as its window opens (the shortest
wait the jitter allows, or KEEPALIVE_EARLY before a deadline that was not drawn) when the loop
offers it, with the loop's draw for its next wait: bindings sent in one wake-up stay together.
A new flow (start, new server or local address, a changed or expired binding) gets a second
keepalive PROMOTE_DELAY after the first, so a Linux NAT moves the flow to its long stream
timeout; with an interval (or retry_interval while unreachable) no longer than that, the next
keepalive comes on its usual wait, which is never stretched to PROMOTE_DELAY.
"""

from __future__ import annotations

from natkeepalive import events as ev
from natkeepalive.core.reachability import UNREACHABLE
from natkeepalive.core.wire import PROMOTE_DELAY, jitter_draw

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from natkeepalive.config.model import ProbeSettings
    from natkeepalive.core.reachability import Reachability

# How early a keepalive whose wait was not drawn (the first, the promoting one, one brought
# forward) may go when the loop is awake anyway: 1 % of its interval, at most EARLY_CAP, is
# harmless against any NAT timeout and lets one wake-up serve several bindings: wake-ups, not
# the keepalives themselves, are most of an idle agent's CPU. A drawn wait may end anywhere the
# jitter allows.
KEEPALIVE_EARLY = 0.01
EARLY_CAP = 0.05


class KeepaliveSchedule:
    """The keepalive schedule's part of core/engine.py's BindingEngine (a base class of it, so
    the engine's calls stay plain method calls)."""

    # No __dict__ for the engine; mypy is kept from checking the engine's assignments against
    # these empty slots (the engine's own hold the fields).
    if not TYPE_CHECKING:
        __slots__ = ()

    # the engine's fields the schedule reads and sets
    interval: float
    jitter: float
    settings: ProbeSettings
    reach: Reachability
    next_keepalive: float | None
    keepalive_from: float
    last_keepalive_at: float | None
    _random: Callable[[int], bytes]
    flow_timer: float | None
    name: str
    queued_events: list[ev.Event]

    def set_interval(self, interval: float, reason: str, now: float) -> None:
        if self.flow_timer is not None and interval > self.flow_timer:
            interval = self.flow_timer  # RFC 5626: the server's limit is never exceeded
        if interval == self.interval:
            return
        self.queued_events.append(
            ev.IntervalAdjusted(self.name, round(self.interval, 3), round(interval, 3), reason)
        )
        self.interval = interval
        if self.last_keepalive_at is not None and self.next_keepalive is not None:
            self._bring_forward(max(now, self.last_keepalive_at + interval))

    def _base(self) -> float:
        if self.reach.state == UNREACHABLE:
            return min(self.interval, self.settings.retry_interval)
        return self.interval

    def _wait(self, draw: float | None = None) -> float:
        if draw is None:
            draw = jitter_draw(self._random)
        return self._base() * (1.0 - self.jitter * draw)

    def _schedule(self, at: float, window: float | None = None) -> None:
        """The next keepalive is due at `at`; it may go from `window` (where a drawn wait's
        range begins) when that is earlier, else KEEPALIVE_EARLY before `at`. A drawn wait never
        goes before its window: with a draw near 1 the allowance would reach below the jitter's
        range (20 s, jitter 0.2: a wait of 15.985 s, found by test_state_properties). That holds
        also when such a draw rounds `at` onto the window (jitter 0.5, a draw of 1 - 2**-53: a
        wait of 9.96 s); only without jitter, where the window is `at` itself, does the
        allowance apply."""
        self.next_keepalive = at
        if window is not None and (window < at or self.jitter > 0):
            self.keepalive_from = window
        else:
            self.keepalive_from = at - self._allowance()

    def _bring_forward(self, at: float) -> None:
        assert self.next_keepalive is not None
        if at < self.next_keepalive:
            self.next_keepalive = at
        self.keepalive_from = min(self.keepalive_from, self.next_keepalive - self._allowance())

    def _allowance(self) -> float:
        """How early a deadline that was not drawn may be met."""
        early = KEEPALIVE_EARLY * self.interval
        return early if early < EARLY_CAP else EARLY_CAP

    def _renew(self, now: float) -> None:
        """The NAT made a new binding: promote its flow with an early second keepalive."""
        if self.last_keepalive_at is not None and self.next_keepalive is not None:
            self._bring_forward(max(now, self.last_keepalive_at + PROMOTE_DELAY))
