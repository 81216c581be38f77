"""The agent inside the lab's `lan` namespace, through agentwrap.py (test-only adjustments)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.lab.netlab import Lab
from tests.reliability.common import WRAP
from tests.support.agentproc import Agent
from tests.support.tools import find_tool

KAMAILIO = "203.0.113.10:5060"
SOURCE_PORT = 5062


def lab_config(lab: Lab, log: str = "{target: stderr, level: debug}", **over: Any) -> Path:
    values: dict[str, Any] = {
        "interval": 1.0,
        "jitter": 0.0,
        "timeout": 1.0,
        "retry_interval": 1.0,
        "fail_threshold": 2,
        "inbound_check": 0,
    }
    values.update(over)
    lines = [f"log: {log}", "defaults:"]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in values.items()]
    lines += [
        "bindings:",
        "  - name: provider",
        f"    server: {KAMAILIO}",
        f"    source_port: {SOURCE_PORT}",
    ]
    path = Path(lab.tmpdir) / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def lab_agent(
    lab: Lab, config: Path, netwatch: float = 2.0, log_from_config: bool = False
) -> Agent:
    """netwatch: the daemon's NETWATCH_EVERY; log_from_config: log where the file says, not to
    stderr (stderr then only has what the syslog sink could not deliver)."""
    ip = find_tool("ip") or "/usr/sbin/ip"
    env = {"NK_TEST_SET": f"natkeepalive.runtime.housekeeping.NETWATCH_EVERY={netwatch}"}
    if log_from_config:
        env["NK_TEST_LOG_FROM_CONFIG"] = "1"
    return Agent(
        config,
        Path(lab.tmpdir) / "status.json",
        prefix=(ip, "netns", "exec", lab.ns["lan"], *WRAP),
        env=env,
    )
