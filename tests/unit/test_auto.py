"""runtime/auto.py's reaction to the binding's own events (no socket is opened: discovery never
starts, the measurement is handed over through AutoInterval.adopt)."""

from __future__ import annotations

import os

import pytest

from natkeepalive import events as ev
from natkeepalive.config.model import BindingConfig, ProbeSettings, Target
from natkeepalive.runtime.auto import AutoInterval
from natkeepalive.runtime.slot import Slot

SAFE = 10.0
LIFETIME = 5.0


@pytest.fixture
def auto() -> AutoInterval:
    settings = ProbeSettings(
        interval=SAFE,
        interval_auto=True,
        interval_min=2.0,
        interval_max=SAFE,
        safety=0.9,
        jitter=0.2,
    )
    slot = Slot(
        BindingConfig(
            name="b", server=Target("192.0.2.1", 5060), source_port=5062, settings=settings
        ),
        os.urandom,
    )
    auto = AutoInterval(slot, os.urandom, now=0.0)
    out: list[ev.Event] = []
    auto.adopt(LIFETIME, LIFETIME + 0.25, 60.0, out)
    assert out == [ev.LifetimeDiscovered("b", LIFETIME, LIFETIME, LIFETIME + 0.25)]
    auto.next_start = 60.0 + 24 * 3600.0  # as a finished discovery leaves it
    assert slot.engine.events() == [ev.IntervalAdjusted("b", SAFE, 4.5, "lifetime-discovered")]
    return auto


def _expired(idle_s: float) -> ev.BindingExpired:
    return ev.BindingExpired("b", "203.0.113.1:4000", idle_s, "remap")


@pytest.mark.parametrize("idle_s", [LIFETIME, 9.5, LIFETIME - 0.05])  # the last: rounded down
def test_an_expiry_after_the_measured_lifetime_keeps_the_interval(
    auto: AutoInterval, idle_s: float
) -> None:
    """The keepalive before the adaptation went on the safe interval: the binding it finds
    expired sat idle longer than the lifetime, which is what the measurement said."""
    auto.on_event(_expired(idle_s), 70.0)
    assert auto.slot.engine.interval == 4.5 and auto.slot.engine.events() == []
    assert auto.lifetime == LIFETIME
    assert auto.next_start == 60.0 + 24 * 3600.0  # no new discovery


@pytest.mark.parametrize("idle_s", [4.4, LIFETIME - 0.1])
def test_an_expiry_sooner_than_the_lifetime_falls_back_and_rediscovers(
    auto: AutoInterval, idle_s: float
) -> None:
    auto.on_event(_expired(idle_s), 70.0)
    engine = auto.slot.engine
    assert engine.interval == SAFE and engine.jitter == 0.2
    assert engine.events() == [ev.IntervalAdjusted("b", 4.5, SAFE, "binding-expired")]
    assert auto.lifetime is None  # the status file no longer shows a lifetime proved wrong
    assert auto.next_start == 70.0
    auto.on_event(_expired(9.5), 80.0)  # the safe interval expires too while discovery runs
    assert engine.interval == SAFE and engine.events() == []


def test_a_new_public_address_rediscovers_and_keeps_the_interval_meanwhile(
    auto: AutoInterval,
) -> None:
    auto.on_event(
        ev.BindingChanged("b", "203.0.113.1:4000", "198.51.100.7:4000", "address-changed"), 70.0
    )
    assert auto.lifetime is None and auto.next_start == 70.0
    assert auto.slot.engine.interval == 4.5
    auto.on_event(
        ev.BindingChanged("b", "203.0.113.1:4000", "203.0.113.1:4001", "port-remapped"), 71.0
    )
    assert auto.next_start == 70.0  # a port change alone says nothing new


def test_discovery_uses_the_bindings_stun_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """interval: auto measures with the binding's stun_server, resolved by its slot."""
    settings = ProbeSettings(
        interval=SAFE, interval_auto=True, stun_server=Target("198.51.100.20", 3478)
    )
    slot = Slot(
        BindingConfig(
            name="b", server=Target("192.0.2.1", 5060), source_port=5062, settings=settings
        ),
        os.urandom,
    )
    slot.server = ("192.0.2.1", 5060)
    slot._refresh_stun(0.0, None)  # an address: resolved in place, once
    assert slot.engine.stun_server == ("198.51.100.20", 3478)
    assert slot.stun_next == float("inf")
    auto = AutoInterval(slot, os.urandom, now=0.0)
    monkeypatch.setattr(auto, "_next_trial", lambda now, out: None)  # no socket here
    auto.handle_timer(10.0, [])
    assert auto.discovery is not None
    assert auto.discovery.stun_server == ("198.51.100.20", 3478)
