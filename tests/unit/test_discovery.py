"""Lifetime discovery on a simulated NAT and a fake clock: the bracket always holds the truth."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from natkeepalive.core import discovery as d
from natkeepalive.core.discovery import (
    METHOD_INBOUND,
    METHOD_RELAY,
    METHOD_RPORT,
    METHOD_STUN,
)
from natkeepalive.core.lifetime import LifetimeSearch, recommended_interval
from natkeepalive.core.wire import AUX
from tests.support.natsim import STUN_SERVER, NatSim, run_discovery
from tests.support.sipfake import answer


def test_trial_table_is_total() -> None:
    """Every (phase, outcome) of a trial has a row or is explicitly impossible, never both."""
    pairs = {(phase, outcome) for phase in d.PHASES for outcome in d.OUTCOMES}
    assert set(d.TRIAL_TABLE) | set(d.TRIAL_IMPOSSIBLE) == pairs
    assert not set(d.TRIAL_TABLE) & set(d.TRIAL_IMPOSSIBLE)
    results = {d.SURVIVED, d.EXPIRED, d.FAILED, d.UNSUPPORTED}
    for target, action in d.TRIAL_TABLE.values():
        assert target in d.PHASES
        # a trial ends exactly when its row names a result
        assert (target == d.DONE) == (action in results)


def test_an_answer_on_the_wrong_socket_does_not_stall_a_trial() -> None:
    """An answer to the trial socket's request that arrives on the AUX socket (forged with the
    server's address) is not its answer: the transaction keeps waiting for the real one."""
    server, local, public = ("192.0.2.10", 5060), ("10.0.0.2", 40000), ("203.0.113.1", 40000)
    trial = d.Trial(
        5.0, d.METHOD_INBOUND, server, local, "example.org", 5060, 0.0, bytes, timeout=3.0
    )
    [first] = trial.datagrams_to_send()
    assert first.channel == d.TRIAL
    forged = answer(first.payload, public)
    trial.receive_datagram(forged, server, 0.1, AUX)
    assert trial.phase == d.ESTABLISH and trial.next_deadline() is not None
    trial.receive_datagram(forged, server, 0.2, d.TRIAL)  # the same answer where it belongs
    assert trial.phase == d.SETTLE and trial.public == public


@pytest.mark.parametrize("lifetime", [7.0, 30.0, 60.0, 120.0, 180.0, 300.0])
@pytest.mark.parametrize("random_ports", [False, True])
def test_inbound_check_brackets_the_true_lifetime(lifetime: float, random_ports: bool) -> None:
    discovery, result, took = run_discovery(NatSim(lifetime, random_ports=random_ports))
    assert discovery.error is None
    assert result.method == METHOD_INBOUND
    assert result.hi_s is not None
    assert result.lo_s <= lifetime <= result.hi_s
    assert result.hi_s - result.lo_s <= max(1.0, 0.1 * result.lo_s)
    assert result.lifetime_s == result.lo_s
    assert took < 20 * lifetime + 200  # minutes, not hours


def test_server_forcing_rport_falls_back_to_rport_on_a_random_port_nat() -> None:
    discovery, result, _ = run_discovery(NatSim(60.0, random_ports=True, force_rport=True))
    assert discovery.error is None
    assert result.method == METHOD_RPORT
    assert result.hi_s is not None and result.lo_s <= 60.0 <= result.hi_s


def test_port_preserving_nat_with_forced_rport_cannot_be_measured() -> None:
    discovery, result, _ = run_discovery(NatSim(60.0, random_ports=False, force_rport=True))
    assert discovery.error is not None and "keeps source ports" in discovery.error
    assert result.lifetime_s is None


@pytest.mark.parametrize("lifetime", [7.0, 60.0, 180.0])
@pytest.mark.parametrize("random_ports", [False, True])
def test_stun_measures_a_port_preserving_nat_when_the_server_forces_rport(
    lifetime: float, random_ports: bool
) -> None:
    discovery, result, _ = run_discovery(
        NatSim(lifetime, random_ports=random_ports, force_rport=True), stun_server=STUN_SERVER
    )
    assert discovery.error is None
    assert result.method == METHOD_STUN
    assert result.hi_s is not None and result.lo_s <= lifetime <= result.hi_s
    assert result.hi_s - result.lo_s <= max(1.0, 0.1 * result.lo_s)
    # sent-by and relay were each tried once, then stun for the rest
    methods = [method for _, method, _ in discovery.history]
    assert methods[:2] == [METHOD_INBOUND, METHOD_RELAY]
    assert set(methods[2:]) == {METHOD_STUN}


