"""What real servers reveal about a binding, on a fake clock and a fake NAT/server: a Call-ID per
request, no public address invented, a bare rport, CRLF keepalives, RTT after retransmissions,
and expiry on a port-preserving NAT caught with the default configuration."""

from __future__ import annotations

import re
from typing import cast

import pytest

from natkeepalive import events as ev
from natkeepalive.config.model import ProbeSettings
from natkeepalive.core.cycle import CHECKING, NO_CHECK_ANSWER, UNPROVEN_CHECKS
from natkeepalive.core.engine import AUX, BINDING, Datagram
from natkeepalive.oneshot.probe import Answer, Prober
from natkeepalive.sip.message import Request, parse_message
from tests.support.fakenet import LOCAL, SERVER, FakeNet, Sent
from tests.support.sipfake import answer

PUBLIC = ("203.0.113.1", 40000)


def net(**settings: object) -> FakeNet:
    return FakeNet(settings=ProbeSettings(**settings))  # type: ignore[arg-type]


class Nat(FakeNet):
    """A NAT that loses the binding on `reboot()` and makes it again (on the same port, or on
    `next_port`) with the binding's next outgoing datagram, as a Linux NAT does."""

    next_port: int | None = None
    lost_at: float | None = None
    check_answers = True  # False: a server that never answers the inbound check (no rport)
    wan_down = False  # nothing gets through the NAT, and no binding is made

    def reboot(self) -> None:
        self.binding_alive = False
        self.lost_at = self.now

    def _server_receives(self, datagram: Datagram) -> None:
        request = parse_message(datagram.payload)
        assert isinstance(request, Request)
        is_check = datagram.channel == AUX and not request.top_via.has_param("rport")
        if self.wan_down or (is_check and not self.check_answers):
            self.sent.append(self._sent(datagram, request))
            return
        if datagram.channel == BINDING and not self.binding_alive:
            self.binding_alive = True  # the outgoing datagram makes a new binding
            if self.next_port is not None:
                self.public = (self.public[0], self.next_port)
        super()._server_receives(datagram)

    def _sent(self, datagram: Datagram, request: Request) -> Sent:

        return Sent(
            self.now,
            datagram.channel,
            request.top_via.has_param("rport"),
            request,
            datagram.payload,
        )


def nat(**settings: object) -> Nat:
    return Nat(settings=ProbeSettings(**settings))  # type: ignore[arg-type]


# --- a new Call-ID for every request (RFC 3261 8.1.1.4) --------------------------------------


def test_every_request_has_a_call_id_of_its_own() -> None:
    n = net()
    n.run_until(200)
    ids = [s.request.call_id for s in n.sent]
    firsts = {s.request.top_via.branch: s.request.call_id for s in n.sent}
    assert len(firsts) >= 10
    assert len(set(firsts.values())) == len(firsts)  # one per request...
    for s in n.sent:  # ...the same in its retransmissions
        assert firsts[s.request.top_via.branch] == s.request.call_id
    assert len(set(ids)) == len(firsts)
    assert n.engine.responses >= 10 and n.engine.dropped == 0


def test_an_answer_with_another_requests_call_id_is_dropped() -> None:
    n = net(interval=20.0, inbound_check=0)
    n.silent = True
    n.run_until(0.1)  # the first keepalive is out, unanswered
    request = n.sent[-1].raw
    other = re.sub(rb"Call-ID: (\S+)", rb"Call-ID: \1x", request)
    n.inject(answer(other, PUBLIC), SERVER)
    assert n.engine.responses == 0 and n.engine.dropped == 1
    n.inject(answer(request, PUBLIC), SERVER)
    assert n.engine.responses == 1


