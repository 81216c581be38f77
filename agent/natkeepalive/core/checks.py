"""Check methods, sans-I/O: how a binding's check datagram is built, where it goes, how its
answer is recognised, and what proves that the server was up when the check went unanswered.

The engine runs the same cycle for every method (check out -> answered on the BINDING socket:
alive / answered on the AUX socket: this server does not support the method / silent while the
server-up probe was answered: suspect, confirmed by the keepalive that follows -> expired). What
differs per method:

- sent-by: an OPTIONS to the server whose Via sent-by is the public address:port, without
  rport (RFC 3261 §18.2.2); alive when its answer reaches the BINDING socket. Server-up probe:
  an OPTIONS to the server with rport.
- relay: an OPTIONS to the server whose Request-URI is the public address:port, our Via with
  rport; alive when the server relays it into the BINDING socket (answered 200 there). Server-up
  probe: as for sent-by.
- stun: a STUN Binding request to the STUN server with RESPONSE-PORT = the BINDING socket's
  mapped port (RFC 5780 §7.5); alive when its answer reaches the BINDING socket. Server-up probe:
  a plain Binding request to the STUN server.

With `stun` the BINDING socket also sends a plain Binding request to the STUN server with every
keepalive: that keeps a mapping toward it on the keepalive's schedule and tells its mapped port.
What it proves is the NAT's state for the binding's local port, not the SIP server's own flow:
the two differ only where a NAT keeps SIP flows apart (a SIP ALG with longer SIP timeouts).

`check: auto` (the default) starts with sent-by. A server that answers it on the AUX socket
forces rport: the relayed check is tried once at once; a server that does not relay it either
leaves stun when a `stun_server` is configured, else the binding can only see remaps, and says
why and what would help (REMEDY).

A STUN transaction id is the binding's 8-byte Call-ID prefix and the 4-byte CSeq number, so the
runtime finds the binding of an answer on the shared AUX socket as it does for SIP answers.
"""

from __future__ import annotations

from natkeepalive.config.model import (
    AUTO as AUTO,
    CHECK_CHOICES as CHECK_CHOICES,
    OFF as OFF,
    RELAY as RELAY,
    SENT_BY as SENT_BY,
    STUN as STUN,
)
from natkeepalive.errors import SipParseError, StunParseError
from natkeepalive.sip.target import STUN_PORT as STUN_PORT, parse_stun_server as parse_stun_server

TYPE_CHECKING = False
if TYPE_CHECKING:
    from natkeepalive.sip.message import Request

    Address = tuple[str, int]

# binding-expired's `detected` and expiry_detection once a check proved the binding
DETECTED = {SENT_BY: "inbound-check", RELAY: "relay-check", STUN: "stun-check"}

FORCES_RPORT = "server forces rport"
NO_CHECK_ANSWER = "server does not answer the check"
NO_RELAY = "server does not relay the check"
NO_STUN_SERVER = "no stun_server"
STUN_IGNORES_PORT = "STUN server does not honour RESPONSE-PORT (RFC 5780 needs two addresses)"
STUN_SILENT = "STUN server does not answer"
REMEDY = (
    "expiry on a port-preserving NAT cannot be seen, only a remap to another port; it would "
    "be with stun_server set to an RFC 5780 STUN server (coturn with two addresses) or to "
    "`nat-keepalive responder` run beside the server, or a server that answers to the Via "
    "sent-by port (RFC 3261 18.2.2) or relays the check (see the server recipes)"
)
# STUN Binding requests sent from the BINDING socket without any answer before the STUN server
# is taken as silent (no check can go without a mapped port)
STUN_UNANSWERED = 3

# The STUN codec and the request answerer are imported when a method first needs them: a binding
# whose server answers the sent-by check (the usual case) never loads them.
STUN_COOKIE = b"\x21\x12\xa4\x42"  # RFC 8489 §5, bytes 4-7 of every STUN message


def looks_like_stun(data: bytes) -> bool:
    """RFC 7983: the first byte below 4 and the magic cookie (cheaper than natkeepalive.stun's
    is_stun, which would import the codec)."""
    return len(data) >= 20 and data[0] < 4 and data[4:8] == STUN_COOKIE


# --- STUN (natkeepalive/stun.py) ----------------------------------------------------------


def stun_txid(call_id: str, cseq: int) -> bytes:
    """The 12-byte transaction id of the binding whose Call-ID prefix is `call_id` (16 hex)."""
    return bytes.fromhex(call_id)[:8].rjust(8, b"\0") + (cseq & 0xFFFFFFFF).to_bytes(4, "big")


