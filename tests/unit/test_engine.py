"""The per-binding engine driven by a fake clock and a fake NAT/server: no sockets, no sleeps."""

from __future__ import annotations

import pytest

from natkeepalive import events as ev
from natkeepalive.config.model import ProbeSettings
from natkeepalive.core.engine import AUX, BINDING, PROMOTE_DELAY
from natkeepalive.core.probes import RECENT_DONE
from tests.support.fakenet import SERVER, FakeNet
from tests.support.sipfake import answer


def net(**settings: object) -> FakeNet:
    base: dict[str, object] = {"interval": 20.0, "jitter": 0.2, "inbound_check": 0}
    base.update(settings)
    return FakeNet(settings=ProbeSettings(**base))  # type: ignore[arg-type]


def test_first_keepalive_at_start_second_after_promotion_delay_then_jittered_interval() -> None:
    n = net()
    n.run_until(300)
    times = n.keepalive_times()
    assert times[0] == 0.0
    assert times[1] == pytest.approx(PROMOTE_DELAY)
    gaps = [b - a for a, b in zip(times[1:], times[2:])]
    assert len(gaps) >= 12
    assert all(16.0 - 1e-9 <= g <= 20.0 + 1e-9 for g in gaps), gaps
    assert len({round(g, 6) for g in gaps}) > 3  # really jittered


@pytest.mark.parametrize("interval", [1.0, 2.0, PROMOTE_DELAY])
def test_a_short_interval_is_not_stretched_by_the_promotion(interval: float) -> None:
    """With an interval up to PROMOTE_DELAY the second keepalive comes on the usual jittered
    wait (it went PROMOTE_DELAY after the first: 3 s at an interval of 1 s)."""
    n = net(interval=interval)
    n.run_until(10 * interval)
    times = n.keepalive_times()
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) >= 8
    assert all(interval * 0.8 - 1e-9 <= g <= interval + 1e-9 for g in gaps), gaps


def test_learns_the_mapping_and_becomes_reachable_once() -> None:
    n = net()
    n.run_until(100)
    learned = n.of(ev.BindingLearned)
    assert learned == [
        ev.BindingLearned("b", "203.0.113.10:5060", "192.168.77.2:5062", "203.0.113.1:40000")
    ]
    assert n.names().count("reachable") == 1
    assert n.engine.reach.state == "reachable"


def test_port_remap_is_confirmed_then_reported_as_change_and_expiry() -> None:
    n = net()
    n.run_until(50)
    before = len(n.sent)
    n.public = ("203.0.113.1", 40001)
    n.run_until(80)
    changed = n.of(ev.BindingChanged)
    assert changed == [
        ev.BindingChanged("b", "203.0.113.1:40000", "203.0.113.1:40001", "port-remapped")
    ]
    expired = n.of(ev.BindingExpired)
    assert len(expired) == 1 and expired[0].detected == "remap"
    assert 15.0 <= expired[0].idle_s <= 20.0
    # the confirmation went out at once, right after the answer that showed the new port
    first_new = n.sent[before]
    confirm = n.sent[before + 1]
    assert confirm.at - first_new.at == pytest.approx(n.rtt)
    assert n.engine.tracker.changes == 1 and n.engine.expiries == 1


def test_a_single_odd_answer_is_not_reported() -> None:
    n = net()
    n.run_until(30)
    n.public = ("203.0.113.1", 40001)
    n.step()  # the keepalive with the odd mapping goes out
    while not any(s.request.top_via.branch for s in n.sent[-1:]):
        n.step()
    # the odd mapping is seen once; the confirmation sees the old one again
    n.run_until(n.now + 0.001)
    n.public = ("203.0.113.1", 40000)
    n.run_until(200)
    assert "binding-changed" not in n.names()


def test_address_change_is_reported_without_expiry() -> None:
    n = net()
    n.run_until(50)
    n.public = ("203.0.113.2", 40000)
    n.run_until(80)
    assert [e.cause for e in n.of(ev.BindingChanged)] == ["address-changed"]
    assert n.of(ev.BindingExpired) == []


def test_two_mappings_alternating_report_flapping_once() -> None:
    n = net(interval=10.0, jitter=0.0)
    n.run_until(20)
    a, b = ("203.0.113.1", 40000), ("203.0.113.1", 40002)
    # alternate per probe: every answer differs from the previous
    original = n._server_receives

    def alternating(datagram: object) -> None:
        n.public = b if n.public == a else a
        original(datagram)  # type: ignore[arg-type]

    n._server_receives = alternating  # type: ignore[method-assign]
    n.run_until(300)
    assert n.names().count("binding-flapping") == 1


