"""The status file: atomic writes, modes, reading back, and the human table."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from natkeepalive.oneshot.status import read_status, render_table
from natkeepalive.runtime.status import iso_utc, to_json, write_status

SAMPLE: dict[str, Any] = {
    "version": "0.1.0",
    "pid": 123,
    "started_at": "2026-11-27T05:10:00Z",
    "updated_at": "2026-11-27T05:11:00Z",
    "bindings": [
        {
            "name": "provider",
            "server": "203.0.113.10:5060",
            "local": "192.168.77.2:5062",
            "state": "reachable",
            "public": "203.0.113.1:33785",
            "rtt_ms": 0.5,
            "interval_s": 25,
            "last_response_at": "2026-11-27T05:10:59Z",
            "last_change_at": None,
            "changes": 0,
            "expiries": 0,
            "probes_sent": 10,
            "responses": 10,
            "timeouts": 0,
            "lifetime_s": None,
        },
        {
            "name": "backup",
            "server": "[2001:db8::10]:5060",
            "local": "[2001:db8::2]:5062",
            "state": "unknown",
            "public": None,
            "rtt_ms": None,
            "interval_s": 12.5,
            "last_response_at": None,
            "last_change_at": None,
            "changes": 3,
            "expiries": 11,
            "probes_sent": 0,
            "responses": 0,
            "timeouts": 0,
            "lifetime_s": None,
        },
    ],
}


@pytest.fixture
def strict_umask() -> Iterator[None]:
    old = os.umask(0o077)
    yield
    os.umask(old)


@pytest.mark.usefixtures("strict_umask")
def test_write_creates_directory_and_sets_modes(tmp_path: Path) -> None:
    path = tmp_path / "run" / "nat-keepalive" / "status.json"
    write_status(str(path), SAMPLE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    assert read_status(str(path)) == SAMPLE
    assert json.loads(path.read_text()) == SAMPLE
    assert sorted(p.name for p in path.parent.iterdir()) == ["status.json"]


def test_rewrite_replaces_the_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    write_status(str(path), {"pid": 1})
    before = path.stat().st_ino
    with open(path) as reader:  # a reader holding the old file keeps reading the old content
        write_status(str(path), {"pid": 2})
        assert json.load(reader) == {"pid": 1}
    assert path.stat().st_ino != before  # renamed over, not rewritten in place
    assert read_status(str(path)) == {"pid": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_errors_reach_the_caller_and_leave_no_temp_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        write_status(str(blocker / "status.json"), SAMPLE)  # parent is a file
    target = tmp_path / "dir"
    target.mkdir()
    with pytest.raises(OSError):
        write_status(str(target), SAMPLE)  # cannot rename a file over a directory
    with pytest.raises(ValueError):
        write_status(str(tmp_path / "nan.json"), {"rtt_ms": float("nan")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"]


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        read_status(str(tmp_path / "missing.json"))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError):
        read_status(str(tmp_path / "list.json"))
    (tmp_path / "half.json").write_text('{"pid": ')
    with pytest.raises(ValueError):
        read_status(str(tmp_path / "half.json"))


def test_render_table() -> None:
    assert render_table(SAMPLE) == (
        "nat-keepalive 0.1.0  pid 123  "
        "started 2026-11-27T05:10:00Z  updated 2026-11-27T05:11:00Z\n"
        "NAME      STATE      PUBLIC             RTT_MS  INTERVAL  CHANGES  EXPIRIES  "
        "LAST_RESPONSE\n"
        "provider  reachable  203.0.113.1:33785     0.5        25        0         0  "
        "2026-11-27T05:10:59Z\n"
        "backup    unknown    -                       -      12.5        3        11  -"
    )


def test_render_table_survives_odd_files() -> None:
    assert render_table({}) == "nat-keepalive -  pid -  updated -\nno bindings"
    odd = render_table(
        {"pid": 5, "bindings": [{"name": "a\nb\x1b[2J", "rtt_ms": 1.23456}, "not a binding", {}]}
    )
    lines = odd.splitlines()
    assert len(lines) == 4
    assert lines[2].split() == ["a?b?[2J", "-", "-", "1.235", "-", "-", "-", "-"]
    assert lines[3].split() == ["-"] * 8
    assert lines[2].index("1.235") + 5 == lines[1].index("RTT_MS") + 6  # right-aligned


def test_iso_utc() -> None:
    assert iso_utc(1_795_756_200.0) == "2026-11-27T05:10:00Z"
    assert iso_utc(1_795_756_200.999) == "2026-11-27T05:10:00Z"
    assert iso_utc(0) == "1970-01-01T00:00:00Z"


# --- the daemon's own JSON writer (status.to_json: no `json`, no `re` in the daemon) -------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False)
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


@given(_JSON)
def test_to_json_reads_back_as_the_same_value(value: object) -> None:
    text = to_json(value)
    assert text.endswith("\n") and text.isascii()
    assert json.loads(text) == value


@given(st.text())
def test_strings_are_escaped_exactly_as_json_does(text: str) -> None:
    assert to_json(text) == json.dumps(text) + "\n"


def test_layout_one_binding_per_line_and_refusals() -> None:
    data = {
        "version": "1",
        "bindings": [{"name": "a", "public": {"address": "192.0.2.1"}}, {"name": "b"}],
        "empty": [],
        "none": {},
    }
    assert to_json(data) == (
        '{\n  "version": "1",\n  "bindings": [\n'
        '    {"name": "a", "public": {"address": "192.0.2.1"}},\n'
        '    {"name": "b"}\n  ],\n  "empty": [],\n  "none": {}\n}\n'
    )
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError):
            to_json({"x": [bad]})
    with pytest.raises(TypeError):
        to_json({1: "key not a string"})
    with pytest.raises(TypeError):
        to_json({"x": object()})