def test_a_server_keying_on_call_id_follows_a_remap() -> None:
    """A server that answers every Call-ID it knows to the first source address it saw (SIPp)
    follows the binding to its new port, since no Call-ID is ever reused."""
    n = Nat(settings=ProbeSettings(interval=20.0, inbound_check=0))
    first_source: dict[str, tuple[str, int]] = {}
    original = n._server_receives

    def keyed(datagram: Datagram) -> None:
        request = parse_message(datagram.payload)
        assert isinstance(request, Request)
        if first_source.setdefault(request.call_id, n.public) != n.public:
            return  # answered to a dead port: lost
        original(datagram)

    n._server_receives = keyed  # type: ignore[method-assign]
    n.run_until(50)
    n.next_port = 40007
    n.reboot()
    n.run_until(120)
    assert "unreachable" not in n.names()
    assert [e.cause for e in n.of(ev.BindingChanged)] == ["port-remapped"]
    assert n.engine.public == ("203.0.113.1", 40007)


# --- nothing invented as public --------------------------------------------------------------


def no_received(n: FakeNet) -> None:
    """The server's answers carry rport=N but no `received`."""
    original = n._server_receives

    def strip(datagram: Datagram) -> None:
        before = len(n.in_flight)
        original(datagram)
        n.in_flight[before:] = [
            (at, re.sub(rb";received=[^;\r]+", b"", data), src, ch)
            for at, data, src, ch in n.in_flight[before:]
        ]

    n._server_receives = strip  # type: ignore[method-assign]


def bare_rport(n: FakeNet) -> None:
    """linphone: `received` and a bare `rport` (it writes a value only when the port changed)."""
    original = n._server_receives

    def bare(datagram: Datagram) -> None:
        before = len(n.in_flight)
        original(datagram)
        n.in_flight[before:] = [
            (at, re.sub(rb";rport=\d+", b";rport", data), src, ch)
            for at, data, src, ch in n.in_flight[before:]
        ]

    n._server_receives = bare  # type: ignore[method-assign]


def test_without_received_and_without_an_rport_value_nothing_is_learned() -> None:
    """SIPp: no `received`, a bare rport. The sent-by host is the agent's LAN address."""
    n = net(interval=20.0)
    no_received(n)
    bare_rport(n)
    n.run_until(100)
    assert n.engine.public is None
    assert "binding-learned" not in n.names() and n.names().count("rport-unsupported") == 1
    public = [getattr(e, "public", None) for e in n.log]
    assert not [p for p in public if p and LOCAL[0] in p]
    assert not [s for s in n.sent if s.channel == AUX]  # no address to aim a check at
    assert n.engine.expiry_detection == "unsupported: server sends no received and no rport value"


def test_an_rport_value_without_received_means_no_other_address_was_seen() -> None:
    """RFC 3261 18.2.1: a server that reads the Via adds `received` only when the source address
    differs from the sent-by host (Kamailio, with no NAT on the way)."""
    n = net(interval=20.0)
    no_received(n)
    n.run_until(100)
    assert n.engine.public == (LOCAL[0], 40000)


def test_an_address_learned_before_stays_when_received_goes_missing() -> None:
    n = net(interval=20.0, inbound_check=0)
    n.run_until(50)
    no_received(n)
    bare_rport(n)
    n.run_until(150)
    assert n.engine.public == PUBLIC
    assert "binding-changed" not in n.names()


# --- a bare rport ----------------------------------------------------------------------------


def test_a_bare_rport_on_a_port_preserving_nat_is_resolved_by_the_check() -> None:
    n = nat(interval=20.0)
    n.public = ("203.0.113.1", LOCAL[1])  # the NAT kept the source port
    bare_rport(n)
    n.run_until(60)
    checks = [s for s in n.sent if s.channel == AUX]
    assert checks and checks[0].request.top_via.port == LOCAL[1]
    assert not checks[0].kind_rport
    assert n.engine.public == ("203.0.113.1", LOCAL[1])
    assert "rport-unsupported" not in n.names()
    assert n.engine.expiry_detection == "inbound-check"
    n.reboot()  # and now a NAT reboot is caught
    lost = n.now
    n.run_until(lost + 30)
    expired = n.of(ev.BindingExpired)
    assert [e.detected for e in expired] == ["inbound-check"]


