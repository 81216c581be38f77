"""Expiry on a port-preserving NAT behind a real Linux NAT, with the agent's DEFAULT cadence, and
after an interface event: the inbound check goes before the keepalive that would silently make
the binding again on the same port.

The server is the lab's Kamailio, which answers a request without `rport` to its Via sent-by
(RFC 3261 §18.2.2), so the check can prove a binding from the outside. `conntrack -F` on the
router is a NAT reboot: every binding is lost.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.lab import netlab
from tests.lab.agents import KAMAILIO, MARGIN, SOURCE_PORT, TimedAgent
from tests.lab.netlab import Lab

pytestmark = pytest.mark.lab

# Long NAT timeouts: nothing expires by itself during a test; only the flush loses the binding.
NAT_TIMEOUTS = (120, 120)


def config(lab: Lab, settings: dict[str, Any]) -> Path:
    """The default configuration but for what `settings` names (and debug logging, which only
    adds log lines: the tests read probe-sent)."""
    lines = ["log: {target: stderr, level: debug}"]
    if settings:
        lines.append("defaults:")
        lines += [f"  {key}: {value}" for key, value in settings.items()]
    lines += [
        "bindings:",
        "  - name: provider",
        f"    server: {KAMAILIO}",
        f"    source_port: {SOURCE_PORT}",
    ]
    path = Path(lab.tmpdir) / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def agents() -> Iterator[Callable[[Lab, Path], TimedAgent]]:
    started: list[TimedAgent] = []

    def start(lab: Lab, path: Path) -> TimedAgent:
        agent = TimedAgent(lab, path)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.kill()


def test_nat_reboot_is_reported_within_one_interval_with_the_default_configuration(
    kamailio_lab: Lab, agents: Callable[[Lab, Path], TimedAgent]
) -> None:
    """The default configuration (interval 25 s, jitter 0.2, timeout 3 s, inbound_check 1) on a
    port-preserving NAT. `conntrack -F` right after the promotion keepalive's cycle; the next
    cycle (<= 25 s later) starts with a check, which goes unanswered (3 s), and its keepalive,
    answered on the same public port, reports `binding-expired detected=inbound-check`: within
    one interval + the check's timeout. No `binding-changed`: the port did not change."""
    lab = kamailio_lab
    lab.set_udp_timeouts(*NAT_TIMEOUTS)
    agent = agents(lab, config(lab, {}))
    learned = agent.wait_for("binding-learned", timeout=5)
    assert learned["public"] == f"{netlab.ROUTER_WAN_IP}:{SOURCE_PORT}"
    # the promotion cycle (3 s): its check proves the server answers to the sent-by
    agent.wait_for("probe-answered", count=2, timeout=10)
    lab.flush_conntrack()
    flushed = time.monotonic()
    expired = agent.wait_for("binding-expired", timeout=25 + 3 + 10)
    took = time.monotonic() - flushed
    assert expired["detected"] == "inbound-check" and expired["public"] == learned["public"]
    assert took <= 25 + 3 + 2 * MARGIN, f"reported {took:.1f} s after the NAT reboot"
    agent.wait_for("probe-answered", count=len(agent.events("probe-answered")) + 1, timeout=10)
    assert agent.stop() == 0
    assert agent.names() == [
        "started",
        "binding-learned",
        "reachable",
        "binding-expired",
        "stopped",
    ]
    entry = agent.binding()
    assert entry["expiry_detection"] == "inbound-check"
    assert (entry["changes"], entry["expiries"]) == (0, 1)
    print(f"default configuration: NAT reboot reported {took:.2f} s after conntrack -F")


@pytest.mark.parametrize("flush", [True, False], ids=["binding-lost", "binding-survived"])
def test_sigusr2_checks_the_binding_before_the_keepalive(
    kamailio_lab: Lab, agents: Callable[[Lab, Path], TimedAgent], flush: bool
) -> None:
    """An interface event (the init script's `reprobe` sends SIGUSR2) with the public port known:
    the cycle it starts goes check first. interval 60 s (the regular cycle cannot come within
    the test), the default inbound_check, timeout 1 s.

    binding-lost: `conntrack -F` (a WAN reconnect that lost the binding), then SIGUSR2: the check
    goes unanswered, the keepalive after it is answered on the same port: `binding-expired
    detected=inbound-check` within the check's timeout + a round trip.
    binding-survived: SIGUSR2 alone: the check is answered on the binding's socket, nothing is
    reported, the status says `inbound_check: alive`."""
    lab = kamailio_lab
    lab.set_udp_timeouts(*NAT_TIMEOUTS)
    agent = agents(lab, config(lab, {"interval": 60, "timeout": 1}))
    learned = agent.wait_for("binding-learned", timeout=5)
    agent.wait_for("probe-answered", count=2, timeout=10)  # the promotion cycle, 3 s in
    checks = agent.count("probe-sent", kind="inbound")
    assert checks == 1
    time.sleep(1.0)  # the promotion cycle is over: the next regular one is 60 s away
    if flush:
        lab.flush_conntrack()
    before = len(agent.timeline())
    answered = len(agent.events("probe-answered"))
    agent.signal(signal.SIGUSR2)
    signalled = time.monotonic()
    agent.wait_for(
        "probe-sent",
        kind="keepalive",
        count=agent.count("probe-sent", kind="keepalive") + 1,
        timeout=5,
    )
    sent = [
        (name, fields.get("kind"))
        for _, _, name, fields in agent.timeline()[before:]
        if name == "probe-sent"
    ]
    assert sent[0] == ("probe-sent", "inbound"), sent  # the check went before the keepalive
    if flush:
        expired = agent.wait_for("binding-expired", timeout=5)
        took = time.monotonic() - signalled
        assert expired["detected"] == "inbound-check" and expired["public"] == learned["public"]
        assert took <= 1 + 1 + 2 * MARGIN, f"reported {took:.1f} s after SIGUSR2"
        print(f"WAN reconnect that lost the binding: reported {took:.2f} s after SIGUSR2")
    agent.wait_for("probe-answered", count=answered + 1, timeout=5)  # the keepalive's
    assert agent.stop() == 0
    entry = agent.binding()
    if flush:
        assert agent.names() == [
            "started",
            "binding-learned",
            "reachable",
            "signal-received",
            "binding-expired",
            "stopped",
        ]
        assert (entry["changes"], entry["expiries"]) == (0, 1)
    else:
        assert agent.names() == [
            "started",
            "binding-learned",
            "reachable",
            "signal-received",
            "stopped",
        ]
        assert entry["inbound_check"] == "alive" and entry["expiries"] == 0
    assert entry["expiry_detection"] == "inbound-check"
