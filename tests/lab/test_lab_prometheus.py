"""The metrics file read the way a fleet reads it: the agent behind the lab's real NAT writes
it, Debian's node_exporter exports it through its textfile collector, Debian's Prometheus scrapes
that every second, and the test asks Prometheus with PromQL after a NAT reboot (conntrack -F).

Timings: random-port NAT, timeouts 5 s / 5 s; interval 3 s, jitter 0.2, timeout 1 s. Two
bindings: `provider` to Kamailio, `down` to a port where nothing answers. The file is linked
into the textfile directory from the agent's runtime directory, as docs/monitoring.md tells
Debian users to do (systemd lets the agent write only there)."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.lab import netlab
from tests.lab.agents import KAMAILIO, KEPT, SOURCE_PORT, TimedAgent, nat_mapping
from tests.lab.netlab import Lab
from tests.support.promstack import PromStack
from tests.support.tools import require_tool

pytestmark = pytest.mark.lab

DOWN_PORT = 5099
P = "nat_keepalive_"


def test_prometheus_reads_state_changes_and_rtt_after_a_nat_reboot(
    kamailio_lab: Lab, start_agent: Callable[[Lab, Path], TimedAgent]
) -> None:
    began = time.monotonic()
    lab = kamailio_lab
    lab.set_nat(random=True)
    lab.set_udp_timeouts(5, 5)
    textfile = Path(lab.tmpdir) / "textfile"
    textfile.mkdir()
    runtime = Path(lab.tmpdir) / "run"
    runtime.mkdir()
    (textfile / "nat-keepalive.prom").symlink_to(runtime / "nat-keepalive.prom")
    settings = dict(KEPT, inbound_check=0)
    config = Path(lab.tmpdir) / "config.yaml"
    config.write_text(
        "\n".join(
            [
                "log: {target: stderr, level: debug}",
                f"metrics_file: {runtime / 'nat-keepalive.prom'}",
                "defaults:",
                *(f"  {key}: {json.dumps(value)}" for key, value in settings.items()),
                "bindings:",
                "  - name: provider",
                f"    server: {KAMAILIO}",
                f"    source_port: {SOURCE_PORT}",
                "  - name: down",
                f"    server: {netlab.SERVER_IP}:{DOWN_PORT}",
                f"    source_port: {SOURCE_PORT + 2}",
            ]
        )
        + "\n"
    )
    with PromStack(textfile) as prom:
        agent = start_agent(lab, config)
        learned = agent.wait_for("binding-learned", binding="provider", timeout=5)
        agent.wait_for("probe-answered", count=2, timeout=6)
        provider = f'binding="provider",server="{KAMAILIO}"'
        prom.wait_value(f'{P}binding_state{{{provider},state="reachable"}}', 1)
        prom.wait_value(f'{P}binding_changes_total{{{provider},cause="port-remapped"}}', 0)

        lab.flush_conntrack()  # the NAT reboots: the next keepalive gets a new port
        changed = agent.wait_for("binding-changed", binding="provider", timeout=10)
        assert changed["old"] == learned["public"]
        agent.wait_for("unreachable", binding="down", timeout=15)
        agent.signal(signal.SIGUSR1)

        prom.wait_value(f'{P}binding_changes_total{{{provider},cause="port-remapped"}}', 1)
        assert prom.value(f'{P}binding_changes_total{{{provider},cause="address-changed"}}') == 0
        assert prom.value(f'{P}binding_expiries_total{{{provider},detected="remap"}}') == 1
        assert prom.value(f'{P}binding_expiries_total{{{provider},detected="inbound-check"}}') == 0
        assert prom.value(f'{P}binding_state{{{provider},state="reachable"}}') == 1
        assert prom.value(f'{P}binding_state{{{provider},state="unreachable"}}') == 0
        rtt = prom.value(f"{P}rtt_seconds{{{provider}}}")
        assert rtt is not None and 0 < rtt < 0.5, rtt  # veth pairs on one host
        # the public mapping Prometheus sees is the one in the router's conntrack now
        mapping = nat_mapping(lab)
        assert mapping is not None
        public = f"{mapping[0]}:{mapping[1]}"
        assert public == changed["new"]
        info = prom.query(f"{P}binding_info{{{provider}}}")
        assert [i["metric"]["public"] for i in info] == [public]
        # one series per binding on every counter: the mapping never became a label there
        assert len(prom.query(f"{P}answers_total{{{provider}}}")) == 1
        answers = prom.value(f"{P}answers_total{{{provider}}}")
        sent = prom.value(f"{P}probes_sent_total{{{provider}}}")
        assert answers is not None and sent is not None and sent >= answers >= 3
        last = prom.value(f"time() - {P}last_answer_timestamp_seconds{{{provider}}}")
        assert last is not None and -2 < last < 10, last

        down = f'binding="down",server="{netlab.SERVER_IP}:{DOWN_PORT}"'
        assert prom.value(f'{P}binding_state{{{down},state="unreachable"}}') == 1
        timeouts = prom.value(f"{P}timeouts_total{{{down}}}")
        assert timeouts is not None and timeouts >= 2
        assert prom.value(f"{P}rtt_seconds{{{down}}}") is None  # never answered
        assert prom.value(f'count({P}binding_state{{state="reachable"}} == 1)') == 1
        # node_exporter read the file without complaint
        assert prom.value("node_textfile_scrape_error") == 0
        assert prom.value('up{job="node"}') == 1
        assert agent.stop() == 0
        # a stopped agent removes its file: its metrics go, the dangling link is an error
        prom.wait_value("node_textfile_scrape_error", 1)
        prom.wait_empty(f"{P}build_info")
    print(f"NAT lab + node_exporter + Prometheus: {time.monotonic() - began:.1f} s wall time")


def test_prometheus_counts_an_inbound_check_expiry_and_a_server_outage(
    kamailio_lab: Lab, start_agent: Callable[[Lab, Path], TimedAgent]
) -> None:
    """Port-preserving NAT (masquerade), an inbound check before every keepalive: the NAT reboot
    is found by the check (the keepalive after it gets the same port: no change); then Kamailio
    stops until the binding is `unreachable`, and comes back."""
    began = time.monotonic()
    lab = kamailio_lab
    lab.set_nat(random=False)
    lab.set_udp_timeouts(5, 5)
    textfile = Path(lab.tmpdir) / "textfile"
    config = Path(lab.tmpdir) / "config.yaml"
    config.write_text(
        "\n".join(
            [
                "log: {target: stderr, level: debug}",
                f"metrics_file: {textfile / 'nat-keepalive.prom'}",  # the agent makes the directory
                "defaults:",
                *(f"  {key}: {json.dumps(value)}" for key, value in KEPT.items()),
                "bindings:",
                "  - name: provider",
                f"    server: {KAMAILIO}",
                f"    source_port: {SOURCE_PORT}",
            ]
        )
        + "\n"
    )
    provider = f'binding="provider",server="{KAMAILIO}"'
    agent = start_agent(lab, config)
    agent.wait_for("binding-learned", timeout=5)
    agent.wait_for("probe-answered", count=2, timeout=6)
    with PromStack(textfile) as prom:
        prom.wait_value(f'{P}binding_state{{{provider},state="reachable"}}', 1)
        lab.flush_conntrack()
        expired = agent.wait_for("binding-expired", timeout=10)
        assert expired["detected"] == "inbound-check"
        prom.wait_value(f'{P}binding_expiries_total{{{provider},detected="inbound-check"}}', 1)
        assert prom.value(f'{P}binding_expiries_total{{{provider},detected="remap"}}') == 0
        assert prom.value(f"sum({P}binding_changes_total{{{provider}}})") == 0

        lab.stop_kamailio()
        agent.wait_for("unreachable", timeout=15)
        prom.wait_value(f'{P}binding_state{{{provider},state="unreachable"}}', 1)
        assert prom.value(f'{P}binding_state{{{provider},state="reachable"}}') == 0
        timeouts = prom.value(f"{P}timeouts_total{{{provider}}}")
        assert timeouts is not None and timeouts >= 2
        lab.start_kamailio(binary=require_tool("kamailio"))
        agent.wait_for("reachable", count=2, timeout=10)
        prom.wait_value(f'{P}binding_state{{{provider},state="reachable"}}', 1)
        checks = agent.count("probe-sent", kind="inbound")
        agent.wait_for("probe-sent", kind="inbound", count=checks + 1, timeout=6)
        agent.wait_for("probe-answered", count=len(agent.events("probe-answered")) + 1, timeout=5)
        agent.signal(signal.SIGUSR1)
        prom.wait_value(f'{P}inbound_check{{{provider},result="alive"}}', 1)
        rtt = prom.value(f"{P}rtt_seconds{{{provider}}}")
        assert rtt is not None and 0 < rtt < 0.5, rtt
        assert (
            prom.value(f'{P}binding_expiries_total{{{provider},detected="inbound-check"}}') == 1
        )  # the outage was the server's, not the NAT's
        assert agent.stop() == 0
    entry = agent.binding()
    assert (entry["expiries"], entry["changes"]) == (1, 0)
    print(
        f"NAT lab, inbound-check expiry and outage, read by Prometheus: "
        f"{time.monotonic() - began:.1f} s wall time"
    )
