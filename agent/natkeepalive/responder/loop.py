"""The responder's process: UDP sockets around ResponderCore, one loop, no threads.

Each answer leaves by the socket its request came in on, so it comes from the address and port the
request was sent to (bind a specific address on a host with several). SIGTERM and SIGINT end the
loop (exit 0) after one last statistics line; SIGUSR1 prints one at once.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import sys
import time

from natkeepalive.responder.core import ResponderCore
from natkeepalive.sip.target import format_hostport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import FrameType

DEFAULT_PORT = 3478
RECV_BYTES = 2048  # above MAX_REQUEST_BYTES: a longer datagram is seen as too long, not cut


def parse_listen(text: str) -> tuple[str, int]:
    """ADDR[:PORT], [V6ADDR][:PORT] or a bare IPv6 address; ValueError with the reason."""
    host, port_text = text, ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected [V6ADDR] or [V6ADDR]:PORT")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"{text!r}: no address (0.0.0.0 or :: listen on every address)")
    port = DEFAULT_PORT
    if port_text or text.endswith(":"):
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r}: the port must be 1-65535")
        port = int(port_text)
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    return host, port


def open_socket(address: tuple[str, int]) -> socket.socket:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Responder:
    """Sockets and the loop. `serve()` returns when `stop()` was called (by a signal)."""

    def __init__(
        self,
        addresses: Sequence[tuple[str, int]],
        core: ResponderCore,
        *,
        stats_interval: float = 3600.0,
        write: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core = core
        self.stats_interval = stats_interval
        self.write = write or _stderr
        self.clock = clock
        self.sockets: list[socket.socket] = []
        self._stop = False
        self._stats_now = False
        try:
            for address in addresses:
                self.sockets.append(open_socket(address))
        except OSError:
            self.close()
            raise
        self.send_errors = 0
        self.wake_fd: int | None = None  # a pipe a signal handler writes to: wakes select()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets = []

    def stop(self) -> None:
        self._stop = True

    def request_stats(self) -> None:
        self._stats_now = True

    def local_addresses(self) -> list[tuple[str, int]]:
        return [sock.getsockname()[:2] for sock in self.sockets]

    def serve(self) -> None:
        for host, port in self.local_addresses():
            self.write(
                f"responder: listening on {format_hostport(host, port)} (STUN Binding, SIP OPTIONS)"
            )
        next_stats = self.clock() + self.stats_interval
        while not self._stop:
            wait = max(0.0, next_stats - self.clock())
            watched: list[socket.socket | int] = [*self.sockets]
            if self.wake_fd is not None:
                watched.append(self.wake_fd)
            try:
                ready, _, _ = select.select(watched, [], [], min(wait, 60.0))
            except InterruptedError:
                ready = []
            for item in ready:
                if isinstance(item, int):
                    try:  # noqa: SIM105 (contextlib is not imported by long-running processes)
                        os.read(item, 512)
                    except OSError:
                        pass
                else:
                    self._drain(item)
            now = self.clock()
            if self._stats_now or now >= next_stats:
                self._stats_now = False
                next_stats = now + self.stats_interval
                self.write(self.stats())
        self.write(self.stats())

    def stats(self) -> str:
        return f"responder: {self.core.stats_line()} send_errors={self.send_errors}"

    def _drain(self, sock: socket.socket) -> None:
        for _ in range(64):  # bounded: the other sockets and the signals get their turn
            try:
                data, source = sock.recvfrom(RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # e.g. an ICMP error reported on this socket: nothing to read
            for answer, destination in self.core.handle(data, (source[0], source[1]), self.clock()):
                try:
                    sock.sendto(answer, destination)
                except OSError:
                    self.send_errors += 1


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run(addresses: Sequence[tuple[str, int]], core: ResponderCore, stats_interval: float) -> int:
    """The process: signals wired, sockets open, serve until SIGTERM or SIGINT. Exit 1 when a
    port is in use (it may be free later), 2 for an address this host cannot listen on."""
    try:
        responder = Responder(addresses, core, stats_interval=stats_interval)
    except OSError as exc:
        _stderr(f"nat-keepalive responder: cannot listen: {exc}")
        return 1 if exc.errno == errno.EADDRINUSE else 2

    def on_stop(_signum: int, _frame: FrameType | None) -> None:
        responder.stop()

    def on_stats(_signum: int, _frame: FrameType | None) -> None:
        responder.request_stats()

    # A signal must wake select() at once: without a wake-up fd it waits for its timeout.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGUSR1, on_stats)
    responder.wake_fd = wake_r
    try:
        responder.serve()
    finally:
        signal.set_wakeup_fd(-1)
        os.close(wake_r)
        os.close(wake_w)
        responder.close()
    return 0