def test_server_ignoring_rport_reported_once_and_no_port_invented() -> None:
    """No rport value and no received (SIPp): nothing is learned. The sent-by host is the
    agent's own LAN address, never reported as public."""
    n = net(inbound_check=1)
    n.ignore_rport = True
    n.run_until(200)
    assert n.names().count("rport-unsupported") == 1
    assert n.engine.public is None
    assert "binding-learned" not in n.names()
    assert "binding-changed" not in n.names() and "binding-expired" not in n.names()
    assert not [s for s in n.sent if s.channel == AUX]  # nothing to aim a check at
    assert n.engine.expiry_detection.startswith("unsupported: ")


def test_retransmissions_follow_t1_doubling_until_timeout() -> None:
    n = net(timeout=7.0)
    n.silent = True
    n.run_until(7.01)
    first = [s.at for s in n.sent if s.request.cseq == 1]
    assert first == pytest.approx([0.0, 0.5, 1.5, 3.5])
    n2 = net(timeout=16.0, interval=60.0)
    n2.silent = True
    n2.run_until(2.9)  # before the promotion keepalive
    n2.run_until(16.0)
    times = [s.at for s in n2.sent if s.request.cseq == 1]
    assert times == pytest.approx([0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5])


def test_unreachable_after_fail_threshold_then_retry_interval_then_reachable() -> None:
    n = net(interval=30.0, retry_interval=5.0, fail_threshold=2, timeout=3.0)
    n.run_until(40)
    n.silent = True
    n.run_until(120)
    assert n.names().count("unreachable") == 1
    unreachable_at = n.engine.last_keepalive_at
    times = [t for t in n.keepalive_times() if t > 100]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps and all(4.0 - 1e-9 <= g <= 5.0 + 1e-9 for g in gaps), gaps
    n.silent = False
    n.run_until(140)
    assert n.names()[-1] == "reachable"
    assert n.names().count("reachable") == 2
    assert unreachable_at is not None


def test_hysteresis_ok_threshold() -> None:
    n = net(interval=10.0, jitter=0.0, retry_interval=10.0, ok_threshold=3, fail_threshold=1)
    n.silent = True
    n.run_until(10)
    assert n.names() == ["unreachable"]
    n.silent = False
    reach = ("reachable", "unreachable", "lagged")
    n.run_until(23.5)  # two answers (at ~13 and ~23)
    assert [x for x in n.names() if x in reach] == ["unreachable"]
    n.run_until(40)
    assert [x for x in n.names() if x in reach] == ["unreachable", "reachable"]


def test_lagged_when_rtt_above_threshold_and_back() -> None:
    n = net(lagged_ms=100, timeout=3.0)
    n.rtt = 0.5
    n.run_until(30)
    # the first answer teaches the mapping and is late: both, in that order, and nothing else
    assert n.names() == ["binding-learned", "lagged"]
    n.rtt = 0.01
    n.run_until(80)
    assert n.names() == ["binding-learned", "lagged", "reachable"]


def test_provisional_response_is_not_final() -> None:
    n = net(timeout=3.0)
    n.silent = True
    n.run_until(0.0)
    request = n.sent[0].raw
    n.inject(answer(request, ("203.0.113.1", 40000), status=100, reason="Trying"), SERVER)
    assert n.engine.responses == 0
    n.run_until(3.0)
    assert n.engine.timeouts == 1


@pytest.mark.parametrize(
    "kind", ["source-ip", "source-port", "branch", "call-id", "cseq", "garbage", "aux-channel"]
)
def test_spoofed_answers_are_dropped_and_change_nothing(kind: str) -> None:
    n = net()
    n.run_until(1)
    learned = n.engine.public
    n.silent = True
    n.run_until(PROMOTE_DELAY)  # the second keepalive is outstanding now
    request = n.sent[-1].raw
    assert n.sent[-1].at == PROMOTE_DELAY
    forged = {"public": ("198.51.100.7", 1234)}
    source = SERVER
    channel = BINDING
    if kind == "source-ip":
        source = ("198.51.100.66", 5060)
    elif kind == "source-port":
        source = (SERVER[0], 5061)
    elif kind == "aux-channel":
        channel = AUX
    reply = answer(
        request,
        forged["public"],
        branch="z9hG4bKguess" if kind == "branch" else None,
        call_id="other" if kind == "call-id" else None,
        cseq=999 if kind == "cseq" else None,
    )
    if kind == "garbage":
        reply = b"\x00\xffSIP/2.0 200"
    counts = (n.engine.responses, n.engine.timeouts)
    n.inject(reply, source, channel)
    assert n.engine.dropped == 1
    assert n.engine.public == learned
    assert (n.engine.responses, n.engine.timeouts) == counts
    assert "binding-changed" not in n.names()


