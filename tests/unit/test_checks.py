"""The check methods (core/checks.py) on a fake clock, a fake NAT, a fake SIP server and a fake
STUN server: sent-by, relay and stun, and `check: auto`'s fallbacks. No sockets, no sleeps."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

from natkeepalive import events as ev
from natkeepalive.config.model import ProbeSettings, Target
from natkeepalive.core import checks
from natkeepalive.core.cycle import UNPROVEN_CHECKS
from natkeepalive.core.engine import AUX, BINDING, Datagram
from natkeepalive.core.methods import set_stun_server
from natkeepalive.sip.message import Request, Response, parse_message
from tests.support.fakenet import SERVER, FakeNet, Sent

STUN = ("198.51.100.20", 3478)
PUBLIC_IP = "203.0.113.1"
AUX_PUBLIC = (PUBLIC_IP, 51000)


def stun_reply(request: bytes, mapped: tuple[str, int]) -> bytes:
    """A Binding success with XOR-MAPPED-ADDRESS, as coturn sends it."""
    txid = request[8:20]
    port = mapped[1] ^ 0x2112
    raw = bytes(int(x) for x in mapped[0].split("."))
    xored = bytes(a ^ b for a, b in zip(raw, struct.pack("!I", 0x2112A442)))
    attr = struct.pack("!HHBBH", 0x0020, 8, 0, 1, port) + xored
    return struct.pack("!HHI", 0x0101, len(attr), 0x2112A442) + txid + attr


def response_port(request: bytes) -> int | None:
    length = struct.unpack_from("!H", request, 2)[0]
    offset = 20
    while offset < 20 + length:
        kind, size = struct.unpack_from("!HH", request, offset)
        if kind == 0x0027:
            return int(struct.unpack_from("!H", request, offset + 4)[0])
        offset += 4 + (size + 3) // 4 * 4
    return None


class MethodNet(FakeNet):
    """A port-preserving NAT (one binding for the local port, lost on `reboot()` and made again
    by the next outgoing datagram), a SIP server that forces rport (`force_rport`) and may relay
    an OPTIONS to the public address (`relays`), and a STUN server that honours RESPONSE-PORT
    (`rfc5780`) or answers the sender."""

    relays = False
    rfc5780 = True
    stun_down = False
    sip_down = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.stun_sent: list[tuple[float, str, bytes]] = []
        self.relayed: list[bytes] = []  # relayed requests delivered into the binding
        self.answers_to_relay: list[bytes] = []  # what the agent answered them
        if self.settings.stun_server is not None:
            set_stun_server(self.engine, STUN)

    def reboot(self) -> None:
        self.binding_alive = False

    def _deliver_outgoing(self) -> None:
        for datagram in self.engine.datagrams_to_send():
            if datagram.channel == BINDING and not self.binding_alive:
                self.binding_alive = True  # an outgoing datagram makes the binding again
            if datagram.destination == STUN:
                self._stun_receives(datagram)
            elif datagram.payload.startswith(b"SIP/2.0 "):
                self.answers_to_relay.append(datagram.payload)
            else:
                self._server_receives(datagram)
        self.log.extend(self.engine.events())

    def _stun_receives(self, datagram: Datagram) -> None:
        self.stun_sent.append((self.now, datagram.channel, datagram.payload))
        if self.stun_down:
            return
        if datagram.channel == BINDING:
            self.in_flight.append(
                (self.now + self.rtt, stun_reply(datagram.payload, self.public), STUN, BINDING)
            )
            return
        port = response_port(datagram.payload)
        reply = stun_reply(datagram.payload, AUX_PUBLIC)
        if port is None or not self.rfc5780:
            self.in_flight.append((self.now + self.rtt, reply, STUN, AUX))
        elif self.binding_alive and port == self.public[1]:
            self.in_flight.append((self.now + self.rtt, reply, STUN, BINDING))

    def _server_receives(self, datagram: Datagram) -> None:
        request = parse_message(datagram.payload)
        assert isinstance(request, Request)
        if self.sip_down:
            self.sent.append(
                Sent(
                    self.now,
                    datagram.channel,
                    request.top_via.has_param("rport"),
                    request,
                    datagram.payload,
                )
            )
            return
        if (
            self.relays
            and datagram.channel == AUX
            and f"{self.public[0]}:{self.public[1]}" in request.uri
        ):
            self.sent.append(Sent(self.now, datagram.channel, True, request, datagram.payload))
            if self.binding_alive:  # a proxy: its own Via on top, from its own address
                relayed = datagram.payload.replace(
                    b"Via: ", b"Via: SIP/2.0/UDP 203.0.113.10;branch=z9hG4bKproxy1\r\nVia: ", 1
                )
                self.relayed.append(relayed)
                self.in_flight.append((self.now + self.rtt, relayed, SERVER, BINDING))
            return
        super()._server_receives(datagram)


def mnet(**settings: object) -> MethodNet:
    base: dict[str, object] = {"interval": 20.0, "jitter": 0.0}
    base.update(settings)
    return MethodNet(settings=ProbeSettings(**base))  # type: ignore[arg-type]


def detected(n: FakeNet) -> list[str]:
    return [e.detected for e in n.of(ev.BindingExpired)]


# --- sent-by, the first method: unchanged ----------------------------------------------------


def test_sent_by_is_tried_first_and_kept_when_it_proves_the_binding() -> None:
    n = mnet(stun_server=Target(*STUN))
    n.run_until(100)
    assert n.engine.expiry_detection == "inbound-check"
    assert n.stun_sent == [] and n.relayed == []  # nothing else is sent for it
    n.reboot()
    n.run_until(130)
    assert detected(n) == ["inbound-check"]


# --- relay ---------------------------------------------------------------------------------


def test_a_server_forcing_rport_that_relays_the_check_proves_expiry_by_relay() -> None:
    n = mnet()
    n.force_rport = True
    n.relays = True
    n.run_until(60)
    assert n.engine.expiry_detection == "relay-check"
    assert "inbound-check-unsupported" not in n.names()
    # the relayed request was answered 200 from the binding, with our Call-ID and CSeq
    assert n.answers_to_relay
    ok = parse_message(n.answers_to_relay[0])
    assert isinstance(ok, Response) and ok.status == 200
    relayed = parse_message(n.relayed[0])
    assert isinstance(relayed, Request)
    assert ok.call_id == relayed.call_id and ok.cseq == relayed.cseq
    assert len(ok.vias) == 2 and ok.vias[0].branch == "z9hG4bKproxy1"
    assert ";tag=" in (ok.header("to") or "")
    # the check's Request-URI is the public address:port; its Via is ours, with rport
    check = next(s for s in n.sent if s.channel == AUX and "40000" in s.request.uri)
    assert check.request.uri == f"sip:{PUBLIC_IP}:40000" and check.kind_rport
    n.reboot()
    n.run_until(n.now + 25)
    assert detected(n) == ["relay-check"]
    assert n.engine.expiries == 1


def test_a_relay_check_silent_while_the_server_is_down_is_no_expiry() -> None:
    n = mnet()
    n.force_rport = True
    n.relays = True
    n.run_until(60)
    n.sip_down = True
    n.run_until(200)
    n.sip_down = False
    n.run_until(300)
    assert detected(n) == []
    assert n.engine.expiry_detection == "relay-check"


def test_a_copy_of_a_relayed_request_is_answered_again_and_counted_nowhere_else() -> None:
    n = mnet()
    n.force_rport = True
    n.relays = True
    n.run_until(60)
    answers, dropped = len(n.answers_to_relay), n.engine.dropped
    n.inject(n.relayed[-1], SERVER)  # the proxy retransmits: our 200 was lost
    assert len(n.answers_to_relay) == answers + 1
    assert n.engine.dropped == dropped


def test_a_request_with_another_call_id_is_not_answered() -> None:
    n = mnet()
    n.force_rport = True
    n.relays = True
    n.run_until(60)
    forged = n.relayed[-1].replace(n.engine.call_id.encode(), b"0123456789abcdef")
    answers, dropped = len(n.answers_to_relay), n.engine.dropped
    n.inject(forged, SERVER)
    n.inject(n.relayed[-1], ("198.51.100.99", 5060))  # ours, but not from the server
    assert len(n.answers_to_relay) == answers
    assert n.engine.dropped == dropped + 2


def test_check_relay_alone_reports_why_when_the_server_does_not_relay() -> None:
    n = mnet(check="relay")
    n.force_rport = True
    n.run_until(100)
    unsupported = n.of(ev.InboundCheckUnsupported)
    assert [u.reason for u in unsupported] == [checks.NO_RELAY]
    assert n.engine.expiry_detection == f"remap-only: {checks.NO_RELAY}"
    # never a sent-by check: every check from AUX has rport
    assert all(s.kind_rport for s in n.sent if s.channel == AUX)


# --- stun ----------------------------------------------------------------------------------


def test_stun_takes_over_when_the_server_forces_rport_and_does_not_relay() -> None:
    n = mnet(stun_server=Target(*STUN))
    n.force_rport = True
    n.run_until(100)
    assert n.engine.expiry_detection == "stun-check"
    assert "inbound-check-unsupported" not in n.names()
    binding = [p for _, ch, p in n.stun_sent if ch == BINDING]
    checks_out = [p for _, ch, p in n.stun_sent if ch == AUX and response_port(p) is not None]
    assert binding and checks_out
    assert all(response_port(p) is None for p in binding)
    assert {response_port(p) for p in checks_out} == {40000}  # the mapped port
    # the STUN transaction id carries the binding's Call-ID prefix (the AUX socket is shared)
    assert checks_out[0][8:16].hex() == n.engine.call_id


@pytest.mark.parametrize("at", [101.0, 110.0, 117.0])
def test_stun_reports_a_reboot_within_one_interval(at: float) -> None:
    n = mnet(stun_server=Target(*STUN))
    n.force_rport = True
    n.run_until(at)
    n.reboot()
    n.run_until(at + 22)
    assert detected(n) == ["stun-check"]
    n.run_until(300)
    assert detected(n) == ["stun-check"]  # once


def test_stun_keepalives_go_with_every_keepalive_only_once_stun_is_the_method() -> None:
    n = mnet(stun_server=Target(*STUN))
    n.force_rport = True
    n.run_until(300)
    keepalives = [s.at for s in n.sent if s.channel == BINDING]
    stun_keepalives = [at for at, ch, _ in n.stun_sent if ch == BINDING]
    assert stun_keepalives
    first = stun_keepalives[0]
    assert stun_keepalives == [at for at in keepalives if at >= first]


def test_a_stun_server_outage_is_never_an_expiry() -> None:
    n = mnet(stun_server=Target(*STUN))
    n.force_rport = True
    n.run_until(100)
    n.stun_down = True
    n.run_until(200)
    n.stun_down = False
    n.run_until(300)
    assert detected(n) == []
    assert n.engine.expiry_detection == "stun-check"


def test_a_stun_server_without_rfc5780_is_reported_with_why() -> None:
    n = mnet(stun_server=Target(*STUN))
    n.force_rport = True
    n.rfc5780 = False
    n.run_until(200)
    unsupported = n.of(ev.InboundCheckUnsupported)
    assert len(unsupported) == 1
    reason = unsupported[0].reason
    assert reason == f"{checks.FORCES_RPORT}; {checks.NO_RELAY}; {checks.STUN_IGNORES_PORT}"
    assert n.engine.expiry_detection == f"remap-only: {reason}"
    n.reboot()
    n.run_until(300)
    assert detected(n) == []  # nothing false
    assert [e for e in n.stun_sent if e[0] > 200 and e[1] == AUX] == []  # given up


def test_a_stun_server_that_never_answers_is_given_up() -> None:
    n = mnet(stun_server=Target(*STUN))
    n.force_rport = True
    n.stun_down = True
    n.run_until(300)
    assert n.engine.expiry_detection.endswith(checks.STUN_SILENT)
    sent = len(n.stun_sent)
    assert sent <= checks.STUN_UNANSWERED + 1
    n.run_until(600)
    assert len(n.stun_sent) == sent


def test_check_stun_skips_sent_by_and_relay() -> None:
    n = mnet(check="stun", stun_server=Target(*STUN))
    n.run_until(100)
    assert n.engine.expiry_detection == "stun-check"
    assert [s for s in n.sent if s.channel == AUX and not s.kind_rport] == []  # no sent-by
    assert not any("40000" in s.request.uri for s in n.sent)  # no relay
    n.reboot()
    n.run_until(125)
    assert detected(n) == ["stun-check"]


def test_stun_silent_checks_never_proven_are_given_up_without_a_false_expiry() -> None:
    """A STUN server that answers plain Binding requests but drops those with RESPONSE-PORT."""
    n = mnet(check="stun", stun_server=Target(*STUN))
    original = n._stun_receives

    def drop_port(datagram: Datagram) -> None:
        if datagram.channel == AUX and response_port(datagram.payload) is not None:
            n.stun_sent.append((n.now, datagram.channel, datagram.payload))
            return
        original(datagram)

    n._stun_receives = drop_port  # type: ignore[method-assign]
    n.run_until(600)
    assert detected(n) == []
    assert n.engine.expiry_detection == f"remap-only: {checks.STUN_SILENT}"
    checked = {p[8:20] for _, ch, p in n.stun_sent if ch == AUX and response_port(p)}
    assert len(checked) == UNPROVEN_CHECKS


def test_check_off_sends_no_check() -> None:
    n = mnet(check="off", stun_server=Target(*STUN))
    n.force_rport = True
    n.run_until(200)
    assert [s for s in n.sent if s.channel == AUX] == [] and n.stun_sent == []
    assert n.engine.expiry_detection == "off (check: off)"


def test_a_new_server_starts_the_methods_over() -> None:
    n = mnet(stun_server=Target(*STUN))
    n.force_rport = True
    n.run_until(100)
    assert n.engine.expiry_detection == "stun-check"
    n.engine.set_flow(n.engine.local, ("203.0.113.11", 5060), n.now)  # type: ignore[arg-type]
    assert n.engine.expiry_detection == "pending"


# --- the STUN codec pieces -----------------------------------------------------------------


def test_stun_request_and_answer_round_trip() -> None:
    txid = checks.stun_txid("0123456789abcdef", 7)
    assert txid == bytes.fromhex("0123456789abcdef00000007")
    request = checks.stun_request(txid, 40000)
    assert len(request) == 28 and response_port(request) == 40000
    assert checks.looks_like_stun(request)
    assert checks.stun_answer(stun_reply(request, ("203.0.113.1", 40000))) == (
        txid,
        ("203.0.113.1", 40000),
    )
    assert checks.stun_answer(request) is None  # a request is not an answer


@given(st.binary(max_size=80))
def test_stun_answer_never_raises(data: bytes) -> None:
    result = checks.stun_answer(data)
    assert result is None or len(result[0]) == 12


@given(st.binary(max_size=200))
def test_relayed_request_never_raises(data: bytes) -> None:
    request = checks.relayed_request(b"OPTIONS " + data)
    assert request is None or request.method == "OPTIONS"


def test_the_first_stun_mapping_is_checked_at_once() -> None:
    """A reboot soon after start is caught too: the STUN check goes as soon as the first mapping
    is known (the promotion keepalive, 3 s), not an interval later."""
    n = mnet(stun_server=Target(*STUN))
    n.force_rport = True
    n.run_until(3.5)
    assert n.engine.expiry_detection == "stun-check"
    n.reboot()
    n.run_until(30)  # the next cycle (20 s after the check) and its check's 3-s timeout
    assert detected(n) == ["stun-check"]


CONFIGS = {
    "sent-by": ({}, {}),
    "relay": ({}, {"force_rport": True, "relays": True}),
    "stun": ({"stun_server": Target(*STUN)}, {"force_rport": True}),
    "stun-no-5780": ({"stun_server": Target(*STUN)}, {"force_rport": True, "rfc5780": False}),
    "remap-only": ({}, {"force_rport": True}),
}
FAULTS = ("reboot", "sip-down", "sip-up", "stun-down", "stun-up", "wait")


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(sorted(CONFIGS)),
    st.lists(st.tuples(st.sampled_from(FAULTS), st.floats(0.5, 45.0)), max_size=10),
)
def test_no_false_expiry_whatever_the_faults(config: str, steps: list[tuple[str, float]]) -> None:
    """Whatever the method and the order of NAT reboots and SIP or STUN server outages: never
    more expiries than reboots, each naming a method, and at most one unsupported report."""
    settings_, knobs = CONFIGS[config]
    n = mnet(**settings_)
    for name, value in knobs.items():
        setattr(n, name, value)
    n.run_until(5.0)
    reboots = 0
    for fault, wait in steps:
        if fault == "reboot":
            n.reboot()
            reboots += 1
        elif fault in ("sip-down", "sip-up"):
            n.sip_down = fault == "sip-down"
        elif fault in ("stun-down", "stun-up"):
            n.stun_down = fault == "stun-down"
        n.run_until(n.now + wait)
    n.sip_down = n.stun_down = False
    n.run_until(n.now + 60.0)
    found = detected(n)
    assert len(found) <= reboots, (found, steps)
    assert set(found) <= {"inbound-check", "relay-check", "stun-check", "remap"}
    assert n.names().count("inbound-check-unsupported") <= 1
