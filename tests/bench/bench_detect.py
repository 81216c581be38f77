"""7. Detection latency in the NAT lab (tests/lab/netlab.py: a Linux NAT in namespaces, Kamailio
as the server): from the moment something happens to the event in the agent's log, beside the
configured interval. Each action is taken at a random phase of the keepalive cycle (a uniform
wait after an answered probe), so the figures sample the whole cycle.

- NAT reboot on a NAT that picks random ports (`masquerade random`, conntrack flushed):
  `binding-changed` (the next keepalive is mapped to a new port, confirmed by a second probe).
- ISP re-addressing (the router's public address changes): `binding-changed cause=address-changed`.
- NAT reboot on a port-preserving NAT (`masquerade`): the next keepalive gets the same port, so
  only the inbound check can tell; with `inbound_check: 1` (every cycle) it is
  `binding-expired detected=inbound-check`. With the default (every 10th cycle) a reboot is
  seen only when the first cycle after it carries the check: about 1 time in 10.
- Server stop (Kamailio killed): `unreachable` after `fail_threshold` (2) unanswered probes
  (the first agent: inbound_check 0, so no check adds its timeout to a cycle).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

from tests.bench import common as c
from tests.lab.netlab import Lab

NAME = "detect"
TITLE = "7. Detection latency (NAT lab)"
LAN_PORT = 5062


def run(ctx: c.Context) -> None:
    interval, timeout = (1.0, 0.5) if ctx.quick else (8.0, 3.0)
    section = ctx.section(
        NAME,
        TITLE,
        (
            f"interval {interval:g} s (jitter 0.2), timeout {timeout:g} s, fail_threshold 2; "
            f"action at a uniform random phase of the cycle; latency = event line read − action "
            f"done."
        ),
    )
    rng = random.Random()
    results: dict[str, list[float]] = defaultdict(list)
    for run_index in range(ctx.runs):
        workdir = ctx.subdir(f"detect-{run_index}")
        with Lab() as lab, c.Procs() as procs:
            lab.start_kamailio(binary=c.tool("kamailio"))
            lab.set_nat(random=True)
            agent = _agent(ctx, lab, procs, workdir / "a", interval, timeout, inbound_check=0)
            agent.wait_line(c.is_event("reachable"), timeout=30)
            results["reboot, random-port NAT → binding-changed"].append(
                _measure(
                    agent,
                    rng,
                    interval,
                    lab.flush_conntrack,
                    c.is_event("binding-changed"),
                    interval * 3 + 10,
                )
            )
            if not ctx.quick:
                results["re-addressing → binding-changed (address-changed)"].append(
                    _measure(
                        agent,
                        rng,
                        interval,
                        lambda: lab.readdress_router("203.0.113.2"),
                        c.is_event("binding-changed", cause="address-changed"),
                        interval * 3 + 10,
                    )
                )
            results["server stop → unreachable"].append(
                _measure(
                    agent,
                    rng,
                    interval,
                    lab.stop_kamailio,
                    c.is_event("unreachable"),
                    interval * 4 + timeout * 2 + 10,
                )
            )
            if not ctx.quick:
                procs.stop(agent)
                lab.start_kamailio(binary=c.tool("kamailio"))
                lab.set_nat(random=False)
                agent = _agent(ctx, lab, procs, workdir / "b", interval, timeout, inbound_check=1)
                agent.wait_line(c.is_event("probe-sent", kind="inbound"), timeout=30)
                agent.wait_line(c.is_event("probe-answered"), timeout=30, count=3)
                key = "reboot, port-preserving NAT → binding-expired (inbound_check 1)"
                results[key].append(
                    _measure(
                        agent,
                        rng,
                        interval,
                        lab.flush_conntrack,
                        c.is_event("binding-expired", detected="inbound-check"),
                        interval * 3 + timeout * 2 + 10,
                    )
                )
    for name, values in results.items():
        ctx.figure(section, name, values, "s", f"interval {interval:g} s", digits=2)
    ctx.note(
        section,
        (
            "Expected bounds: a change is seen at the next keepalive (≤ interval) plus its "
            "confirmation (one RTT); an inbound-check expiry at the next cycle plus the check's "
            f"timeout ({timeout:g} s); `unreachable` after two unanswered keepalives: up to "
            "2 × interval + timeout."
        ),
    )


def _agent(
    ctx: c.Context,
    lab: Lab,
    procs: c.Procs,
    workdir: Path,
    interval: float,
    timeout: float,
    inbound_check: int,
) -> c.Proc:
    workdir.mkdir(parents=True, exist_ok=True)
    status = workdir / "status.json"
    config = c.agent_config(
        workdir / "agent.yaml",
        count=0,
        base_port=LAN_PORT,
        status=status,
        level="debug",
        interval=interval,
        timeout=timeout,
        inbound_check=inbound_check,
        retry_interval=interval,
    )
    with config.open("a") as handle:
        handle.write(f"  - {{name: lab, server: '203.0.113.10:5060', source_port: {LAN_PORT}}}\n")
    namespace = lab.ns["lan"]
    return procs.start(
        [c.tool("ip"), "netns", "exec", namespace, *ctx.agent_argv(config, status)],
        env=ctx.env(),
        capture=True,
        name="agent",
    )


def _measure(
    agent: c.Proc,
    rng: random.Random,
    interval: float,
    action: Callable[[], object],
    event: Callable[[str], bool],
    timeout: float,
) -> float:
    """Seconds from `action()` returning to the first matching line after it."""
    answered = agent.wait_line(
        c.is_event("probe-answered"), timeout=interval * 3 + 10, after=time.monotonic()
    )
    time.sleep(max(0.0, answered + rng.uniform(0, interval) - time.monotonic()))
    action()
    done = time.monotonic()
    seen = agent.wait_line(event, timeout=timeout, after=done)
    return seen - done