def test_replayed_old_answer_is_not_accepted() -> None:
    n = net()
    n.run_until(1)
    old_request = n.sent[0].raw
    n.silent = True
    n.run_until(PROMOTE_DELAY)  # a new keepalive is outstanding
    n.inject(answer(old_request, ("198.51.100.7", 1)), SERVER)
    assert n.engine.public == ("203.0.113.1", 40000)
    assert n.engine.responses == 1  # only the genuine first answer
    assert n.engine.duplicates == 1


def test_only_the_last_RECENT_DONE_answers_replayed_count_as_duplicates() -> None:
    n = net()
    n.run_until(1 + PROMOTE_DELAY + 25 * (RECENT_DONE + 1))
    answered = [s.raw for s in n.sent]
    assert len(answered) >= RECENT_DONE + 2 and n.engine.responses == len(answered)
    for old in answered[-RECENT_DONE:]:
        n.inject(answer(old, ("203.0.113.1", 40000)), SERVER)
    assert n.engine.duplicates == RECENT_DONE
    n.inject(answer(answered[-RECENT_DONE - 1], ("203.0.113.1", 40000)), SERVER)
    assert n.engine.duplicates == RECENT_DONE  # gone from the record: dropped, nothing more
    assert n.engine.dropped == RECENT_DONE + 1
    assert n.engine.responses == len(answered)


def test_require_2xx_counts_error_answers_as_failures() -> None:
    n = net(require_2xx=True, fail_threshold=2, retry_interval=5.0)
    n.status = 503
    n.run_until(20)
    assert n.names().count("unreachable") == 1
    n2 = net()
    n2.status = 404
    n2.run_until(20)
    assert "reachable" in n2.names()


# --- the inbound liveness check ------------------------------------------------------------


def test_inbound_check_alive_goes_before_the_keepalive_without_rport() -> None:
    n = net(inbound_check=2, jitter=0.0)
    n.run_until(100)
    checks = [s for s in n.sent if s.channel == AUX]
    assert checks, "no inbound check sent"
    for check in checks:
        assert not check.kind_rport
        assert check.request.top_via.host == "203.0.113.1"
        assert check.request.top_via.port == 40000
        after = [s for s in n.sent if s.at >= check.at and s.channel == BINDING]
        assert after and after[0].at - check.at == pytest.approx(n.rtt)
    assert n.engine.inbound_result == "alive"
    assert "binding-expired" not in n.names()


def test_inbound_check_silence_then_answered_keepalive_reports_expiry_once() -> None:
    n = net(inbound_check=1, jitter=0.0, timeout=3.0)
    n.run_until(10)
    n.binding_alive = False
    n.run_until(27)
    expired = n.of(ev.BindingExpired)
    assert len(expired) == 1
    assert expired[0].detected == "inbound-check"
    assert expired[0].public == "203.0.113.1:40000"
    # the check was retransmitted before silence counted
    aux = [s for s in n.sent if s.channel == AUX]
    assert len(aux) >= 3
    assert n.engine.expiries == 1


def test_inbound_check_silence_with_server_down_is_not_expiry() -> None:
    n = net(inbound_check=1, jitter=0.0, timeout=3.0)
    n.run_until(10)
    n.silent = True
    n.run_until(100)
    assert "binding-expired" not in n.names()
    assert "unreachable" in n.names()


def test_server_forcing_rport_makes_the_check_unsupported_once() -> None:
    n = net(inbound_check=1, jitter=0.0)
    n.force_rport = True
    n.run_until(200)
    assert n.names().count("inbound-check-unsupported") == 1
    # the sent-by check, then (check: auto) the relayed check once; never again
    assert len([s for s in n.sent if s.channel == AUX]) == 2
    assert "binding-expired" not in n.names()


def test_random_port_nat_expiry_reports_expired_once_and_changed() -> None:
    n = net(inbound_check=1, jitter=0.0)
    n.run_until(10)
    n.binding_alive = False
    n.public = ("203.0.113.1", 40077)
    n.run_until(30)
    n.binding_alive = True
    n.run_until(60)
    assert n.names().count("binding-expired") == 1
    assert [e.cause for e in n.of(ev.BindingChanged)] == ["port-remapped"]


