"""runtime/timers.py: deadlines by owner, the retransmission queue beside the heap, lazy deletion;
and the daemon's timers run on a fake clock with the fake sockets and poller of
tests/bench/hotpath.py (no real time passes: the poller jumps the clock to the deadline)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from natkeepalive.config.loader import parse_config
from natkeepalive.runtime import (
    control as control_module,
    daemon as daemon_module,
    slot as slot_module,
    sockets as sockets_module,
)
from natkeepalive.runtime.daemon import Daemon
from natkeepalive.runtime.logsink import ListSink
from natkeepalive.runtime.timers import Timers
from tests.bench.hotpath import SERVER, Clock, FakePoller, FakeSocket, Net


class Owner:
    def __init__(self, name: str) -> None:
        self.name = name
        self.scheduled: float | None = None

    def __repr__(self) -> str:
        return self.name


def due(timers: Timers, now: float) -> list[tuple[float, str]]:
    """Take every live entry due by `now`, as the daemon's loop does."""
    taken: list[tuple[float, str]] = []
    while True:
        heap = timers.settle(now)
        if not heap or heap[0][0] > now:
            return taken
        deadline, _seq, owner = timers.pop()
        if owner.scheduled == deadline:
            owner.scheduled = None
            taken.append((deadline, repr(owner)))


def test_entries_come_out_in_deadline_order_and_equal_ones_in_order_set() -> None:
    timers = Timers()
    a, b, c = Owner("a"), Owner("b"), Owner("c")
    timers.schedule(b, 2.0)
    timers.schedule(a, 1.0)
    timers.schedule(c, 2.0)
    assert due(timers, 1.5) == [(1.0, "a")]
    assert due(timers, 5.0) == [(2.0, "b"), (2.0, "c")]
    assert due(timers, 100.0) == []


def test_rescheduling_supersedes_and_cancelling_drops() -> None:
    timers = Timers()
    a, b = Owner("a"), Owner("b")
    timers.schedule(a, 1.0)
    timers.schedule(a, 3.0)  # the entry at 1.0 stays in the heap, superseded
    timers.schedule(b, 2.0)
    Timers.cancel(b)
    assert len(timers) == 3
    assert due(timers, 2.5) == []
    assert timers.settle(2.5)[0][0] == 3.0  # the top is the earliest live deadline
    assert due(timers, 3.0) == [(3.0, "a")]
    assert len(timers) == 0


def test_a_queued_deadline_that_is_earliest_of_all_joins_the_heap() -> None:
    timers = Timers()
    keepalive, retransmit = Owner("keepalive"), Owner("retransmit")
    timers.schedule(keepalive, 25.0)
    timers.schedule(retransmit, 0.5, queued=True)
    assert len(timers.heap) == 1 and len(timers.later) == 1
    assert timers.settle(0.1)[0][2] is retransmit  # not due, but the earliest: in the heap
    assert len(timers.later) == 0


def test_a_queued_deadline_superseded_in_the_queue_never_reaches_the_heap() -> None:
    timers = Timers()
    keepalive, answered = Owner("keepalive"), Owner("answered")
    timers.schedule(keepalive, 0.2)
    timers.schedule(answered, 0.5, queued=True)
    timers.schedule(answered, 25.0)  # the answer came: the queued entry is superseded
    assert len(timers.later) == 1
    timers.settle(0.1)
    assert len(timers.later) == 0  # dropped from the queue's head, never pushed
    assert all(entry[0] != 0.5 for entry in timers.heap)
    assert due(timers, 1.0) == [(0.2, "keepalive")]


def test_a_queued_deadline_joins_the_heap_when_due() -> None:
    timers = Timers()
    first, retransmit = Owner("first"), Owner("retransmit")
    timers.schedule(first, 0.2)
    timers.schedule(retransmit, 0.5, queued=True)
    timers.schedule(first, 10.0)
    assert due(timers, 0.4) == []
    assert due(timers, 0.5) == [(0.5, "retransmit")]


def test_a_deadline_earlier_than_the_queue_tail_goes_to_the_heap() -> None:
    timers = Timers()
    late, early = Owner("late"), Owner("early")
    timers.schedule(late, 2.0, queued=True)
    timers.schedule(early, 1.0, queued=True)  # out of order for the queue: the heap takes it
    assert len(timers.later) == 1 and len(timers.heap) == 1
    assert due(timers, 3.0) == [(1.0, "early"), (2.0, "late")]


# --- the daemon's loop on a fake clock ---------------------------------------------------------


class SilentNet(Net):
    """The server of hotpath.py, which can be told to stay silent."""

    def __init__(self) -> None:
        super().__init__()
        self.silent = False
        self.log: list[tuple[float, bytes]] = []
        self.clock: Clock | None = None

    def deliver(self) -> None:
        assert self.clock is not None
        self.log.extend((self.clock.now, payload) for payload in self.sent)
        if self.silent:
            self.sent.clear()
            return
        super().deliver()


