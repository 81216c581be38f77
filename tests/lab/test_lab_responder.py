"""The project's responder behind the lab's real NAT: a check from the second socket is delivered
into the binding's mapping, and not after a NAT reboot.

The responder runs on the lab's server host (one address, port 3478). The binding (local port
5062) keeps a mapping toward it with a STUN Binding request; the second socket (5063) sends the
two checks: a STUN Binding request with RESPONSE-PORT set to the binding's public port, and a SIP
OPTIONS whose Via sent-by is the binding's public address:port without `rport`. The router drops
unsolicited WAN packets, so an answer reaches the binding only through its conntrack entry.
Port-preserving and random-port NAT run in parallel, each in a lab of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from natkeepalive import stun
from natkeepalive.errors import SipParseError, StunParseError
from natkeepalive.sip import OptionsRequest, build_options, parse_response
from tests.lab import netlab
from tests.lab.stun_lab import start_responder
from tests.support.tools import require_root, require_tool

BINDING, OTHER = 5062, 5063
# (socket it arrived on, source, what it was: "stun <txid hex>" or "sip <branch>")
Arrival = tuple[str, tuple[str, int], str]


@dataclass
class ResponderRun:
    mapped: tuple[str, int] | None = None
    conntrack_port: int | None = None
    before: list[Arrival] = field(default_factory=list)
    after_flush: list[Arrival] = field(default_factory=list)
    remapped: tuple[str, int] | None = None
    after_remap: list[Arrival] = field(default_factory=list)
    stats: str = ""
    error: str | None = None


def _what(data: bytes) -> str:
    try:
        if stun.is_stun(data):
            return "stun " + stun.parse_binding_response(data).transaction_id.hex()
        response = parse_response(data)
        return f"sip {response.status} {response.top_via.branch}"
    except (StunParseError, SipParseError) as exc:
        return f"unparsable: {exc}"


def _checks(shell: netlab.UdpShell, public: tuple[str, int], tag: str) -> list[Arrival]:
    """Both checks from the second socket, aimed at `public`; every datagram that comes back."""
    txid = bytes.fromhex(tag * 24)
    shell.send("other", stun.build_binding_request(txid, response_port=public[1]), port=3478)
    shell.send(
        "other",
        build_options(
            OptionsRequest(
                netlab.SERVER_IP,
                3478,
                public[0],
                public[1],
                f"z9hG4bKcheck{tag}",
                f"check{tag}",
                "t1",
                1,
                rport=False,
            )
        ),
        port=3478,
    )
    return [(sock, source, _what(data)) for sock, data, source in shell.recv(1.5, wait_all=True)]


def _mapping(shell: netlab.UdpShell) -> tuple[str, int]:
    answer = shell.exchange("binding", stun.build_binding_request(os.urandom(12)), port=3478)
    if answer is None:
        raise AssertionError("the responder did not answer the binding's request")
    mapped = stun.parse_binding_response(answer).mapped
    assert mapped is not None
    return mapped


def run(nat: str) -> ResponderRun:
    result = ResponderRun()
    try:
        with netlab.Lab() as lab:
            lab.set_nat(random=nat == "random")
            server = start_responder(lab)
            shell = lab.udp_shell()
            shell.open("binding", port=BINDING)
            shell.open("other", port=OTHER)
            result.mapped = _mapping(shell)
            [entry] = [line for line in lab.udp_entries(3478) if f"sport={BINDING} " in line]
            result.conntrack_port = int(entry.rsplit("dport=", 1)[1].split()[0])
            result.before = _checks(shell, result.mapped, "a")
            lab.flush_conntrack()  # a NAT reboot: the binding's mapping is gone
            result.after_flush = _checks(shell, result.mapped, "b")
            # The binding's next request maps it again; checks aimed at the new mapping work.
            result.remapped = _mapping(shell)
            result.after_remap = _checks(shell, result.remapped, "c")
            server.stop()
            result.stats = lab.log_tail("responder.log", 5)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, ResponderRun]]:
    require_root()
    for tool in ("ip", "nft", "conntrack"):
        require_tool(tool)
    netlab.cleanup_stale()
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {nat: pool.submit(run, nat) for nat in ("preserve", "random")}
        yield {nat: future.result() for nat, future in futures.items()}


def _delivered(tag: str) -> list[Arrival]:
    server = (netlab.SERVER_IP, 3478)
    return sorted(
        [("binding", server, "stun " + tag * 24), ("binding", server, f"sip 200 z9hG4bKcheck{tag}")]
    )


@pytest.mark.parametrize("nat", ["preserve", "random"])
def test_checks_land_in_the_binding_and_not_after_a_reboot(runs: dict[str, Any], nat: str) -> None:
    result: ResponderRun = runs[nat]
    assert result.error is None, result.error
    assert result.mapped == (netlab.ROUTER_WAN_IP, result.conntrack_port)
    if nat == "preserve":
        assert result.mapped[1] == BINDING
    # Both answers on the binding's socket, from the port the checks went to; none on the
    # second socket, which sent them.
    assert sorted(result.before) == _delivered("a"), result.before
    # After conntrack -F the router drops both answers: nothing arrives anywhere.
    assert result.after_flush == [], result.after_flush
    # Mapped again, the binding is proven again.
    assert result.remapped is not None and result.remapped[0] == netlab.ROUTER_WAN_IP
    assert sorted(result.after_remap) == _delivered("c"), result.after_remap
    # The responder counted what it answered, and nothing malformed: STUN for three rounds of
    # checks, the binding's two mapping requests and the lab's readiness probe; SIP, one per round.
    assert "stun=6 stun_error=0 sip=3 malformed=0" in result.stats, result.stats
