"""runtime/slot.py on real sockets: refresh() looks again only when something it depends on can
have moved (refresh before every keepalive was a measurable part of its CPU: the figure is
in docs/performance.md)."""

from __future__ import annotations

import _socket
import os

import pytest

from natkeepalive.config.model import BindingConfig, Target
from natkeepalive.runtime.addrwatch import AddressWatch
from natkeepalive.runtime.slot import Slot
from tests.support.helpers import free_port


@pytest.fixture
def watch() -> AddressWatch:
    # Any socket stands in for rtnetlink: only its presence matters to AddressWatch.ask.
    a, b = _socket.socketpair()
    b.close()
    return AddressWatch(a)


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The times Slot.check_local ran (it still runs)."""
    seen: list[float] = []
    check_local = Slot.check_local

    def counted(self: Slot, now: float, out: list[object]) -> None:
        seen.append(now)
        check_local(self, now, out)  # type: ignore[arg-type]

    monkeypatch.setattr(Slot, "check_local", counted)
    return seen


def _slot(watch: AddressWatch) -> Slot:
    config = BindingConfig(
        name="b", server=Target("127.0.0.1", 5060), source_port=free_port(), bind="127.0.0.1"
    )
    return Slot(config, os.urandom, watch)


def test_refresh_checks_again_only_after_a_change(checks: list[float], watch: AddressWatch) -> None:
    slot = _slot(watch)
    try:
        slot.refresh(1.0, [])
        assert len(checks) == 1 and slot.sock is not None
        first = slot.sock
        slot.refresh(2.0, [])
        slot.refresh(3.0, [])
        assert len(checks) == 1  # nothing moved: no second look
        watch.forget()  # an address or route change was announced, or the 30-s check
        slot.refresh(4.0, [])
        assert len(checks) == 2 and slot.sock is first  # looked, found it where it belongs
        slot.refresh(5.0, [])
        assert len(checks) == 2
        slot.close()
        slot.refresh(6.0, [])
        assert len(checks) == 3 and slot.sock is not None  # reopened
    finally:
        slot.close()
        watch.close()


def test_without_rtnetlink_every_refresh_looks(checks: list[float]) -> None:
    slot = _slot(AddressWatch(None))  # no announcements: ask every time
    try:
        for now in (1.0, 2.0, 3.0):
            slot.refresh(now, [])
        assert len(checks) == 3
    finally:
        slot.close()