@pytest.fixture
def fake_daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Daemon, SilentNet, Clock]]:
    net, clock = SilentNet(), Clock()
    net.clock = clock
    aux = FakeSocket(net, 0)
    monkeypatch.setattr(slot_module, "open_udp", lambda address, port, label: FakeSocket(net, port))
    monkeypatch.setattr(daemon_module, "Poller", lambda: FakePoller(net, clock))
    monkeypatch.setattr(sockets_module.AuxSockets, "open", lambda self, family: aux)
    text = (
        "log: {target: stderr, level: debug}\n"
        "defaults: {interval: 5, jitter: 0, timeout: 3, fail_threshold: 5, inbound_check: 0}\n"
        "bindings:\n"
        + "".join(
            f"  - {{name: b{i}, server: '{SERVER[0]}:{SERVER[1]}', source_port: {40000 + i}}}\n"
            for i in range(3)
        )
    )
    with tempfile.TemporaryDirectory() as folder:
        daemon = Daemon(
            parse_config(text, "test"),
            ListSink(),
            str(Path(folder) / "s.json"),
            clock=clock,
            wall=lambda: 1.8e9 + clock.now,
        )
        daemon.start()
        try:
            yield daemon, net, clock
        finally:
            daemon.shutdown("done")


def run_until(daemon: Daemon, clock: Clock, end: float) -> None:
    for _ in range(100000):  # bounded: each pass moves the clock or answers
        if clock.now >= end:
            return
        daemon.run_once()
    raise AssertionError("the loop did not advance the clock")


def sends_by_branch(net: SilentNet) -> dict[bytes, list[float]]:
    by_branch: dict[bytes, list[float]] = {}
    for at, payload in net.log:
        branch = payload.split(b"branch=", 1)[1].split(b"\r\n", 1)[0].split(b";", 1)[0]
        by_branch.setdefault(branch, []).append(at)
    return by_branch


def test_unanswered_requests_are_retransmitted_at_t1_then_twice_t1(
    fake_daemon: tuple[Daemon, SilentNet, Clock],
) -> None:
    daemon, net, clock = fake_daemon
    net.silent = True
    start = clock.now
    run_until(daemon, clock, start + 2.5)
    first = [sent for sent in sends_by_branch(net).values() if sent[0] < start + 1.0]
    assert len(first) == 3  # each binding's first keepalive, spread over the first second
    for sent in first:
        gaps = [round(b - a, 6) for a, b in zip(sent, sent[1:])]
        assert gaps[:2] == [0.5, 1.0], sent  # RFC 3261 Timer E, on the dot: nothing sleeps


def test_answered_keepalives_leave_only_their_successors_in_the_timers(
    fake_daemon: tuple[Daemon, SilentNet, Clock],
) -> None:
    daemon, net, clock = fake_daemon
    run_until(daemon, clock, clock.now + 30.0)
    answered = sum(slot.engine.responses for slot in daemon.slots.values())
    assert answered >= 15  # every 5 s, three bindings, for 30 s
    live = [e for e in daemon.timers.heap + list(daemon.timers.later) if e[2].scheduled == e[0]]
    assert sorted(id(e[2]) for e in live) == sorted(id(s) for s in daemon.slots.values())
    assert len(daemon.timers) <= 2 * len(daemon.slots)  # superseded ones do not pile up
    assert all(len(times) == 1 for times in sends_by_branch(net).values())  # none went twice


def test_a_removed_bindings_deadline_never_runs(
    fake_daemon: tuple[Daemon, SilentNet, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon, _net, clock = fake_daemon
    run_until(daemon, clock, clock.now + 2.0)
    removed = daemon.slots["b1"]
    assert removed.scheduled is not None
    kept = parse_config(
        "log: {target: stderr, level: debug}\n"
        "defaults: {interval: 5, jitter: 0, timeout: 3, fail_threshold: 5, inbound_check: 0}\n"
        "bindings:\n"
        + "".join(
            f"  - {{name: b{i}, server: '{SERVER[0]}:{SERVER[1]}', source_port: {40000 + i}}}\n"
            for i in (0, 2)
        ),
        "test",
    )
    monkeypatch.setattr(control_module, "load_config_in_child", lambda path: kept)
    daemon.reload(clock.now)
    sent_before = removed.engine.probes_sent
    run_until(daemon, clock, clock.now + 20.0)
    assert "b1" not in daemon.slots and removed.scheduled is None
    assert removed.engine.probes_sent == sent_before
    assert all(slot.engine.responses >= 4 for slot in daemon.slots.values())
