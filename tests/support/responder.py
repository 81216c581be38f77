"""A real UDP SIP responder for tests: answers OPTIONS the way Kamailio does (RFC 3581).

One thread runs a selectors loop over the listening socket and a wake-up socketpair, with a
small heap of delayed answers, so a `delay` never blocks other requests and `stop()` returns
at once. Behaviour attributes may be changed while it runs; each request reads a consistent
snapshot of them under `lock` (use `configure(...)` to change several at once).

Default answer rules (RFC 3261 §18.2.2, RFC 3581 §4):
- `received=<source ip>` is added to the top Via when the source differs from the sent-by host.
- With an `rport` parameter: `rport=<source port>` is filled in and the answer goes to the
  source ip:port.
- Without one: the answer goes to the source IP at the Via sent-by port (5060 when absent).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import selectors
import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from natkeepalive.errors import SipParseError
from natkeepalive.sip import Request, Via, parse_message

if TYPE_CHECKING:
    Address = tuple[Any, ...]  # (host, port) or the 4-tuple of an AF_INET6 socket

BEHAVIOUR = (
    "received",
    "rport",
    "ignore_rport",
    "bare_rport",
    "force_rport",
    "silent",
    "delay",
    "status",
    "reason",
    "reply_from_other_port",
    "wrong_branch",
    "wrong_call_id",
    "provisional_first",
    "extra_headers",
    "to_tag",
)


def _same_address(a: str, b: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_pton(family, a) == socket.inet_pton(family, b)
        except OSError:
            continue
    return a == b


def _with_param(params: list[tuple[str, str | None]], name: str, value: str) -> None:
    for index, (key, _) in enumerate(params):
        if key == name:
            params[index] = (name, value)
            return
    params.append((name, value))


class SipResponder:
    """Context manager: `with SipResponder() as server: ... server.address ...`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        status: int = 200,
        reason: str = "OK",
        extra_headers: list[str] | None = None,
    ) -> None:
        self.lock = threading.Lock()
        # Behaviour (see the module docstring); read per request under `lock`.
        self.received: str | None = None  # override for the received parameter
        self.rport: int | None = None  # override for the rport value
        self.ignore_rport = False  # echo the Via unchanged, answer to the source
        self.force_rport = False  # always answer to the source (Asterisk style)
        self.bare_rport = False  # leave rport without a value (linphone when the
        #                                       port did not change), answer to the source
        self.silent = False
        self.delay = 0.0
        self.status = status
        self.reason = reason
        self.reply_from_other_port = False
        self.wrong_branch = False
        self.wrong_call_id = False
        self.provisional_first = False
        self.extra_headers: list[str] = list(extra_headers or ())
        self.to_tag = "resp1"
        # Records, guarded by `_cond`.
        self.requests: list[tuple[Address, Request, float]] = []
        self.sent: list[tuple[Address, bytes, int]] = []  # (destination, datagram, from port)
        self.garbage: list[tuple[Address, bytes, str]] = []
        self.errors: list[BaseException] = []  # unexpected failures inside the thread
        self._cond = threading.Condition()

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._other = socket.socket(family, socket.SOCK_DGRAM)
        self._wake_r, self._wake_w = socket.socketpair()
        try:
            self._sock.bind((host, port))
            self._other.bind((host, 0))
        except OSError:
            self._close_sockets()
            raise
        self._sock.setblocking(False)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pending: list[tuple[float, int, socket.socket, bytes, Address]] = []
        self._order = itertools.count()

    # --- life cycle ----------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return host, port

    @property
    def other_address(self) -> tuple[str, int]:
        """Where answers come from when `reply_from_other_port` is set."""
        host, port = self._other.getsockname()[:2]
        return host, port

    @property
    def closed(self) -> bool:
        return all(
            sock.fileno() == -1 for sock in (self._sock, self._other, self._wake_r, self._wake_w)
        )

    def start(self) -> SipResponder:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sip-responder", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                raise RuntimeError("SipResponder thread did not stop")
        self._close_sockets()

    def __enter__(self) -> SipResponder:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _close_sockets(self) -> None:
        for sock in (self._sock, self._other, self._wake_r, self._wake_w):
            sock.close()

    # --- control and records ---------------------------------------------------------------

    def configure(self, **changes: Any) -> None:
        """Change several behaviour attributes atomically."""
        unknown = set(changes) - set(BEHAVIOUR)
        if unknown:
            raise AttributeError(f"unknown responder settings: {sorted(unknown)}")
        with self.lock:
            for name, value in changes.items():
                setattr(self, name, value)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        """True once at least `n` requests have arrived; False after `timeout` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.requests) >= n, timeout)

    def wait_for_sent(self, n: int, timeout: float = 5.0) -> bool:
        """True once at least `n` datagrams have been sent (delayed ones included)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.sent) >= n, timeout)

    # --- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping:
                timeout = None
                if self._pending:
                    timeout = max(0.0, self._pending[0][0] - time.monotonic())
                for key, _ in selector.select(timeout):
                    if key.fileobj is self._sock:
                        self._receive_all()
                self._send_due()

    def _receive_all(self) -> None:
        while True:
            try:
                data, source = self._sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error reported on the socket
                self.errors.append(exc)
                return
            try:
                self._handle(data, source)
            except Exception as exc:  # keep serving; the test inspects `errors`
                self.errors.append(exc)

    def _handle(self, data: bytes, source: Address) -> None:
        try:
            message = parse_message(data)
        except SipParseError as exc:
            with self._cond:
                self.garbage.append((source, data, str(exc)))
            return
        if not isinstance(message, Request):
            with self._cond:
                self.garbage.append((source, data, "a response, not a request"))
            return
        # Settings are read before the request is recorded: a test that changes them after
        # wait_for_requests() returns affects only later requests.
        with self.lock:
            settings = {name: getattr(self, name) for name in BEHAVIOUR}
        with self._cond:
            self.requests.append((source, message, time.monotonic()))
            self._cond.notify_all()
        if settings["silent"] or message.method == "ACK":
            return
        vias, destination = self._reply_vias(message, source, settings)
        sock = self._other if settings["reply_from_other_port"] else self._sock
        now = time.monotonic()
        if settings["provisional_first"]:
            self._schedule(
                now, sock, self._render(message, vias, 100, "Trying", settings), destination
            )
        if message.method == "OPTIONS":
            status, reason = int(settings["status"]), str(settings["reason"])
        else:
            status, reason = 501, "Not Implemented"
        self._schedule(
            now + float(settings["delay"]),
            sock,
            self._render(message, vias, status, reason, settings),
            destination,
        )

    def _reply_vias(
        self, message: Request, source: Address, settings: dict[str, Any]
    ) -> tuple[list[Via], Address]:
        top = message.top_via
        source_ip, source_port = source[0], source[1]
        if settings["ignore_rport"]:
            return list(message.vias), (source_ip, source_port)
        params = list(top.params)
        received = settings["received"]
        if received is None and not _same_address(source_ip, top.host):
            received = source_ip
        if received is not None:
            _with_param(params, "received", str(received))
        symmetric = top.has_param("rport") or settings["force_rport"]
        if symmetric:
            rport = settings["rport"] if settings["rport"] is not None else source_port
            if not settings["bare_rport"]:
                _with_param(params, "rport", str(rport))
            destination: Address = (source_ip, source_port)
        else:  # RFC 3261 §18.2.2: the received address, at the sent-by port
            destination = (source_ip, top.port or 5060)
        if settings["wrong_branch"]:
            _with_param(params, "branch", f"{top.branch}-wrong")
        new_top = Via(top.protocol, top.host, top.port, tuple(params))
        return [new_top, *message.vias[1:]], destination

    def _render(
        self, message: Request, vias: list[Via], status: int, reason: str, settings: dict[str, Any]
    ) -> bytes:
        to = message.header("to") or ""
        if status > 100 and ";tag=" not in to.lower().replace(" ", ""):
            to += f";tag={settings['to_tag']}"
        call_id = f"wrong-{message.call_id}" if settings["wrong_call_id"] else message.call_id
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {via}" for via in vias]
        lines += [
            f"From: {message.header('from') or ''}",
            f"To: {to}",
            f"Call-ID: {call_id}",
            f"CSeq: {message.cseq} {message.cseq_method}",
        ]
        if status > 100:
            lines += list(settings["extra_headers"])
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def send_raw(self, data: bytes, destination: Address) -> None:
        """Send `data` from the server's address and port now (a UDP sendto is thread-safe)."""
        self._sock.sendto(data, destination)

    def _schedule(self, due: float, sock: socket.socket, data: bytes, destination: Address) -> None:
        heapq.heappush(self._pending, (due, next(self._order), sock, data, destination))

    def _send_due(self) -> None:
        now = time.monotonic()
        while self._pending and self._pending[0][0] <= now:
            _, _, sock, data, destination = heapq.heappop(self._pending)
            try:
                sock.sendto(data, destination)
            except OSError as exc:
                self.errors.append(exc)
                continue
            with self._cond:
                self.sent.append((destination, data, sock.getsockname()[1]))
                self._cond.notify_all()