def test_a_bare_rport_with_another_port_is_not_an_expiry() -> None:
    n = nat(interval=20.0)  # public port 40000, local 5062: the check aims at the wrong port
    bare_rport(n)
    n.run_until(200)
    assert n.names().count("rport-unsupported") == 1
    assert "binding-expired" not in n.names()
    assert n.engine.public == ("203.0.113.1", None)
    assert len([s for s in n.sent if s.channel == AUX and s.request.top_via.branch]) <= 4
    assert n.engine.expiry_detection == "unsupported: server sends no rport value"


# --- CRLF keepalives -------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"\r\n", b"\r\n\r\n"])
def test_crlf_keepalives_are_not_malformed(data: bytes) -> None:
    n = net(interval=20.0)
    n.run_until(10)
    dropped = n.engine.dropped
    n.inject(data, SERVER)
    assert n.engine.dropped == dropped
    assert n.engine.crlf_received == 1 and n.engine.last_inbound_at == n.now
    n.inject(data, ("198.51.100.9", 5060))  # not from the server: refused
    assert n.engine.dropped == dropped + 1 and n.engine.crlf_received == 1


def test_a_crlf_keepalive_proves_a_pending_check_alive() -> None:
    n = nat(interval=20.0)
    n.run_until(10)
    n.check_answers = False
    while n.engine.phase not in CHECKING:
        n.step()
    n.inject(b"\r\n\r\n", SERVER)
    assert n.engine.phase not in CHECKING and n.engine.inbound_result == "alive"
    assert n.sent[-1].channel == BINDING  # the keepalive went at once
    n.run_until(n.now + 5)
    assert "binding-expired" not in n.names()


# --- RTT after retransmissions ---------------------------------------------------------------


def test_rtt_after_a_retransmission_is_from_the_last_transmission() -> None:
    n = net(interval=20.0, lagged_ms=300, inbound_check=0)
    n.run_until(30)
    assert n.engine.reach.state == "reachable"
    original = n._server_receives
    lost: list[bytes] = []

    def lose_first_two(datagram: Datagram) -> None:
        if datagram.channel == BINDING and len(lost) < 2:
            lost.append(datagram.payload)
            request = parse_message(datagram.payload)
            assert isinstance(request, Request)
            return
        original(datagram)

    n._server_receives = lose_first_two  # type: ignore[method-assign]
    n.run_until(60)
    assert len(lost) == 2
    answered = [e for e in n.of(ev.ProbeAnswered)]
    assert answered and max(e.rtt_ms for e in answered) < 100
    assert n.engine.last_rtt_ms == pytest.approx(n.rtt * 1000.0)
    assert "lagged" not in n.names()


# --- expiry on a port-preserving NAT, default configuration ----------------------------------


def test_default_configuration_checks_before_every_keepalive() -> None:
    assert ProbeSettings().inbound_check == 1


@pytest.mark.parametrize("at", [31.0, 47.5, 66.6, 80.0, 99.9])
def test_a_nat_reboot_is_caught_within_one_interval_with_the_defaults(at: float) -> None:
    n = nat()  # the defaults: interval 25, jitter 0.2, inbound_check 1
    interval = n.settings.interval
    n.run_until(at)
    n.reboot()
    n.run_until(at + 2 * interval)
    expired = n.of(ev.BindingExpired)
    assert len(expired) == 1, n.names()
    assert expired[0].detected == "inbound-check"
    when = next(e for e in n.log if isinstance(e, ev.BindingExpired))
    assert when is expired[0]
    # reported when the keepalive after the silent check is answered
    reported = [s.at for s in n.sent if s.channel == BINDING and s.at > at]
    assert reported[0] - at <= interval + n.settings.timeout + 0.1
    assert n.engine.expiry_detection == "inbound-check"


def test_a_nat_reboot_with_a_new_port_is_one_expiry_and_one_change() -> None:
    n = nat()
    n.run_until(40)
    n.next_port = 40123
    n.reboot()
    n.run_until(100)
    assert [e.detected for e in n.of(ev.BindingExpired)] == ["inbound-check"]
    assert [e.cause for e in n.of(ev.BindingChanged)] == ["port-remapped"]


