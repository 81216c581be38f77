"""Every input the fuzzers ever tripped on (tests/fuzz/crashes/), the whole seed corpus, and a check
that the fuzz invariants are not vacuous: they do catch an engine that lets a stray datagram
change its state, and a parser that raises something else than SipParseError."""

from __future__ import annotations

from pathlib import Path

import pytest

from natkeepalive.core import engine as engine_module
from natkeepalive.sip import message as message_module
from tests.fuzz import targets
from tests.fuzz.run import CORPUS

CRASHES = Path(__file__).resolve().parents[1] / "fuzz" / "crashes"


def _inputs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".md"))


def test_kept_crash_inputs_name_a_target() -> None:
    """A file in crashes/ is replayed through the target its name starts with (below): one
    that names none would never run."""
    for path in _inputs(CRASHES):
        assert path.name.split("-", 1)[0] in targets.TARGETS, path.name


@pytest.mark.parametrize("target", sorted(targets.TARGETS))
def test_whole_seed_corpus_and_kept_crashes(target: str) -> None:
    """Every seed of the target, then every input kept in crashes/ for it (none so far)."""
    seeds = _inputs(CORPUS / target)
    assert seeds
    kept = [p for p in _inputs(CRASHES) if p.name.startswith(f"{target}-")]
    for path in seeds + kept:
        targets.TARGETS[target](path.read_bytes())


def test_engine_invariant_catches_a_state_change(monkeypatch: pytest.MonkeyPatch) -> None:
    targets._template("learned")  # built with the real engine before it is broken
    real = engine_module.BindingEngine.receive_datagram

    def leaky(
        self: engine_module.BindingEngine,
        data: bytes,
        source: tuple[str, int],
        now: float,
        channel: str = engine_module.BINDING,
    ) -> None:
        real(self, data, source, now, channel)
        self.timeouts += 1  # a stray datagram must never do this

    monkeypatch.setattr(engine_module.BindingEngine, "receive_datagram", leaky)
    with pytest.raises(AssertionError, match="changed the engine's state"):
        targets.engine(targets.engine_input("learned", b"junk", source=2))


def test_engine_invariant_catches_an_uncounted_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    targets._template("first")

    def silent(
        self: engine_module.BindingEngine,
        data: bytes,
        source: tuple[str, int],
        now: float,
        channel: str = engine_module.BINDING,
    ) -> None:
        return None

    monkeypatch.setattr(engine_module.BindingEngine, "receive_datagram", silent)
    with pytest.raises(AssertionError, match="not counted"):
        targets.engine(targets.engine_input("first", b"junk"))


def test_parser_invariant_catches_a_foreign_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(value: str) -> tuple[int, str]:
        raise IndexError("boom")

    monkeypatch.setattr(message_module, "_parse_cseq", broken)
    monkeypatch.setattr(targets, "parse_message", message_module.parse_message)
    with pytest.raises(IndexError):
        targets.parser(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCall-ID: a\r\nCSeq: 1 X\r\n\r\n")
