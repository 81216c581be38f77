"""A fake clock and a fake network around one BindingEngine: a NAT that maps the binding to a
public address, a server that answers like Kamailio, and knobs to break either. No sockets."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TypeVar

from natkeepalive import events as ev
from natkeepalive.config.model import ProbeSettings
from natkeepalive.core.engine import AUX, BINDING, BindingEngine, Datagram
from natkeepalive.sip.message import Request, parse_message
from tests.support.sipfake import answer

E = TypeVar("E", bound=ev.Event)

SERVER = ("203.0.113.10", 5060)
LOCAL = ("192.168.77.2", 5062)


@dataclass
class Sent:
    at: float
    channel: str
    kind_rport: bool
    request: Request
    raw: bytes


@dataclass
class FakeNet:
    settings: ProbeSettings = field(default_factory=ProbeSettings)
    public: tuple[str, int] = ("203.0.113.1", 40000)
    rtt: float = 0.02
    silent: bool = False  # the server does not answer
    binding_alive: bool = True  # inbound traffic reaches the binding's socket
    force_rport: bool = False  # the server answers the inbound check to its source
    ignore_rport: bool = False
    status: int = 200
    seed: int = 1
    now: float = 0.0

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.engine = BindingEngine("b", self.settings, rng.randbytes, "sip.example.net", 5060)
        self.engine.set_flow(LOCAL, SERVER, self.now)
        self.in_flight: list[tuple[float, bytes, tuple[str, int], str]] = []
        self.sent: list[Sent] = []
        self.log: list[ev.Event] = []

    def _deliver_outgoing(self) -> None:
        for datagram in self.engine.datagrams_to_send():
            self._server_receives(datagram)
        self.log.extend(self.engine.events())

    def _server_receives(self, datagram: Datagram) -> None:
        request = parse_message(datagram.payload)
        assert isinstance(request, Request)
        has_rport = request.top_via.has_param("rport")
        self.sent.append(Sent(self.now, datagram.channel, has_rport, request, datagram.payload))
        if self.silent:
            return
        if datagram.channel == BINDING:
            reply = answer(
                datagram.payload, self.public, status=self.status, ignore_rport=self.ignore_rport
            )
            self.in_flight.append((self.now + self.rtt, reply, SERVER, BINDING))
            return
        # the inbound check, from the AUX socket: no rport, so the server answers the sent-by;
        # with rport (the server-up probe) to the AUX socket's own mapping
        reply = answer(datagram.payload, ("203.0.113.1", 51000), status=self.status)
        if self.force_rport or has_rport:
            self.in_flight.append((self.now + self.rtt, reply, SERVER, AUX))
        elif self.binding_alive and (request.top_via.host, request.top_via.port) == self.public:
            self.in_flight.append((self.now + self.rtt, reply, SERVER, BINDING))

    def inject(self, data: bytes, source: tuple[str, int], channel: str = BINDING) -> None:
        self.engine.receive_datagram(data, source, self.now, channel)
        self._deliver_outgoing()

    def step(self) -> bool:
        deadline = self.engine.next_deadline()
        arrival = min((f[0] for f in self.in_flight), default=None)
        if deadline is None and arrival is None:
            return False
        if arrival is not None and (deadline is None or arrival <= deadline):
            self.now = max(self.now, arrival)
            due = [f for f in self.in_flight if f[0] <= self.now]
            self.in_flight = [f for f in self.in_flight if f[0] > self.now]
            for _, data, source, channel in due:
                self.engine.receive_datagram(data, source, self.now, channel)
        else:
            assert deadline is not None
            self.now = max(self.now, deadline)
            self.engine.handle_timer(self.now)
        self._deliver_outgoing()
        return True

    def run_until(self, t: float) -> None:
        while True:
            deadline = self.engine.next_deadline()
            arrival = min((f[0] for f in self.in_flight), default=None)
            nxt = min(x for x in (deadline, arrival, float("inf")) if x is not None)
            if nxt > t:
                self.now = t
                return
            self.step()

    def names(self) -> list[str]:
        return [e.NAME for e in self.log if e.SEVERITY < ev.DEBUG]

    def of(self, cls: type[E]) -> list[E]:
        return [e for e in self.log if isinstance(e, cls)]

    def keepalive_times(self) -> list[float]:
        """Send times of first transmissions of keepalives/confirmations from the binding."""
        seen: set[str] = set()
        times = []
        for s in self.sent:
            branch = s.request.top_via.branch or ""
            if s.channel == BINDING and branch not in seen:
                times.append(s.at)
            seen.add(branch)
        return times