@pytest.mark.parametrize("lost", [True, False])
def test_after_a_wan_outage_the_comeback_is_checked_before_the_keepalive(lost: bool) -> None:
    """inbound_check 10: the cadence alone would check one comeback in ten. A keepalive that
    timed out makes the next cycle start with a check (and a server-up probe from the AUX
    socket), so a NAT reboot during a WAN outage is reported, and a binding that survived the
    outage is confirmed."""
    n = nat(inbound_check=10, retry_interval=10.0)
    n.run_until(40)
    n.wan_down = True
    if lost:
        n.reboot()
    n.run_until(100)
    assert "unreachable" in n.names()
    while n.engine._tx:  # the WAN comes back between two cycles
        n.step()
    n.wan_down = False
    count = len(n.sent)
    n.run_until(160)
    first = n.sent[count]
    assert first.channel == AUX and not first.kind_rport  # the check went first
    assert "reachable" in n.names()[n.names().index("unreachable") :]
    expired = n.of(ev.BindingExpired)
    if lost:
        assert [e.detected for e in expired] == ["inbound-check"]
    else:
        assert expired == []
        assert n.engine.inbound_result == "alive"


@pytest.mark.parametrize(
    "settings",
    [
        {"retry_interval": 5.0},
        # cycles shorter than the timeout: a check goes while the last keepalive is still out
        {"interval": 1.0, "timeout": 1.0, "retry_interval": 1.0, "fail_threshold": 1},
    ],
    ids=["default-timeout", "timeout-as-long-as-the-cycle"],
)
@pytest.mark.parametrize(
    "back",
    [
        41.0,
        41.5,
        42.0,
        42.5,
        43.0,
        43.5,
        44.5,
        97.0,
        98.5,
        100.0,
        100.3,
        100.6,
        101.2,
        102.9,
        104.4,
        106.0,
    ],
)
def test_a_server_outage_is_never_a_false_expiry(back: float, settings: dict[str, float]) -> None:
    """The NAT keeps the binding (keepalives refresh it) while the server is down; it comes
    back at any moment, also while a check is waiting: the server-up probe sent with the check
    tells that the check's silence was the server's."""
    n = nat(inbound_check=1, **settings)
    n.run_until(40)
    n.silent = True
    n.run_until(back)
    n.silent = False
    n.run_until(back + 60)
    assert "unreachable" in n.names() or back < 45
    assert n.of(ev.BindingExpired) == []
    assert n.engine.reach.state == "reachable"


@pytest.mark.parametrize("lost", [True, False])
def test_an_interface_event_checks_before_the_keepalive(lost: bool) -> None:
    n = nat(inbound_check=10)
    n.run_until(40)
    if lost:
        n.reboot()
    count = len(n.sent)
    n.engine.keepalive_now(n.now)
    n.run_until(n.now + 0.001)
    assert n.sent[count].channel == AUX  # the check goes first
    n.run_until(n.now + 10)
    if lost:
        assert [e.detected for e in n.of(ev.BindingExpired)] == ["inbound-check"]
    else:
        assert n.of(ev.BindingExpired) == [] and n.engine.inbound_result == "alive"


def test_a_server_forcing_rport_is_reported_once_with_why_and_what_would_help() -> None:
    n = nat()
    n.force_rport = True
    n.run_until(300)
    unsupported = n.of(ev.InboundCheckUnsupported)
    assert len(unsupported) == 1
    reason = (
        "server forces rport; server does not relay the check; "  # check: auto tried
        "no stun_server"
    )
    assert unsupported[0].reason == reason
    remedy = unsupported[0].remedy
    assert "sent-by" in remedy and "stun_server" in remedy and "responder" in remedy
    assert len([s for s in n.sent if s.channel == AUX and s.request.cseq]) <= 2
    assert n.engine.expiry_detection == f"remap-only: {reason}"


