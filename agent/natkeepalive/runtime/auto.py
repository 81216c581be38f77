"""`interval: auto` for one binding: discover the NAT's binding lifetime in the background, on
spare ports, and set the binding's interval to safety × lifetime.

Rules:
- The binding starts at its safe interval (25 s, or `interval_max` if lower); discovery never
  touches its socket. The adapted interval may be longer, up to `interval_max`.
- Each trial runs on a fresh ephemeral socket of its own; the inbound check shares the daemon's
  AUX socket (answers are routed by Call-ID).
- Rediscover after `binding-changed cause=address-changed`, after `binding-expired`, and every
  `rediscover` hours. An expiry while on an adapted interval drops it to the safe one at once.
- An expiry after the binding sat idle at least the measured lifetime agrees with the measurement
  (the last keepalive sent on the safe interval, before the adaptation; a long server outage):
  it is reported, and the adapted interval and the lifetime stay.
- A lifetime that cannot be measured keeps the safe interval, said once per attempt.
"""

from __future__ import annotations

from natkeepalive import events as ev
from natkeepalive.core.discovery import Discovery, Trial
from natkeepalive.core.engine import Address, Datagram
from natkeepalive.core.lifetime import recommended_interval
from natkeepalive.cstdlib import socket
from natkeepalive.runtime.slot import Slot
from natkeepalive.runtime.sockets import family_of, open_udp, send_datagram, wildcard
from natkeepalive.sip.message import Response

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

START_DELAY = 5.0  # let the binding itself settle first
# An adapted interval comes from a measurement: jitter would only add keepalives, so it is capped.
ADAPTED_JITTER = 0.05
# Finer than `discover`'s default: every 1 % of the lifetime left unmeasured costs 1 % more
# keepalives for as long as the interval holds (a trial or two more, once).
RESOLUTION, RESOLUTION_MIN = 0.05, 0.25
# binding-expired carries idle_s rounded to 0.1 s: an idle just above the lifetime may read as
# just below it
IDLE_ROUNDING = 0.05


