#!/usr/bin/env python3
"""Writes the manual pages nat-keepalive(8) and nat-keepalive.yaml(5) from the documentation
they repeat, so the two never disagree: every region of README.md and docs/*.md that starts with
`<!-- man SECTION HEADING -->` becomes that heading of that page (where a region ends: regions()).

    packaging/man/build-man.py           # rewrite packaging/man/nat-keepalive.{8,yaml.5}
    packaging/man/build-man.py --check   # exit 1 when they are not what the docs say

Only the Markdown the documentation uses is understood (paragraphs, `code`, **bold**, *italic*,
links, fenced code, one level of `-` lists, tables, headings); anything else in a region is an
error rather than a page that renders wrongly. Standard library only: it runs at build time.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "packaging" / "man"
SOURCES = ("README.md", "docs/configuration.md", "docs/events.md")
MARK = re.compile(r"^<!-- man (\d) ([A-Z ]+) -->$")
END = "<!-- /man -->"


class Page(NamedTuple):
    file: str
    section: str
    name: str
    summary: str
    order: tuple[str, ...]
    fixed: dict[str, str]  # headings written here, not taken from the docs


PAGES = (
    Page("nat-keepalive.8", "8", "nat-keepalive",
         "keep NAT UDP bindings for SIP devices open with SIP OPTIONS keepalives",
         ("SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "SIGNALS", "EVENTS", "HOOKS",
          "STATUS FILE", "FILES", "SEE ALSO"),
         {"SEE ALSO": ".BR nat-keepalive.yaml (5),\n.BR syslog (3),\n.BR systemd.service (5)\n"
                      ".PP\nThe documentation in the project's docs/ directory: OpenWrt, "
                      "Debian, how it works, reliability, performance, monitoring.\n"}),
    Page("nat-keepalive.yaml.5", "5", "nat-keepalive.yaml",
         "configuration file of nat-keepalive",
         ("SYNOPSIS", "DESCRIPTION", "SEE ALSO"),
         {"SYNOPSIS": ".B /etc/nat\\-keepalive/config.yaml\n",
          "SEE ALSO": ".BR nat-keepalive (8)\n"}),
)


def version() -> str:
    text = (ROOT / "agent" / "natkeepalive" / "__init__.py").read_text(encoding="utf-8")
    found = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    if found is None:
        raise SystemExit("build-man.py: no __version__ in agent/natkeepalive/__init__.py")
    return found.group(1)


def regions() -> dict[tuple[str, str], list[str]]:
    """(section, heading) -> the Markdown lines of its region.

    A region starts at `<!-- man SECTION HEADING -->` and ends at `<!-- /man -->`, at the next
    region's start, at the end of the file, or at the first heading as high as the one it sits
    under: the heading that opens the region when it opens with one (that heading is the page's
    own section heading, so it is left out), else the last heading before it."""
    found: dict[tuple[str, str], list[str]] = {}
    for source in SOURCES:
        current: list[str] | None = None
        level = 0  # of the last heading seen
        stop = 0  # a heading at this level or higher ends the current region
        code = False  # inside a fenced block, where `# ...` is no heading
        for number, line in enumerate((ROOT / source).read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith("```"):
                code = not code
            mark = None if code else MARK.match(line)
            heading = None if code else re.match(r"(#+) ", line)
            if mark:
                key = (mark.group(1), mark.group(2))
                if key in found:
                    raise SystemExit(f"{source}:{number}: a second region {key}")
                current = found[key] = []
                stop = level
            elif line == END:
                if current is None:
                    raise SystemExit(f"{source}:{number}: {END} without a region")
                current = None
            elif heading:
                level = len(heading.group(1))
                if current is not None and not any(text.strip() for text in current):
                    stop = level  # the region's own title
                elif current is not None and level <= stop:
                    current = None
                elif current is not None:
                    current.append(line)
            elif current is not None:
                current.append(line)
    return found


def escape(text: str) -> str:
    """Plain text for roff: backslashes and non-ASCII characters as escapes."""
    text = text.replace("\\", "\\e")
    return "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)


def inline(text: str) -> str:
    """One paragraph's Markdown (newlines kept) as roff text."""
    out: list[str] = []
    for index, part in enumerate(re.split(r"`([^`]*)`", text)):
        if index % 2:
            out.append("\\fB" + escape(part).replace("-", "\\-") + "\\fR")
            continue
        part = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", part)
        part = escape(part)
        part = re.sub(r"\*\*(.+?)\*\*", r"\\fB\1\\fR", part, flags=re.S)
        part = re.sub(r"(?<![\w*])\*(\S(?:.*?\S)?)\*(?![\w*])", r"\\fI\1\\fR", part, flags=re.S)
        out.append(part)
    return "\n".join(_guard(line) for line in "".join(out).split("\n"))


