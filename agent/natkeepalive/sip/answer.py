"""Answering a SIP request over UDP, sans-I/O: where the answer goes and its bytes.

Two users: the responder (natkeepalive.responder), which answers OPTIONS checks, and the agent,
which answers a relayed check, the OPTIONS it sent from its second socket that a proxy forwarded
into the binding. Both need the same strict reading of a request and the same RFC 3261 §8.2.6
answer: the Via headers, From, Call-ID and CSeq copied, To copied with a tag added when it has
none, nothing else but Content-Length.
"""

from __future__ import annotations

from natkeepalive.errors import SipParseError
from natkeepalive.sip.message import (
    _HOSTNAME_CHARS,
    Request,
    Via,
    parse_message,
)
from natkeepalive.sip.scan import split_outside

# Headers a request must carry before anything answers it (RFC 3261 §8.1.1).
_REQUIRED = ("from", "to", "call-id", "cseq")
DEFAULT_PORT = 5060


def parse_request(data: bytes) -> Request:
    """A SIP request over UDP that can be answered, or SipParseError: a response, a request
    whose top Via is not UDP, a CSeq method other than the request's, a missing From or To."""
    message = parse_message(data)
    if not isinstance(message, Request):
        raise SipParseError(f"expected a request, got a {message.status} response")
    if message.top_via.protocol != "SIP/2.0/UDP":
        raise SipParseError(f"top Via is {message.top_via.protocol}, not SIP/2.0/UDP")
    if message.cseq_method != message.method:
        raise SipParseError(
            f"CSeq method {message.cseq_method} is not the request's {message.method}"
        )
    for name in _REQUIRED:
        if message.header(name) is None:
            raise SipParseError(f"missing {name} header")
    return message


def answer_destination(request: Request, source: tuple[str, int]) -> tuple[str, int]:
    """Where RFC 3261 §18.2.2 and RFC 3581 send the answer, but only ever to the source address:
    with `rport` in the top Via, the source port; without it, the sent-by port (5060 when none)."""
    via = request.top_via
    if via.has_param("rport"):
        return source
    return source[0], via.port or DEFAULT_PORT


def is_relayed_check(request: Request, call_id: str, cseq: int) -> bool:
    """Whether `request` is the check the agent sent (its Call-ID and CSeq), come back through a
    proxy: a relayed check must be answered, not counted as a stray request."""
    return request.method == "OPTIONS" and request.call_id == call_id and request.cseq == cseq


def _top_via(via: Via, source: tuple[str, int]) -> str:
    """The top Via with `received` (when the sent-by host is not the source address) and the
    `rport` value (when asked for), RFC 3261 §18.2.1 and RFC 3581 §4."""
    host, port = source
    params: list[str] = []
    for key, value in via.params:
        if key == "received":
            continue
        if key == "rport":
            params.append(f"rport={port}")
        else:
            params.append(key if value is None else f"{key}={value}")
    if via.host != host or via.has_param("rport"):
        params.append(f"received={host}")
    return f"{via.protocol} {via.sent_by}" + "".join(f";{p}" for p in params)


def build_answer(
    request: Request,
    source: tuple[str, int],
    status: int = 200,
    reason: str = "OK",
    to_tag: str = "",
) -> bytes:
    """The answer to `request` received from `source`: its Via headers (the top one marked as
    above), From, To (with `to_tag` added when it has no tag), Call-ID and CSeq, no body."""
    if not 200 <= status <= 699 or not reason or any(c in reason for c in "\r\n"):
        raise ValueError(f"status {status} {reason!r}")
    if to_tag and not (to_tag.isascii() and set(to_tag) <= _HOSTNAME_CHARS):
        raise ValueError(f"To tag {to_tag!r}")
    lines = [f"SIP/2.0 {status} {reason}"]
    vias = request.header_values("via")
    # The top Via is the first value of the first Via header; the rest go back unchanged.
    _, others = _split_first(vias[0])
    lines.append(f"Via: {_top_via(request.vias[0], source)}")
    if others:
        lines.append(f"Via: {others}")
    lines += [f"Via: {value}" for value in vias[1:]]
    to = request.header("to") or ""
    if to_tag and ";tag=" not in to.replace(" ", "").lower():
        to += f";tag={to_tag}"
    lines += [
        f"From: {request.header('from')}",
        f"To: {to}",
        f"Call-ID: {request.call_id}",
        f"CSeq: {request.cseq} {request.cseq_method}",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8")


def _split_first(value: str) -> tuple[str, str]:
    """A Via header value split at its first comma outside quotes and brackets."""
    parts = split_outside(value, ",", 1)
    return (parts[0], "") if len(parts) == 1 else (parts[0], parts[1].strip())
