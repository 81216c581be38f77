"""packaging/systemd/nat-keepalive.service: the hardening the issue asks for, `systemd-analyze
verify` clean and `systemd-analyze security` exposure at most 2.0 (both offline: no systemd
needs to run here)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support.tools import require_tool

UNIT = Path(__file__).resolve().parents[2] / "packaging" / "systemd" / "nat-keepalive.service"
MAX_EXPOSURE = 2.0


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_unit_has_the_required_settings() -> None:
    d = directives()
    one = {key: values[-1] for key, values in d.items()}
    assert one["Type"] == "notify"
    assert float(one["WatchdogSec"]) > 0
    assert one["Restart"] == "on-failure" and float(one["RestartSec"]) > 0
    assert one["DynamicUser"] == "yes"
    assert one["RuntimeDirectory"] == "nat-keepalive"
    assert one["ProtectSystem"] == "strict"
    assert one["ProtectHome"] == "yes"
    assert one["PrivateTmp"] == "yes"
    assert one["NoNewPrivileges"] == "yes"
    assert one["CapabilityBoundingSet"] == ""
    assert one["RestrictAddressFamilies"].split() == [
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
    ]
    assert one["SystemCallArchitectures"] == "native"
    assert d["SystemCallFilter"][0] == "@system-service"
    # a reload checks the file first (a bad one fails the reload), then signals the agent
    assert d["ExecReload"] == [
        "/usr/bin/nat-keepalive check",
        "/bin/sh -c 'kill -HUP \"$1\"' reload $MAINPID",
    ]
    assert "2" in one["RestartPreventExitStatus"].split()
    start = one["ExecStart"].split()
    assert start[:4] == ["/usr/bin/nat-keepalive", "run", "--log", "stderr"]
    status = start[start.index("--status-file") + 1]
    assert status.startswith("/run/nat-keepalive/"), "the status file lives in RuntimeDirectory"
    assert "ProcSubset" not in d, "the agent reads /proc/net/route and /proc/net/if_inet6"
    assert one["WantedBy"] == "multi-user.target"


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    # verify insists that ExecStart exists: point it at a stand-in, change nothing else.
    stub = tmp_path / "nat-keepalive"
    stub.write_text("#!/bin/sh\n", encoding="utf-8")
    stub.chmod(0o755)
    unit = tmp_path / "nat-keepalive.service"
    unit.write_text(
        UNIT.read_text(encoding="utf-8").replace("/usr/bin/nat-keepalive", str(stub)),
        encoding="utf-8",
    )
    # --man=no: the man page is installed by the .deb, not present here.
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), (
        done.stdout + done.stderr
    )


def exposure() -> float:
    analyze = require_tool("systemd-analyze")
    done = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for nat-keepalive\.service: ([0-9.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    return float(match.group(1))


def test_systemd_analyze_security_exposure() -> None:
    level = exposure()
    print(f"systemd-analyze security: exposure {level}")
    assert level <= MAX_EXPOSURE
