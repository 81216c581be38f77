"""The responder's decisions, sans-I/O: a datagram and its source in, answers out.

It answers two kinds of check into a binding, both only ever to the request's source address:
- a STUN Binding request (RFC 8489), to the port in RESPONSE-PORT when there is one (RFC 5780 §6.2),
  else to the source port;
- a SIP OPTIONS, to the top Via sent-by port when the Via has no `rport` (RFC 3261 §18.2.2), else
  to the source port (RFC 3581).

Because it runs on a public address it must never be a useful reflector: no destination but the
source address; answers barely larger than the requests (32 bytes for a 20-byte STUN request, a
SIP answer is its request's own headers plus at most a tag, `received` and an `rport` value); a
token bucket per source address and one for all sources together; at most `max_sources` addresses
remembered (the least recently seen is forgotten first); anything else dropped and counted.
"""

from __future__ import annotations

from natkeepalive import stun
from natkeepalive.errors import SipParseError, StunParseError
from natkeepalive.sip.answer import answer_destination, build_answer, parse_request

TYPE_CHECKING = False
if TYPE_CHECKING:
    Address = tuple[str, int]
    Datagram = tuple[bytes, Address]

MAX_REQUEST_BYTES = 1500  # one Ethernet frame: a check is a few hundred bytes
TO_TAG = "nkr"
# What each counter means: the names are the responder's statistics line.
COUNTERS = (
    "received",  # every datagram handled
    "stun",  # STUN Binding success answers sent
    "stun_error",  # STUN Binding error answers sent (unknown attribute, CHANGE-REQUEST)
    "sip",  # SIP 200 answers sent to OPTIONS
    "malformed",  # not STUN or SIP that can be answered: dropped
    "ignored",  # well-formed but not a check (a SIP request other than OPTIONS, a
    # response, a CRLF keepalive, a STUN message other than a request)
    "rate_limited",  # over the per-source or the overall rate: dropped
)


class ResponderCore:
    """One instance per process, for all its sockets. `handle` never raises for any input."""

    def __init__(
        self,
        *,
        rate: float = 5.0,
        burst: float = 10.0,
        total_rate: float = 500.0,
        max_sources: int = 4096,
        software: str = "",
    ) -> None:
        if rate <= 0 or burst < 1 or total_rate <= 0 or max_sources < 1:
            raise ValueError("rate, burst, total_rate and max_sources must be positive")
        self.rate = rate
        self.burst = burst
        self.total_rate = total_rate
        self.max_sources = max_sources
        self.software = software
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        # source address -> [tokens, time of the last refill]; insertion order is recency
        self._buckets: dict[str, list[float]] = {}
        # all sources together: one second's worth to start with
        self._total_tokens = total_rate
        self._total_at: float | None = None

    def sources(self) -> int:
        return len(self._buckets)

    def handle(self, data: bytes, source: Address, now: float) -> list[Datagram]:
        """The answers to send for `data` received from `source` (host, port) at `now`."""
        self.counters["received"] += 1
        host, port = source[0], source[1]
        if not 0 < port < 65536 or len(data) > MAX_REQUEST_BYTES:
            self.counters["malformed"] += 1
            return []
        if not self._admit(host, now):
            self.counters["rate_limited"] += 1
            return []
        if stun.is_stun(data):
            return self._stun(data, host, port)
        start = data.lstrip(b"\r\n")[:4]
        if not start or start.upper() == b"SIP/":
            # a CRLF keepalive (nothing to answer over UDP) or a SIP response
            self.counters["ignored"] += 1
            return []
        return self._sip(data, host, port)

    def _admit(self, host: str, now: float) -> bool:
        if self._total_at is not None:
            elapsed = max(0.0, now - self._total_at)
            self._total_tokens = min(
                self.total_rate, self._total_tokens + elapsed * self.total_rate
            )
        self._total_at = now
        bucket = self._buckets.pop(host, None)
        if bucket is None:
            bucket = [self.burst, now]
            if len(self._buckets) >= self.max_sources:
                del self._buckets[next(iter(self._buckets))]  # the least recently seen
        else:
            bucket[0] = min(self.burst, bucket[0] + max(0.0, now - bucket[1]) * self.rate)
            bucket[1] = now
        self._buckets[host] = bucket
        if bucket[0] < 1 or self._total_tokens < 1:
            return False
        bucket[0] -= 1
        self._total_tokens -= 1
        return True

    def _stun(self, data: bytes, host: str, port: int) -> list[Datagram]:
        try:
            message = stun.parse_message(data)
            if message.message_type != stun.BINDING_REQUEST:
                self.counters["ignored"] += 1
                return []
            request = stun.parse_binding_request(data)
        except StunParseError:
            self.counters["malformed"] += 1
            return []
        txid = request.transaction_id
        # One address and one port: CHANGE-REQUEST cannot be honoured, and RFC 5780 §6.2 has a
        # server without it answer 420 as for any unknown comprehension-required attribute.
        unknown = request.unknown_required
        if request.change_ip or request.change_port:
            unknown = (*unknown, stun.CHANGE_REQUEST)
        if unknown:
            self.counters["stun_error"] += 1
            return [
                (
                    stun.build_binding_error(txid, 420, "Unknown Attribute", unknown=unknown),
                    (host, port),
                )
            ]
        self.counters["stun"] += 1
        answer = stun.build_binding_success(txid, (host, port), software=self.software)
        return [(answer, (host, request.response_port or port))]

    def _sip(self, data: bytes, host: str, port: int) -> list[Datagram]:
        try:
            request = parse_request(data)
        except SipParseError:
            self.counters["malformed"] += 1
            return []
        if request.method != "OPTIONS":
            self.counters["ignored"] += 1
            return []
        destination = answer_destination(request, (host, port))
        if not 0 < destination[1] < 65536:
            self.counters["malformed"] += 1
            return []
        self.counters["sip"] += 1
        return [(build_answer(request, (host, port), to_tag=TO_TAG), destination)]

    def stats_line(self) -> str:
        return (
            " ".join(f"{name}={self.counters[name]}" for name in COUNTERS)
            + f" sources={len(self._buckets)}"
        )
