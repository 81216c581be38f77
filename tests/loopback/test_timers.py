"""The daemon's timers in-process (real sockets, real clock) against the real UDP SIP responder on
127.0.0.1: a retransmission's deadline waits in its own queue (Timers.later) and still goes on
time, and an answered keepalive's retransmission never costs the timer heap anything."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from natkeepalive.config.loader import parse_config
from natkeepalive.runtime import timers as timers_module
from natkeepalive.runtime.daemon import Daemon
from natkeepalive.runtime.logsink import ListSink
from tests.support.helpers import free_port
from tests.support.responder import SipResponder

SETTINGS = "{interval: 1, jitter: 0.1, timeout: 3, fail_threshold: 5, inbound_check: 0}"


def make_daemon(tmp_path: Path, responder: SipResponder, count: int) -> Daemon:
    host, port = responder.address
    text = f"log: {{target: stderr, level: debug}}\ndefaults: {SETTINGS}\nbindings:\n" + "".join(
        f"  - {{name: b{i}, server: '{host}:{port}', source_port: {free_port()}}}\n"
        for i in range(count)
    )
    daemon = Daemon(parse_config(text, "test"), ListSink(), str(tmp_path / "status.json"))
    daemon.start()
    return daemon


def run_for(daemon: Daemon, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        daemon.run_once()


def test_retransmissions_from_the_queue_go_on_time(tmp_path: Path, responder: SipResponder) -> None:
    """Unanswered, each binding's probe goes again at T1 (0.5 s) and then 1 s later (RFC 3261
    Timer E), while the keepalives of the other bindings fill the heap around them."""
    responder.configure(silent=True)
    daemon = make_daemon(tmp_path, responder, 3)
    try:
        run_for(daemon, 3.0)
    finally:
        daemon.shutdown("done")
    by_branch: dict[str, list[float]] = {}
    for _source, request, at in responder.requests:
        by_branch.setdefault(request.top_via.branch or "", []).append(at)
    gaps = [[b - a for a, b in zip(times, times[1:])] for times in by_branch.values()]
    first_ones = [g for g in gaps if len(g) >= 2]
    assert len(first_ones) >= 3, gaps  # every binding's first probe went three times
    for g in first_ones:  # never early; the upper bounds leave room for a loaded machine
        assert 0.45 <= g[0] <= 0.8, gaps
        assert 0.95 <= g[1] <= 1.3, gaps


def test_answered_keepalives_leave_nothing_in_the_heap(
    tmp_path: Path, responder: SipResponder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each keepalive puts its retransmission's deadline in the queue and the answer supersedes
    it there: the heap gets one entry per keepalive (its successor's deadline), not two, and
    never holds more than one entry per binding. A retransmission that falls due (an answer
    later than T1 on a loaded machine) joins the heap, and is allowed for."""
    pushed: list[str] = []
    sizes: list[int] = []
    real_push = timers_module.heappush

    def heappush(heap: list[tuple[float, int, object]], entry: tuple[float, int, object]) -> None:
        pushed.append(str(entry[2]))
        real_push(heap, entry)
        sizes.append(len(heap))

    monkeypatch.setattr(timers_module, "heappush", heappush)
    daemon = make_daemon(tmp_path, responder, 5)
    try:
        run_for(daemon, 3.0)
        sent = sum(slot.engine.probes_sent for slot in daemon.slots.values())
        answered = sum(slot.engine.responses for slot in daemon.slots.values())
        queued = len(daemon.timers.later)
    finally:
        daemon.shutdown("done")
    retransmitted = max(0, len(responder.requests) - sent)
    assert answered >= 10 and answered >= sent - 5  # all answered but those still out
    # + the first deadline of each binding
    assert len(pushed) <= sent + 5 + retransmitted, (len(pushed), sent, retransmitted)
    assert max(sizes) <= 5 + retransmitted, sizes
    assert queued <= 5
