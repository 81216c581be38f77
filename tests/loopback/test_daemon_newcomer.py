"""The agent as a new user runs it: `started` says what it uses, signals and rejected reloads
leave an event, a missing interface is reported, require_2xx says why a server counts as
unreachable, hooks run in event order, every line is an event, and `status` knows when the agent
has stopped. Real processes, a responder on loopback."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from natkeepalive.events import ALL_EVENTS
from natkeepalive.logline import parse_line
from tests.support.agentproc import Agent, run_cli
from tests.support.helpers import free_port
from tests.support.responder import SipResponder


def config(
    path: Path,
    responder: SipResponder,
    extra: str = "",
    binding: str = "",
    defaults: str = "interval: 0.5, jitter: 0, timeout: 1, inbound_check: 0",
) -> Path:
    host, port = responder.address
    path.write_text(
        f"defaults: {{{defaults}}}\n{extra}bindings:\n"
        f"  - {{name: p, server: '{host}:{port}', source_port: {free_port()}"
        f"{binding}}}\n"
    )
    return path


def every_line_is_an_event(agent: Agent) -> None:
    for line in agent.lines:
        name, _ = parse_line(line)  # raises on a line without event=
        assert name in ALL_EVENTS, line


def test_started_names_file_status_and_log_and_signals_leave_events(
    tmp_path: Path, responder: SipResponder
) -> None:
    path = config(tmp_path / "c.yaml", responder)
    status = tmp_path / "run" / "status.json"
    with Agent(path, status) as agent:
        started = agent.wait_for("started")
        assert (started["config"], started["status_file"], started["log"]) == (
            str(path),
            str(status),
            "stderr",
        )
        agent.wait_for("reachable")
        agent.signal(signal.SIGUSR1)
        agent.wait_for("signal-received", signal="SIGUSR1", action="write the status file now")
        agent.signal(signal.SIGUSR2)
        agent.wait_for("signal-received", signal="SIGUSR2", action="probe every binding now")
        path.write_text("bindings: [\n")
        agent.signal(signal.SIGHUP)
        rejected = agent.wait_for("config-rejected")
        assert rejected["outcome"] == "the previous configuration keeps running"
        assert rejected["file"] == str(path)
        assert agent.stop() == 0
    every_line_is_an_event(agent)
    # the time stamp off the journal: `2026-12-07T01:02:03+0000 notice: event=started ...`
    first = agent.lines[0]
    assert first[4] == "-" and first[10] == "T" and " notice: event=started " in first


def test_status_after_the_agent_stopped_says_it_is_not_running(
    tmp_path: Path, responder: SipResponder
) -> None:
    status = tmp_path / "status.json"
    with Agent(config(tmp_path / "c.yaml", responder), status) as agent:
        agent.wait_for("reachable")
        running = run_cli("status", "--status-file", str(status))
        assert running.returncode == 0 and "NAME" in running.stdout  # the table, while it runs
        assert agent.stop() == 0
    data = json.loads(status.read_text())
    assert data["stop_reason"] == "sigterm" and data["stopped_at"]
    done = run_cli("status", "--status-file", str(status))
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr.startswith("nat-keepalive: the agent is not running (it stopped at ")


def test_a_missing_interface_is_an_event_and_a_state(
    tmp_path: Path, responder: SipResponder
) -> None:
    status = tmp_path / "status.json"
    path = config(tmp_path / "c.yaml", responder, binding=", interface: nk-absent0")
    with Agent(path, status) as agent:
        event = agent.wait_for("no-local-address")
        assert event == {"binding": "p", "reason": "interface nk-absent0 does not exist"}
        deadline = time.monotonic() + 10
        while True:
            entry = json.loads(status.read_text())["bindings"][0] if status.exists() else {}
            if entry.get("state") == "no-local-address":
                break
            assert time.monotonic() < deadline, entry
            time.sleep(0.1)
        assert entry["problem"] == "interface nk-absent0 does not exist"
        table = run_cli("status", "--status-file", str(status)).stdout
        assert "no-local-address" in table
        time.sleep(1.0)  # a few keepalive periods: reported once per outage, not per timer
        assert len(agent.events("no-local-address")) == 1
        assert agent.stop() == 0
    every_line_is_an_event(agent)


def test_require_2xx_says_which_answer_it_refused(tmp_path: Path, responder: SipResponder) -> None:
    responder.configure(status=403, reason="Forbidden")
    path = config(
        tmp_path / "c.yaml",
        responder,
        defaults="interval: 0.3, jitter: 0, timeout: 1, inbound_check: 0, "
        "require_2xx: true, fail_threshold: 1",
    )
    with Agent(path, tmp_path / "status.json") as agent:
        event = agent.wait_for("unreachable")
        assert event["reason"] == "answered 403, not 2xx (require_2xx)"
        agent.signal(signal.SIGUSR1)
        agent.wait_for("signal-received")
        deadline = time.monotonic() + 5
        while True:
            entry = json.loads(agent.status.read_text())["bindings"][0]
            if entry["state"] == "unreachable":
                break
            assert time.monotonic() < deadline, entry
            time.sleep(0.1)
        assert entry["last_status"] == 403
        assert agent.stop() == 0


def test_hooks_run_in_event_order(tmp_path: Path, responder: SipResponder) -> None:
    record = tmp_path / "order"
    hook = tmp_path / "hook"
    hook.write_text(f'#!/bin/sh\necho "$1" >> {record}\n')
    hook.chmod(0o755)
    extra = f"hooks: {{command: {hook}, events: [binding-learned, reachable]}}\n"
    with Agent(
        config(tmp_path / "c.yaml", responder, extra=extra), tmp_path / "status.json"
    ) as agent:
        agent.wait_for("reachable")
        deadline = time.monotonic() + 10
        while not record.exists() or len(record.read_text().split()) < 2:
            assert time.monotonic() < deadline, "the hooks did not run"
            time.sleep(0.05)
        assert agent.stop() == 0
    assert record.read_text().split() == ["binding-learned", "reachable"]
