"""One-shot probes for `probe` (and `discover`): an OPTIONS transaction and the inbound check over
real sockets, driven by the same transaction rules as the daemon.

Rules:
- One request at a time; RFC 3261 retransmissions until `timeout`; answers are matched by source,
  branch, Call-ID and CSeq, everything else is counted as dropped.
- The inbound check is sent from a second socket with the learned public mapping as Via sent-by and
  no rport. An answer on the main socket: "alive"; on the second socket: "unsupported" (the server
  forces rport); silence after all retransmissions, followed by an answered keepalive: "expired".
- Every request has a Call-ID of its own (RFC 3261 §8.1.1.4): a random prefix, "-", the CSeq.
"""

from __future__ import annotations

import binascii
import os
import selectors
import time
from dataclasses import dataclass
from typing import Callable

from natkeepalive.core.transaction import ClientTransaction, TransactionKey
from natkeepalive.cstdlib import socket  # the class of runtime/sockets.py's open_udp()
from natkeepalive.errors import SipParseError
from natkeepalive.netinfo import source_address_for
from natkeepalive.runtime.sockets import family_of, open_udp, send_datagram, wildcard
from natkeepalive.sip.message import Response, parse_response
from natkeepalive.sip.request import options_template

Address = tuple[str, int]


@dataclass(frozen=True)
class Answer:
    response: Response | None
    channel: str  # "main", "aux", or "" when nothing came
    rtt: float | None
    transmissions: int
    send_error: str | None = None  # the last send's error, when one failed


def _hex(n: int) -> str:
    return binascii.hexlify(os.urandom(n)).decode("ascii")


