"""Reading the status file the daemon writes (runtime/status.py), for `status` and `collectd`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

COLUMNS = ("NAME", "STATE", "PUBLIC", "RTT_MS", "INTERVAL", "CHANGES", "EXPIRIES", "LAST_RESPONSE")
_KEYS = (
    "name",
    "state",
    "public",
    "rtt_ms",
    "interval_s",
    "changes",
    "expiries",
    "last_response_at",
)
_NUMERIC = frozenset((3, 4, 5, 6))  # right-aligned so digits line up


def read_status(path: str) -> dict[str, Any]:
    """The status as a dict. Raises OSError, or ValueError when the file is not a JSON object."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a status object")
    return data


def _cell(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        text = f"{value:.3f}".rstrip("0").rstrip(".")
        return "0" if text == "-0" else text
    # a status file from elsewhere may hold anything: keep the table one line per binding
    return "".join(c if " " < c <= "~" else "?" for c in str(value))


def _header(data: Mapping[str, Any]) -> str:
    parts = [f"nat-keepalive {_cell(data.get('version'))}", f"pid {_cell(data.get('pid'))}"]
    if data.get("started_at"):
        parts.append(f"started {_cell(data.get('started_at'))}")
    parts.append(f"updated {_cell(data.get('updated_at'))}")
    return "  ".join(parts)


def render_table(data: Mapping[str, Any]) -> str:
    """A header line and one aligned row per binding; missing or null values show as `-`.
    No trailing newline: the caller prints it."""
    bindings = data.get("bindings")
    rows: list[Sequence[str]] = [COLUMNS]
    if isinstance(bindings, list):
        for entry in bindings:
            if isinstance(entry, Mapping):
                rows.append([_cell(entry.get(key)) for key in _KEYS])
    lines = [_header(data)]
    if len(rows) == 1:
        lines.append("no bindings")
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        cells = [
            cell.rjust(width) if i in _NUMERIC else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