def test_new_flow_on_local_address_change() -> None:
    n = net()
    n.run_until(30)
    n.engine.set_flow(("192.168.77.3", 5062), SERVER, n.now)
    n._deliver_outgoing()
    n.run_until(40)
    assert ev.LocalAddressChanged("b", "192.168.77.2", "192.168.77.3") in n.log
    assert n.names().count("binding-learned") == 2


def test_server_address_change_is_a_new_flow() -> None:
    n = net()
    n.run_until(30)
    n.engine.set_flow(("192.168.77.2", 5062), ("203.0.113.11", 5060), n.now)
    n._deliver_outgoing()
    assert ev.ServerChanged("b", "203.0.113.10:5060", "203.0.113.11:5060") in n.log
    assert n.engine.next_deadline() == n.now


# --- a keepalive may go early when the loop is awake anyway (fewer wake-ups) ---


def test_a_deadline_that_was_not_drawn_goes_early_only_within_its_allowance() -> None:
    from natkeepalive.core.schedule import KEEPALIVE_EARLY

    n = net(interval=20.0, jitter=0.0)
    n.run_until(10)  # the first keepalive and the promoting one are answered
    engine = n.engine
    due = engine.next_keepalive
    assert due is not None
    sent = len(n.sent)
    allowance = min(KEEPALIVE_EARLY * 20.0, 0.05)  # jitter 0: the allowance is all there is
    assert not engine.may_go_early(due - allowance * 1.5)
    engine.handle_timer(due - allowance * 1.5, early=True)  # too early even when offered
    assert len(n.sent) + len(engine.datagrams_to_send()) == sent and engine.next_keepalive == due
    engine.handle_timer(due - allowance / 2)  # not offered: exact as before
    assert engine.next_keepalive == due
    assert engine.may_go_early(due - allowance / 2)
    engine.handle_timer(due - allowance / 2, early=True)  # offered and within: goes, timed from now
    out = engine.datagrams_to_send()
    assert len(out) == 1 and out[0].channel == BINDING
    assert engine.next_keepalive == pytest.approx(due - allowance / 2 + 20.0)


def test_a_drawn_wait_may_end_anywhere_the_jitter_allows_and_takes_the_loops_draw() -> None:
    n = net(interval=20.0, jitter=0.2)
    n.run_until(10)
    engine = n.engine
    last = engine.last_keepalive_at
    assert last is not None and engine.next_keepalive is not None
    opens = last + 20.0 * (1 - 0.2)  # the shortest wait the jitter allows
    assert engine.keepalive_from == pytest.approx(opens)
    assert not engine.may_go_early(opens - 0.01)
    engine.handle_timer(opens - 0.01, early=True, draw=0.5)
    assert engine.datagrams_to_send() == [] and engine.last_keepalive_at == last
    engine.handle_timer(opens + 0.01, early=True, draw=0.5)
    assert len(engine.datagrams_to_send()) == 1
    assert engine.last_keepalive_at == opens + 0.01
    assert engine.next_keepalive == pytest.approx(opens + 0.01 + 20.0 * (1 - 0.2 * 0.5))
    assert engine.keepalive_from == pytest.approx(opens + 0.01 + 16.0)


def test_bindings_sent_in_one_pass_with_one_draw_are_due_together() -> None:
    settings = ProbeSettings(interval=20.0, jitter=0.2, inbound_check=0)
    a, b = FakeNet(settings=settings, seed=1), FakeNet(settings=settings, seed=2)
    a.run_until(10)
    b.run_until(12)  # another phase
    t = max(a.engine.keepalive_from, b.engine.keepalive_from) + 0.001
    assert t < min(n.engine.next_keepalive or 0 for n in (a, b))  # both windows open, none due
    for n in (a, b):
        n.now = t
        n.engine.handle_timer(t, early=True, draw=0.25)
        n._deliver_outgoing()
    assert a.engine.next_keepalive == b.engine.next_keepalive == pytest.approx(t + 19.0)


def test_retransmissions_never_go_early() -> None:
    n = net(interval=20.0, jitter=0.0, timeout=3.0)
    n.silent = True
    n.run_until(0.1)  # the first keepalive went, unanswered
    engine = n.engine
    retransmit = engine.next_deadline()
    assert retransmit == pytest.approx(0.5)
    engine.handle_timer(0.49, early=True, draw=0.0)
    assert engine.datagrams_to_send() == [] and engine.next_deadline() == retransmit