def test_a_server_that_never_answers_the_check_gives_no_false_expiry() -> None:
    n = nat(check="sent-by")  # only the sent-by check (check: auto goes on: test_checks.py)
    n.check_answers = False
    n.run_until(600)
    assert "binding-expired" not in n.names()
    unsupported = n.of(ev.InboundCheckUnsupported)
    assert len(unsupported) == 1
    assert unsupported[0].reason == NO_CHECK_ANSWER
    checks = {s.request.cseq for s in n.sent if s.channel == AUX and not s.kind_rport}
    assert len(checks) == UNPROVEN_CHECKS
    # each went with a server-up probe (answered), so its silence was the check's own
    assert (
        len({s.request.cseq for s in n.sent if s.channel == AUX and s.kind_rport})
        == UNPROVEN_CHECKS
    )
    assert n.engine.expiry_detection == f"remap-only: {NO_CHECK_ANSWER}"


def test_a_check_answered_at_once_costs_no_server_up_probe() -> None:
    n = nat()
    n.run_until(300)
    assert [s for s in n.sent if s.channel == AUX and not s.kind_rport]
    assert not [s for s in n.sent if s.channel == AUX and s.kind_rport]


def test_a_server_restart_within_a_check_is_not_an_expiry() -> None:
    """The server is down only while a check waits (a restart of 2 s right after the check
    went): the check's copies meet no server, the server-up probe's neither, so its silence
    proves nothing; the keepalive after it is answered and nothing is reported."""
    for seed in range(1, 30):
        n = Nat(settings=ProbeSettings(), seed=seed)
        n.run_until(40)
        while n.engine.phase not in CHECKING:
            n.step()
        n.silent = True
        n.run_until(n.now + 2.0)
        n.silent = False
        n.run_until(n.now + 60)
        assert n.of(ev.BindingExpired) == [], seed


def test_inbound_check_zero_turns_checks_off() -> None:
    n = nat(inbound_check=0)
    n.run_until(60)
    n.reboot()
    n.engine.keepalive_now(n.now)
    n.run_until(120)
    assert not [s for s in n.sent if s.channel == AUX]
    assert n.engine.expiry_detection == "off (inbound_check: 0)"


# --- probe: why a check cannot be made -------------------------------------------------------


class SilentProber:
    """A Prober whose check goes unanswered and whose keepalive is answered."""

    def __init__(self) -> None:
        self.checks: list[tuple[str, int]] = []
        self.keepalives = 0

    def inbound(self, public: tuple[str, int]) -> Answer:
        self.checks.append(public)
        return Answer(None, "", None, 4)

    def keepalive(self) -> Answer:
        self.keepalives += 1
        return Answer(object(), "main", 0.01, 1)  # type: ignore[arg-type]


def test_probe_tells_no_address_from_no_port_from_a_guess_that_failed() -> None:
    from natkeepalive.cli.probe import _inbound

    prober = SilentProber()
    assert (
        _inbound(cast(Prober, prober), None, 5062, True)
        == "unsupported: no received in the answer (public address unknown)"
    )
    assert (
        _inbound(cast(Prober, prober), "203.0.113.1", None, True)
        == "unsupported: no rport value in the answer (public port unknown)"
    )
    assert prober.checks == []
    # a bare rport: the local port was tried, and its silence is not an expiry
    assert (
        _inbound(cast(Prober, prober), "203.0.113.1", 5062, True)
        == "unsupported: bare rport and the public port is not the local one"
    )
    assert prober.checks == [("203.0.113.1", 5062)] and prober.keepalives == 0
    # a port the server wrote: silence, then an answered keepalive, is an expiry
    assert _inbound(cast(Prober, prober), "203.0.113.1", 40000, False) == "expired"
    assert prober.keepalives == 1


def test_every_slow_check_sends_its_own_server_up_probe() -> None:
    """A check answered after its first retransmission (a 0.7-s round trip) ends before the
    server-up probe sent with that copy is answered: the late answer proves nothing about the
    next check, which sends its own probe with its own first copy."""
    n = nat(timeout=3.0)
    n.rtt = 0.7
    n.run_until(200)
    checks = {s.request.cseq for s in n.sent if s.channel == AUX and not s.kind_rport}
    probes = {s.request.cseq for s in n.sent if s.channel == AUX and s.kind_rport}
    assert len(checks) >= 5
    assert len(probes) == len(checks)
    assert n.engine.inbound_result == "alive" and n.of(ev.BindingExpired) == []
