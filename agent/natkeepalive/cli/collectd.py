"""`nat-keepalive collectd`: collectd's exec plugin runs it (as a non-root user) and reads
`PUTVAL` lines from its standard output, one set per COLLECTD_INTERVAL, from the status file.

Rules:
- One plugin instance per binding: `HOST/nat_keepalive-BINDING/TYPE-INSTANCE`, with types from
  collectd's own types.db (bool, latency, derive, duration), so no custom types.db is needed.
- A value the status file does not have (no answer yet, no lifetime measured) is `U`.
- A status file that cannot be read is said once on standard error (collectd logs it) and the
  command keeps waiting for it: the agent may start later than collectd.
- It ends when collectd closes the pipe or stops it.
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

PLUGIN = "nat_keepalive"
COUNTERS = (
    ("probes_sent", "probes_sent"),
    ("answers", "responses"),
    ("timeouts", "timeouts"),
    ("dropped", "dropped"),
    ("changes", "changes"),
    ("expiries", "expiries"),
)
DEFAULT_INTERVAL = 10.0


def _epoch(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def _number(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "U"
    return repr(value) if isinstance(value, float) else str(value)


def _safe(text: str) -> str:
    """An identifier part: collectd splits on '/' and the plugin part on its first '-'."""
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in text)[:63] or "_"


def putval_lines(data: Mapping[str, Any], host: str, interval: float, now: float) -> Iterator[str]:
    bindings = data.get("bindings")
    if not isinstance(bindings, list):
        return
    for entry in bindings:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        prefix = f'PUTVAL "{_safe(host)}/{PLUGIN}-{_safe(entry["name"])}'
        tail = f'" interval={interval:g} N:'
        state = entry.get("state")
        yield f"{prefix}/bool-reachable{tail}{1 if state in ('reachable', 'lagged') else 0}"
        rtt = entry.get("rtt_ms")
        rtt_s = (
            rtt / 1000.0 if isinstance(rtt, (int, float)) and not isinstance(rtt, bool) else None
        )
        yield f"{prefix}/latency-rtt{tail}{_number(rtt_s)}"
        for instance, key in COUNTERS:
            value = entry.get(key)
            # a DERIVE is an integer; a missing one stays unknown rather than a fake 0
            yield (
                f"{prefix}/derive-{instance}{tail}"
                f"{value if isinstance(value, int) and not isinstance(value, bool) else 'U'}"
            )
        yield f"{prefix}/duration-interval{tail}{_number(entry.get('interval_s'))}"
        yield f"{prefix}/duration-lifetime{tail}{_number(entry.get('lifetime_s'))}"
        answered = _epoch(entry.get("last_response_at"))
        since = None if answered is None else max(0.0, round(now - answered, 3))
        yield f"{prefix}/duration-since_answer{tail}{_number(since)}"


def run_collectd(args: argparse.Namespace) -> int:
    from natkeepalive.oneshot.status import read_status

    host = os.environ.get("COLLECTD_HOSTNAME") or os.uname().nodename
    try:
        interval = float(os.environ.get("COLLECTD_INTERVAL") or DEFAULT_INTERVAL)
    except ValueError:
        interval = DEFAULT_INTERVAL
    if not interval > 0:
        interval = DEFAULT_INTERVAL
    path: str = args.status_file
    said: str | None = None
    try:
        while True:
            started = time.monotonic()
            try:
                data = read_status(path)
            except (OSError, ValueError) as exc:
                message = f"nat-keepalive collectd: cannot read status file {path}: {exc}"
                if message != said:
                    said = message
                    sys.stderr.write(message + "\n")
                    sys.stderr.flush()
            else:
                said = None
                lines = list(putval_lines(data, host, interval, time.time()))
                if lines:
                    sys.stdout.write("\n".join(lines) + "\n")
                    sys.stdout.flush()
            if args.once:
                return 0 if said is None else 1
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except BrokenPipeError:  # collectd went away
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (no flush error at exit)
        return 0
