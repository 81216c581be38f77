"""coturn as users run it, behind the lab's real NAT: does RESPONSE-PORT prove a binding?

The binding (local port 5062) keeps a mapping toward coturn with a Binding request; a second socket
(5063) then asks coturn, with RESPONSE-PORT set to the binding's public port, to answer there. The
router masquerades (port-preserving or random) and drops unsolicited WAN packets like a home
gateway, so an answer reaches the binding only through the binding's own conntrack entry.

Measured here, coturn 4.6.1:
- two listening addresses and RFC 5780 on (Debian's file without `no-rfc5780`): the answer lands on
  the binding's socket, from coturn's primary address and port, on both NATs; after `conntrack -F`
  nothing arrives anywhere (the router drops it);
- Debian's file as shipped (`no-rfc5780`) with two addresses: RESPONSE-PORT is ignored and the
  second socket gets the answer (tests/lab/test_lab_stacks.py shows the same with one address).
The runs go in parallel, each in a lab of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from natkeepalive import stun
from tests.lab import netlab
from tests.lab.stun_lab import SECOND_SERVER_IP, start_coturn
from tests.support.tools import require_root, require_tool

BINDING, OTHER = 5062, 5063
Arrival = tuple[str, tuple[str, int], stun.BindingResponse]


@dataclass
class StunRun:
    mapped: tuple[str, int] | None = None
    conntrack: list[str] = field(default_factory=list)
    aux_txid: bytes = b""
    arrivals: list[Arrival] = field(default_factory=list)
    after_flush: list[tuple[str, tuple[str, int]]] = field(default_factory=list)
    error: str | None = None
    log: str = ""


def _arrivals(shell: netlab.UdpShell) -> list[Arrival]:
    return [
        (sock, source, stun.parse_binding_response(data))
        for sock, data, source in shell.recv(1.5, wait_all=True)
    ]


def run(nat: str, rfc5780: bool) -> StunRun:
    result = StunRun()
    try:
        with netlab.Lab() as lab:
            lab.set_nat(random=nat == "random")
            try:
                server = start_coturn(lab, second_ip=SECOND_SERVER_IP, rfc5780=rfc5780)
                shell = lab.udp_shell()
                shell.open("binding", port=BINDING)
                shell.open("other", port=OTHER)
                answer = shell.exchange(
                    "binding", stun.build_binding_request(os.urandom(12)), port=server.port
                )
                if answer is None:
                    raise AssertionError("coturn did not answer the binding's request")
                result.mapped = stun.parse_binding_response(answer).mapped
                result.conntrack = lab.udp_entries(server.port)
                assert result.mapped is not None
                result.aux_txid = os.urandom(12)
                shell.send(
                    "other",
                    stun.build_binding_request(result.aux_txid, response_port=result.mapped[1]),
                    port=server.port,
                )
                result.arrivals = _arrivals(shell)
                lab.flush_conntrack()  # a NAT reboot
                shell.send(
                    "other",
                    stun.build_binding_request(os.urandom(12), response_port=result.mapped[1]),
                    port=server.port,
                )
                result.after_flush = [
                    (sock, source) for sock, _, source in shell.recv(1.5, wait_all=True)
                ]
            finally:
                result.log = lab.log_tail("coturn.log", 20)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


CASES = [("preserve", True), ("random", True), ("preserve", False)]


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[tuple[str, bool], StunRun]]:
    require_root()
    for tool in ("ip", "nft", "conntrack", "turnserver"):
        require_tool(tool)
    netlab.cleanup_stale()
    with ThreadPoolExecutor(max_workers=len(CASES)) as pool:
        futures = {case: pool.submit(run, *case) for case in CASES}
        yield {case: future.result() for case, future in futures.items()}


def _mapping_of(entries: list[str]) -> int:
    """The public port conntrack gave local port 5062 (the reply tuple's dport)."""
    for line in entries:
        if f"sport={BINDING} " in line:
            return int(line.rsplit("dport=", 1)[1].split()[0])
    raise AssertionError(f"no conntrack entry for port {BINDING}: {entries}")


@pytest.mark.parametrize("nat", ["preserve", "random"])
def test_rfc5780_answer_lands_in_the_binding(runs: dict[Any, StunRun], nat: str) -> None:
    result = runs[(nat, True)]
    assert result.error is None, f"{result.error}\n{result.log}"
    assert result.mapped is not None
    assert result.mapped == (netlab.ROUTER_WAN_IP, _mapping_of(result.conntrack))
    if nat == "preserve":
        assert result.mapped[1] == BINDING
    # Exactly one answer, on the binding's socket, from coturn's primary address and the port
    # the binding's mapping points at: the router let it in through that mapping only.
    assert [(sock, source) for sock, source, _ in result.arrivals] == [
        ("binding", (netlab.SERVER_IP, 3478))
    ], result.arrivals
    _, _, answer = result.arrivals[0]
    assert answer.transaction_id == result.aux_txid and answer.success
    # What it reports is the second socket's own mapping, not the binding's.
    assert answer.mapped is not None and answer.mapped[0] == netlab.ROUTER_WAN_IP
    assert answer.mapped[1] != result.mapped[1]
    assert answer.response_origin == (netlab.SERVER_IP, 3478)
    assert answer.other_address == (SECOND_SERVER_IP, 3479)
    # After a NAT reboot the same request brings nothing to either socket.
    assert result.after_flush == [], result.after_flush


def test_debian_config_ignores_response_port(runs: dict[Any, StunRun]) -> None:
    result = runs[("preserve", False)]
    assert result.error is None, f"{result.error}\n{result.log}"
    assert [(sock, source) for sock, source, _ in result.arrivals] == [
        ("other", (netlab.SERVER_IP, 3478))
    ], result.arrivals
    _, _, answer = result.arrivals[0]
    assert answer.transaction_id == result.aux_txid
    assert answer.response_origin is None and answer.other_address is None
    # RESPONSE-PORT ignored: after the flush the second socket's request opens a mapping of its
    # own and the answer comes back through it, so nothing here proves the binding.
    assert result.after_flush == [("other", (netlab.SERVER_IP, 3478))]
