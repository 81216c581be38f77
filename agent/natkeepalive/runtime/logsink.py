"""Where log lines go: stderr (with journald priority prefixes) or a syslog socket. What a line
says is natkeepalive/logline.py's.

Rules:
- A sink never raises into the daemon. A syslog line that cannot be delivered goes to stderr.
- No `logging` module: for what is here a socket and a format string it would cost the
  long-running process megabytes (docs/performance.md).
"""

from __future__ import annotations

import errno
import os
import sys
import time

from natkeepalive.cstdlib import socket
from natkeepalive.events import Event, SyslogRecovered, SyslogUnavailable
from natkeepalive.logline import escape_text, format_event
from natkeepalive.netinfo import ascii_host

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, TextIO

    from natkeepalive.config.model import LogConfig

SEVERITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
LEVELS: dict[str, int] = {name: number for number, name in enumerate(SEVERITY_NAMES)}
LEVELS.update({"error": 3, "warn": 4, "panic": 0})  # the aliases syslog.conf accepts

FACILITIES: dict[str, int] = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}

DEFAULT_SYSLOG_PORT = 514
RESOLVE_RETRY = 60.0  # seconds between lookups of a syslog host name that did not resolve
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --- sinks ---------------------------------------------------------------------------------------


def level_severity(level: str) -> int:
    """The highest severity number a `level` name lets through (debug -> 7)."""
    try:
        return LEVELS[level.strip().lower()]
    except KeyError:
        names = ", ".join(SEVERITY_NAMES)
        raise ValueError(f"unknown log level {level!r}; use one of: {names}") from None


def _write_stream(stream: TextIO | None, text: str) -> bool:
    target = stream if stream is not None else sys.stderr
    try:
        target.write(text)
        target.flush()
    except (OSError, ValueError):  # closed or broken stderr: nowhere left to complain
        return False
    return True


class Sink:
    """Filters by level; subclasses deliver a (severity, printable ASCII text) pair."""

    def __init__(self, level: str = "info") -> None:
        self.max_severity = level_severity(level)

    def set_level(self, level: str) -> None:
        """A reload's new level, applied to the open sink (a ValueError leaves it unchanged)."""
        self.max_severity = level_severity(level)

    def wants(self, severity: int) -> bool:
        """Lets the daemon skip building debug events nobody will see."""
        return severity <= self.max_severity

    def emit(self, ev: Event) -> None:
        if self.max_severity >= ev.SEVERITY:
            self._deliver(ev.SEVERITY, format_event(ev))

    def emit_text(self, severity: int, text: str) -> None:
        if severity <= self.max_severity:
            self._deliver(severity, escape_text(text))

    def close(self) -> None:
        pass

    def describe(self) -> str:
        """Where lines go, for the `started` event."""
        return type(self).__name__

    def _deliver(self, severity: int, text: str) -> None:
        raise NotImplementedError


def _journal_stream_matches(stream: TextIO, value: str) -> bool:
    """JOURNAL_STREAM is inherited by children whose stderr may have been redirected since;
    systemd documents comparing its `dev:inode` with the stream's own."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return True  # no descriptor to compare (a test's StringIO): trust the variable
    try:
        info = os.fstat(fd)
    except OSError:
        return False
    return value.strip() == f"{info.st_dev}:{info.st_ino}"


def write_fatal(message: str, stream: TextIO | None = None) -> None:
    """`nat-keepalive: <message>` for an error that ends the command. When stderr is the journal
    each line gets journald's `<3>` (err) prefix, so `journalctl -p err` shows why a service did
    not start; a terminal sees the plain line."""
    target = stream if stream is not None else sys.stderr
    value = os.environ.get("JOURNAL_STREAM")
    prefix = "<3>" if value and _journal_stream_matches(target, value) else ""
    lines = f"nat-keepalive: {message}".splitlines()
    _write_stream(target, "".join(f"{prefix}{line}\n" for line in lines))


def local_time(epoch: float) -> str:
    """`2026-12-07T01:02:03+0100`: the host's local time with its offset, whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(epoch))