@pytest.mark.parametrize("lifetime", [7.0, 60.0])
def test_a_relaying_server_measures_a_port_preserving_nat(lifetime: float) -> None:
    discovery, result, _ = run_discovery(NatSim(lifetime, force_rport=True, relays=True))
    assert discovery.error is None
    assert result.method == METHOD_RELAY
    assert result.hi_s is not None and result.lo_s <= lifetime <= result.hi_s


def test_a_stun_server_without_rfc5780_falls_back_to_rport() -> None:
    nat = NatSim(60.0, random_ports=True, force_rport=True, stun_rfc5780=False)
    discovery, result, _ = run_discovery(nat, stun_server=STUN_SERVER)
    assert discovery.error is None
    assert result.method == METHOD_RPORT
    assert result.hi_s is not None and result.lo_s <= 60.0 <= result.hi_s
    stun_trials = [r for _, m, r in discovery.history if m == METHOD_STUN]
    assert stun_trials == ["unsupported"]  # verified once, never a false expiry


def test_port_preserving_nat_forced_rport_without_stun_names_the_remedy() -> None:
    discovery, result, _ = run_discovery(NatSim(60.0, force_rport=True))
    assert discovery.error is not None and "stun_server" in discovery.error
    assert result.lifetime_s is None


def test_server_ignoring_rport_cannot_be_measured() -> None:
    discovery, _, _ = run_discovery(NatSim(60.0, ignore_rport=True))
    assert discovery.error is not None and "no received, or no rport value" in discovery.error


def test_nothing_expires_up_to_max_idle() -> None:
    discovery, result, _ = run_discovery(NatSim(1000.0), max_idle=100.0)
    assert discovery.error is None
    assert result.hi_s is None and result.lo_s == 100.0


@settings(max_examples=200)
@given(st.floats(1.0, 2000.0), st.floats(0.5, 50.0), st.floats(10.0, 3000.0))
def test_search_bracket_property(lifetime: float, start: float, max_idle: float) -> None:
    search = LifetimeSearch(start=start, max_idle=max_idle)
    for _ in range(200):
        idle = search.next_idle()
        if idle is None:
            break
        assert 0 < idle <= max_idle
        search.record(idle, idle < lifetime)
    else:
        raise AssertionError("search did not end")
    if search.hi is None:
        assert search.lo >= min(max_idle, lifetime) or search.lo == max_idle
    else:
        assert search.lo <= lifetime <= search.hi
        assert search.hi - search.lo <= max(1.0, 0.1 * search.lo)


def test_recommended_interval_is_bounded() -> None:
    assert recommended_interval(100.0, 0.8, 5.0, 25.0) == 25.0
    assert recommended_interval(20.0, 0.8, 5.0, 25.0) == 16.0
    assert recommended_interval(3.0, 0.8, 5.0, 25.0) == 5.0


def test_behind_a_sip_alg_a_trial_tests_nothing() -> None:
    """A server on a public address answers with our own lan address (a SIP ALG rewrote it):
    the trial learns no public address and ends untestable, instead of finding `no NAT`."""
    server, local = ("192.0.2.10", 5060), ("192.168.77.2", 40000)
    trial = d.Trial(
        5.0, d.METHOD_INBOUND, server, local, "example.org", 5060, 0.0, bytes, timeout=3.0
    )
    [first] = trial.datagrams_to_send()
    trial.receive_datagram(answer(first.payload, local), server, 0.1, d.TRIAL)
    assert trial.public is None and trial.rewritten
    # the same answer from a server on the lan is the truth: no NAT between them
    near = ("192.168.77.1", 5060)
    trial = d.Trial(
        5.0, d.METHOD_INBOUND, near, local, "example.org", 5060, 0.0, bytes, timeout=3.0
    )
    [first] = trial.datagrams_to_send()
    trial.receive_datagram(answer(first.payload, local), near, 0.1, d.TRIAL)
    assert trial.public == local and not trial.rewritten
