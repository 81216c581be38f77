"""`nat-keepalive probe TARGET`: one OPTIONS (and optionally the inbound check), for scripts and
monitoring. With --json one object: target, server, local, reachable, status, reason, rtt_ms,
transmissions, public, rport_supported, inbound_check, checks, and `error` when the probe could
not be made (the name does not resolve, the request could not be sent).

With --inbound-check, `checks` says for each check method (sent-by, relay, stun: core/checks.py)
whether this server (and the --stun-server) supports it: `alive`, or `unsupported: <why>`;
`inbound_check` keeps the sent-by check's result."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from natkeepalive.errors import SocketSetupError, TargetError
from natkeepalive.logline import escape_text
from natkeepalive.oneshot.probe import Prober
from natkeepalive.runtime.sockets import family_of, is_ip_literal, resolve
from natkeepalive.sip.target import format_hostport, parse_target


def _bind_address(args: argparse.Namespace, server: str) -> str | None:
    """The local address asked for; raises SocketSetupError when it cannot reach `server`."""
    family = family_of(server)
    version = "IPv6" if family == family_of("::") else "IPv4"
    if args.bind:
        bind = str(args.bind)
        if not is_ip_literal(bind):
            raise SocketSetupError(f"--bind {bind}: not an IPv4 or IPv6 address")
        if family_of(bind) != family:
            other = "IPv4" if version == "IPv6" else "IPv6"
            raise SocketSetupError(
                f"--bind {bind} is {other} but server {server} is {version}: "
                "a socket reaches only its own address family"
            )
        return bind
    if args.interface:
        from natkeepalive.netinfo import interface_addresses, interface_names

        if args.interface not in interface_names():
            raise SocketSetupError(f"--interface {args.interface}: no such interface on this host")
        for address in interface_addresses(args.interface):
            if family_of(address) == family:
                return address
        raise SocketSetupError(
            f"--interface {args.interface} has no {version} address to reach server {server} from"
        )
    return None


def run_probe(args: argparse.Namespace) -> int:
    target = parse_target(args.target)
    result: dict[str, Any] = {
        "target": str(target),
        "server": None,
        "local": None,
        "reachable": False,
        "status": None,
        "reason": None,
        "rtt_ms": None,
        "transmissions": 0,
        "public": None,
        "rport_supported": None,
        "rport": None,
        "inbound_check": None,
        "checks": None,
    }
    try:
        server = resolve(target.host, target.port)
    except OSError as exc:
        result["error"] = f"cannot resolve {target.host}: {exc}"
        return _report(args, result, 1)
    result["server"] = {"address": server[0], "port": server[1]}
    bind = _bind_address(args, server[0])
    prober = Prober(
        server, target.host, target.port, args.source_port, bind, args.timeout, args.max_forwards
    )
    with prober:
        result["local"] = {"address": prober.local[0], "port": prober.local[1]}
        answer = prober.keepalive()
        result["transmissions"] = answer.transmissions
        response = answer.response
        if answer.send_error is not None and response is None:
            result["error"] = (
                f"cannot send from {format_hostport(*prober.local)} to "
                f"{format_hostport(*server)}: {answer.send_error}"
            )
            return _report(args, result, 1)
        if response is None or answer.rtt is None:
            return _report(args, result, 1)
        via = response.top_via
        # `rport`: "value", "bare" (no value: a server without RFC 3581, or one that leaves it
        # bare when the port did not change) or "absent". No `received`: the public address is
        # unknown, never the sent-by host, which is what we wrote.
        rport = "value" if via.rport is not None else "bare" if via.has_param("rport") else "absent"
        # an rport value without `received`: the server read the Via and saw no other address
        # (RFC 3261 §18.2.1); without either, the sent-by host is only what we wrote
        address = via.received or (via.host if via.rport is not None else None)
        result.update(
            reachable=True,
            status=response.status,
            reason=response.reason,
            rtt_ms=round(answer.rtt * 1000.0, 3),
            public={"address": address, "port": via.rport},
            rport_supported=via.rport is not None,
            rport=rport,
        )
        code = 0
        if args.inbound_check:
            port = via.rport
            if port is None and rport == "bare":
                port = prober.local[1]  # the port may be preserved: the check tells
            result["inbound_check"] = _inbound(prober, address, port, via.rport is None)
            if result["inbound_check"] == "alive" and via.rport is None:
                result["public"]["port"] = port
            code = 1 if result["inbound_check"] == "expired" else 0
            result["checks"] = {
                "sent-by": result["inbound_check"] or "unsupported: the server went away",
                "relay": _relay(prober, address, result["public"]["port"]),
                "stun": _stun(prober, args.stun_server),
            }
        return _report(args, result, code)


def _inbound(prober: Prober, address: str | None, port: int | None, guessed: bool) -> str | None:
    """alive, expired, None (the server went away) or `unsupported: <why>`."""
    if address is None:
        return "unsupported: no received in the answer (public address unknown)"
    if port is None:
        return "unsupported: no rport value in the answer (public port unknown)"
    answer = prober.inbound((address, port))
    if answer.response is not None:
        return "alive" if answer.channel == "main" else "unsupported: server forces rport"
    if guessed:  # a bare rport and the local port: silence only says the guess was wrong
        return "unsupported: bare rport and the public port is not the local one"
    confirm = prober.keepalive()  # silence alone proves nothing: is the server there at all?
    return "expired" if confirm.response is not None else None  # the server went away


def _relay(prober: Prober, address: str | None, port: int | None) -> str:
    if address is None or port is None:
        return "unsupported: the public address:port is unknown"
    outcome, response = prober.relay((address, port))
    if outcome == "relayed":
        return "alive"
    if response is not None:
        return (
            f"unsupported: the server answered the relayed check itself "
            f"({response.status} {escape_text(response.reason)})"
        )
    return "unsupported: not relayed, and no answer"


def _stun(prober: Prober, text: str | None) -> str:
    if not text:
        return "unsupported: no --stun-server given"
    from natkeepalive.core.checks import parse_stun_server

    try:
        target = parse_stun_server(text)
    except TargetError as exc:
        return f"unsupported: --stun-server {text!r}: {exc}"
    try:
        server = resolve(target.host, target.port, family_of(prober.server[0]))
    except OSError as exc:
        return f"unsupported: cannot resolve {target.host}: {exc}"
    channel, mapped = prober.stun(server, None, from_aux=False)
    if channel != "main" or mapped is None:
        return "unsupported: the STUN server does not answer"
    channel, _ = prober.stun(server, mapped[1], from_aux=True)
    if channel == "main":
        return "alive"
    if channel == "aux":
        return "unsupported: the STUN server does not honour RESPONSE-PORT (RFC 5780)"
    channel, _ = prober.stun(server, None, from_aux=True)
    return (
        "unsupported: the STUN server drops requests with RESPONSE-PORT"
        if channel
        else "unsupported: the STUN server does not answer the second socket"
    )


def _report(args: argparse.Namespace, result: dict[str, Any], code: int) -> int:
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
        return code
    lines = [f"target     {result['target']}"]
    server = result["server"]
    if server:
        lines[0] += f" ({format_hostport(server['address'], server['port'])})"
    if result["local"]:
        local = result["local"]
        lines.append(f"local      {format_hostport(local['address'], local['port'])}")
    if result["reachable"]:
        # the reason phrase is the server's text: ANSI escapes or a CR must not reach a terminal
        lines.append(
            f"reachable  yes: {result['status']} {escape_text(result['reason'])} in "
            f"{result['rtt_ms']} ms ({result['transmissions']} transmission(s))"
        )
        public = result["public"]
        if public["address"] is None:
            port = "" if public["port"] is None else f", port {public['port']}"
            lines.append(f"public     unknown (the server sends no received{port})")
        elif public["port"] is None:
            lines.append(
                f"public     {public['address']} (the server sends no rport value: port unknown)"
            )
        else:
            lines.append(f"public     {format_hostport(public['address'], public['port'])}")
    else:
        why = result.get("error") or f"no answer after {result['transmissions']} transmission(s)"
        lines.append(f"reachable  no: {why}")
    if result["inbound_check"] is not None:
        lines.append(f"inbound    {result['inbound_check']}")
    for method, verdict in (result["checks"] or {}).items():
        lines.append(f"{method:<10} {verdict}")
    sys.stdout.write("\n".join(lines) + "\n")
    return code
