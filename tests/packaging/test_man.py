"""The manual pages nat-keepalive(8) and nat-keepalive.yaml(5): generated from the docs by
packaging/man/build-man.py and up to date, rendered by man(1) and groff without a warning, and
complete: every subcommand and option of the real parser, every configuration key of the real
loader."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from natkeepalive.cli.commands import build_parser
from natkeepalive.config import loader
from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
MAN = ROOT / "packaging" / "man"
BUILD = MAN / "build-man.py"
PAGES = ("nat-keepalive.8", "nat-keepalive.yaml.5")
ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "MANWIDTH": "80", "HOME": "/nonexistent"}


def roff(text: str) -> str:
    return text.replace("-", "\\-")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def options(parser: argparse.ArgumentParser) -> list[list[str]]:
    return [
        list(a.option_strings) for a in parser._actions if a.option_strings and a.dest != "help"
    ]


def test_pages_are_generated_from_the_docs_and_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, str(BUILD), "--check"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_check_notices_a_stale_page(tmp_path: Path) -> None:
    """--check compares, not just exits 0: a copy of the tree with one page edited fails."""
    for folder in ("docs", "packaging/man", "agent/natkeepalive"):
        (tmp_path / folder).mkdir(parents=True)
    for name in (
        "README.md",
        "docs/configuration.md",
        "docs/events.md",
        "packaging/man/build-man.py",
        "agent/natkeepalive/__init__.py",
        *(f"packaging/man/{page}" for page in PAGES),
    ):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    script = tmp_path / "packaging/man/build-man.py"
    ok = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    config = tmp_path / "docs/configuration.md"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "seconds between probes while unreachable", "seconds between retries"
        ),
        encoding="utf-8",
    )
    stale = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert stale.returncode == 1
    assert "nat-keepalive.yaml.5" in stale.stderr


@pytest.mark.parametrize("page", PAGES)
def test_man_renders_without_warnings(page: str) -> None:
    man = require_tool("man")
    done = subprocess.run(
        [man, "--warnings", "-E", "UTF-8", "-l", "-Tutf8", str(MAN / page)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "SEE ALSO" in re.sub(".\b", "", done.stdout)  # bold is overstrike on a pipe
    groff = require_tool("groff")
    strict = subprocess.run(
        [groff, "-ww", "-z", "-man", "-Tutf8", str(MAN / page)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert strict.returncode == 0 and strict.stderr == "", strict.stderr


def test_section_8_has_every_command_and_option() -> None:
    text = (MAN / "nat-keepalive.8").read_text(encoding="utf-8")
    synopsis = text.split(".SH SYNOPSIS\n", 1)[1].split("\n.SH ", 1)[0]
    assert roff("nat-keepalive --version") in synopsis
    for name, parser in subcommands().items():
        lines = synopsis.split(roff(f"nat-keepalive {name} "), 1)
        assert len(lines) == 2, f"{name} is not in the synopsis"
        own = re.split(r"\nnat\\-keepalive ", lines[1], maxsplit=1)[0]
        for strings in options(parser):
            assert any(roff(o) in own for o in strings), f"{name} {strings} not in the synopsis"
            described = [o for o in strings if f"\\fB{roff(o)}" in text]
            assert described, f"{name} {strings} is not described"
        assert f"\\fB{name}\\fR" in text, f"{name} is not described"


def test_section_5_has_every_key() -> None:
    text = (MAN / "nat-keepalive.yaml.5").read_text(encoding="utf-8")
    keys = [
        *loader.TOP_KEYS,
        *(f"log.{k}" for k in loader.LOG_KEYS),
        *(f"hooks.{k}" for k in loader.HOOK_KEYS),
        *loader.SETTING_KEYS,
        *loader.BINDING_KEYS,
    ]
    for key in keys:
        if key in ("log", "hooks"):
            continue  # their keys are listed as log.KEY and hooks.KEY
        assert f".TP\n\\fB{roff(key)}\\fR\n" in text, f"{key} has no entry"


def test_the_deb_installs_them() -> None:
    script = (ROOT / "packaging" / "deb" / "build-deb.sh").read_text(encoding="utf-8")
    for page in PAGES:
        section = page.rsplit(".", 1)[1]
        assert (
            f'"$root/packaging/man/{page}" >"$stage/usr/share/man/man{section}/{page}.gz"' in script
        )


def test_no_unrendered_markdown() -> None:
    for page in PAGES:
        body = "\n".join(
            line
            for line in (MAN / page).read_text(encoding="utf-8").splitlines()
            if not line.startswith((".nf", ".fi"))
        )
        assert "`" not in body and "**" not in body and "](" not in body, page
