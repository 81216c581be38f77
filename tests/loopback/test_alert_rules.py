"""The shipped alert rules: valid for Prometheus (`promtool check rules`) and firing when they
should on made-up series (`promtool test rules`), with Debian's promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "examples" / "prometheus" / "nat-keepalive-alerts.yml"
RULE_TESTS = ROOT / "tests" / "data" / "nat-keepalive-alerts.test.yml"


def test_promtool_checks_the_alert_rules() -> None:
    promtool = require_tool("promtool")
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 4 rules found" in done.stdout


def test_the_alerts_fire_on_the_right_series() -> None:
    promtool = require_tool("promtool")
    done = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
