"""HookRunner with real scripts: environment, no shell, timeouts, failures, the queue bound."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from natkeepalive import events as ev
from natkeepalive.logline import format_event
from natkeepalive.runtime.hooks import HookRunner

DEADLINE = 10.0
PR_SET_CHILD_SUBREAPER = 36
SELECTED = ("binding-changed", "binding-expired", "unreachable", "reachable")


def _script(folder: Path, name: str, body: str) -> str:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def _wait_idle(runner: HookRunner) -> list[str]:
    """Poll on the real clock until every hook finished; the problems reported meanwhile."""
    problems: list[str] = []
    end = time.monotonic() + DEADLINE
    while runner.running or runner.queued:
        assert time.monotonic() < end, "hooks did not finish"
        problems.extend(runner.poll(time.monotonic()))
        time.sleep(0.01)
    return problems


def _wait_file(path: Path) -> str:
    end = time.monotonic() + DEADLINE
    while not (path.exists() and path.read_text().endswith("\n")):
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.01)
    return path.read_text()


def _read_env(path: Path) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in path.read_bytes().decode().split("\0") if item]
    return {key: value for key, value in pairs}


def test_environment_and_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NK_DAEMON_SECRET", "must-not-leak")
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    out = tmp_path / "env"
    hook = _script(tmp_path, "hook", f'printf "%s" "$1" > {out}.arg\nenv -0 > {out}\n')
    runner = HookRunner(hook, SELECTED)
    event = ev.BindingChanged("provider", "203.0.113.1:33785", "203.0.113.1:40000", "port-remapped")
    runner.fire(event, time.monotonic())
    assert runner.running == 1
    assert _wait_idle(runner) == []
    env = _read_env(out)
    assert env.pop("PWD") == "/"  # added by sh itself; the hook runs in /
    assert env == {
        "PATH": os.environ["PATH"],
        "EVENT": "binding-changed",
        "BINDING": "provider",
        "OLD": "203.0.113.1:33785",
        "NEW": "203.0.113.1:40000",
        "CAUSE": "port-remapped",
        "NAT_KEEPALIVE_EVENT_LINE": format_event(event),
    }
    assert (tmp_path / "env.arg").read_text() == "binding-changed"


def test_numbers_and_none_in_the_environment(tmp_path: Path) -> None:
    out = tmp_path / "env"
    hook = _script(tmp_path, "hook", f"env -0 > {out}\n")
    runner = HookRunner(hook, ["binding-expired", "reachable"])
    runner.fire(ev.BindingExpired("p", "203.0.113.1:1", 31.25, "remap"), time.monotonic())
    assert _wait_idle(runner) == []
    env = _read_env(out)
    assert (env["IDLE_S"], env["DETECTED"], env["PUBLIC"]) == ("31.25", "remap", "203.0.113.1:1")


def test_shell_metacharacters_arrive_literally(tmp_path: Path) -> None:
    out = tmp_path / "env"
    canary = tmp_path / "pwned"
    hook = _script(tmp_path, "hook", f"env -0 > {out}\n")
    hostile = f"$(touch {canary}); `touch {canary}` | & ; > {canary} * ' \" \\ \n\t$HOME"
    runner = HookRunner(hook, SELECTED)
    runner.fire(ev.BindingChanged("a;b", hostile, "x|y", "port-remapped"), time.monotonic())
    assert _wait_idle(runner) == []
    env = _read_env(out)
    assert env["OLD"] == hostile
    assert (env["BINDING"], env["NEW"]) == ("a;b", "x|y")
    assert not canary.exists()


def test_unselected_events_run_nothing(tmp_path: Path) -> None:
    out = tmp_path / "ran"
    runner = HookRunner(_script(tmp_path, "hook", f"touch {out}\n"), ["unreachable"])
    runner.fire(ev.Reachable("p", 1.0), 0.0)
    runner.fire(ev.Started("0.1.0", 1), 0.0)
    assert (runner.running, runner.queued, runner.next_deadline()) == (0, 0, None)
    assert HookRunner(None, SELECTED).wants("reachable") is False


def _process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.fixture
def subreaper() -> Iterator[bool]:
    """Orphaned grandchildren come to this process instead of PID 1, so the test can reap them
    (a container's init may never do it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    enabled = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    yield enabled
    if enabled:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def test_hanging_hook_is_killed_with_its_children(tmp_path: Path, subreaper: bool) -> None:
    pids = tmp_path / "pids"
    hook = _script(tmp_path, "hook", f"sleep 100 &\necho $$ $! > {pids}\nwait\n")
    runner = HookRunner(hook, SELECTED, timeout=0.5)
    runner.fire(ev.Unreachable("p", 2), 1000.0)
    assert runner.next_deadline() == 1000.5
    shell, sleeper = (int(pid) for pid in _wait_file(pids).split())
    assert runner.poll(1000.4) == []  # fake clock: not yet
    problems = runner.poll(1000.5)
    assert problems == [f"hook {hook} unreachable: killed after 0.5 s timeout"]
    assert runner.running == 0
    end = time.monotonic() + DEADLINE
    while not (_process_gone(shell) and _process_gone(sleeper)):
        assert time.monotonic() < end, "the hook's process group survived"
        runner.poll(1001.0)
        time.sleep(0.01)
    runner.poll(1001.0)
    assert runner.next_deadline() is None  # the killed hook was reaped
    if subreaper:
        os.waitpid(sleeper, 0)


def test_failing_hook_is_reported_with_its_stderr(tmp_path: Path) -> None:
    hook = _script(tmp_path, "hook", 'echo "boom: no \\033[31mconfig" >&2\necho more >&2\nexit 3\n')
    runner = HookRunner(hook, SELECTED)
    runner.fire(ev.Unreachable("p", 2), time.monotonic())
    assert _wait_idle(runner) == [
        rf"hook {hook} unreachable: exit status 3: boom: no \x1b[31mconfig"
    ]


def test_hook_killed_by_a_signal(tmp_path: Path) -> None:
    hook = _script(tmp_path, "hook", "kill -TERM $$\n")
    runner = HookRunner(hook, SELECTED)
    runner.fire(ev.Reachable("p", 1.0), time.monotonic())
    assert _wait_idle(runner) == [f"hook {hook} reachable: killed by SIGTERM"]


def test_hooks_that_cannot_start(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    runner = HookRunner(missing, SELECTED)
    runner.fire(ev.Reachable("p", 1.0), 0.0)
    assert runner.running == 0
    assert runner.poll(0.0) == [
        f"hook {missing} reachable: could not start: No such file or directory (ENOENT)"
    ]
    assert runner.poll(0.0) == []  # reported once
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    plain.chmod(0o644)  # even root needs one x bit to execute
    runner = HookRunner(str(plain), SELECTED)
    runner.fire(ev.Reachable("p", 1.0), 0.0)
    assert runner.poll(0.0) == [
        f"hook {plain} reachable: could not start: Permission denied (EACCES)"
    ]


def test_queue_bound_and_close(tmp_path: Path) -> None:
    started = tmp_path / "started"
    hook = _script(tmp_path, "hook", f'echo "$EVENT" >> {started}\nexec sleep 100\n')
    runner = HookRunner(hook, SELECTED, timeout=60.0, max_running=1, queue_limit=2)
    for n in range(5):
        runner.fire(ev.Unreachable(f"b{n}", n), 0.0)
    assert (runner.running, runner.queued) == (1, 2)
    assert runner.poll(1.0) == [f"hook {hook}: dropped 2 event(s), 1 hooks running and 2 waiting"]
    assert runner.poll(1.0) == []
    _wait_file(started)
    runner.close()
    assert (runner.running, runner.queued, runner.next_deadline()) == (0, 0, None)
    assert started.read_text() == "unreachable\n"  # the queued ones never ran


def test_queued_events_start_when_a_slot_frees(tmp_path: Path) -> None:
    log = tmp_path / "log"
    hook = _script(tmp_path, "hook", f'echo "$BINDING" >> {log}\n')
    runner = HookRunner(hook, SELECTED, max_running=1)
    for n in range(4):
        runner.fire(ev.Unreachable(f"b{n}", n), time.monotonic())
    assert (runner.running, runner.queued) == (1, 3)
    assert _wait_idle(runner) == []
    assert log.read_text().split() == ["b0", "b1", "b2", "b3"]


def test_subprocess_is_imported_only_with_a_command() -> None:
    code = (
        "import sys\nfrom natkeepalive.runtime.hooks import HookRunner\n"
        "HookRunner(None, ['unreachable'])\nprint('subprocess' in sys.modules)\n"
        "HookRunner('/bin/true', ['unreachable'])\nprint('subprocess' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "True"]