def _guard(line: str) -> str:
    line = line.strip()
    return "\\&" + line if line.startswith((".", "'")) else line


def _table(rows: list[str], where: str) -> list[str]:
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows]
    if len(cells) < 3 or not all(set(c) <= set("-: ") for c in cells[1]):
        raise SystemExit(f"{where}: a table needs a header and a separator row")
    header, body = cells[0], cells[2:]
    out: list[str] = []
    for row in body:
        if len(row) != len(header):
            raise SystemExit(f"{where}: a table row with {len(row)} cells, not {len(header)}")
        out += [".TP", inline(row[0])]
        for name, cell in zip(header[1:], row[1:]):
            if not cell:
                continue
            if name == "meaning":
                cell = cell[0].upper() + cell[1:]
                out.append(inline(cell if cell.endswith(".") else cell + "."))
            elif cell == "required":
                out.append("Required.")
            else:
                out.append(inline(f"{name.capitalize()}: {cell}."))
    return out


def render(lines: list[str], where: str) -> list[str]:
    """A region's Markdown as roff requests."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.lstrip().startswith("```"):
            end = next((j for j in range(i + 1, len(lines))
                        if lines[j].strip() == "```"), None)
            if end is None:
                raise SystemExit(f"{where}: a code block is not closed")
            indent = len(line) - len(line.lstrip())
            out += [".PP", ".RS 4", ".nf"]
            for code in lines[i + 1:end]:
                code = escape(code[indent:].rstrip()).replace("-", "\\-")
                out.append("\\&" + code if code.startswith((".", "'")) else code)
            out += [".fi", ".RE"]
            i = end + 1
        elif line.startswith("#"):
            out += [".SS " + inline(line.lstrip("#").strip())]
            i += 1
        elif line.startswith("|"):
            end = i
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            out += _table(lines[i:end], where)
            i = end
        elif line.startswith("- "):
            item = [line[2:]]
            i += 1
            while i < len(lines) and lines[i].startswith("  ") and lines[i].strip():
                if lines[i].lstrip().startswith(("- ", "```")):
                    raise SystemExit(f"{where}: a nested list or code block in a list item")
                item.append(lines[i])
                i += 1
            out += [".IP \\(bu 2", inline("\n".join(item))]
        elif line.startswith((" ", "<", ">")) or re.match(r"\d+\. ", line):
            raise SystemExit(f"{where}: not understood: {line!r}")
        else:
            para = []
            while (i < len(lines) and lines[i].strip()
                   and not lines[i].startswith(("#", "|", "- ", "```"))):
                para.append(lines[i])
                i += 1
            text = "\n".join(para)
            if "`tests/" not in text:  # how this repository tests it: not for an installed page
                out += [".PP", inline(text)]
    return out


def build(page: Page, found: dict[tuple[str, str], list[str]]) -> str:
    out = [
        f".\\\" Generated by packaging/man/build-man.py from {', '.join(SOURCES)}: edit those.",
        f'.TH {page.name.upper()} {page.section} "" "nat-keepalive {version()}" '
        f'"{"System Administration" if page.section == "8" else "File Formats"}"',
        ".nh",  # no hyphenation: option and event names stay whole
        ".ad l",
        ".SH NAME",
        f"{escape(page.name).replace('-', chr(92) + '-')} \\- {escape(page.summary)}",
    ]
    for heading in page.order:
        out.append(f'.SH "{heading}"' if " " in heading else f".SH {heading}")
        if heading in page.fixed:
            out.append(page.fixed[heading].rstrip("\n"))
            continue
        key = (page.section, heading)
        if key not in found:
            raise SystemExit(f"build-man.py: no region <!-- man {page.section} {heading} -->")
        out += render(found.pop(key), f"{page.file} {heading}")
    return "\n".join(out) + "\n"


def pages() -> dict[str, str]:
    found = regions()
    built = {page.file: build(page, found) for page in PAGES}
    if found:
        raise SystemExit(f"build-man.py: regions no page uses: {sorted(found)}")
    return built


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        sys.stderr.write("usage: build-man.py [--check]\n")
        return 2
    stale = []
    for name, text in pages().items():
        path = OUT / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        sys.stderr.write("build-man.py: out of date, run packaging/man/build-man.py: "
                         f"{' '.join(stale)}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
