"""Answers to the agent's OPTIONS, built from the request the way Kamailio's core does (RFC 3581),
for unit tests of the sans-I/O core. No sockets here."""

from __future__ import annotations

from natkeepalive.sip.message import Request, parse_message

Address = tuple[str, int]


def answer(
    request: bytes,
    source: Address,
    *,
    status: int = 200,
    reason: str = "OK",
    received: str | None = None,
    rport: int | None = None,
    ignore_rport: bool = False,
    branch: str | None = None,
    call_id: str | None = None,
    cseq: int | None = None,
    extra: str = "",
) -> bytes:
    """The response a server at the far side of a NAT would send.

    source is the address the server saw (the NAT's public mapping); received/rport override it.
    """
    parsed = parse_message(request)
    assert isinstance(parsed, Request)
    via_values = parsed.header_values("via")
    top = parsed.top_via
    seen_ip = received if received is not None else source[0]
    seen_port = rport if rport is not None else source[1]
    params = []
    for name, value in top.params:
        if name == "branch" and branch is not None:
            value = branch
        if name == "rport" and not ignore_rport:
            value = str(seen_port)
        params.append(name if value is None else f"{name}={value}")
    if not ignore_rport and top.host != seen_ip:
        params.append(f"received={seen_ip}")
    host = f"[{top.host}]" if ":" in top.host else top.host
    sent_by = host if top.port is None else f"{host}:{top.port}"
    first_via = f"{top.protocol} {sent_by};" + ";".join(params)
    vias = [first_via, *via_values[1:]] if len(via_values) > 1 else [first_via]
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {v}" for v in vias]
    lines += [
        f"From: {parsed.header('from')}",
        f"To: {parsed.header('to')};tag=srv1",
        f"Call-ID: {call_id if call_id is not None else parsed.call_id}",
        f"CSeq: {cseq if cseq is not None else parsed.cseq} {parsed.cseq_method}",
    ]
    if extra:
        lines.append(extra)
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
