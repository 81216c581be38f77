"""Local-address answers, kept until the kernel says an address or a route changed.

Why: before every send the daemon checks which local address the kernel would use toward the
server (a keepalive from a moved address gets a new NAT mapping, which must be reported as a
local change, not as an expiry). Asked of the system each time, that is a socket, a connect()
and a getsockname() per keepalive, a large part of the agent's busy time (docs/performance.md).
Linux announces every address and route change on rtnetlink, so the answers are
kept until a message arrives there; the daemon reads that socket in its loop and again right
before each pass over the due timers, so a change is never older than one loop turn.

Where rtnetlink cannot be opened (not Linux, a sandbox forbidding it), nothing is kept and every
question goes to the system, as before.
"""

from __future__ import annotations

from natkeepalive.cstdlib import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")

# <linux/rtnetlink.h>: IPv4 and IPv6 address and route changes (not links: Wi-Fi drivers send
# link messages all the time, and a link that goes down takes its routes with it anyway).
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE


def open_rtnetlink(groups: int = GROUPS) -> socket.socket | None:
    family = getattr(socket, "AF_NETLINK", None)
    if family is None:
        return None
    try:
        sock = socket.socket(family, socket.SOCK_RAW, getattr(socket, "NETLINK_ROUTE", 0))
    except OSError:
        return None
    try:
        sock.setblocking(False)
        sock.bind((0, groups))
    except OSError:
        sock.close()
        return None
    return sock


class AddressWatch:
    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock
        self._answers: dict[tuple[object, ...], object] = {}
        self.changes = 0  # times the answers were thrown away

    @classmethod
    def open(cls) -> AddressWatch:
        return cls(open_rtnetlink())

    def ask(self, key: tuple[object, ...], compute: Callable[[], T]) -> T:
        """compute(), or its answer from before when no change was announced since."""
        if self.sock is None:
            return compute()
        try:
            return self._answers[key]  # type: ignore[return-value]
        except KeyError:
            value = self._answers[key] = compute()
            return value

    def poll(self) -> bool:
        """Read what the kernel announced; True (and every answer forgotten) if anything."""
        sock = self.sock
        if sock is None:
            return False
        changed = False
        while True:
            try:
                if not sock.recv(65536):
                    break
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ENOBUFS: messages were lost, so assume the worst
                changed = True
                break
            changed = True
        if changed:
            self.forget()
        return changed

    def forget(self) -> None:
        """Ask the system again next time (a re-probe, the 30-s check: changes rtnetlink does not
        announce, such as policy rules, are still seen)."""
        self._answers.clear()
        self.changes += 1

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._answers.clear()