def stun_request(txid: bytes, response_port: int | None = None) -> bytes:
    """A Binding request; with RESPONSE-PORT (RFC 5780 §7.5) for the check."""
    from natkeepalive.stun import build_binding_request

    return build_binding_request(txid, response_port=response_port)


def stun_answer(data: bytes) -> tuple[bytes, Address | None] | None:
    """(transaction id, mapped address, None for an error answer) of a Binding answer, or None
    for anything else."""
    if not looks_like_stun(data):
        return None
    from natkeepalive.stun import parse_binding_response

    try:
        answer = parse_binding_response(data)
    except StunParseError:
        return None
    return answer.transaction_id, answer.mapped if answer.success else None


# --- the relayed check (SIP: natkeepalive/sip/answer.py) ----------------------------------


def relayed_request(data: bytes) -> Request | None:
    """The datagram as an OPTIONS request that can be answered, or None."""
    if not data.startswith(b"OPTIONS "):
        return None
    from natkeepalive.sip.answer import parse_request

    try:
        request = parse_request(data)
    except SipParseError:
        return None
    return request if request.method == "OPTIONS" else None


def answer_relayed(request: Request, source: Address, to_tag: str) -> tuple[bytes, Address]:
    """200 OK to a relayed check (RFC 3261 §8.2.6) and where it goes (to the source address
    only): the proxy then stops retransmitting it."""
    from natkeepalive.sip.answer import answer_destination, build_answer

    return build_answer(request, source, to_tag=to_tag), answer_destination(request, source)


# --- a binding's plan ----------------------------------------------------------------------


class CheckPlan:
    """Which method a binding's checks use now, and what the methods have learnt."""

    __slots__ = (
        "method",
        "mode",
        "notes",
        "stun_configured",
        "stun_mapped",
        "stun_server",
        "stun_txid",
        "stun_unanswered",
    )

    def __init__(
        self, mode: str, stun_configured: bool, stun_server: Address | None = None
    ) -> None:
        self.mode = mode
        self.stun_configured = stun_configured
        self.stun_server = stun_server  # its address, once resolved
        self.method: str | None = (
            SENT_BY if mode in (AUTO, SENT_BY) else (None if mode == OFF else mode)
        )
        self.notes: tuple[str, ...] = ()  # why each method tried is not usable, in order
        self.stun_mapped: Address | None = None  # the BINDING socket's mapping toward it
        self.stun_txid = b""  # the last STUN keepalive's
        self.stun_unanswered = 0

    def fail(self, why: str) -> str | None:
        """The current method cannot prove an expiry with this server: the next one, or None
        when none is left (then `note` says why, for expiry_detection and the event)."""
        if why not in self.notes:
            self.notes += (why,)
        method = self.method
        self.method = None
        if self.mode != AUTO:
            return None
        if method == SENT_BY:
            self.method = RELAY
        elif method == RELAY:
            if self.stun_configured:
                self.method = STUN
            elif NO_STUN_SERVER not in self.notes:
                self.notes += (NO_STUN_SERVER,)
        return self.method

    @property
    def note(self) -> str:
        return "; ".join(self.notes)

    def stun_seen(self, txid: bytes, mapped: Address | None) -> bool:
        """A STUN answer on the BINDING socket: whether it answers the last keepalive's request
        (then its mapped address is the binding's mapping toward the STUN server)."""
        if not self.stun_txid or txid != self.stun_txid:
            return False
        self.stun_txid = b""
        self.stun_unanswered = 0
        if mapped is not None:
            self.stun_mapped = mapped
        return True


# --- behind a SIP ALG ---------------------------------------------------------------------

ALG_REMEDY = (
    "the public address, a remap and an expiry cannot be seen; turning the router's SIP ALG "
    "off, or a server on a port other than 5060, would allow it"
)


def alg_reason(local_host: str) -> str:
    return (
        f"answers name the agent's own address {local_host} (a SIP ALG on the router rewrites them)"
    )


def private_address(host: str) -> bool:
    """A private, shared (RFC 6598), link-local or loopback address: one no server across the
    internet sees as a source."""
    if ":" in host:
        head = host.lower()
        return head == "::1" or head.startswith(("fc", "fd", "fe8", "fe9", "fea", "feb"))
    parts = host.split(".")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        return False
    a, b = int(parts[0]), int(parts[1])
    return (
        a in (10, 127)
        or (a == 172 and 16 <= b <= 31)
        or (a == 192 and b == 168)
        or (a == 100 and 64 <= b <= 127)
        or (a == 169 and b == 254)
    )
