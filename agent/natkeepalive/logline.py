"""The log line: `event=NAME key=value ...`, as the agent writes it and anyone reads it back.

Rules:
- One event, one line, its keys in the event's field order.
- The line is printable ASCII, always. Text that came from the network can contain anything, so
  every control or non-ASCII character is escaped (`\\xNN`, `\\uNNNN`, `\\UNNNNNNNN`), and a
  value with a space, `"`, `=` or `\\` is quoted. A reader that splits on unquoted spaces therefore
  never sees a forged `event=` key or a second line.
- An unquoted `-` is None; the string "-" is written quoted so `parse_line` can tell them apart.

Where the lines go is runtime/logsink.py's business. The daemon uses the formatting half only;
parse_line is for tests, the lab and tools reading a log back.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from natkeepalive.events import Event, Value

_QUOTE_TRIGGERS = frozenset(' "=\\')


# --- formatting ----------------------------------------------------------------------------------


def _escape_char(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_text(text: str) -> str:
    """`text` with every control and non-ASCII character escaped; nothing else changes."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if " " <= c <= "~" else _escape_char(c) for c in text)


def _format_str(text: str) -> str:
    if text and text != "-" and not any(c in _QUOTE_TRIGGERS for c in text):
        return escape_text(text)
    inner = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escape_text(inner)}"'


def format_float(number: float) -> str:
    """At most 3 decimals, trailing zeros dropped: 0.41, 12, 2.5."""
    text = f"{number:.3f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def format_value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    return _format_str(str(value))


def format_fields(name: str, items: Iterable[tuple[str, Value]]) -> str:
    """`event=NAME key=value ...`; keys are field names, trusted to be plain identifiers."""
    parts = [f"event={_format_str(name)}"]
    parts.extend(f"{key}={format_value(value)}" for key, value in items)
    return " ".join(parts)


def format_event(ev: Event) -> str:
    return format_fields(ev.NAME, ev.items())


# --- parsing (tests, the lab, and anyone reading the log back) ----------------------------------

_ESCAPE_WIDTH = {"x": 2, "u": 4, "U": 8}
_HEX = frozenset("0123456789abcdefABCDEF")


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        if i + 1 >= len(text):
            raise ValueError("dangling backslash")
        kind = text[i + 1]
        if kind in '\\"':
            out.append(kind)
            i += 2
            continue
        width = _ESCAPE_WIDTH.get(kind)
        digits = text[i + 2 : i + 2 + width] if width else ""
        if not width or len(digits) != width or not all(c in _HEX for c in digits):
            raise ValueError(f"bad escape at {text[i : i + 10]!r}")
        code = int(digits, 16)
        if code > 0x10FFFF:
            raise ValueError(f"bad escape at {text[i : i + 10]!r}")
        out.append(chr(code))
        i += 2 + width
    return "".join(out)


def _find_event_start(line: str) -> int:
    if line.startswith("event="):
        return 0
    if line.startswith("<"):  # a journald `<N>` prefix
        close = line.find(">")
        if close > 1 and line[1:close].isdigit() and line.startswith("event=", close + 1):
            return close + 1
    found = line.find(" event=")
    if found < 0:
        raise ValueError("no event= in line")
    return found + 1


def parse_line(line: str) -> tuple[str, dict[str, str | None]]:
    """(event name, {key: value}) from a line written by `format_event`.

    Anything before the first `event=` (a syslog header, a severity prefix) is skipped. Values come
    back as strings (None for `-`); converting them is the caller's business. Raises ValueError.
    """
    line = line.rstrip("\r\n")
    pos = _find_event_start(line)
    fields: dict[str, str | None] = {}
    end = len(line)
    while pos < end:
        if line[pos] == " ":
            pos += 1
            continue
        eq = line.find("=", pos)
        key = line[pos:eq] if eq >= 0 else ""
        if not key or any(c in ' "\\' for c in key):
            raise ValueError(f"bad key at column {pos}")
        if key in fields:
            raise ValueError(f"duplicate key {key!r}")
        pos = eq + 1
        value: str | None
        if pos < end and line[pos] == '"':
            close = pos + 1
            while close < end and line[close] != '"':
                close += 2 if line[close] == "\\" else 1
            if close >= end:
                raise ValueError(f"unterminated quote in {key!r}")
            value = _unescape(line[pos + 1 : close])
            pos = close + 1
            if pos < end and line[pos] != " ":
                raise ValueError(f"text after closing quote of {key!r}")
        else:
            stop = line.find(" ", pos)
            stop = end if stop < 0 else stop
            raw = line[pos:stop]
            if '"' in raw:
                raise ValueError(f"stray quote in {key!r}")
            value = None if raw == "-" else _unescape(raw)
            pos = stop
        fields[key] = value
    name = fields.pop("event")
    if not name:
        raise ValueError("empty event name")
    return name, fields
