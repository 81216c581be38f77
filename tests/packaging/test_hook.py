"""files/nat-keepalive.hook with a fake `ubus` on PATH that records its arguments, run under dash
and busybox ash (with busybox awk), with hostile values and with the environment the agent's
HookRunner really builds."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from natkeepalive import events as ev
from natkeepalive.record import field_names
from natkeepalive.runtime.hooks import hook_environment
from tests.support.tools import require_tool

HOOK = (
    Path(__file__).resolve().parents[2]
    / "openwrt"
    / "nat-keepalive"
    / "files"
    / "nat-keepalive.hook"
)
SHELLS = ("dash", "busybox")

FAKE_UBUS = """#!/bin/sh
# records each argument in its own file: $UBUS_LOG/call-N/arg-M
n=1
while [ -e "$UBUS_LOG/call-$n" ]; do n=$((n + 1)); done
mkdir "$UBUS_LOG/call-$n"
i=1
for arg in "$@"; do printf '%s' "$arg" > "$UBUS_LOG/call-$n/arg-$i"; i=$((i + 1)); done
exit "${UBUS_EXIT:-0}"
"""

HOSTILE = {
    "BINDING": "pro\"vider\\ $(touch PWNED) `touch PWNED` 'quoted'",
    "OLD": "203.0.113.1:5060\nevent=fake key=value",
    "NEW": "tab\there\rcr \x01\x1f\x7f end",
    "CAUSE": "ünïcødé €",
}


def setup(tmp: Path, shell: str, with_ubus: bool = True) -> tuple[list[str], dict[str, str]]:
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    if with_ubus:
        ubus = bin_dir / "ubus"
        ubus.write_text(FAKE_UBUS, encoding="utf-8")
        ubus.chmod(0o755)
    (tmp / "log").mkdir()
    (tmp / "events.d").mkdir()
    if shell == "dash":
        argv = [require_tool("dash"), str(HOOK)]
    else:
        busybox = require_tool("busybox")
        (bin_dir / "awk").symlink_to(busybox)
        argv = [busybox, "sh", str(HOOK)]
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "UBUS_LOG": str(tmp / "log"),
        "NAT_KEEPALIVE_EVENTS_DIR": str(tmp / "events.d"),
    }
    return argv, env


def ubus_calls(tmp: Path) -> list[list[str]]:
    calls = []
    for call in sorted((tmp / "log").iterdir(), key=lambda p: int(p.name.split("-")[1])):
        args = sorted(call.iterdir(), key=lambda p: int(p.name.split("-")[1]))
        calls.append([a.read_bytes().decode("utf-8") for a in args])
    return calls


def run(
    argv: list[str], env: dict[str, str], tmp: Path, event: str, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {**env, "EVENT": event, **(extra or {})}
    return subprocess.run(
        [*argv, event], env=full, cwd=tmp, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize("shell", SHELLS)
def test_hostile_values_reach_ubus_as_exact_json(shell: str, tmp_path: Path) -> None:
    argv, env = setup(tmp_path, shell)
    done = run(argv, env, tmp_path, "binding-changed", HOSTILE)
    assert done.returncode == 0, done.stderr
    (call,) = ubus_calls(tmp_path)
    assert call[:2] == ["send", "nat-keepalive.binding-changed"]
    assert len(call) == 3
    payload = json.loads(call[2])
    assert payload == {
        "event": "binding-changed",
        "binding": HOSTILE["BINDING"],
        "old": HOSTILE["OLD"],
        "new": HOSTILE["NEW"],
        "cause": HOSTILE["CAUSE"],
    }
    assert list(payload) == ["event", "binding", "old", "new", "cause"]
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_numbers_are_json_numbers_and_strays_stay_out(shell: str, tmp_path: Path) -> None:
    argv, env = setup(tmp_path, shell)
    done = run(
        argv,
        env,
        tmp_path,
        "lagged",
        {
            "BINDING": "p",
            "RTT_MS": "2500.5",
            "THRESHOLD_MS": "2000",
            "HOST": "stray",
            "PUBLIC": "not a key of lagged",
        },
    )
    assert done.returncode == 0, done.stderr
    (call,) = ubus_calls(tmp_path)
    assert call[2] == '{"event":"lagged","binding":"p","rtt_ms":2500.5,"threshold_ms":2000}'


@pytest.mark.parametrize("shell", SHELLS)
def test_bad_numbers_stay_strings(shell: str, tmp_path: Path) -> None:
    argv, env = setup(tmp_path, shell)
    run(argv, env, tmp_path, "reachable", {"BINDING": "p", "RTT_MS": "1e999x"})
    run(argv, env, tmp_path, "reachable", {"BINDING": "p", "RTT_MS": ""})
    first, second = (json.loads(c[2]) for c in ubus_calls(tmp_path))
    assert first["rtt_ms"] == "1e999x"
    assert second["rtt_ms"] is None


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("name", ["", "Binding-Changed", "x;reboot", "../x", "a b"])
def test_bad_event_name_is_refused(shell: str, name: str, tmp_path: Path) -> None:
    argv, env = setup(tmp_path, shell)
    done = run(argv, env, tmp_path, name)
    assert done.returncode == 2
    assert "not an event name" in done.stderr
    assert ubus_calls(tmp_path) == []


@pytest.mark.parametrize("shell", SHELLS)
def test_events_d_scripts_run_in_order_with_the_environment(shell: str, tmp_path: Path) -> None:
    argv, env = setup(tmp_path, shell)
    scripts = tmp_path / "events.d"
    record = (
        '#!/bin/sh\nprintf "%s|%s|%s|%s\\n" "${0##*/}" "$1" "$BINDING" "$PUBLIC" '
        '>> "$UBUS_LOG/../ran"\n'
    )
    for name in ("20-second", "10-first"):
        (scripts / name).write_text(record, encoding="utf-8")
        (scripts / name).chmod(0o755)
    (scripts / "15-failing").write_text("#!/bin/sh\nexit 3\n", encoding="utf-8")
    (scripts / "15-failing").chmod(0o755)
    (scripts / "30-not-executable").write_text(record, encoding="utf-8")
    (scripts / "40-directory").mkdir()
    done = run(
        argv,
        env,
        tmp_path,
        "binding-expired",
        {
            "BINDING": "b $(x)",
            "PUBLIC": "198.51.100.7:4000",
            "IDLE_S": "31.5",
            "DETECTED": "inbound-check",
        },
    )
    assert done.returncode == 1
    assert "15-failing binding-expired exited with status 3" in done.stderr
    ran = (tmp_path / "ran").read_text(encoding="utf-8").splitlines()
    assert ran == [
        "10-first|binding-expired|b $(x)|198.51.100.7:4000",
        "20-second|binding-expired|b $(x)|198.51.100.7:4000",
    ]
    (call,) = ubus_calls(tmp_path)
    assert json.loads(call[2])["idle_s"] == 31.5


@pytest.mark.parametrize("shell", SHELLS)
def test_without_ubus_only_the_scripts_run(shell: str, tmp_path: Path) -> None:
    argv, env = setup(tmp_path, shell, with_ubus=False)
    script = tmp_path / "events.d" / "10-touch"
    script.write_text('#!/bin/sh\n: > "$UBUS_LOG/../touched"\n', encoding="utf-8")
    script.chmod(0o755)
    done = run(argv, env, tmp_path, "unreachable", {"BINDING": "p", "FAILURES": "2"})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "touched").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_ubus_failure_is_reported(shell: str, tmp_path: Path) -> None:
    argv, env = setup(tmp_path, shell)
    done = run(argv, env, tmp_path, "reachable", {"BINDING": "p", "RTT_MS": "1", "UBUS_EXIT": "4"})
    assert done.returncode == 1
    assert "ubus send nat-keepalive.reachable failed" in done.stderr


def sample(name: str, annotation: str) -> object:
    return {"int": 7, "float": 1.25}.get(annotation, f"v-{name}")


def event_fields(cls: type[ev.Event]) -> list[tuple[str, str]]:
    """(name, annotation) per field; the annotations are strings (future import)."""
    declared: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        declared.update(vars(klass).get("__annotations__", {}))
    return [(name, declared[name]) for name in field_names(cls)]


@pytest.mark.parametrize("cls", list(ev.ALL_EVENTS.values()), ids=list(ev.ALL_EVENTS))
def test_every_event_with_the_agents_own_environment(cls: type[ev.Event], tmp_path: Path) -> None:
    """The hook's key table matches natkeepalive.events, fed by runtime.hooks.hook_environment."""
    argv, env = setup(tmp_path, "dash")
    fields = event_fields(cls)
    event = cls(**{name: sample(name, kind) for name, kind in fields})
    agent_env = hook_environment(event, env["PATH"])
    done = subprocess.run(
        [*argv, cls.NAME],
        env={**env, **agent_env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    (call,) = ubus_calls(tmp_path)
    assert call[1] == f"nat-keepalive.{cls.NAME}"
    payload = json.loads(call[2])
    assert payload == {"event": cls.NAME, **{name: sample(name, kind) for name, kind in fields}}


def test_hook_is_executable_and_posix() -> None:
    assert os.access(HOOK, os.X_OK)
    assert HOOK.read_text(encoding="utf-8").startswith("#!/bin/sh\n")
