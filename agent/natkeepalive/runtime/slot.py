"""A binding at run time: its engine, its socket, its server's resolved address and local address.

Rules:
- The socket is opened when the server's address family is known (at once for an IP literal or an
  explicit `bind`), and re-opened on the same port when the local address changes.
- A name is resolved at start, again every RESOLVE_EVERY seconds, and again `retry_interval` after a
  failure or while the server is unreachable. A new address is a new flow (`server-changed`).
- `resolve-failed` and `resolve-recovered` are reported once per outage, not at every retry.
"""

from __future__ import annotations

from natkeepalive import events as ev, netinfo
from natkeepalive.config.model import BindingConfig
from natkeepalive.core.engine import Address, BindingEngine
from natkeepalive.core.methods import set_stun_server
from natkeepalive.core.reachability import UNREACHABLE
from natkeepalive.cstdlib import socket
from natkeepalive.runtime.addrwatch import AddressWatch
from natkeepalive.runtime.sockets import (
    Resolver,
    family_of,
    is_ip_literal,
    open_udp,
    resolve,
    send_datagram,
    wildcard,
)
from natkeepalive.sip.target import format_hostport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from natkeepalive.runtime.sockets import Lookup

RESOLVE_EVERY = 600.0
LOOKUP_LIMIT = 60.0  # a lookup in flight this long is asked again
STUN_KEY = "\0stun"  # the resolver's key for a binding's stun_server: its name and this


