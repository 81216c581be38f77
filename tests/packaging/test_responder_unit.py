"""packaging/systemd/nat-keepalive-responder.service: `systemd-analyze verify` clean, exposure at
most 2.0, and the command line it runs is one the real parser accepts (both offline)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from natkeepalive.cli.commands import build_parser
from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "packaging" / "systemd" / "nat-keepalive-responder.service"


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_the_default_command_line_parses() -> None:
    d = directives()
    start = d["ExecStart"][-1].split()
    assert start[:2] == ["/usr/bin/nat-keepalive", "responder"]
    assert start[2] == "$NAT_KEEPALIVE_RESPONDER_OPTS"
    [default] = [v for v in d["Environment"] if v.startswith("NAT_KEEPALIVE_RESPONDER_OPTS=")]
    args = build_parser().parse_args(["responder", *shlex.split(default.split("=", 1)[1])])
    assert args.listen == [("0.0.0.0", 3478)]
    assert d["EnvironmentFile"] == ["-/etc/default/nat-keepalive-responder"]
    assert d["DynamicUser"] == ["yes"] and d["CapabilityBoundingSet"] == [""]
    assert "2" in d["RestartPreventExitStatus"][-1].split()


def test_verify_is_clean(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    stub = tmp_path / "nat-keepalive"
    stub.write_text("#!/bin/sh\n", encoding="utf-8")
    stub.chmod(0o755)
    unit = tmp_path / UNIT.name
    unit.write_text(
        UNIT.read_text(encoding="utf-8").replace("/usr/bin/nat-keepalive", str(stub)),
        encoding="utf-8",
    )
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), (
        done.stdout + done.stderr
    )


def test_exposure() -> None:
    analyze = require_tool("systemd-analyze")
    done = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(
        r"Overall exposure level for nat-keepalive-responder\.service: ([0-9.]+)", done.stdout
    )
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= 2.0
