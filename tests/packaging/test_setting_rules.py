"""One table of probe-setting values, checked against both places that enforce the rules: the
agent's loader (its per-key rules are agent/natkeepalive/config/rules.py; on YAML) and the OpenWrt
init script (its `nk_setting` and the uci_load_validate datatypes, on UCI; run under dash and
busybox ash with the emulated validate_data of uci_emul.sh). A value one side accepts and the other
refuses fails here: on a router it would pass `uci commit` and stop the agent at start, or the
reverse.

Values are written as a user types them in either file. The sides differ in notation only where
CASES says nothing: YAML's own spellings (0x10, 1_000, quoted strings) are the loader's tests'
business (tests/unit/test_config.py); UCI spells a boolean 0 or 1, YAML true or false.
Rules that span two keys (interval_min not above interval_max; `check: stun` needs a
stun_server) are the loader's alone: the init script renders them as written and the agent,
at start, names the key it refuses.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from natkeepalive.config.loader import SETTING_KEYS, parse_config
from natkeepalive.errors import ConfigError
from tests.packaging import initscript as openwrt

# (key, value as typed, valid?): each rule's boundaries, from both sides
CASES: list[tuple[str, str, bool]] = [
    ("interval", "auto", True),
    ("interval", "30", True),
    ("interval", "2.5", True),
    ("interval", "0.1", True),
    ("interval", "0.09", False),
    ("interval", "0", False),
    ("interval", "abc", False),
    ("interval", "-5", False),
    ("jitter", "0", True),
    ("jitter", "0.99", True),
    ("jitter", "1", False),
    ("jitter", "1.5", False),
    ("jitter", "-0.1", False),
    ("timeout", "3", True),
    ("timeout", "0.01", True),
    ("timeout", "0", False),
    ("timeout", "0.0", False),
    ("timeout", "-1", False),
    ("timeout", "soon", False),
    ("lagged_ms", "1", True),
    ("lagged_ms", "2000", True),
    ("lagged_ms", "0", False),
    ("lagged_ms", "2.5", False),
    ("fail_threshold", "1", True),
    ("fail_threshold", "0", False),
    ("fail_threshold", "1.5", False),
    ("ok_threshold", "3", True),
    ("ok_threshold", "0", False),
    ("retry_interval", "0.5", True),
    ("retry_interval", "0", False),
    ("inbound_check", "0", True),
    ("inbound_check", "10", True),
    ("inbound_check", "-1", False),
    ("inbound_check", "0.5", False),
    ("check", "auto", True),
    ("check", "sent-by", True),
    ("check", "relay", True),
    ("check", "off", True),
    ("check", "sentby", False),
    ("check", "AUTO", False),
    ("stun_server", "stun.example.net", True),
    ("stun_server", "203.0.113.10:3478", True),
    ("stun_server", "[2001:db8::1]:3478", True),
    ("stun_server", "stun:stun.example.net", True),
    ("stun_server", "sip:stun.example.net", False),
    ("stun_server", "stun example", False),
    ("stun_server", "203.0.113.10:0", False),
    ("require_2xx", "1", True),
    ("require_2xx", "0", True),
    ("require_2xx", "maybe", False),
    ("max_forwards", "0", True),
    ("max_forwards", "70", True),
    ("max_forwards", "255", True),
    ("max_forwards", "256", False),
    ("max_forwards", "-1", False),
    ("max_forwards", "7.5", False),
    ("user_agent", "Grandstream/1.0 (office)", True),
    ("user_agent", "x" * 100, True),
    ("user_agent", "x" * 101, False),
    ("user_agent", "tab\there", False),
    ("user_agent", "del\x7fhere", False),
    ("interval_min", "0.1", True),
    ("interval_min", "15", True),
    ("interval_min", "0.09", False),
    ("interval_min", "0", False),
    ("interval_max", "600", True),
    ("interval_max", "0", False),
    ("interval_max", "-25", False),
    ("safety", "1", True),
    ("safety", "0.5", True),
    ("safety", "0", False),
    ("safety", "0.0", False),
    ("safety", "1.5", False),
    ("safety", "high", False),
    ("rediscover", "0.5", True),
    ("rediscover", "0", False),
    ("rediscover", "off", False),
]
BOOLEANS = {"require_2xx": {"1": "true", "0": "false"}}  # UCI's spelling -> YAML's
IDS = [f"{key}={value[:12]!r}" for key, value, _ in CASES]


def yaml_scalar(key: str, value: str) -> str:
    """The value as a YAML flow scalar: a number stays a number, text becomes a string."""
    value = BOOLEANS.get(key, {}).get(value, value)
    if key in ("user_agent", "stun_server"):
        escaped = "".join(
            c if c.isprintable() and c not in '"\\' else f"\\x{ord(c):02x}" for c in value
        )
        return f'"{escaped}"'
    return value


def loader(key: str, value: str) -> object:
    """What the agent's loader makes of `key: value` in `defaults:`; ConfigError when refused."""
    text = (
        f"defaults:\n  {key}: {yaml_scalar(key, value)}\n"
        "bindings:\n  - {name: p, server: 'sip.example.net', source_port: 5062}\n"
    )
    return getattr(parse_config(text, "c.yaml").defaults, key)


