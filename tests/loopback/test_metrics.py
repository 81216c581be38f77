"""The metrics file as node_exporter's textfile collector reads it: the real daemon against the
real UDP responder on 127.0.0.1, the file checked by Prometheus' own `promtool check metrics`."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from natkeepalive.logline import parse_line
from tests.support.agentproc import Agent, run_cli
from tests.support.helpers import LOOPBACK_TIMERS, free_port, write_config
from tests.support.promtext import label_sets, parse, value
from tests.support.responder import SipResponder
from tests.support.tools import require_tool

PREFIX = "nat_keepalive_"


def with_metrics(config: Path, metrics: Path) -> Path:
    config.write_text(f"metrics_file: {metrics}\n" + config.read_text())
    return config


def fresh(agent: Agent, metrics: Path) -> dict:  # type: ignore[type-arg]
    """Ask for a write (SIGUSR1) and read the file once the daemon has replaced it."""
    before = metrics.stat().st_ino if metrics.exists() else None
    agent.signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if metrics.exists() and metrics.stat().st_ino != before:
            return parse(metrics.read_text())
        time.sleep(0.05)
    raise AssertionError("the metrics file was not rewritten")


def test_metrics_follow_the_binding_and_survive_a_reload(
    tmp_path: Path, responder: SipResponder
) -> None:
    port, other = free_port(), free_port()
    metrics = tmp_path / "textfile" / "nat-keepalive.prom"
    config = with_metrics(
        write_config(tmp_path / "c.yaml", [("provider", responder.address, port)], LOOPBACK_TIMERS),
        metrics,
    )
    with Agent(config, tmp_path / "status.json") as agent:
        agent.wait_for("reachable")
        responder.configure(rport=port + 1)
        agent.wait_for("binding-changed", cause="port-remapped")
        samples = fresh(agent, metrics)
        labels = {"binding": "provider", "server": f"127.0.0.1:{responder.address[1]}"}
        assert value(samples, PREFIX + "binding_state", state="reachable", **labels) == 1
        for state in ("unknown", "lagged", "unreachable"):
            assert value(samples, PREFIX + "binding_state", state=state, **labels) == 0
        assert (
            value(samples, PREFIX + "binding_changes_total", cause="port-remapped", **labels) == 1
        )
        assert (
            value(samples, PREFIX + "binding_changes_total", cause="address-changed", **labels) == 0
        )
        assert value(samples, PREFIX + "binding_expiries_total", detected="remap", **labels) == 1
        info = label_sets(samples, PREFIX + "binding_info")
        assert [i["public"] for i in info] == [f"127.0.0.1:{port + 1}"]
        # the public address is on the info metric only
        for name, pairs in samples:
            if name != PREFIX + "binding_info":
                assert "public" not in dict(pairs), name
        rtt = value(samples, PREFIX + "rtt_seconds", **labels)
        assert 0 < rtt < 1.0
        assert value(samples, PREFIX + "interval_seconds", **labels) == 1.5
        answered = value(samples, PREFIX + "last_answer_timestamp_seconds", **labels)
        assert abs(answered - time.time()) < 10
        started = value(samples, PREFIX + "start_time_seconds")
        assert abs(started - time.time()) < 60
        assert label_sets(samples, PREFIX + "build_info")[0]["version"]
        sent = value(samples, PREFIX + "probes_sent_total", **labels)
        answers = value(samples, PREFIX + "answers_total", **labels)
        assert sent >= answers >= 3

        # a reload that adds a binding keeps the unchanged one's counters
        write_config(
            config,
            [("provider", responder.address, port), ("backup", responder.address, other)],
            LOOPBACK_TIMERS,
        )
        with_metrics(config, metrics)
        agent.signal(signal.SIGHUP)
        agent.wait_for("reloaded")
        agent.wait_for("binding-learned", binding="backup")
        after = fresh(agent, metrics)
        assert value(after, PREFIX + "probes_sent_total", **labels) >= sent
        assert value(after, PREFIX + "answers_total", **labels) >= answers
        assert value(after, PREFIX + "binding_changes_total", cause="port-remapped", **labels) == 1
        assert (
            value(after, PREFIX + "binding_expiries_total", binding="backup", detected="remap") == 0
        )
        assert agent.stop() == 0
    assert not metrics.exists()  # a stopped agent is not exported as current
    assert [p.name for p in metrics.parent.iterdir()] == []  # no temporary file left


def test_promtool_finds_the_file_clean(tmp_path: Path, responder: SipResponder) -> None:
    promtool = require_tool("promtool")
    metrics = tmp_path / "nat-keepalive.prom"
    config = with_metrics(
        write_config(
            tmp_path / "c.yaml",
            [
                ("provider", responder.address, free_port()),
                ("backup", ("127.0.0.1", free_port()), free_port()),
            ],
            LOOPBACK_TIMERS,
            inbound_check=1,
        ),
        metrics,
    )
    with Agent(config, tmp_path / "status.json") as agent:
        agent.wait_for("reachable", binding="provider")
        agent.wait_for("unreachable", binding="backup")
        samples = fresh(agent, metrics)
        text = metrics.read_text()
        agent.stop()
    assert value(samples, PREFIX + "binding_state", binding="backup", state="unreachable") == 1
    assert value(samples, PREFIX + "timeouts_total", binding="backup") >= 2
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "" and check.stderr.strip() == ""


@pytest.mark.parametrize(
    "given, error",
    [
        ("metrics/nat.prom", "must be an absolute path"),
        ("/var/lib/prometheus/node-exporter/nat.txt", "must name a file ending in .prom"),
    ],
)
def test_a_bad_metrics_file_is_a_clear_error(tmp_path: Path, given: str, error: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"metrics_file: {given}\nbindings:\n  - name: a\n    server: 192.0.2.1\n"
        "    source_port: 5062\n"
    )
    result = run_cli("check", "-c", str(config))
    assert result.returncode != 0
    assert error in result.stderr and "metrics_file" in result.stderr


def test_a_metrics_file_that_cannot_be_written_is_said_once(
    tmp_path: Path, responder: SipResponder
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    metrics = blocker / "nat-keepalive.prom"
    config = with_metrics(
        write_config(
            tmp_path / "c.yaml", [("provider", responder.address, free_port())], LOOPBACK_TIMERS
        ),
        metrics,
    )
    with Agent(config, tmp_path / "status.json") as agent:
        agent.wait_for("reachable")
        for _ in range(3):
            agent.signal(signal.SIGUSR1)
        agent.wait_for("probe-answered", count=len(agent.events("probe-answered")) + 2)
        assert agent.stop() == 0
    said = [line for line in agent.lines if "event=metrics-write-failed " in line]
    assert len(said) == 1, said
    assert parse_line(said[0])[1]["file"] == str(metrics)
    assert (tmp_path / "status.json").exists()  # the status file is not held up by it
