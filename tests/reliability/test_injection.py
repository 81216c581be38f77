"""Log and hook injection: hostile text from the network never reaches a log line raw, never forges
an `event=` line and never reaches a shell; hooks get an argument list and an environment, and a
hook that hangs or fails is killed and reported while the agent goes on."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

from hypothesis import given, settings, strategies as st

from natkeepalive import events as ev
from natkeepalive.logline import format_event, parse_line
from natkeepalive.record import field_names
from natkeepalive.runtime.hooks import hook_environment
from natkeepalive.runtime.logsink import SyslogSink
from tests.reliability.hostile import HostileServer, payloads, templates
from tests.support.agentproc import Agent, run_cli
from tests.support.helpers import free_port, write_config
from tests.support.responder import SipResponder

PRINTABLE = re.compile(r"^[ -~]*$")
# off the journal, a line starts with the local time: 2026-12-07T01:02:03+0100
SEVERITY_PREFIX = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} )?"
    r"(emerg|alert|crit|err|warning|notice|info|debug): "
)
KNOWN = set(ev.ALL_EVENTS)

RECORD_HOOK = """#!{python}
import json, os, sys, time
name = os.path.join({folder!r}, "%d-%d.json" % (time.monotonic_ns(), os.getpid()))
with open(name, "w") as out:
    json.dump({{"argv": sys.argv, "env": dict(os.environ)}}, out)
