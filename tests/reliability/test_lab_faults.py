"""Faults only a real network shows, in the NAT lab: no route and back, the interface down and up,
the local address changing. The agent keeps running, reports each fault once and its recovery
once, and goes back to its schedule. The daemon's local-address check runs every 2 s here (30 s
in production) through agentwrap.py."""

from __future__ import annotations

import time

import pytest

from tests.lab.netlab import LAN_IF, ROUTER_LAN_IP, Lab
from tests.reliability.common import status
from tests.reliability.labagent import lab_agent, lab_config

pytestmark = pytest.mark.lab

REACH = ("reachable", "lagged", "unreachable")


def test_route_interface_and_address_faults(kamailio_lab: Lab) -> None:
    lab = kamailio_lab
    with lab_agent(lab, lab_config(lab)) as agent:
        agent.wait_for("reachable", timeout=15)
        # 1. the default route disappears (ENETUNREACH on every send), then comes back
        lab.run("lan", ["ip", "route", "del", "default"])
        agent.wait_for("unreachable", timeout=10)
        time.sleep(3.0)
        assert agent.names().count("send-failed") == 1
        lab.run("lan", ["ip", "route", "add", "default", "via", ROUTER_LAN_IP])
        agent.wait_for("reachable", count=2, timeout=10)
        # 2. the interface goes down (its routes go with it) and up again (the route is re-added
        # as a DHCP client would)
        lab.run("lan", ["ip", "link", "set", LAN_IF, "down"])
        agent.wait_for("unreachable", count=2, timeout=10)
        time.sleep(3.0)
        lab.run("lan", ["ip", "link", "set", LAN_IF, "up"])
        lab.run("lan", ["ip", "route", "replace", "default", "via", ROUTER_LAN_IP])
        agent.wait_for("reachable", count=3, timeout=15)
        # 3. the local address changes under the running agent
        lab.change_lan_address("192.168.77.3")
        changed = agent.wait_for("local-address-changed", timeout=10)
        agent.wait_for("binding-learned", count=2, timeout=10)
        answered = len(agent.events("probe-answered"))
        time.sleep(5.0)  # the new flow's promotion keepalive (3 s), then one per second
        entry = status(agent)["bindings"][0]
        assert agent.proc.poll() is None
        assert agent.stop() == 0
    names = agent.names()
    print(f"lab faults: {names}")
    reach = [n for n in names if n in REACH]
    assert reach == ["reachable", "unreachable", "reachable", "unreachable", "reachable"], names
    assert names.count("send-failed") <= 2, names  # at most once per outage
    assert changed == {"binding": "provider", "old": "192.168.77.2", "new": "192.168.77.3"}
    assert names.count("local-address-changed") == 1
    assert len(agent.events("probe-answered")) - answered >= 2  # the schedule goes on
    assert entry["state"] == "reachable" and entry["local"] == "192.168.77.3:5062"


def test_local_address_change_is_not_reported_as_an_expiry(kamailio_lab: Lab) -> None:
    """With NETWATCH_EVERY well above the interval (30 s in production, 12 s here), the
    keepalives that follow a change of the local address leave from the new address, get a new
    NAT mapping, and the agent reports
    `binding-expired detected=remap` and `binding-changed` before it notices the address: a
    misleading expiry (it says the interval is too long). The change must be found first."""
    lab = kamailio_lab
    lab.set_nat(random=True)  # a new source address gets a new public port
    with lab_agent(lab, lab_config(lab), netwatch=12.0) as agent:
        agent.wait_for("reachable", timeout=15)
        time.sleep(4.0)
        lab.change_lan_address("192.168.77.3")
        agent.wait_for("local-address-changed", timeout=20)
        time.sleep(1.0)
        agent.stop()
    names = agent.names()
    moved = names.index("local-address-changed")
    assert "binding-expired" not in names[:moved] and "binding-changed" not in names[:moved], names
