"""Bounded scans of header text, shared by the parser's parts: splitting a value outside quoted
strings and <...> sections, and showing hostile input in an error message without copying it
whole."""

from __future__ import annotations

from natkeepalive.errors import SipParseError

MAX_QUOTED = 64  # quoted strings and <...> sections in one Via header value


def _show(text: str, limit: int = 60) -> str:
    """A bounded repr for error messages: hostile input must not make them huge."""
    return repr(text[:limit] + "..." if len(text) > limit else text)


def split_outside(text: str, sep: str, max_splits: int = -1) -> list[str]:
    """Split on `sep` except inside a quoted string (with backslash escapes) or <...>.

    At most `max_splits` splits, like str.split. Jumps between special characters with str.find,
    so a long hostile value costs C-speed scans rather than a Python step per character; more
    than MAX_QUOTED quoted strings or <...> sections raise SipParseError.
    """
    if '"' not in text and "<" not in text:
        return text.split(sep, max_splits)  # the common case
    # The same text with escaped pairs (backslash-backslash, backslash-quote) blanked, so the
    # closing quote of a quoted string is the next '"' in it: a run of backslashes pairs up from
    # its left end, exactly as the escapes do.
    quotes = text.replace("\\\\", "\0\0").replace('\\"', "\0\0") if "\\" in text else text
    parts: list[str] = []
    start = pos = sections = 0
    at_sep = text.find(sep)
    at_quote = text.find('"')
    at_angle = text.find("<")
    while True:
        # A cached position stays valid while it is not behind `pos`.
        if 0 <= at_sep < pos:
            at_sep = text.find(sep, pos)
        if 0 <= at_quote < pos:
            at_quote = text.find('"', pos)
        if 0 <= at_angle < pos:
            at_angle = text.find("<", pos)
        found = [at for at in (at_sep, at_quote, at_angle) if at >= 0]
        if not found:
            break
        first = min(found)
        if first == at_sep:
            if len(parts) == max_splits:
                break
            parts.append(text[start:first])
            start = pos = first + 1
        elif sections == MAX_QUOTED:
            raise SipParseError(f"more than {MAX_QUOTED} quoted strings or <...> in {_show(text)}")
        elif first == at_quote:
            sections += 1
            close = quotes.find('"', first + 1)
            pos = len(text) if close < 0 else close + 1
        else:
            sections += 1
            close = text.find(">", first + 1)
            pos = len(text) if close < 0 else close + 1
    parts.append(text[start:])
    return parts
