"""systemd's sd_notify protocol, without libsystemd: one datagram of `KEY=value` lines.

Rules:
- Without NOTIFY_SOCKET (procd, a shell, a test) every call is a cheap no-op.
- Never raises: a lost READY=1 makes systemd time the unit out, which is its own report; the
  daemon only learns about it through the returned bool.
- Sends never block (MSG_DONTWAIT): systemd being busy must not stall the keepalive loop.
"""

from __future__ import annotations

import os
import time

from natkeepalive.cstdlib import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Union

    FieldValue = Union[str, int, float, bool]


def _render(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    # one datagram line per field: a newline inside STATUS= would start a bogus assignment
    return str(value).replace("\n", " ").replace("\r", " ")


class Notifier:
    def __init__(
        self,
        address: str | None = None,
        watchdog_usec: int | None = None,
        watchdog_pid: int | None = None,
    ) -> None:
        self._target: str | None = None
        if address and (address.startswith("/") or (address.startswith("@") and len(address) > 1)):
            # `@name` is Linux's abstract namespace: a leading NUL, no file
            self._target = "\0" + address[1:] if address.startswith("@") else address
        self.address = address
        self._watchdog_usec = watchdog_usec
        self._watchdog_pid = watchdog_pid
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(
            env.get("NOTIFY_SOCKET") or None,
            _positive_int(env.get("WATCHDOG_USEC")),
            _positive_int(env.get("WATCHDOG_PID")),
        )

    @property
    def enabled(self) -> bool:
        return self._target is not None

    def send(self, message: str = "", **fields: FieldValue) -> bool:
        """`send("READY=1")`, `send(READY=1, STATUS="2 bindings")`; True when the datagram left."""
        if self._target is None:
            return False
        lines = [message.strip("\n")] if message else []
        lines.extend(f"{key}={_render(value)}" for key, value in fields.items())
        if not lines:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(
                "\n".join(lines).encode("utf-8", "replace"),
                socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL,
                self._target,
            )
        except OSError:
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send(READY=1, STATUS=status) if status else self.send(READY=1)

    def stopping(self) -> bool:
        return self.send(STOPPING=1)

    def reloading(self) -> bool:
        # Type=notify-reload wants the CLOCK_MONOTONIC time of the reload start with it
        return self.send(RELOADING=1, MONOTONIC_USEC=int(time.monotonic() * 1_000_000))

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when not watched."""
        if self._target is None or not self._watchdog_usec:
            return None
        if self._watchdog_pid is not None and self._watchdog_pid != os.getpid():
            return None  # the variables were meant for a parent process
        return self._watchdog_usec / 2 / 1_000_000

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _positive_int(text: str | None) -> int | None:
    if text is None or not text.strip().isdigit():
        return None
    value = int(text)
    return value if value > 0 else None