"""


# Short timers, so the hostile answers and the hooks they trigger come within seconds
FAST = {
    "interval": 0.15,
    "jitter": 0.0,
    "timeout": 1.0,
    "retry_interval": 0.5,
    "inbound_check": 0,
    "fail_threshold": 3,
}


def hook_section(hook: Path, events: list[str]) -> list[str]:
    return ["hooks:", f"  command: {hook}", f"  events: {json.dumps(events)}"]


def check_lines(lines: list[str]) -> list[str]:
    """Every line printable ASCII with a severity prefix, and one known event (a monitor keyed on
    `event=` misses nothing). Returns the event names in order."""
    names = []
    for line in lines:
        assert PRINTABLE.match(line), f"unprintable log line {line!r}"
        assert SEVERITY_PREFIX.match(line), f"line without a severity prefix {line!r}"
        name, _fields = parse_line(line)  # raises on a forged second event= key, or none
        assert name in KNOWN, line
        names.append(name)
    return names


# --- the log line, for any text -----------------------------------------------------------------

HOSTILE_TEXT = st.one_of(
    st.text(),
    st.sampled_from(payloads("/tmp/nk-never")),
    st.text(alphabet=st.sampled_from(list("\r\n\x1b\x00\x07 \"'\\=;$`|&<>\u2028\u202e\x85e"))),
)


def _str_fields(cls: type[ev.Event]) -> list[tuple[str, str]]:
    """(name, annotation) per field; the annotations are strings (future import)."""
    declared: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        declared.update(vars(klass).get("__annotations__", {}))
    return [(name, declared[name]) for name in field_names(cls)]


def _instance(cls: type[ev.Event], text: str) -> ev.Event:
    values: dict[str, Any] = {}
    for name, kind in _str_fields(cls):
        values[name] = 1 if "int" in kind else 1.5 if "float" in kind else text
    return cls(**values)


EVENT_CLASSES = sorted(ev.ALL_EVENTS.values(), key=lambda c: c.NAME)


@settings(max_examples=300, deadline=None)
@given(cls=st.sampled_from(EVENT_CLASSES), text=HOSTILE_TEXT)
def test_any_text_in_any_event_is_one_printable_line(cls: type[ev.Event], text: str) -> None:
    event = _instance(cls, text)
    line = format_event(event)
    assert PRINTABLE.match(line) and "\n" not in line
    name, fields = parse_line(line)
    assert name == cls.NAME
    for key, value in event.items():
        if isinstance(value, str):
            assert fields[key] == value  # escaped on the way out, exact on the way back
    frame = SyslogSink("/dev/null-not-used", "daemon").frame(3, line)
    assert frame.isascii() and b"\n" not in frame and b"\0" not in frame
    env = hook_environment(event)
    assert env["EVENT"] == cls.NAME and env["NAT_KEEPALIVE_EVENT_LINE"] == line
    assert all("\0" not in k + v for k, v in env.items())
    assert set(env) == {"PATH", "EVENT", "NAT_KEEPALIVE_EVENT_LINE"} | {
        k.upper() for k, _ in event.items()
    }


# --- the daemon against a hostile server ----------------------------------------------------------


def test_hostile_answers_reach_no_log_line_raw_and_no_shell(tmp_path: Path) -> None:
    marker = str(tmp_path / "owned")
    records = tmp_path / "hook-calls"
    records.mkdir()
    hook = tmp_path / "hook"
    hook.write_text(RECORD_HOOK.format(python=sys.executable, folder=str(records)))
    hook.chmod(0o755)
    events = [
        "binding-learned",
        "binding-changed",
        "binding-expired",
        "reachable",
        "unreachable",
        "lagged",
        "rport-unsupported",
        "binding-flapping",
    ]
    count = len(templates(marker))
    with HostileServer(marker) as server:
        config = write_config(
            tmp_path / "c.yaml",
            [("provider", server.address, free_port())],
            FAST,
            extra=hook_section(hook, events),
        )
        with Agent(config, tmp_path / "status.json") as agent:
            deadline = time.monotonic() + 30
            while server.requests < 2 * count + 4 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert server.requests >= 2 * count + 4, "the agent stopped asking"
            assert agent.proc.poll() is None
            # the table while the agent runs: once stopped, `status` says it is not running
            table = run_cli("status", "--status-file", str(tmp_path / "status.json"))
            assert table.returncode == 0 and table.stdout, table.stderr
            assert agent.stop() == 0
        status = json.loads((tmp_path / "status.json").read_text())["bindings"][0]
    assert not Path(marker).exists(), "a payload ran in a shell"
    names = check_lines(agent.lines)
    assert names[0] == "started" and names[-1] == "stopped"
    assert names.count("binding-learned") == 1
    for forged in ("binding-changed", "unreachable", "binding-expired"):
        assert forged not in names
    assert status["state"] == "reachable" and status["public"].startswith("127.0.0.1:")
    assert status["dropped"] > 0  # the answers the parser refused were counted
    assert PRINTABLE.match(table.stdout.replace("\n", "")), table.stdout
    calls = [json.loads(p.read_text()) for p in sorted(records.iterdir())]
    assert {c["argv"][1] for c in calls} == {"binding-learned", "reachable"}
    for call in calls:
        assert call["argv"] == [str(hook), call["argv"][1]]  # an argument list, nothing else
        for key, value in call["env"].items():
            assert PRINTABLE.match(value), (key, value)


HANG_HOOK = """#!/bin/sh
# reachable: hang, with a grandchild that would outlive a kill of the hook alone
# binding-changed: fail loudly, with escapes in stderr
echo "$$" >> {folder}/pids
case "$1" in
  reachable) sleep 300 & echo "$!" >> {folder}/pids; sleep 300 ;;
  binding-changed) printf 'boom \\033[31mred\\r\\n' >&2; exit 3 ;;
