"""The user documentation: a short README that leads to docs/, links that resolve, the two
commands it promises (CI runs exactly the README's test command), and nothing that cites what a
user of this repository cannot see."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
USER_DOCS = [README, ROOT / "CHANGELOG.md", *DOCS]
EXPECTED = {
    "configuration",
    "events",
    "openwrt",
    "debian",
    "how-it-works",
    "reliability",
    "performance",
    "monitoring",
    "development",
}


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^ *```[a-z]*\n(.*?)^ *```", text, re.M | re.S)


def test_readme_is_short_and_points_to_every_doc() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    assert {p.stem for p in DOCS} >= EXPECTED
    for name in EXPECTED:
        assert f"(docs/{name}.md)" in text, name
    assert "(CHANGELOG.md)" in text and "(LICENSE)" in text


def test_readme_opens_with_what_it_is_not_with_sudo() -> None:
    text = README.read_text(encoding="utf-8")
    first_block = text.index("```")
    assert "sudo" not in text[:first_block]
    assert text.index("## Quick start") < text.index("tests/lab/demo.sh")


def test_the_two_commands_and_ci() -> None:
    blocks = [
        line.strip()
        for block in code_blocks(README.read_text(encoding="utf-8"))
        for line in block.splitlines()
    ]
    assert "sudo bash tests/lab/demo.sh" in blocks
    assert "sudo bash tests/run.sh" in blocks
    assert (ROOT / "tests" / "lab" / "demo.sh").is_file()
    ci = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # CI runs as root: the README's command without its sudo
    assert "bash tests/run.sh" in ci


def test_relative_links_resolve() -> None:
    for doc in USER_DOCS:
        text = doc.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (doc.parent / target).exists(), f"{doc.name}: {target}"


def test_anchors_resolve() -> None:
    def anchors(path: Path) -> set[str]:
        out = set()
        for heading in re.findall(r"^#+ (.*)$", path.read_text(encoding="utf-8"), re.M):
            slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
            out.add(slug)
        return out

    for doc in USER_DOCS:
        text = doc.read_text(encoding="utf-8")
        for target, anchor in re.findall(r"\]\(([^)#:]*)#([^)]+)\)", text):
            path = doc.parent / target if target else doc
            assert anchor in anchors(path), f"{doc.name}: {target}#{anchor}"


def test_no_citation_a_user_cannot_follow() -> None:
    pattern = re.compile(r"\b[Ii]ssues? #?\d+|\b[Tt]he issue\b|DESIGN|\bshared/")
    for doc in USER_DOCS:
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            assert not pattern.search(line), f"{doc.name}:{number}: {line}"


def test_license_is_mit_as_the_metadata_says() -> None:
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License\n")
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^license = \{text = "MIT"\}$', pyproject, re.M)
    assert re.search(r'^readme = "README\.md"$', pyproject, re.M)


def test_every_event_is_in_the_events_table() -> None:
    from natkeepalive.events import ALL_EVENTS

    table = [
        line
        for line in (ROOT / "docs" / "events.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| `")
    ]
    named = {name for line in table for name in re.findall(r"`([a-z0-9-]+)`", line.split("|")[1])}
    assert set(ALL_EVENTS) <= named, sorted(set(ALL_EVENTS) - named)