class Slot:
    # One per binding, like the engine: no per-instance __dict__.
    __slots__ = (
        "addresses",
        "checked",
        "config",
        "engine",
        "literal",
        "missing",
        "name",
        "next_resolve",
        "resolve_failing",
        "resolved_at",
        "scheduled",
        "server",
        "sock",
        "start_offset",
        "stun_next",
    )

    def __init__(
        self,
        config: BindingConfig,
        random_bytes: Callable[[int], bytes],
        addresses: AddressWatch | None = None,
    ) -> None:
        # Without a watch (tests, one-off use) every question goes to the system.
        self.addresses = addresses if addresses is not None else AddressWatch(None)
        self.config = config
        self.literal = is_ip_literal(config.server.host)  # asked before every send otherwise
        self.name = config.name
        self.engine = BindingEngine(
            config.name, config.settings, random_bytes, config.server.host, config.server.port
        )
        self.sock: socket.socket | None = None
        self.server: Address | None = None
        self.next_resolve = 0.0
        self.resolve_failing = False
        self.resolved_at: float | None = None  # last resolution of a name (None: an IP literal)
        self.scheduled: float | None = None  # the deadline this slot has in the timer heap
        self.start_offset = 0.0
        # AddressWatch.changes when check_local last found the socket where it belongs; while it
        # stays the same, refresh has nothing to look at (see refresh)
        self.checked = -1
        self.missing: str | None = None  # why there is no local address (reported once)
        self.stun_next = 0.0 if config.settings.stun_server is not None else float("inf")

    # ---------------------------------------------------------------- addresses

    def _bind_address(self, family: int) -> str | None:
        """The address to bind: explicit, the interface's, or the wildcard (None: none yet)."""
        if self.config.bind:
            return self.config.bind
        interface = self.config.interface
        if interface:
            addresses = self.addresses.ask(
                ("interface", interface), lambda: tuple(netinfo.interface_addresses(interface))
            )
            for address in addresses:
                if family_of(address) == family:
                    return address
            return None
        return wildcard(family)

    def _via_address(self, bound: str) -> str | None:
        """What goes into the Via: the bound address, or for a wildcard the kernel's choice."""
        server = self.server
        if bound not in ("0.0.0.0", "::") or server is None:
            return bound
        return self.addresses.ask(
            ("source", server),
            lambda: netinfo.source_address_for(server[0], server[1], family_of(server[0])),
        )

    def local_now(self) -> tuple[str, str] | None:
        """(bind address, via address) as they are now; None when the host has no usable one."""
        if self.server is None:
            return None
        bound = self._bind_address(family_of(self.server[0]))
        if bound is None:
            return None
        via = self._via_address(bound)
        return None if via is None else (bound, via)

    # ---------------------------------------------------------------- life cycle

    def resolve_due(self, now: float) -> bool:
        """Every RESOLVE_EVERY; every retry_interval while unreachable (the name may have moved)."""
        if self.engine.reach.state == UNREACHABLE and self.resolved_at is not None:
            self.next_resolve = min(
                self.next_resolve, self.resolved_at + self.config.settings.retry_interval
            )
        return now >= self.next_resolve

    def quiet(self, now: float, resolver: Resolver | None) -> bool:
        """Whether nothing refresh looks at can have moved since check_local last ran: no lookup
        is due or waiting, and no address or route change was announced (or forgotten): refresh
        can then be skipped, which matters since it would run before every keepalive."""
        return (
            self.checked == self.addresses.changes
            and now < self.next_resolve
            and self.sock is not None
            and self.addresses.sock is not None
            and not self.resolve_failing
            and (resolver is None or self.name not in resolver.results)
        )

    def refresh(self, now: float, out: list[ev.Event], resolver: Resolver | None = None) -> None:
        """Resolve the server if due and (re)open the socket if the local address moved.

        With a resolver a name is looked up off the loop: until the answer comes back (through
        the daemon's loop, which calls refresh again) the binding keeps its current server, or
        waits when it has none yet. Without one (at start) the lookup is done in place."""
        if now >= self.stun_next or (
            resolver is not None and resolver.results and self.name + STUN_KEY in resolver.results
        ):
            self._refresh_stun(now, resolver)
        if self.quiet(now, resolver):
            return
        host, port = self.config.server.host, self.config.server.port
        family = family_of(self.config.bind) if self.config.bind else 0
        literal = self.literal
        result: Lookup | None = resolver.take(self.name) if resolver is not None else None
        if result is None and now >= self.next_resolve:
            self.resolved_at = None if literal else now
            if resolver is None or literal:
                try:
                    result = resolve(host, port, family)
                except OSError as exc:
                    result = exc
            else:
                resolver.start(self.name, host, port, family)
                self.next_resolve = now + LOOKUP_LIMIT
        if isinstance(result, OSError):
            self.next_resolve = now + self.config.settings.retry_interval
            if not self.resolve_failing:
                self.resolve_failing = True
                out.append(ev.ResolveFailed(self.name, host, str(result)))
        elif result is not None:
            if self.resolve_failing:
                self.resolve_failing = False
                out.append(ev.ResolveRecovered(self.name, host, format_hostport(*result)))
            self.next_resolve = float("inf") if literal else now + RESOLVE_EVERY
            self.server = result
        if self.server is None:
            return
        self.check_local(now, out)

    def _refresh_stun(self, now: float, resolver: Resolver | None) -> None:
        """stun_server's address: looked up like the server's, off the loop (key name + STUN_KEY)
        when a resolver is given; a failure leaves the binding without the stun method until a
        later lookup succeeds (expiry_detection says so)."""
        target = self.config.settings.stun_server
        assert target is not None
        key = self.name + STUN_KEY
        family = family_of(self.config.bind) if self.config.bind else 0
        result: Lookup | None = resolver.take(key) if resolver is not None else None
        if result is None and now >= self.stun_next:
            if resolver is None or is_ip_literal(target.host):
                try:
                    result = resolve(target.host, target.port, family)
                except OSError as exc:
                    result = exc
            else:
                resolver.start(key, target.host, target.port, family)
                self.stun_next = now + LOOKUP_LIMIT
                return
        if isinstance(result, OSError):
            self.stun_next = now + self.config.settings.retry_interval
        elif result is not None:
            self.stun_next = float("inf") if is_ip_literal(target.host) else now + RESOLVE_EVERY
            set_stun_server(self.engine, result)

    def check_local(self, now: float, out: list[ev.Event]) -> None:
        """Open or re-open the socket so it sits on the current local address."""
        if self.server is None:
            return
        local = self.local_now()
        if local is None:
            if self.engine.local is not None:
                self.engine.send_failed(f"no local address toward {self.server[0]}")
            why = self._why_no_address()
            if why != self.missing:
                self.missing = why
                out.append(ev.NoLocalAddress(self.name, why))
            return
        self.missing = None
        bound, via = local
        engine_local = self.engine.local
        same_server = self.engine.server == self.server
        if (
            self.sock is not None
            and engine_local is not None
            and engine_local[0] == via
            and same_server
        ):
            self.checked = self.addresses.changes
            return
        if self.sock is None or engine_local is None or engine_local[0] != via:
            self.close()
            self.sock = open_udp(bound, self.config.source_port, f"binding {self.name}")
        self.engine.set_flow((via, self.config.source_port), self.server, now, self.start_offset)
        self.checked = self.addresses.changes

    def _why_no_address(self) -> str:
        assert self.server is not None
        version = "IPv6" if family_of(self.server[0]) == socket.AF_INET6 else "IPv4"
        interface = self.config.interface
        if interface:
            if interface not in netinfo.interface_names():
                return f"interface {interface} does not exist"
            return f"interface {interface} has no {version} address"
        return f"no {version} address on this host reaches {self.server[0]}"

    def send(self, payload: bytes, destination: Address) -> str | None:
        """Send on the binding's socket; returns an error text instead of raising."""
        if self.sock is None:
            return "no socket"
        return send_datagram(self.sock, payload, destination)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    @property
    def server_text(self) -> str:
        if self.server is None:
            return str(self.config.server)
        return format_hostport(*self.server)