esac
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_hanging_and_failing_hooks_are_killed_and_reported(tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.write_text(HANG_HOOK.format(folder=tmp_path))
    hook.chmod(0o755)
    with SipResponder() as responder:
        port = free_port()
        config = write_config(
            tmp_path / "c.yaml",
            [("provider", responder.address, port)],
            FAST,
            extra=hook_section(hook, ["reachable", "binding-changed"]),
            interval=0.5,
        )
        with Agent(config, tmp_path / "status.json") as agent:
            agent.wait_for("reachable")
            started = time.monotonic()
            deadline = started + 5
            while (
                not (tmp_path / "pids").exists() or len((tmp_path / "pids").read_text().split()) < 2
            ):
                assert time.monotonic() < deadline, "the hook did not start"
                time.sleep(0.05)
            pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
            before = len(responder.requests)
            # while the hook hangs the keepalives go on (10 s limit, 0.5 s interval)
            responder.configure(rport=port + 1)
            agent.wait_for("binding-changed", timeout=5)
            killed = agent.wait_line("killed after 10 s timeout", 15)
            elapsed = time.monotonic() - started
            failed = agent.wait_line("exit status 3", 5)
            during = len(responder.requests) - before
            time.sleep(0.3)
            assert agent.proc.poll() is None, "the agent died"
            assert not [p for p in pids if _alive(p)], "the hook or its child survived the kill"
            agent.wait_for("probe-answered", count=len(agent.events("probe-answered")) + 2)
            assert agent.stop() == 0
    assert 9.0 <= elapsed <= 13.0, elapsed
    assert during >= 15, f"only {during} requests while the hook hung"
    assert " warning: event=hook-failed " in killed and "reachable" in killed
    # the hook's stderr comes escaped, then quoted as the event's value
    error = parse_line(failed)[1]["error"] or ""
    assert error.endswith("exit status 3: boom \\x1b[31mred"), failed
    check_lines(agent.lines)
    assert sum("killed after" in line for line in agent.lines) == 1
    assert sum("exit status 3" in line for line in agent.lines) == 1


# --- the probe command's text output -------------------------------------------------------------


def test_probe_text_output_escapes_the_reason_phrase() -> None:
    """`nat-keepalive probe` (text mode, for scripts and terminals) prints the server's reason
    phrase: ANSI escapes, a bare CR or U+2028 from the network must not reach the terminal raw."""
    reason = "OK\x1b]0;owned\x07\x1b[2J\rforged line\u2028"
    with SipResponder() as responder:
        responder.configure(reason=reason)
        done = run_cli("probe", f"{responder.address[0]}:{responder.address[1]}", "--timeout", "2")
    assert done.returncode == 0, done.stderr
    assert all(PRINTABLE.match(line) for line in done.stdout.splitlines()), done.stdout
    assert "\r" not in done.stdout


def test_probe_json_output_escapes_the_reason_phrase() -> None:
    reason = "OK\x1b]0;owned\x07\x1b[2J\r\u2028forged"
    with SipResponder() as responder:
        responder.configure(reason=reason)
        done = run_cli(
            "probe", f"{responder.address[0]}:{responder.address[1]}", "--timeout", "2", "--json"
        )
    assert done.returncode == 0, done.stderr
    assert PRINTABLE.match(done.stdout.rstrip("\n"))
    assert json.loads(done.stdout)["reason"] == reason


def test_hook_that_cannot_start_is_reported_once_per_event(tmp_path: Path) -> None:
    # executable, so `check` lets it through, but no program the kernel can start
    hook = tmp_path / "broken-hook"
    hook.write_bytes(b"\x00\x01 not a program\n")
    hook.chmod(0o755)
    with SipResponder() as responder:
        config = write_config(
            tmp_path / "c.yaml",
            [("provider", responder.address, free_port())],
            FAST,
            extra=hook_section(hook, ["reachable", "binding-learned"]),
            interval=0.3,
        )
        with Agent(config, tmp_path / "status.json") as agent:
            agent.wait_for("reachable")
            line = agent.wait_line("could not start", 5)
            agent.wait_for("probe-answered", count=4)
            assert agent.proc.poll() is None
            agent.signal(signal.SIGTERM)
            assert agent.proc.wait(10) == 0
    assert "ENOEXEC" in line and "event=hook-failed" in line
    assert sum("could not start" in x for x in agent.lines) == 2  # two events, two reports
