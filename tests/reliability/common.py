"""Helpers shared by the reliability tests: their short timers, status, memory, log lines (ports
and configuration files: tests/support/helpers.py)."""

from __future__ import annotations

import functools
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tests.support import helpers
from tests.support.agentproc import Agent

HERE = Path(__file__).resolve().parent
WRAP = (sys.executable, str(HERE / "agentwrap.py"))  # Agent prefix: test-only adjustments
# Short timers, so a fault plays out in seconds
FAST = {
    "interval": 1.0,
    "jitter": 0.0,
    "timeout": 1.0,
    "retry_interval": 1.0,
    "inbound_check": 0,
    "fail_threshold": 2,
}
write_config = functools.partial(helpers.write_config, base=FAST)


def status(agent: Agent, name: str | None = None, fresh: bool = True) -> dict[str, Any]:
    """The status file (after SIGUSR1 made the agent write it now), or one binding's entry."""
    if fresh:
        before = agent.status.stat().st_mtime_ns if agent.status.exists() else 0
        agent.signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if agent.status.exists() and agent.status.stat().st_mtime_ns != before:
                break
            time.sleep(0.02)
    data: dict[str, Any] = json.loads(agent.status.read_text())
    if name is None:
        return data
    entry: dict[str, Any] = next(b for b in data["bindings"] if b["name"] == name)
    return entry


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pss = rss
    return rss, pss


def fd_count(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def count_lines(agent: Agent, text: str) -> int:
    return sum(text in line for line in list(agent.lines))


def first_sends(
    requests: list[tuple[Any, Any, float]], since: float = 0.0, until: float = float("inf")
) -> list[float]:
    """Arrival times at a responder of each request's first transmission (one per branch)."""
    seen: set[str] = set()
    out = []
    for _, message, at in list(requests):
        branch = message.top_via.branch or ""
        if branch in seen:
            continue
        seen.add(branch)
        if since <= at <= until:
            out.append(at)
    return out


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]