class AutoInterval:
    def __init__(self, slot: Slot, random_bytes: Callable[[int], bytes], now: float) -> None:
        self.slot = slot
        self.settings = slot.config.settings
        self.safe = self.settings.interval  # min(25 s, interval_max): the loader's safe start
        self._random = random_bytes
        self.discovery: Discovery | None = None
        self.trial: Trial | None = None
        self.sock: socket.socket | None = None
        self.local: Address | None = None
        self.next_start: float | None = now + START_DELAY
        self.lifetime: float | None = None
        self.scheduled: float | None = None

    @property
    def call_id(self) -> str | None:
        return None if self.trial is None else self.trial.call_id

    def next_deadline(self) -> float | None:
        if self.trial is not None:
            return self.trial.next_deadline()
        return self.next_start

    # ------------------------------------------------------------------ inputs

    def handle_timer(self, now: float, out: list[ev.Event]) -> None:
        if self.trial is not None:
            self.trial.handle_timer(now)
            self._progress(now, out)
        elif self.next_start is not None and now >= self.next_start:
            self._begin(now, out)

    def receive(
        self, data: bytes, source: Address, now: float, channel: str, out: list[ev.Event]
    ) -> None:
        if self.trial is not None:
            self.trial.receive_datagram(data, source, now, channel)
            self._progress(now, out)

    def receive_response(
        self, response: Response, source: Address, now: float, channel: str, out: list[ev.Event]
    ) -> None:
        if self.trial is not None:
            self.trial.receive_response(response, source, now, channel)
            self._progress(now, out)

    def on_event(self, event: ev.Event, now: float) -> None:
        """The binding's own events: re-addressing, and an expiry sooner than the lifetime
        measured, make the lifetime stale."""
        expired = isinstance(event, ev.BindingExpired)
        readdressed = isinstance(event, ev.BindingChanged) and event.cause == "address-changed"
        if not (expired or readdressed):
            return
        if (
            isinstance(event, ev.BindingExpired)
            and self.lifetime is not None
            and event.idle_s + IDLE_ROUNDING >= self.lifetime
        ):
            return  # idle as long as the measured lifetime or longer: the measurement holds
        self.lifetime = None
        engine = self.slot.engine
        if expired and engine.interval < self.safe:
            engine.jitter = self.settings.jitter
            engine.set_interval(self.safe, "binding-expired", now)
        if self.discovery is None:
            self.next_start = now

    # ------------------------------------------------------------------ the search

    def _begin(self, now: float, out: list[ev.Event]) -> None:
        server = self.slot.server
        if server is None:
            self.next_start = now + self.settings.retry_interval
            return
        self.next_start = None
        self.discovery = Discovery(
            server,
            self.slot.config.server.host,
            self.slot.config.server.port,
            self._random,
            max_idle=self.settings.interval_max / self.settings.safety,
            start=self.settings.interval_min,
            resolution=RESOLUTION,
            resolution_min=RESOLUTION_MIN,
            timeout=self.settings.timeout,
            stun_server=self.slot.engine.stun_server,
        )
        self._next_trial(now, out)

    def _next_trial(self, now: float, out: list[ev.Event]) -> None:
        assert self.discovery is not None and self.slot.server is not None
        self._close_socket()
        family = family_of(self.slot.server[0])
        bind = self.slot.config.bind or wildcard(family)
        try:
            self.sock = open_udp(bind, 0, f"binding {self.slot.name} discovery")
        except OSError as exc:
            self._finish(now, out, f"no spare port: {exc}")
            return
        host, port = self.sock.getsockname()[:2]
        local = self.slot.engine.local
        via = local[0] if local is not None else str(host)
        self.local = (via, int(port))
        self.trial = self.discovery.start_trial(self.local, now)
        if self.trial is None:
            self._finish(now, out, None)

    def _progress(self, now: float, out: list[ev.Event]) -> None:
        trial = self.trial
        if trial is None or trial.result is None:
            return
        assert self.discovery is not None
        self.discovery.trial_done(trial)
        self.trial = None
        self._next_trial(now, out)

    def _finish(self, now: float, out: list[ev.Event], error: str | None) -> None:
        discovery = self.discovery
        self.discovery = None
        self.trial = None
        self._close_socket()
        self.next_start = now + self.settings.rediscover * 3600.0
        if discovery is not None and error is None:
            error = discovery.error
        name = self.slot.name
        if discovery is None or error is not None:
            out.append(ev.LifetimeDiscoveryFailed(name, str(error), self.slot.engine.interval))
            return
        result = discovery.result()
        self.adopt(result.lo_s, result.hi_s, now, out)

    def adopt(self, lo_s: float, hi_s: float | None, now: float, out: list[ev.Event]) -> None:
        """A lifetime between lo_s and hi_s (None: nothing expired) was measured: the interval
        becomes safety × lo_s."""
        self.lifetime = lo_s
        out.append(ev.LifetimeDiscovered(self.slot.name, lo_s, lo_s, hi_s))
        interval = recommended_interval(
            lo_s, self.settings.safety, self.settings.interval_min, self.settings.interval_max
        )
        engine = self.slot.engine
        engine.jitter = min(self.settings.jitter, ADAPTED_JITTER)
        engine.set_interval(interval, "lifetime-discovered", now)

    # ------------------------------------------------------------------ output

    def datagrams_to_send(self) -> list[Datagram]:
        return [] if self.trial is None else self.trial.datagrams_to_send()

    def send(self, payload: bytes, destination: Address) -> None:
        if self.sock is not None:  # an error is a lost datagram: the transaction times out
            send_datagram(self.sock, payload, destination)

    def _close_socket(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def close(self) -> None:
        self._close_socket()
        self.trial = None
        self.discovery = None
