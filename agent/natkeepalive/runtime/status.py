"""The status file: what the daemon reports of every binding, written atomically (read by
oneshot/status.py).

Rules:
- A reader sees the old file or the new one, never half of one: temporary file in the same
  directory, then rename.
- No fsync: the file lives in RAM-backed runtime storage (/run, /var/run), where it buys nothing
  and on flash it would only wear the chip for a file rewritten on every change.
- Errors reach the caller: the daemon decides how loudly to report them.
"""

from __future__ import annotations

import os
import time
from _collections_abc import Iterable, Mapping  # what collections.abc holds, without collections

from natkeepalive import __version__
from natkeepalive.core.tracker import format_mapping
from natkeepalive.sip.target import format_hostport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from natkeepalive.runtime.auto import AutoInterval
    from natkeepalive.runtime.slot import Slot

FILE_MODE = 0o644
DIR_MODE = 0o755

_counter = 0


def iso_utc(epoch: float) -> str:
    """`2026-11-27T05:10:00Z`: whole seconds, UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def snapshot(
    slots: Iterable[Slot],
    autos: Mapping[str, AutoInterval],
    started_at: float,
    wall_now: float,
    now: float,
    stopped: str | None,
) -> dict[str, object]:
    """The status file's content: the process, and each binding from its engine's statistics.
    `now` is the monotonic clock's reading at wall-clock `wall_now`; `stopped` the stop reason,
    for the last file a stopping agent writes."""
    texts: dict[int, str] = {}  # most bindings were answered within the same few seconds

    def wall_of(mono: float | None) -> str | None:
        if mono is None:
            return None
        second = int(wall_now - (now - mono))  # iso_utc writes whole seconds
        text = texts.get(second)
        if text is None:
            text = texts[second] = iso_utc(second)
        return text

    bindings = []
    for slot in slots:
        engine = slot.engine
        public = engine.public
        local = engine.local
        auto = autos.get(slot.name)
        bindings.append(
            {
                "name": slot.name,
                "server": slot.server_text,
                "local": None if local is None else format_hostport(*local),
                "state": engine.reach.state if slot.missing is None else "no-local-address",
                "problem": slot.missing,
                "public": format_mapping(public),
                "public_address": None if public is None else public[0],
                "public_port": None if public is None else public[1],
                "rtt_ms": engine.last_rtt_ms,
                "last_status": engine.last_status,  # a 403 under require_2xx has an RTT too
                "interval_s": round(engine.interval, 3),
                "last_response_at": wall_of(engine.last_response_at),
                "last_change_at": wall_of(engine.tracker.changed_at),
                "changes": engine.tracker.changes,
                "expiries": engine.tracker.expiries,
                "probes_sent": engine.probes_sent,
                "responses": engine.responses,
                "timeouts": engine.timeouts,
                "dropped": engine.dropped,
                "inbound_check": engine.inbound_result,
                "expiry_detection": engine.expiry_detection,
                "crlf_keepalives": engine.crlf_received,
                "lifetime_s": None if auto is None else auto.lifetime,
            }
        )
    data: dict[str, object] = {
        "version": __version__,
        "pid": os.getpid(),
        "started_at": iso_utc(started_at),
        "updated_at": iso_utc(wall_now),
        "bindings": bindings,
    }
    if stopped is not None:
        data["stopped_at"] = iso_utc(wall_now)
        data["stop_reason"] = stopped
    return data


def _ensure_dir(folder: str) -> None:
    if not folder or os.path.isdir(folder):
        return
    os.makedirs(folder, mode=DIR_MODE, exist_ok=True)
    os.chmod(folder, DIR_MODE)  # makedirs' mode goes through the umask


def write_status(path: str, data: Mapping[str, Any]) -> None:
    """Replace `path` with `data` as JSON, atomically, mode 0644. Raises OSError (and TypeError or
    ValueError for data JSON cannot hold)."""
    replace_atomically(path, (to_json(data),))


def replace_atomically(path: str, chunks: Iterable[str]) -> None:
    """Replace `path` with the concatenated `chunks`, mode 0644, through a temporary file in the
    same folder and a rename: a reader sees the old file or the new one, never a part. Chunks are
    written 64 KiB at a time, so a large text need not be held whole. Raises OSError."""
    global _counter
    folder = os.path.dirname(path)
    _ensure_dir(folder)
    _counter += 1
    temp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{_counter}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        try:
            os.fchmod(fd, FILE_MODE)  # the umask may have taken bits away
            pending: list[str] = []
            size = 0
            for text in chunks:
                pending.append(text)
                size += len(text)
                if size >= _CHUNK:
                    _write_all(fd, "".join(pending))
                    pending, size = [], 0
            _write_all(fd, "".join(pending))
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


_CHUNK = 1 << 16


def _write_all(fd: int, text: str) -> None:
    view = memoryview(text.encode("utf-8"))
    while view:
        view = view[os.write(fd, view) :]


# --- JSON out -------------------------------------------------------------------------------------
# Written here rather than with `json`, which imports `re`, for a process that writes nothing
# else as JSON. json's indented form is pure Python anyway, so this is no slower; the layout puts
# one binding per line, which reads well and writes quicker.

_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
_INF = float("inf")


def _escape(char: str) -> str:
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    if " " <= char <= "~":
        return char
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # outside the BMP: a UTF-16 surrogate pair, as JSON spells it
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


def _string(text: str) -> str:
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return '"' + "".join(_escape(char) for char in text) + '"'


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"JSON keys are strings, not {type(key).__name__}")
    return _string(key)


def _value(value: object, indent: str, depth: int) -> str:
    """One JSON value; objects and arrays above depth 2 one item per line, deeper ones inline."""
    if isinstance(value, str):
        return _string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value or value in (_INF, -_INF):
            raise ValueError(f"{value!r} has no JSON form")
        return float.__repr__(value)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        if depth >= 2:
            return (
                "{" + ", ".join([_item(key, item, "", depth) for key, item in value.items()]) + "}"
            )
        inner = indent + "  "
        return (
            "{\n"
            + ",\n".join([inner + _item(key, item, inner, depth) for key, item in value.items()])
            + f"\n{indent}}}"
        )
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        if depth >= 2:
            return "[" + ", ".join([_value(v, "", depth + 1) for v in value]) + "]"
        inner = indent + "  "
        return (
            "[\n"
            + ",\n".join([f"{inner}{_value(v, inner, depth + 1)}" for v in value])
            + f"\n{indent}]"
        )
    raise TypeError(f"{type(value).__name__} has no JSON form")


def _item(key: object, value: object, indent: str, depth: int) -> str:
    """`"key": value`; the common values of a status file without a call to _value."""
    kind = type(value)
    if kind is str:
        text = _string(value)  # type: ignore[arg-type]
    elif value is None:
        text = "null"
    elif kind is int:
        text = int.__repr__(value)
    else:
        text = _value(value, indent, depth + 1)
    return f"{_key(key)}: {text}"


def to_json(value: object) -> str:
    """`value` as JSON text ending in a newline. TypeError or ValueError (NaN, infinities) for
    what JSON cannot hold, as json.dumps(allow_nan=False) raises."""
    return _value(value, "", 0) + "\n"