def uci_text(cases: list[tuple[str, str, bool]]) -> str:
    """One binding section per case, named c0, c1, ... by its index in CASES."""
    sections = []
    for index, (key, value, _valid) in enumerate(cases):
        quoted = value.replace("'", "'\\''")
        sections.append(
            f"config binding 'c{CASES.index((key, value, _valid))}'\n"
            f"\toption server 'sip.example.net'\n"
            f"\toption source_port '{5062 + index}'\n"
            f"\toption {key} '{quoted}'\n"
        )
    return "\n".join(sections)


class UciSide:
    """The init script's verdict on every case: two renders per shell, one of the cases the
    table calls valid (it must render, and the agent's loader reads the rendered file), one of
    the others (each must be named in an error)."""

    def __init__(self, shell: str, tmp: Path) -> None:
        valid = [case for case in CASES if case[2]]
        invalid = [case for case in CASES if not case[2]]
        (tmp / "valid").mkdir()
        (tmp / "invalid").mkdir()
        self.valid_run = openwrt.render(shell, tmp / "valid", uci_text(valid))
        self.invalid_run = openwrt.render(shell, tmp / "invalid", uci_text(invalid))
        self.refused = {
            int(m.group(1))
            for line in openwrt.errors(self.invalid_run) + openwrt.errors(self.valid_run)
            for m in [re.search(r"nat-keepalive\.c(\d+)\.", line)]
            if m
        }
        self.rendered: dict[int, object] = {}
        if self.valid_run.returncode == 0:
            config = openwrt.parse(self.valid_run)
            for binding in config.bindings:
                index = int(binding.name[1:])
                self.rendered[index] = getattr(binding.settings, CASES[index][0])


@pytest.fixture(scope="module", params=openwrt.SHELLS)
def uci(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> UciSide:
    shell: str = request.param
    return UciSide(shell, tmp_path_factory.mktemp(f"uci-{shell}"))


@pytest.mark.parametrize(("key", "value", "valid"), CASES, ids=IDS)
def test_the_loader_follows_the_table(key: str, value: str, valid: bool) -> None:
    if valid:
        loader(key, value)
    else:
        with pytest.raises(ConfigError, match=f"defaults.{key}"):
            loader(key, value)


@pytest.mark.parametrize(("key", "value", "valid"), CASES, ids=IDS)
def test_the_init_script_follows_the_table(uci: UciSide, key: str, value: str, valid: bool) -> None:
    index = CASES.index((key, value, valid))
    if valid:
        assert index not in uci.refused, uci.valid_run.stderr
        assert uci.valid_run.returncode == 0, uci.valid_run.stderr
        # what the agent reads from the rendered file is what it reads from its own YAML
        assert uci.rendered[index] == loader(key, value)
    else:
        assert index in uci.refused, uci.invalid_run.stderr


def test_every_setting_has_a_valid_and_an_invalid_case() -> None:
    for key in SETTING_KEYS:
        assert {valid for k, _, valid in CASES if k == key} == {True, False}, key
    assert len(set(CASES)) == len(CASES)


def test_a_rule_that_differs_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The init script with max_forwards' bound moved (255 -> 254): the table finds it."""
    script = openwrt.INIT.read_text(encoding="utf-8")
    changed = script.replace('[ "$NK_V" -le 255 ]', '[ "$NK_V" -le 254 ]')
    assert changed != script
    mutant = tmp_path / "nat-keepalive.init"
    mutant.write_text(changed, encoding="utf-8")
    monkeypatch.setattr(openwrt, "INIT", mutant)
    (tmp_path / "run").mkdir()
    side = UciSide("dash", tmp_path / "run")
    wrong = [CASES[i] for i in side.refused if CASES[i][2]]
    assert wrong == [("max_forwards", "255", True)]
