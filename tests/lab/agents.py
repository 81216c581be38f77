"""The agent in the NAT lab and what the lab tests share about it: the ports and servers of the
lab, the settings that keep a binding alive, the agent in the `lan` namespace, its configuration
file, and the router's mapping of its flow. The fixture that starts agents is in
tests/lab/fixtures.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from tests.lab import netlab
from tests.lab.netlab import Lab
from tests.support.agentproc import Agent
from tests.support.tools import find_tool

SOURCE_PORT = 5062
KAMAILIO = f"{netlab.SERVER_IP}:5060"
SIPP = f"{netlab.SERVER_IP}:5070"
PUBLIC_2 = "203.0.113.2"
LAN_2 = "192.168.77.3"
MARGIN = 0.5  # seconds of scheduling slack on a busy 2-core machine

# Kept alive: keepalives well inside the NAT timeout. Each cycle is an inbound check + keepalive.
KEPT = {
    "interval": 3,
    "jitter": 0.2,
    "timeout": 1.0,
    "retry_interval": 1,
    "fail_threshold": 2,
    "inbound_check": 1,
}

Fields = dict[str, Optional[str]]


class TimedAgent(Agent):
    """The agent in the lab's `lan` namespace (Agent keeps each line's arrival time)."""

    def __init__(self, lab: Lab, config: Path) -> None:
        ip = find_tool("ip") or "/usr/sbin/ip"
        super().__init__(
            config, Path(lab.tmpdir) / "status.json", prefix=(ip, "netns", "exec", lab.ns["lan"])
        )

    def count(self, name: str, **fields: Any) -> int:
        return len(
            [f for _, f in self.events(name) if all(f.get(k) == str(v) for k, v in fields.items())]
        )

    def binding(self) -> dict[str, Any]:
        entry: dict[str, Any] = json.loads(self.status.read_text())["bindings"][0]
        return entry


def write_config(
    lab: Lab,
    settings: dict[str, Any],
    *,
    server: str = KAMAILIO,
    binding: dict[str, Any] | None = None,
    log: str = "{target: stderr, level: debug}",
    name: str = "config.yaml",
) -> Path:
    lines = [f"log: {log}", "defaults:"]
    lines += [f"  {key}: {json.dumps(value)}" for key, value in settings.items()]
    lines += [
        "bindings:",
        "  - name: provider",
        f"    server: {server}",
        f"    source_port: {SOURCE_PORT}",
    ]
    lines += [f"    {key}: {json.dumps(value)}" for key, value in (binding or {}).items()]
    path = Path(lab.tmpdir) / name
    path.write_text("\n".join(lines) + "\n")
    return path


def nat_mapping(lab: Lab, sport: int = SOURCE_PORT, dport: int = 5060) -> tuple[str, int] | None:
    """The public address:port the router gave the flow lan_ip:sport -> server:dport, from the
    reply tuple of its conntrack entry."""
    for line in lab.udp_entries():
        fields = line.split()
        values: dict[str, list[str]] = {}
        for field in fields:
            key, _, value = field.partition("=")
            values.setdefault(key, []).append(value)
        if (
            values.get("src", [""])[0] == lab.lan_ip
            and values.get("sport")
            and values["sport"][0] == str(sport)
            and values["dport"][0] == str(dport)
        ):
            return values["dst"][1], int(values["dport"][1])
    return None