class Prober:
    """Sockets toward one server: `main` (the binding's port) and, on demand, `aux`."""

    def __init__(
        self,
        server: Address,
        uri_host: str,
        uri_port: int,
        source_port: int = 0,
        bind: str | None = None,
        timeout: float = 3.0,
        max_forwards: int = 70,
        user_agent: str = "nat-keepalive",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server = server
        self.uri_host = uri_host
        self.uri_port = uri_port
        self.timeout = timeout
        self.max_forwards = max_forwards
        self.user_agent = user_agent
        self.clock = clock
        family = family_of(server[0])
        self.main = open_udp(bind or wildcard(family), source_port, "probe")
        bound = self.main.getsockname()
        local_host = str(bound[0])
        if local_host in ("0.0.0.0", "::"):
            local_host = source_address_for(server[0], server[1], family) or local_host
        self.local: Address = (local_host, int(bound[1]))
        self.aux: socket.socket | None = None
        self.call_id = _hex(8)
        self.from_tag = _hex(4)
        self.cseq = 0
        self.dropped = 0

    def close(self) -> None:
        self.main.close()
        if self.aux is not None:
            self.aux.close()

    def __enter__(self) -> Prober:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def keepalive(self) -> Answer:
        return self._transact(self.local, rport=True, via_aux=False)

    def inbound(self, public: Address) -> Answer:
        if self.aux is None:
            self.aux = open_udp(wildcard(family_of(self.server[0])), 0, "probe")
        return self._transact(public, rport=False, via_aux=True)

    def relay(self, public: Address) -> tuple[str, Response | None]:
        """The relayed check: an OPTIONS from the AUX socket whose Request-URI is `public`.
        ("relayed", None) when the server relayed it into the main socket (answered 200 there),
        ("answered", its answer) when it answered itself, ("silent", None) otherwise."""
        if self.aux is None:
            self.aux = open_udp(wildcard(family_of(self.server[0])), 0, "probe")
        relayed: list[bool] = []

        def on_request(data: bytes, source: Address) -> None:
            from natkeepalive.core import checks

            request = checks.relayed_request(data)
            if (
                request is None
                or source[0] != self.server[0]
                or request.call_id.rpartition("-")[0] != self.call_id
            ):
                self.dropped += 1
                return
            answer, destination = checks.answer_relayed(request, source, self.from_tag)
            send_datagram(self.main, answer, destination)
            relayed.append(True)

        answer = self._transact(
            self.local,
            rport=True,
            via_aux=True,
            uri=public,
            on_request=on_request,
            done=lambda: bool(relayed),
        )
        if relayed:
            return "relayed", None
        return ("answered", answer.response) if answer.response is not None else ("silent", None)

    def stun(
        self, server: Address, response_port: int | None, from_aux: bool
    ) -> tuple[str, Address | None]:
        """One STUN Binding request to `server` (from the AUX socket when `from_aux`, with
        RESPONSE-PORT when given): (the socket its answer came to, "main" or "aux", or "" for
        none; the mapped address it carried)."""
        from natkeepalive.core import checks

        if from_aux and self.aux is None:
            self.aux = open_udp(wildcard(family_of(self.server[0])), 0, "probe")
        self.cseq += 1
        txid = checks.stun_txid(self.call_id, self.cseq)
        payload = checks.stun_request(txid, response_port)
        sender = self.aux if from_aux and self.aux is not None else self.main
        tx = ClientTransaction(
            TransactionKey(txid.hex(), "", self.cseq), payload, "stun", self.clock(), self.timeout
        )
        found: list[tuple[str, Address | None]] = []

        def read(sock: socket.socket, channel: str) -> bool:
            try:
                data, source = sock.recvfrom(65535)
            except OSError:
                return False
            answer = checks.stun_answer(data)
            if (source[0], source[1]) != server or answer is None or answer[0] != txid:
                self.dropped += 1
                return False
            found.append((channel, answer[1]))
            return True

        self._loop(tx, sender, payload, server, read)
        return found[0] if found else ("", None)

    def _loop(
        self,
        tx: ClientTransaction,
        sender: socket.socket,
        payload: bytes,
        destination: Address,
        read: Callable[[socket.socket, str], bool],
    ) -> str | None:
        """Send `payload` and its retransmissions until `read` (of a ready socket) says done, or
        the transaction times out; the last send error."""
        sockets: dict[str, socket.socket] = {"main": self.main}
        if self.aux is not None:
            sockets["aux"] = self.aux
        with selectors.DefaultSelector() as selector:
            for name, sock in sockets.items():
                selector.register(sock, selectors.EVENT_READ, name)
            error = send_datagram(sender, payload, destination)
            while True:
                due = tx.due()
                if due is None:
                    return error
                for key, _ in selector.select(max(0.0, due - self.clock())):
                    if read(key.fileobj, str(key.data)):  # type: ignore[arg-type]
                        return error
                again = tx.on_timer(self.clock())
                if again is not None:
                    error = send_datagram(sender, again, destination) or error

    def _transact(
        self,
        via: Address,
        rport: bool,
        via_aux: bool,
        uri: Address | None = None,
        on_request: Callable[[bytes, Address], None] | None = None,
        done: Callable[[], bool] | None = None,
    ) -> Answer:
        self.cseq += 1
        branch = "z9hG4bK" + _hex(10)
        call_id = f"{self.call_id}-{self.cseq}"
        uri_host, uri_port = (self.uri_host, self.uri_port) if uri is None else uri
        payload = options_template(
            uri_host=uri_host,
            uri_port=uri_port,
            via_host=via[0],
            via_port=via[1],
            call_id=self.call_id,
            from_tag=self.from_tag,
            rport=rport,
            max_forwards=self.max_forwards,
            user_agent=self.user_agent,
        ).render(branch, self.cseq)
        sender = self.aux if via_aux and self.aux is not None else self.main
        now = self.clock()
        tx = ClientTransaction(
            TransactionKey(branch, call_id, self.cseq), payload, "probe", now, self.timeout
        )
        answers: list[Answer] = []

        def read(sock: socket.socket, channel: str) -> bool:
            answer = self._read(sock, channel, tx, on_request)
            if answer is not None:
                answers.append(answer)
            return answer is not None or (done is not None and done())

        error = self._loop(tx, sender, payload, self.server, read)
        return answers[0] if answers else Answer(None, "", None, tx.transmissions, error)

    def _read(
        self,
        sock: socket.socket,
        channel: str,
        tx: ClientTransaction,
        on_request: Callable[[bytes, Address], None] | None = None,
    ) -> Answer | None:
        try:
            data, source = sock.recvfrom(65535)
        except OSError:
            return None
        now = self.clock()
        if on_request is not None and channel == "main" and data.startswith(b"OPTIONS "):
            on_request(data, (source[0], source[1]))
            return None
        try:
            response = parse_response(data)
        except SipParseError:
            self.dropped += 1
            return None
        key = tx.key
        if (
            (source[0], source[1]) != self.server
            or response.top_via.branch != key.branch
            or response.call_id != key.call_id
            or response.cseq != key.cseq
        ):
            self.dropped += 1
            return None
        final, rtt = tx.on_response(response.status, now)
        if not final:
            return None
        return Answer(response, channel, rtt, tx.transmissions)
