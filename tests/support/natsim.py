"""A simulated NAT (one idle lifetime for UDP flows, port-preserving or random ports) with a
server behind it that answers like Kamailio, on a fake clock. It drives the sans-I/O discovery
trials and the engine for unit tests and the keepalive-cost benchmark; no sockets."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from natkeepalive import events as ev, stun
from natkeepalive.core.discovery import TRIAL, Discovery, Trial
from natkeepalive.core.engine import AUX, BINDING, BindingEngine, Datagram
from natkeepalive.core.lifetime import SearchResult
from natkeepalive.sip.message import Request, parse_message
from tests.support.sipfake import answer

PUBLIC_IP = "203.0.113.1"
SERVER = ("203.0.113.10", 5060)
STUN_SERVER = ("198.51.100.20", 3478)
RTT = 0.01


@dataclass
class NatSim:
    lifetime: float
    random_ports: bool = False
    force_rport: bool = False
    ignore_rport: bool = False
    relays: bool = False  # the server relays an OPTIONS sent to the public address:port
    stun_rfc5780: bool = True  # the STUN server (STUN_SERVER) honours RESPONSE-PORT
    seed: int = 7
    flows: dict[tuple[str, int], tuple[int, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.expiries = 0

    def _alive(self, local: tuple[str, int], now: float) -> int | None:
        flow = self.flows.get(local)
        if flow is None:
            return None
        port, last = flow
        if now - last > self.lifetime:
            del self.flows[local]
            self.expiries += 1
            return None
        return port

    def outbound(self, local: tuple[str, int], now: float) -> int:
        port = self._alive(local, now)
        if port is None:
            port = self.rng.randrange(1024, 65536) if self.random_ports else local[1]
        self.flows[local] = (port, now)
        return port

    def inbound(self, public_port: int, now: float) -> tuple[str, int] | None:
        for local, (port, _) in list(self.flows.items()):
            if port == public_port and self._alive(local, now) is not None:
                self.flows[local] = (port, now)
                return local
        return None

    def exchange(
        self, datagram: Datagram, local: tuple[str, int], aux_local: tuple[str, int], now: float
    ) -> tuple[bytes, str, tuple[str, int]] | None:
        """The answer to one datagram, the channel it arrives on and its source, or None if it
        is lost."""
        sender = aux_local if datagram.channel == AUX else local
        if datagram.destination == STUN_SERVER:
            return self._stun(datagram, sender, local, now)
        if datagram.payload.startswith(b"SIP/2.0 "):  # our answer to a relayed request
            self.outbound(sender, now)
            return None
        request = parse_message(datagram.payload)
        assert isinstance(request, Request)
        public = (PUBLIC_IP, self.outbound(sender, now))
        if self.relays and datagram.channel == AUX and request.uri.startswith(f"sip:{PUBLIC_IP}:"):
            target = self.inbound(int(request.uri.rpartition(":")[2]), now + RTT / 2)
            if target != local:
                return None
            relayed = datagram.payload.replace(
                b"Via: ", b"Via: SIP/2.0/UDP 203.0.113.10;branch=z9hG4bKrelay1\r\nVia: ", 1
            )
            return relayed, TRIAL, SERVER
        reply = answer(datagram.payload, public, ignore_rport=self.ignore_rport)
        via = request.top_via
        if via.has_param("rport") or self.force_rport or self.ignore_rport:
            # answered to the source: back through the sender's own flow
            return reply, datagram.channel, SERVER
        target = self.inbound(via.port or 5060, now + RTT / 2)
        if target is None:
            return None
        return (
            reply,
            (
                TRIAL
                if datagram.channel == AUX and target == local
                else datagram.channel
                if target == sender
                else "elsewhere"
            ),
            SERVER,
        )

    def _stun(
        self, datagram: Datagram, sender: tuple[str, int], local: tuple[str, int], now: float
    ) -> tuple[bytes, str, tuple[str, int]] | None:
        request = stun.parse_binding_request(datagram.payload)
        public = (PUBLIC_IP, self.outbound(sender, now))
        reply = stun.build_binding_success(request.transaction_id, public)
        if request.response_port is None or not self.stun_rfc5780:
            return reply, datagram.channel, STUN_SERVER
        target = self.inbound(request.response_port, now + RTT / 2)
        if target is None:
            return None
        return reply, TRIAL if target == local else "elsewhere", STUN_SERVER


def run_discovery(
    nat: NatSim,
    max_idle: float = 600.0,
    start: float = 5.0,
    resolution: float = 0.1,
    resolution_min: float = 1.0,
    stun_server: tuple[str, int] | None = None,
) -> tuple[Discovery, SearchResult, float]:
    """Discovery against the simulated NAT; returns it, its result and the simulated time taken."""
    rng = random.Random(3)
    discovery = Discovery(
        SERVER,
        "sip.example.net",
        5060,
        rng.randbytes,
        max_idle=max_idle,
        start=start,
        resolution=resolution,
        resolution_min=resolution_min,
        stun_server=stun_server,
    )
    now = 0.0
    port = 20000
    aux_local = ("192.168.77.2", 40999)
    while True:
        port += 1
        local = ("192.168.77.2", port)
        trial = discovery.start_trial(local, now)
        if trial is None:
            break
        now = drive(trial, nat, local, aux_local, now)
        discovery.trial_done(trial)
    return discovery, discovery.result(), now


def drive(
    trial: Trial, nat: NatSim, local: tuple[str, int], aux_local: tuple[str, int], now: float
) -> float:
    pending: list[tuple[float, bytes, str, tuple[str, int]]] = []
    for _ in range(10_000):  # bounded: a trial is a handful of exchanges
        for datagram in trial.datagrams_to_send():
            got = nat.exchange(datagram, local, aux_local, now)
            if got is not None and got[1] in (TRIAL, AUX):
                pending.append((now + RTT, got[0], got[1], got[2]))
        if trial.result is not None:
            return now
        deadline = trial.next_deadline()
        arrival = min((p[0] for p in pending), default=None)
        if arrival is not None and (deadline is None or arrival <= deadline):
            now = arrival
            due = [p for p in pending if p[0] <= now]
            pending = [p for p in pending if p[0] > now]
            for _, data, channel, source in due:
                trial.receive_datagram(data, source, now, channel)
        elif deadline is not None:
            now = deadline
            trial.handle_timer(now)
        else:
            return now
    raise AssertionError("trial did not end")


def run_engine(
    engine: BindingEngine,
    nat: NatSim,
    until: float,
    now: float = 0.0,
    local: tuple[str, int] = ("192.168.77.2", 5062),
) -> dict[str, int]:
    """Drive a BindingEngine through the simulated NAT until `until`; count what it sent."""
    aux_local = ("192.168.77.2", 40998)
    pending: list[tuple[float, bytes, str]] = []
    counts = {"keepalive": 0, "confirm": 0, "inbound": 0, "expired_events": 0}
    while True:
        for datagram in engine.datagrams_to_send():
            got = nat.exchange(datagram, local, aux_local, now)
            if got is not None and got[1] in (BINDING, AUX):
                pending.append((now + RTT, got[0], got[1]))
        for event in engine.events():
            if isinstance(event, ev.ProbeSent):
                counts[event.kind] += 1
            elif isinstance(event, ev.BindingExpired):
                counts["expired_events"] += 1
        deadline = engine.next_deadline()
        arrival = min((p[0] for p in pending), default=None)
        nxt = min(x for x in (deadline, arrival, float("inf")) if x is not None)
        if nxt > until:
            return counts
        now = nxt
        if arrival is not None and arrival <= now:
            due = [p for p in pending if p[0] <= now]
            pending = [p for p in pending if p[0] > now]
            for _, data, channel in due:
                engine.receive_datagram(data, SERVER, now, channel)
        else:
            engine.handle_timer(now)