class StderrSink(Sink):
    """`2026-12-07T01:02:03+0000 notice: event=...` on a terminal or in a file; `<5>event=...`
    under journald, which stamps each line itself."""

    def __init__(
        self,
        stream: TextIO | None = None,
        level: str = "info",
        journal: bool | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(level)
        self._stream = stream
        self._clock = clock
        if journal is None:
            value = os.environ.get("JOURNAL_STREAM")
            journal = bool(value) and _journal_stream_matches(stream or sys.stderr, value or "")
        self.journal = journal

    def describe(self) -> str:
        return "stderr"

    def _deliver(self, severity: int, text: str) -> None:
        if self.journal:
            prefix = f"<{severity}>"
        else:
            prefix = f"{local_time(self._clock())} {SEVERITY_NAMES[severity]}: "
        _write_stream(self._stream, f"{prefix}{text}\n")


class ListSink(Sink):
    """Keeps (severity, line) pairs in memory: for tests of code that logs."""

    def __init__(self, level: str = "debug") -> None:
        super().__init__(level)
        self.records: list[tuple[int, str]] = []

    @property
    def lines(self) -> list[str]:
        return [text for _, text in self.records]

    def describe(self) -> str:
        return "memory"

    def _deliver(self, severity: int, text: str) -> None:
        self.records.append((severity, text))


def parse_syslog_address(address: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port`, `host` or `v6addr` -> (host, port); port defaults to 514."""
    text = address.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not host or (rest and not rest.startswith(":")):
            raise ValueError(f"bad syslog address {address!r}")
        port_text = rest[1:] if rest else ""
    elif text.count(":") > 1:
        host, port_text = text, ""
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"bad syslog address {address!r}")
    if not port_text:
        return host, DEFAULT_SYSLOG_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"bad port in syslog address {address!r}")
    return host, int(port_text)


# Errors after which the connection is worth rebuilding; EAGAIN/ENOBUFS mean "full right now".
_TRANSIENT = frozenset((errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS))


class SyslogSink(Sink):
    """RFC 3164 lines to a local socket path or a UDP collector (`host:port`, `[v6]:port`).

    The socket is non-blocking: a stuck syslogd costs a line on stderr, never a stalled loop.
    """

    def __init__(
        self,
        address: str = "/dev/log",
        facility: str = "daemon",
        level: str = "info",
        ident: str = "nat-keepalive",
        *,
        fallback: TextIO | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(level)
        try:
            self.facility = FACILITIES[facility.strip().lower()]
        except KeyError:
            raise ValueError(f"unknown syslog facility {facility!r}") from None
        self.address = address
        self.ident = ident
        self._fallback = fallback
        self._clock = clock
        self._remote: tuple[str, int] | None = None
        self._resolved: list[tuple[int, int, int, Any]] | None = None
        self._resolve_retry_at = 0.0
        if not address.startswith(("/", "@", ".")):  # a path is absolute (or ./relative)
            self._remote = parse_syslog_address(address)
        self._hostname = (socket.gethostname().split(".")[0] or "-").replace(" ", "_")
        self._sock: socket.socket | None = None
        self._stream = False
        self._failing = False  # whether the outage was already reported on stderr
        self.delivered = 0
        self.undelivered = 0

    # connection ---------------------------------------------------------------------------------

    def _connect_local(self) -> socket.socket:
        path = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(path)
            self._stream = False
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EPROTOTYPE:
                raise
            # syslog-ng and some busybox setups listen on a stream socket; glibc's syslog() then
            # ends each message with a NUL, which they and rsyslog's stream inputs accept.
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                sock.connect(path)
            except OSError:
                sock.close()
                raise
            self._stream = True
        sock.setblocking(False)
        return sock

    def _resolve(self, host: str, port: int) -> list[tuple[int, int, int, Any]]:
        # getaddrinfo blocks; on a router DNS often rides the same link that just failed. Resolve
        # once, keep the answer, and after a failure wait before asking again.
        if self._resolved is None:
            now = time.monotonic()
            if now < self._resolve_retry_at:
                raise OSError(errno.EHOSTUNREACH, f"cannot resolve {host} (will retry)")
            try:
                infos = socket.getaddrinfo(ascii_host(host), port, 0, socket.SOCK_DGRAM)
            except (OSError, UnicodeError) as exc:
                self._resolve_retry_at = now + RESOLVE_RETRY
                raise OSError(errno.EHOSTUNREACH, f"cannot resolve {host}: {exc}") from None
            self._resolved = [(fam, kind, proto, addr) for fam, kind, proto, _, addr in infos]
        return self._resolved

    def _connect_remote(self, host: str, port: int) -> socket.socket:
        last: OSError | None = None
        for family, kind, proto, sockaddr in self._resolve(host, port):
            sock = socket.socket(family, kind | socket.SOCK_CLOEXEC, proto)
            try:
                sock.connect(sockaddr)  # connected UDP: ICMP unreachable comes back as an error
            except OSError as exc:
                sock.close()
                last = exc
                continue
            sock.setblocking(False)
            self._stream = False
            return sock
        raise last or OSError(errno.EADDRNOTAVAIL, f"no address for {host}")

    def _connect(self) -> socket.socket:
        if self._sock is None:
            if self._remote is not None:
                self._sock = self._connect_remote(*self._remote)
            else:
                self._sock = self._connect_local()
        return self._sock

    def _disconnect(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # framing and delivery -----------------------------------------------------------------------

    def frame(self, severity: int, text: str) -> bytes:
        tm = time.localtime(self._clock())
        stamp = (
            f"{_MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} "
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
        )
        host = f" {self._hostname}" if self._remote is not None else ""
        pri = self.facility * 8 + severity
        line = f"<{pri}>{stamp}{host} {self.ident}[{os.getpid()}]: {text}"
        return line.encode("ascii", "replace")

    def _send_once(self, payload: bytes) -> None:
        sock = self._connect()
        if not self._stream:
            sock.send(payload)
            return
        data = payload + b"\0"
        sent = sock.send(data, socket.MSG_NOSIGNAL)
        if sent != len(data):
            # Half a frame went out; the rest would need a buffer. Closing ends the frame for the
            # receiver, and the whole line still reaches stderr.
            self._disconnect()
            raise OSError(errno.EAGAIN, "syslog stream socket is full")

    def _deliver(self, severity: int, text: str) -> None:
        payload = self.frame(severity, text)
        try:
            try:
                self._send_once(payload)
            except OSError as exc:
                if exc.errno in _TRANSIENT or self._sock is None:
                    raise
                # The peer went away (syslogd restarted, or a late ICMP error on UDP): one fresh
                # connection gets this line through if the daemon is back already.
                self._disconnect()
                self._send_once(payload)
        except OSError as exc:
            if exc.errno not in _TRANSIENT:
                self._disconnect()
            self.undelivered += 1
            if not self._failing:
                self._failing = True
                note = format_event(SyslogUnavailable(self.address, str(exc)))
                _write_stream(self._fallback, f"{self._stamp()}err: {note}\n")
            _write_stream(self._fallback, f"{self._stamp()}{SEVERITY_NAMES[severity]}: {text}\n")
            return
        self.delivered += 1
        if self._failing:
            self._failing = False
            note = format_event(SyslogRecovered(self.address))
            _write_stream(self._fallback, f"{self._stamp()}notice: {note}\n")

    def _stamp(self) -> str:
        """A time for lines on stderr, unless journald (which stamps them) reads it."""
        stream = self._fallback or sys.stderr
        value = os.environ.get("JOURNAL_STREAM")
        if value and _journal_stream_matches(stream, value):
            return ""
        return f"{local_time(self._clock())} "

    def describe(self) -> str:
        return f"syslog {self.address}"

    def close(self) -> None:
        self._disconnect()


def make_sink(log: LogConfig, override_target: str | None = None) -> Sink:
    """The sink the configuration asks for; `--log` on the command line overrides the target."""
    target = (override_target or log.target).strip().lower()
    if target == "stderr":
        return StderrSink(level=log.level)
    if target == "syslog":
        return SyslogSink(log.address, log.facility, log.level)
    raise ValueError(f"unknown log target {target!r}; use syslog or stderr")


__all__ = [
    "FACILITIES",
    "LEVELS",
    "SEVERITY_NAMES",
    "ListSink",
    "Sink",
    "StderrSink",
    "SyslogSink",
    "level_severity",
    "make_sink",
    "parse_syslog_address",
    "write_fatal",
]
