"""Which SIP servers relay a check into the binding, and the Kamailio recipes of docs/servers.md
added to Debian's stock kamailio.cfg, behind the lab's real NAT (tests/lab/relay_lab.py).

Measured (each server as Debian or npm ships it, unless a recipe is named):
- Kamailio 5.6 stock: 403 Not relaying; ejabberd 23.01 (mod_sip): 403; npm sip 0.0.6's
  registrar-proxy example: 404 (no registered user);
- Net::SIP 0.835's stateless_proxy.pl sample: relays the check and the binding's answer, and
  forwards a request for any other host too (an open relay);
- Kamailio stock plus the relay recipe: relays the check from its own address and port and the
  answer back, refuses (403) a request for another host, and after `conntrack -F` the check no
  longer reaches the binding;
- Kamailio stock plus the sent-by recipe: the inbound check's 200 lands on the binding's socket
  (stock: on the sender's), keepalives keep their `rport`, and nothing lands after `conntrack -F`.
Cells run in parallel, each in a lab of its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.lab import netlab, relay_lab, stacks
from tests.lab.netlab import Lab
from tests.support.tools import require_root, require_tool

SERVER = (netlab.SERVER_IP, 5060)
PUBLIC = (netlab.ROUTER_WAN_IP, relay_lab.BINDING)  # port-preserving NAT


def _stack(name: str) -> Callable[[Lab], Any]:
    return lambda lab: stacks.start_stack(lab, name)


def _relay_cell(lab: Lab, start: Callable[[Lab], Any], reboot: bool) -> dict[str, Any]:
    start(lab)
    found: dict[str, Any] = {
        "relay": relay_lab.relay_probe(lab),
        "open": relay_lab.open_relay_probe(lab),
    }
    if reboot:
        lab.flush_conntrack()
        found["after_reboot"] = relay_lab.relay_probe(lab, tag="b", public=PUBLIC)
    return found


def _sent_by_cell(lab: Lab, sent_by: bool) -> dict[str, Any]:
    relay_lab.start_kamailio_recipe(lab, relay=False, sent_by=sent_by)
    found: dict[str, Any] = {"check": relay_lab.sent_by_probe(lab)}
    lab.flush_conntrack()
    found["after_reboot"] = relay_lab.sent_by_probe(lab, tag="b", public=PUBLIC)
    return found


CELLS: dict[str, Callable[[Lab], dict[str, Any]]] = {
    "kamailio-stock": lambda lab: _relay_cell(lab, _stack("kamailio-stock"), False),
    "ejabberd": lambda lab: _relay_cell(lab, _stack("ejabberd"), False),
    "node-sip-proxy": lambda lab: _relay_cell(lab, relay_lab.start_node_sip_proxy, False),
    "net-sip-proxy": lambda lab: _relay_cell(lab, relay_lab.start_net_sip_proxy, False),
    "kamailio-relay-recipe": lambda lab: _relay_cell(lab, relay_lab.start_kamailio_recipe, True),
    "kamailio-sentby-recipe": lambda lab: _sent_by_cell(lab, True),
    "kamailio-stock-sentby": lambda lab: _sent_by_cell(lab, False),
}
NEEDS = {"ejabberd": "ejabberd", "node-sip-proxy": "node-sip", "net-sip-proxy": "perl-net-sip"}


def _run(name: str) -> dict[str, Any]:
    try:
        with Lab() as lab:
            return CELLS[name](lab)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


@pytest.fixture(scope="module")
def cells(request: pytest.FixtureRequest) -> Iterator[dict[str, dict[str, Any]]]:
    require_root()
    for tool in ("ip", "nft", "conntrack", "kamailio", "ejabberdctl", "node", "perl", "ss"):
        require_tool(tool)
    for stack in NEEDS.values():
        lacking = stacks.missing(stack)
        if stack == "perl-net-sip" and not lacking and not os.path.exists(relay_lab.NET_SIP_SAMPLE):
            lacking = f"{relay_lab.NET_SIP_SAMPLE} (libnet-sip-perl's example)"
        if lacking:
            message = f"{stack} needs {lacking} (tests/run.sh installs it)"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
    netlab.cleanup_stale()
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(_run, name) for name in CELLS}
        yield {name: future.result() for name, future in futures.items()}


def _ok(found: dict[str, Any]) -> dict[str, Any]:
    assert "error" not in found, found["error"]
    return found


@pytest.mark.parametrize(
    "name,status", [("kamailio-stock", 403), ("ejabberd", 403), ("node-sip-proxy", 404)]
)
def test_as_shipped_they_refuse_to_relay(cells: dict[str, Any], name: str, status: int) -> None:
    found = _ok(cells[name])
    relay: relay_lab.RelayProbe = found["relay"]
    assert not relay.relayed and relay.direct == [status], relay
    assert not found["open"].forwarded and found["open"].direct == [status], found["open"]


def test_net_sip_stateless_proxy_relays_and_is_an_open_relay(cells: dict[str, Any]) -> None:
    found = _ok(cells["net-sip-proxy"])
    relay: relay_lab.RelayProbe = found["relay"]
    assert relay.relayed and relay.relayed_from == SERVER and relay.answered, relay
    assert relay.keepalive is None  # it forwards an OPTIONS for itself instead of answering
    assert found["open"].forwarded and found["open"].forwarded_from == SERVER, found["open"]


def test_kamailio_relay_recipe(cells: dict[str, Any]) -> None:
    found = _ok(cells["kamailio-relay-recipe"])
    relay: relay_lab.RelayProbe = found["relay"]
    assert relay.keepalive == 200 and relay.public == PUBLIC
    # from the server's own address and port, into the binding; the binding's 200 relayed back
    assert relay.relayed and relay.relayed_from == SERVER and relay.answered, relay
    assert relay.relayed_request.startswith(f"OPTIONS sip:{PUBLIC[0]}:{PUBLIC[1]} SIP/2.0")
    assert not relay.stray, relay.stray
    # not an open relay: a request for another host is refused as by the stock file
    assert not found["open"].forwarded and found["open"].direct == [403], found["open"]
    # after a NAT reboot the relayed check no longer reaches the binding
    after: relay_lab.RelayProbe = found["after_reboot"]
    assert not after.relayed and not after.answered, after


def test_kamailio_sent_by_recipe(cells: dict[str, Any]) -> None:
    found = _ok(cells["kamailio-sentby-recipe"])
    check: relay_lab.SentByProbe = found["check"]
    assert check.keepalive_rport == relay_lab.BINDING  # keepalives still get their rport value
    assert check.on == ["binding 200"], check
    assert found["after_reboot"].on == [], found["after_reboot"]


def test_kamailio_stock_answers_the_check_to_its_sender(cells: dict[str, Any]) -> None:
    found = _ok(cells["kamailio-stock-sentby"])
    assert found["check"].on == ["other 200"], found["check"]
    # the sender hears it after a reboot too: the stock file cannot prove the binding
    assert found["after_reboot"].on == ["other 200"], found["after_reboot"]


def test_the_docs_show_the_tested_recipes() -> None:
    """docs/servers.md prints exactly the lines these tests add to Debian's kamailio.cfg."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "servers.md").read_text()
    for recipe in (
        relay_lab.SENT_BY_RECIPE,
        relay_lab.RELAY_RECIPE.strip("\n"),
        relay_lab.RELAY_CALL.rstrip("\n"),
    ):
        assert recipe in text, recipe
