"""UDP sockets and name resolution: where configuration becomes file descriptors."""

from __future__ import annotations

import errno

from natkeepalive.cstdlib import _thread, socket
from natkeepalive.errors import BindPermissionError, PortInUseError, SocketSetupError
from natkeepalive.netinfo import ascii_host
from natkeepalive.sip.target import format_hostport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Callable, Union

Address = tuple[str, int]


def is_ip_literal(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host.split("%", 1)[0])
        except OSError:
            continue
        return True
    return False


def family_of(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def wildcard(family: int) -> str:
    return "::" if family == socket.AF_INET6 else "0.0.0.0"


def open_udp(address: str, port: int, label: str) -> socket.socket:
    """A non-blocking UDP socket bound to (address, port); errors name the binding and port."""
    family = family_of(address)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setblocking(False)
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        where = format_hostport(address, port)
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"{label}: local port {port} is already in use ({where})"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise SocketSetupError(
                f"{label}: address {address} is not on this host ({where})"
            ) from None
        if exc.errno == errno.EACCES:
            raise BindPermissionError(
                f"{label}: no permission to bind {where} "
                "(ports below 1024 need CAP_NET_BIND_SERVICE)"
            ) from None
        raise SocketSetupError(f"{label}: cannot bind {where}: {exc.strerror}") from None
    return sock


def resolve(host: str, port: int, family: int = 0) -> Address:
    """The first UDP address of host; raises OSError (socket.gaierror) when it does not resolve."""
    if is_ip_literal(host):
        return host, port
    infos = socket.getaddrinfo(
        ascii_host(host), port, family, socket.SOCK_DGRAM, socket.IPPROTO_UDP
    )
    if not infos:
        raise OSError(f"no address for {host}")
    address = infos[0][4]
    return str(address[0]), int(address[1])


if TYPE_CHECKING:
    Lookup = Union[Address, OSError]


class Resolver:
    """getaddrinfo() off the loop, one worker thread per lookup in flight.

    The daemon has one thread: a resolver that does not answer (the DNS server, or the link to
    it, is down) blocks getaddrinfo() for `timeout` x `attempts` of resolv.conf, and every
    binding's keepalives with it. A lookup runs at most once at a time per key; `wake` (called
    from the worker) tells the loop that `ready()` has something.
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        self._lock = _thread.allocate_lock()
        self._running: set[str] = set()
        # finished lookups by key; the loop may test membership without the lock (one dict
        # lookup, atomic: Slot.quiet)
        self.results: dict[str, Lookup] = {}
        self._wake = wake

    def start(self, key: str, host: str, port: int, family: int = 0) -> None:
        with self._lock:
            if key in self._running or key in self.results:
                return
            self._running.add(key)
        # a bare thread: like a daemon thread, it never holds up the exit
        _thread.start_new_thread(self._work, (key, host, port, family))

    def _work(self, key: str, host: str, port: int, family: int) -> None:
        result: Lookup
        try:
            result = resolve(host, port, family)
        except OSError as exc:
            result = exc
        except Exception as exc:  # UnicodeError and the like: a failed lookup all the same
            result = OSError(str(exc))
        with self._lock:
            self._running.discard(key)
            self.results[key] = result
        self._wake()

    def take(self, key: str) -> Lookup | None:
        if not self._running and not self.results:
            return None  # the common case, IP literals: no lock taken
        with self._lock:
            return self.results.pop(key, None)

    def ready(self) -> list[str]:
        if not self.results:
            return []
        with self._lock:
            return list(self.results)

    def forget(self, key: str) -> None:
        """The key's owner is gone: a result still to come is thrown away."""
        with self._lock:
            self.results.pop(key, None)


def send_datagram(sock: socket.socket, payload: bytes, destination: Address) -> str | None:
    """Send one datagram; an error comes back as text, since a lost datagram is never fatal."""
    try:
        sock.sendto(payload, destination)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


READ_BURST = 64


def drain(sock: socket.socket) -> Iterator[tuple[bytes, Address]]:
    """What is queued on a socket, at most READ_BURST datagrams so a flood cannot starve timers."""
    for _ in range(READ_BURST):
        try:
            data, source = sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # a queued ICMP error: the transaction times out like a lost datagram
            continue
        yield data, (source[0], source[1])


class AuxSockets:
    """A socket per address family on an ephemeral port, opened when first needed: what is sent
    from a port other than a binding's (an inbound check's request, a discovery's probes) and
    what comes back to it. `register` puts a new one in the loop's poller."""

    def __init__(self, register: Callable[[socket.socket], None]) -> None:
        self.by_family: dict[int, socket.socket] = {}
        self._register = register

    def open(self, family: int) -> socket.socket:
        sock = self.by_family.get(family)
        if sock is None:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind((wildcard(family), 0))
            self._register(sock)
            self.by_family[family] = sock
        return sock

    def send(self, payload: bytes, destination: Address) -> str | None:
        return send_datagram(self.open(family_of(destination[0])), payload, destination)

    def close(self) -> None:
        for sock in self.by_family.values():
            sock.close()
        self.by_family.clear()
