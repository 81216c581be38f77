"""Binding lifetime discovery and `interval: auto` against Kamailio behind a real Linux NAT.

Timings: the router's initial UDP timeout is 4 s (above the 3-s promotion keepalive, so a new flow
always reaches its stream timeout) and the stream timeout, the lifetime being measured, 5-7 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from natkeepalive.core.engine import PROMOTE_DELAY
from tests.lab import netlab, stacks
from tests.lab.netlab import Lab
from tests.lab.stun_lab import start_coturn
from tests.support.agentproc import Agent, agent_env
from tests.support.tools import find_tool, require_tool

pytestmark = pytest.mark.lab

KAMAILIO = f"{netlab.SERVER_IP}:5060"


def in_lan(lab: Lab) -> tuple[str, ...]:
    return (find_tool("ip") or "/usr/sbin/ip", "netns", "exec", lab.ns["lan"])


def kamailio_lab(make_lab: Callable[[], Lab], random_ports: bool, initial: int, stream: int) -> Lab:
    lab = make_lab()
    lab.start_kamailio(binary=require_tool("kamailio"))
    lab.set_nat(random=random_ports)
    lab.set_udp_timeouts(initial, stream)
    return lab


def test_discover_brackets_the_stream_timeout(make_lab: Callable[[], Lab]) -> None:
    """Both NAT kinds at once (two labs): initial 4 s, stream 7 s; trials from 4 s, 1-s bracket.
    About 45 s: trials of 4, 8, 6 and 7 s idle, each after a 3-s establishment."""
    stream = 7
    labs = {
        kind: kamailio_lab(make_lab, kind == "random", 4, stream)
        for kind in ("preserving", "random")
    }
    procs = {
        kind: subprocess.Popen(
            [
                *in_lan(lab),
                sys.executable,
                "-m",
                "natkeepalive",
                "discover",
                KAMAILIO,
                "--json",
                "--start",
                "4",
                "--resolution",
                "1",
                "--max-idle",
                "30",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=agent_env(),
        )
        for kind, lab in labs.items()
    }
    try:
        outputs = {kind: proc.communicate(timeout=240) for kind, proc in procs.items()}
    finally:
        for proc in procs.values():
            proc.kill()
    for kind, (out, err) in outputs.items():
        assert procs[kind].returncode == 0, err
        result = json.loads(out)
        assert result["method"] == "inbound-check", (kind, result)
        assert result["lo_s"] <= stream <= result["hi_s"], (kind, result)
        assert result["hi_s"] - result["lo_s"] <= max(1.0, 0.1 * result["lo_s"])
        assert result["lifetime_s"] == result["lo_s"]
        assert result["recommended_interval_s"] == pytest.approx(0.8 * result["lo_s"], abs=0.01)
        assert err.count("trial: idle") == result["trials"]  # a progress line per trial


def test_discover_with_stun_behind_a_port_preserving_nat_and_a_server_forcing_rport(
    make_lab: Callable[[], Lab], lan_agent: Callable[[Lab, Path], Agent]
) -> None:
    """Debian's stock Kamailio forces rport and does not relay, and a port-preserving NAT keeps
    the port: only the STUN check (coturn with two addresses, RFC 5780 on) can tell a survived
    binding from a new one. Three labs at once: with --stun-server the lifetime (stream timeout
    7 s) is bracketed by stun-check trials; without, discover says it cannot and names
    stun_server; the daemon with `interval: auto` and `stun_server` measures it too. About 90 s."""
    stream = 7
    auto_lab = make_lab()
    auto_lab.set_nat(random=False)
    auto_lab.set_udp_timeouts(4, stream)
    auto_server = stacks.start_stack(auto_lab, "kamailio-stock")
    auto_coturn = start_coturn(auto_lab)
    config = Path(auto_lab.tmpdir) / "auto.yaml"
    config.write_text(
        "log: {target: stderr, level: debug}\n"
        "defaults: {interval: auto, interval_min: 2, interval_max: 10, safety: 0.9,\n"
        "           timeout: 1.0, retry_interval: 1,\n"
        f"           stun_server: '{netlab.SERVER_IP}:{auto_coturn.port}'}}\n"
        "bindings:\n"
        f"  - {{name: provider, server: '{netlab.SERVER_IP}:{auto_server.port}', "
        "source_port: 5062}\n"
    )
    agent = lan_agent(auto_lab, config)
    labs = {}
    for with_stun in (True, False):
        lab = make_lab()
        lab.set_nat(random=False)
        lab.set_udp_timeouts(4, stream)
        server = stacks.start_stack(lab, "kamailio-stock")
        extra: list[str] = []
        if with_stun:
            coturn = start_coturn(lab)
            extra = ["--stun-server", f"{netlab.SERVER_IP}:{coturn.port}"]
        labs[with_stun] = subprocess.Popen(
            [
                *in_lan(lab),
                sys.executable,
                "-m",
                "natkeepalive",
                "discover",
                f"{netlab.SERVER_IP}:{server.port}",
                "--json",
                "--start",
                "4",
                "--resolution",
                "1",
                "--max-idle",
                "30",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=agent_env(),
        )
    try:
        outputs = {key: proc.communicate(timeout=300) for key, proc in labs.items()}
    finally:
        for proc in labs.values():
            proc.kill()
    out, err = outputs[True]
    assert labs[True].returncode == 0, err
    result = json.loads(out)
    assert result["method"] == "stun-check", (result, err)
    assert result["lo_s"] <= stream <= result["hi_s"], (result, err)
    assert result["hi_s"] - result["lo_s"] <= 1.0
    # one trial each for the sent-by and the relayed check, which this server cannot answer
    assert "(inbound-check" in err and "(relay-check" in err, err
    print(result, err)  # the figures docs/how-it-works.md gives (pytest -rP shows them)
    out, err = outputs[False]
    assert labs[False].returncode == 1, err
    result = json.loads(out)
    assert result["lifetime_s"] is None and "stun_server" in result["error"], result
    found = agent.wait_for("lifetime-discovered", timeout=150)
    lo, hi = float(found["lo_s"] or 0), float(found["hi_s"] or 0)
    assert lo <= stream <= hi and hi - lo <= max(0.25, 0.05 * lo), found
    assert "lifetime-discovery-failed" not in agent.names()
    print("interval: auto", found)


@pytest.fixture
def lan_agent() -> Iterator[Callable[[Lab, Path], Agent]]:
    agents: list[Agent] = []

    def start(lab: Lab, config: Path) -> Agent:
        agent = Agent(config, Path(lab.tmpdir) / "status.json", prefix=in_lan(lab))
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.kill()


def test_auto_interval_holds_the_binding_then_falls_back_and_rediscovers(
    make_lab: Callable[[], Lab], lan_agent: Callable[[Lab, Path], Agent]
) -> None:
    """Random-port NAT (an expiry always shows as a new port), initial 4 s, stream 5 s.
    1. Discovery from 2 s idle on spare ports (about a minute) sets the interval to 0.9 x lifetime.
    2. Ten lifetimes (50 s) on that interval: no expiry on it, keepalives spaced at least
       lifetime / 1.3 apart. The keepalive sent on the safe 10 s before the adaptation may find the
       binding gone (it was idle longer than the lifetime): that expiry is reported and changes
       nothing.
    3. The NAT's lifetime drops to 3 s: the next keepalive finds the binding expired, the interval
       falls back to the safe 10 s at once, and a new discovery finds the shorter lifetime."""
    lifetime = 5.0
    lab = kamailio_lab(make_lab, True, 4, int(lifetime))
    config = Path(lab.tmpdir) / "auto.yaml"
    config.write_text(
        "log: {target: stderr, level: debug}\n"
        "defaults: {interval: auto, interval_min: 2, interval_max: 10, safety: 0.9, jitter: 0.2,\n"
        "           timeout: 1.0, retry_interval: 1, inbound_check: 0}\n"
        "bindings:\n"
        f"  - {{name: provider, server: '{KAMAILIO}', source_port: 5062}}\n"
    )
    agent = lan_agent(lab, config)
    found = agent.wait_for("lifetime-discovered", timeout=150)
    lo, hi = float(found["lo_s"] or 0), float(found["hi_s"] or 0)
    assert lo <= lifetime <= hi and hi - lo <= max(0.25, 0.05 * lo)
    adjusted = agent.wait_for("interval-adjusted", reason="lifetime-discovered")
    assert float(adjusted["new_s"] or 0) == pytest.approx(0.9 * lo, abs=0.01)
    assert float(adjusted["old_s"] or 0) == 10.0
    start, started = next(
        (i, t)
        for i, t, name, fields in agent.timeline()
        if name == "interval-adjusted" and fields["reason"] == "lifetime-discovered"
    )
    time.sleep(10 * lifetime)  # the run itself: real time in a real NAT is what is measured
    hold = [(t, name, fields) for i, t, name, fields in agent.timeline() if i > start]
    log = "\n".join(agent.lines[start:])
    expired = [fields for _, name, fields in hold if name == "binding-expired"]
    assert len(expired) <= 1 and all(float(f["idle_s"] or 0) >= lo for f in expired), log
    assert not [f for _, name, f in hold if name == "interval-adjusted"], log
    # the spacing counts once a leftover expiry's new flow has had its promoting keepalive
    steady = max(
        [t + PROMOTE_DELAY + 0.5 for t, name, _ in hold if name == "binding-changed"],
        default=started,
    )
    sends = [
        t
        for t, name, fields in hold
        if name == "probe-sent" and fields["kind"] == "keepalive" and t >= steady
    ]
    assert len(sends) >= 6, log
    spacing = (sends[-1] - sends[0]) / (len(sends) - 1)
    assert spacing >= lifetime / 1.3, (spacing, log)
    print(
        f"auto: keepalives {spacing:.2f} s apart = {lifetime / spacing:.2f} per lifetime "
        f"(physical minimum 1.00); interval {adjusted['new_s']} s; "
        f"{len(expired)} expiry left over from the safe interval"
    )
    status = json.loads(agent.status.read_text())["bindings"][0] if agent.status.exists() else {}
    assert status.get("lifetime_s") in (None, lo)
    expired_before = len(agent.events("binding-expired"))

    lab.set_udp_timeouts(4, 3)  # the NAT now forgets idle bindings after 3 s
    agent.wait_for("binding-expired", timeout=20, count=expired_before + 1)
    agent.wait_for("interval-adjusted", reason="binding-expired", timeout=5)
    again = agent.wait_for("lifetime-discovered", count=2, timeout=150)
    assert float(again["lo_s"] or 0) <= 3.0 <= float(again["hi_s"] or 0)
    readjusted = agent.wait_for("interval-adjusted", reason="lifetime-discovered", count=2)
    assert float(readjusted["new_s"] or 0) < 3.0
    agent.stop()
