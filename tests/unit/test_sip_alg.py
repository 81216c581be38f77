"""Behind a SIP ALG: the router rewrites `received`/`rport` of every answer back to the
binding's own lan address. The agent must not state that address as the public one, must not
claim it can prove an expiry, and must say why in `expiry_detection` (see docs/servers.md)."""

from __future__ import annotations

import re

from natkeepalive import events as ev
from natkeepalive.config.model import ProbeSettings
from natkeepalive.core.checks import private_address
from natkeepalive.core.engine import Datagram
from tests.support.fakenet import LOCAL, FakeNet


def alg(n: FakeNet, local: tuple[str, int] = LOCAL) -> None:
    """Answers come back as nf_nat_sip leaves them: received=<lan ip>;rport=<lan port>."""
    original = n._server_receives

    def rewrite(datagram: Datagram) -> None:
        before = len(n.in_flight)
        original(datagram)
        n.in_flight[before:] = [
            (
                at,
                re.sub(
                    rb";rport=\d+",
                    b";rport=%d" % local[1],
                    re.sub(rb";received=[^;\r]+", b";received=" + local[0].encode(), data),
                ),
                src,
                ch,
            )
            for at, data, src, ch in n.in_flight[before:]
        ]

    n._server_receives = rewrite  # type: ignore[method-assign]


def test_the_lan_address_in_an_answer_from_a_public_server_is_not_the_public_address() -> None:
    n = FakeNet(settings=ProbeSettings(interval=20.0))
    alg(n)
    n.run_until(200)
    names = n.names()
    assert n.engine.public is None
    assert "binding-learned" not in names
    assert "binding-changed" not in names and "binding-expired" not in names
    assert "reachable" in names  # the server answers: it is up
    detection = n.engine.expiry_detection
    assert detection.startswith("unsupported: answers name the agent's own address " + LOCAL[0])
    assert "SIP ALG" in detection
    # said once, with what would help
    unsupported = n.of(ev.InboundCheckUnsupported)
    assert len(unsupported) == 1
    assert "SIP ALG" in unsupported[0].reason and "5060" in unsupported[0].remedy


def test_once_the_alg_is_gone_the_public_address_is_learned_again() -> None:
    n = FakeNet(settings=ProbeSettings(interval=20.0))
    original = n._server_receives
    alg(n)
    n.run_until(100)
    assert n.engine.public is None
    n._server_receives = original  # type: ignore[method-assign]
    n.run_until(200)
    assert n.engine.public is not None and n.engine.public[0] != LOCAL[0]
    assert "SIP ALG" not in n.engine.expiry_detection
    assert "binding-learned" in n.names()


def test_without_the_rewrite_the_public_address_is_learned() -> None:
    n = FakeNet(settings=ProbeSettings(interval=20.0))
    n.run_until(200)
    assert n.engine.public is not None and n.engine.public[0] != LOCAL[0]
    assert "SIP ALG" not in n.engine.expiry_detection


def test_private_addresses() -> None:
    for host in ("10.1.2.3", "172.16.0.1", "172.31.255.1", "192.168.1.1", "100.64.0.1"):
        assert private_address(host), host
    for host in ("127.0.0.1", "169.254.1.1", "::1", "fd00::1", "fe80::1"):
        assert private_address(host), host
    for host in ("203.0.113.10", "172.32.0.1", "100.128.0.1", "8.8.8.8", "2001:db8::1", "x"):
        assert not private_address(host), host
