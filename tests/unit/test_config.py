"""The configuration loader: every validation rule with its exact message, line and key path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

import natkeepalive.config.loader as loader
from natkeepalive.config import (
    DEFAULT_CONFIG_PATH,
    BindingConfig,
    Config,
    HooksConfig,
    LogConfig,
    ProbeSettings,
    Target,
    config_path,
    load_config,
    parse_config,
)
from natkeepalive.errors import ConfigError
from natkeepalive.record import field_names

EXAMPLE = Path(__file__).resolve().parents[2] / "agent" / "natkeepalive" / "config" / "example.yaml"

_LOADERS = [pytest.param(yaml.SafeLoader, id="pure")]
if hasattr(yaml, "CSafeLoader"):
    _LOADERS.insert(0, pytest.param(yaml.CSafeLoader, id="libyaml"))


@pytest.fixture(autouse=True, params=_LOADERS)
def yaml_loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every test runs with libyaml and with pure-Python PyYAML (routers may lack libyaml)."""
    monkeypatch.setattr(loader, "_LOADER", request.param)
    return request.param


def parse(text: str) -> Config:
    return parse_config(textwrap.dedent(text).lstrip("\n"), "c.yaml")


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value


def check(err: ConfigError, line: int | None, key: str, message: str) -> None:
    assert (err.line, err.key, err.message) == (line, key, message)
    assert err.file == "c.yaml"


BINDING = """\
bindings:
  - name: a
    server: sip.example.net
    source_port: 5062
"""


# --- error format ------------------------------------------------------------------------------


def test_str_names_file_line_and_key() -> None:
    err = error(
        BINDING
        + """\
  - name: b
    server: sip.example.net
    source_port: 70000
"""
    )
    assert str(err) == "c.yaml:7: bindings[1].source_port: must be between 1 and 65535, not 70000"


# --- the file as a whole -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", None, "the file is empty; it needs at least a 'bindings' list"),
        ("# only a comment\n\n", None, "the file is empty; it needs at least a 'bindings' list"),
        (
            "- a\n- b\n",
            1,
            "the top level must be a mapping with keys log, status_file, metrics_file, "
            "defaults, bindings, hooks, user, not a list",
        ),
        (
            "hello\n",
            1,
            "the top level must be a mapping with keys log, status_file, metrics_file, "
            "defaults, bindings, hooks, user, not the string 'hello'",
        ),
    ],
)
def test_top_level_shape(text: str, line: int | None, message: str) -> None:
    check(error(text), line, "", message)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("bindings: []\nlog: {level: info\n", 3),  # unclosed flow mapping, found at the end
        ("log:\n  level: info: x\n", 2),  # a mapping value where none may be
        ("log:\n  level: info\n\tfacility: daemon\n", 3),  # a tab in the indentation
        ("bindings: []\n---\nbindings: []\n", 2),  # two documents
        ("bindings: []\nlog: *nowhere\n", 2),  # an alias with no anchor
        ('bindings: []\nuser: "a\x01b"\n', 2),  # a control character
        ("log: {level: info}\n  user: x\n", 2),  # bad indentation
    ],
)
def test_yaml_syntax_errors_name_the_line(text: str, line: int) -> None:
    err = parse_error = error(text)
    assert err.line == line, parse_error
    assert err.key == ""
    assert err.message.startswith("invalid YAML")


def test_yaml_syntax_error_names_the_column() -> None:
    err = error("log:\n  level: info: x\n")
    assert err.message.startswith("invalid YAML (column 14): ")


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        ("bindings: []\n", 1, "bindings", "must be a non-empty list of bindings"),
        ("bindings:\n", 1, "bindings", "must be a non-empty list of bindings"),
        ("log: {level: info}\n", 1, "bindings", "required key is missing"),
        ("bindings: {name: a}\n", 1, "bindings", "must be a list, not a mapping"),
        ("bindings: provider\n", 1, "bindings", "must be a list, not the string 'provider'"),
        (
            "bindings:\n  - provider\n",
            2,
            "bindings[0]",
            "must be a mapping, not the string 'provider'",
        ),
        ("bindings:\n  -\n", 2, "bindings[0]", "must be a mapping, not empty"),
        ("bindings: !!set {a}\n", 1, "bindings", "must be a list, not a mapping"),
        (
            "bindings: !!omap [a: 1]\n",
            1,
            "bindings",
            "unsupported YAML tag 'tag:yaml.org,2002:omap'",
        ),
        (
            "defaults: !!set {a}\n" + BINDING,
            1,
            "defaults",
            "unsupported YAML tag 'tag:yaml.org,2002:set'",
        ),
        ("defaults: [1]\n" + BINDING, 1, "defaults", "must be a mapping, not a list"),
        ("log: syslog\n" + BINDING, 1, "log", "must be a mapping, not the string 'syslog'"),
        ("hooks: 3\n" + BINDING, 1, "hooks", "must be a mapping, not 3"),
        (
            "defaults:\n  timeout: !custom 5\n" + BINDING,
            2,
            "defaults.timeout",
            "unsupported YAML tag '!custom'",
        ),
        (
            "user: !!binary aGk=\n" + BINDING,
            1,
            "user",
            "unsupported YAML tag 'tag:yaml.org,2002:binary'",
        ),
        ("? [a]\n: 1\n" + BINDING, 1, "", "keys must be names, not a list"),
    ],
)
def test_structure(text: str, line: int, key: str, message: str) -> None:
    check(error(text), line, key, message)


def test_empty_sections_mean_defaults() -> None:
    config = parse("log:\ndefaults:\nhooks:\nuser:\n" + BINDING)
    assert config.log == LogConfig()
    assert config.defaults == ProbeSettings()
    assert config.hooks == HooksConfig()
    assert config.user is None


# --- unknown and duplicate keys ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        (
            "binding:\n  - name: a\n",
            1,
            "binding",
            "unknown key 'binding' (did you mean 'bindings'?)",
        ),
        (
            "log:\n  levle: info\n" + BINDING,
            2,
            "log.levle",
            "unknown key 'levle' (did you mean 'level'?)",
        ),
        (
            "defaults:\n  intervall: 30\n" + BINDING,
            2,
            "defaults.intervall",
            "unknown key 'intervall' (did you mean 'interval'?)",
        ),
        (
            "defaults:\n  interval_auto: true\n" + BINDING,
            2,
            "defaults.interval_auto",
            "unknown key 'interval_auto' (did you mean 'interval_max'?)",
        ),
        (
            BINDING + "    sorce_port: 5062\n",
            5,
            "bindings[0].sorce_port",
            "unknown key 'sorce_port' (did you mean 'source_port'?)",
        ),
        (
            BINDING + "    jiter: 0.1\n",
            5,
            "bindings[0].jiter",
            "unknown key 'jiter' (did you mean 'jitter'?)",
        ),
        (
            "hooks:\n  event: [reachable]\n" + BINDING,
            2,
            "hooks.event",
            "unknown key 'event' (did you mean 'events'?)",
        ),
        ("colour: blue\n" + BINDING, 1, "colour", "unknown key 'colour'"),
        ("defaults:\n  name: x\n" + BINDING, 2, "defaults.name", "unknown key 'name'"),
        ("1: x\n" + BINDING, 1, "1", "unknown key '1'"),
    ],
)
def test_unknown_keys(text: str, line: int, key: str, message: str) -> None:
    check(error(text), line, key, message)


def test_difflib_is_loaded_only_for_a_suggestion() -> None:
    code = (
        "import sys\n"
        "from natkeepalive.config import load_config, parse_config\n"
        f"load_config({str(EXAMPLE)!r})\n"
        "assert 'difflib' not in sys.modules, 'difflib loaded on the good path'\n"
        "try:\n"
        "    parse_config('bindngs: []', 'x')\n"
        "except Exception as exc:\n"
        "    assert 'did you mean' in str(exc)\n"
        "assert 'difflib' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        (BINDING + "log: {}\nlog: {}\n", 6, "log", "duplicate key 'log' (first at line 5)"),
        (
            "defaults:\n  interval: 20\n  timeout: 2\n  interval: 30\n" + BINDING,
            4,
            "defaults.interval",
            "duplicate key 'interval' (first at line 2)",
        ),
        (
            BINDING + "    source_port: 5064\n",
            5,
            "bindings[0].source_port",
            "duplicate key 'source_port' (first at line 4)",
        ),
        (
            "log: {level: info, level: debug}\n" + BINDING,
            1,
            "log.level",
            "duplicate key 'level' (first at line 1)",
        ),
        (
            "hooks:\n  events: []\n  events: []\n" + BINDING,
            3,
            "hooks.events",
            "duplicate key 'events' (first at line 2)",
        ),
    ],
)
def test_duplicate_keys(text: str, line: int, key: str, message: str) -> None:
    check(error(text), line, key, message)


# --- probe settings ----------------------------------------------------------------------------


def in_defaults(key: str, value: str) -> str:
    return f"defaults:\n  {key}: {value}\n" + BINDING


def in_binding(key: str, value: str) -> str:
    return BINDING + f"    {key}: {value}\n"


BAD_SETTINGS = [
    ("interval", "0", "must be greater than 0, not 0"),
    ("interval", "-5", "must be greater than 0, not -5"),
    ("interval", "fast", "must be a number of seconds or \"auto\", not 'fast'"),
    ("interval", "AUTO", "must be a number of seconds or \"auto\", not 'AUTO'"),
    ("interval", '"25"', "must be a number of seconds or \"auto\", not '25'"),
    ("interval", "true", "must be a number, not a boolean (true)"),
    ("interval", "[25]", "must be a number, not a list"),
    ("interval", "", "must be a number, not empty"),
    ("interval", ".inf", "must be a finite number, not .inf"),
    ("jitter", "1", "must be at least 0 and less than 1, not 1"),
    ("jitter", "-0.1", "must be at least 0 and less than 1, not -0.1"),
    ("jitter", ".nan", "must be a finite number, not .nan"),
    ("timeout", "0", "must be greater than 0, not 0"),
    ("timeout", "-1.5", "must be greater than 0, not -1.5"),
    ("timeout", '"3"', "must be a number, not the string '3'"),
    ("timeout", "2024-01-01", "must be a number, not 2024-01-01"),
    ("lagged_ms", "0", "must be at least 1, not 0"),
    ("lagged_ms", "2.5", "must be an integer, not 2.5"),
    ("lagged_ms", "2000.0", "must be an integer, not 2000.0"),
    ("lagged_ms", "true", "must be an integer, not a boolean (true)"),
    ("lagged_ms", '"2000"', "must be an integer, not the string '2000'"),
    ("fail_threshold", "0", "must be at least 1, not 0"),
    ("fail_threshold", "1.5", "must be an integer, not 1.5"),
    ("fail_threshold", "yes", "must be an integer, not a boolean (yes)"),
    ("ok_threshold", "0", "must be at least 1, not 0"),
    ("ok_threshold", "{a: 1}", "must be an integer, not a mapping"),
    ("retry_interval", "0", "must be greater than 0, not 0"),
    ("retry_interval", "false", "must be a number, not a boolean (false)"),
    ("inbound_check", "-1", "must be at least 0, not -1"),
    ("inbound_check", "0.5", "must be an integer, not 0.5"),
    ("require_2xx", '"yes"', "must be true or false, not the string 'yes'"),
    ("require_2xx", "'true'", "must be true or false, not the string 'true'"),
    ("require_2xx", "1", "must be true or false, not 1"),
    ("require_2xx", "", "must be true or false, not empty"),
    ("max_forwards", "256", "must be between 0 and 255, not 256"),
    ("max_forwards", "-1", "must be between 0 and 255, not -1"),
    ("max_forwards", "7.0", "must be an integer, not 7.0"),
    ("user_agent", '"a\\tb"', "must not contain control characters"),
    ("user_agent", '"a\\x7fb"', "must not contain control characters"),
    ("user_agent", '"a\\u0085b"', "must not contain control characters"),
    ("user_agent", "x" * 101, "must be at most 100 characters, not 101"),
    ("user_agent", "", "must be a string, not empty"),
    ("user_agent", "[a]", "must be a string, not a list"),
    ("interval_min", "0", "must be greater than 0, not 0"),
    ("interval_max", "-25", "must be greater than 0, not -25"),
    ("safety", "0", "must be greater than 0 and at most 1, not 0"),
    ("safety", "1.5", "must be greater than 0 and at most 1, not 1.5"),
    ("safety", "high", "must be a number, not the string 'high'"),
    ("rediscover", "0", "must be greater than 0, not 0"),
    ("rediscover", "off", "must be a number, not a boolean (off)"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD_SETTINGS)
def test_bad_setting_in_defaults(key: str, value: str, message: str) -> None:
    check(error(in_defaults(key, value)), 2, f"defaults.{key}", message)


@pytest.mark.parametrize(("key", "value", "message"), BAD_SETTINGS)
def test_bad_setting_in_a_binding(key: str, value: str, message: str) -> None:
    check(error(in_binding(key, value)), 5, f"bindings[0].{key}", message)


GOOD_SETTINGS = [
    ("interval", "30", 30.0),
    ("interval", "2.5", 2.5),
    ("interval", "0x10", 16.0),
    ("jitter", "0", 0.0),
    ("jitter", "0.99", 0.99),
    ("timeout", "1", 1.0),
    ("lagged_ms", "1", 1),
    ("lagged_ms", "1_000", 1000),
    ("fail_threshold", "5", 5),
    ("ok_threshold", "3", 3),
    ("retry_interval", "0.5", 0.5),
    ("inbound_check", "0", 0),
    ("require_2xx", "true", True),
    ("require_2xx", "yes", True),
    ("require_2xx", "off", False),
    ("max_forwards", "0", 0),
    ("max_forwards", "255", 255),
    ("user_agent", '""', ""),
    ("user_agent", "x" * 100, "x" * 100),
    ("user_agent", "1.0", "1.0"),
    ("user_agent", '"Grüße/2 (SIP)"', "Grüße/2 (SIP)"),
    ("interval_min", "1", 1.0),
    ("interval_max", "600", 600.0),
    ("safety", "1", 1.0),
    ("safety", "0.5", 0.5),
    ("rediscover", "0.5", 0.5),
]


@pytest.mark.parametrize(("key", "value", "expected"), GOOD_SETTINGS)
def test_good_setting(key: str, value: str, expected: object) -> None:
    from_defaults = parse(in_defaults(key, value))
    from_binding = parse(in_binding(key, value))
    for settings in (
        from_defaults.defaults,
        from_defaults.bindings[0].settings,
        from_binding.bindings[0].settings,
    ):
        got = getattr(settings, key)
        assert got == expected
        assert type(got) is type(expected)
    assert from_binding.defaults == ProbeSettings()


def test_seconds_are_floats_and_counts_are_ints() -> None:
    settings = parse(in_defaults("interval", "30")).defaults
    assert isinstance(settings.interval, float)
    assert isinstance(settings.timeout, float)
    assert isinstance(settings.lagged_ms, int)


# --- interval: auto and interval_min/interval_max ----------------------------------------------


def test_interval_auto_starts_at_the_safe_interval() -> None:
    config = parse("defaults:\n  interval: auto\n  interval_max: 60\n" + BINDING)
    assert config.defaults.interval_auto is True
    assert config.defaults.interval == 25.0
    assert config.bindings[0].settings.interval_auto is True
    assert config.bindings[0].settings.interval == 25.0


def test_interval_auto_starts_at_interval_max_when_lower_than_25_s() -> None:
    config = parse("defaults:\n  interval: auto\n  interval_max: 20\n" + BINDING)
    assert (config.defaults.interval, config.defaults.interval_max) == (20.0, 20.0)


def test_interval_auto_without_interval_max_uses_the_model_default() -> None:
    settings = parse(in_binding("interval", "auto")).bindings[0].settings
    assert (settings.interval_auto, settings.interval) == (True, 25.0)
    assert settings.interval_max == ProbeSettings().interval_max == 300.0


def test_interval_auto_uses_the_bindings_own_interval_max() -> None:
    config = parse(
        "defaults:\n  interval: auto\n  interval_max: 20\n" + BINDING + "    interval_max: 15\n"
    )
    assert (config.bindings[0].settings.interval, config.defaults.interval) == (15.0, 20.0)


def test_a_binding_interval_turns_auto_off() -> None:
    config = parse("defaults:\n  interval: auto\n" + BINDING + "    interval: 15\n")
    assert config.defaults.interval_auto is True
    assert (config.bindings[0].settings.interval_auto, config.bindings[0].settings.interval) == (
        False,
        15.0,
    )


def test_a_binding_can_ask_for_auto() -> None:
    config = parse("defaults:\n  interval: 15\n" + BINDING + '    interval: "auto"\n')
    assert config.defaults.interval_auto is False
    assert config.bindings[0].settings.interval_auto is True


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        # only defaults: the model's interval_max (300) is the other side
        (
            "defaults:\n  interval_min: 400\n" + BINDING,
            2,
            "defaults.interval_min",
            "interval_min (400) must not be greater than interval_max (300)",
        ),
        (
            "defaults:\n  interval_max: 4\n" + BINDING,
            2,
            "defaults.interval_max",
            "interval_min (5) must not be greater than interval_max (4)",
        ),
        (
            "defaults:\n  interval_min: 10\n  interval_max: 8.5\n" + BINDING,
            2,
            "defaults.interval_min",
            "interval_min (10) must not be greater than interval_max (8.5)",
        ),
        # the more specific level is blamed
        (
            "defaults:\n  interval_min: 10\n" + BINDING + "    interval_max: 8\n",
            7,
            "bindings[0].interval_max",
            "interval_min (10) must not be greater than interval_max (8)",
        ),
        (
            "defaults:\n  interval_max: 8\n" + BINDING + "    interval_min: 10\n",
            7,
            "bindings[0].interval_min",
            "interval_min (10) must not be greater than interval_max (8)",
        ),
        (
            BINDING + "    interval_max: 8\n    interval_min: 10\n",
            6,
            "bindings[0].interval_min",
            "interval_min (10) must not be greater than interval_max (8)",
        ),
    ],
)
def test_interval_min_not_above_interval_max(text: str, line: int, key: str, message: str) -> None:
    check(error(text), line, key, message)


def test_interval_min_equal_to_interval_max_is_fine() -> None:
    settings = parse(in_binding("interval_min", "300")).bindings[0].settings
    assert settings.interval_min == settings.interval_max == 300.0


# --- defaults merging --------------------------------------------------------------------------


def test_binding_keys_win_then_defaults_then_model() -> None:
    config = parse("""
        defaults:
          timeout: 5
          jitter: 0.1
          user_agent: "edge/1"
        bindings:
          - name: a
            server: sip.example.net
            source_port: 5062
            timeout: 1.5
          - name: b
            server: sip.example.net
            source_port: 5064
    """)
    model = ProbeSettings()
    first, second = (b.settings for b in config.bindings)
    assert (first.timeout, first.jitter, first.user_agent) == (1.5, 0.1, "edge/1")
    assert (second.timeout, second.jitter, second.user_agent) == (5.0, 0.1, "edge/1")
    assert first.max_forwards == second.max_forwards == model.max_forwards
    assert config.defaults == ProbeSettings(timeout=5.0, jitter=0.1, user_agent="edge/1")


def test_every_defaults_key_can_be_set_per_binding() -> None:
    values = {
        "interval": "40",
        "jitter": "0.3",
        "timeout": "4",
        "lagged_ms": "900",
        "fail_threshold": "4",
        "ok_threshold": "2",
        "retry_interval": "7",
        "inbound_check": "3",
        "require_2xx": "true",
        "max_forwards": "10",
        "user_agent": "x",
        "interval_min": "8",
        "interval_max": "50",
        "safety": "0.7",
        "rediscover": "12",
        "check": "stun",
        "stun_server": "192.0.2.9",
    }
    assert set(values) == set(loader.SETTING_KEYS)
    text = BINDING + "".join(f"    {k}: {v}\n" for k, v in values.items())
    settings = parse(text).bindings[0].settings
    assert settings == ProbeSettings(
        interval=40.0,
        jitter=0.3,
        timeout=4.0,
        lagged_ms=900,
        fail_threshold=4,
        ok_threshold=2,
        retry_interval=7.0,
        inbound_check=3,
        require_2xx=True,
        max_forwards=10,
        user_agent="x",
        interval_min=8.0,
        interval_max=50.0,
        safety=0.7,
        rediscover=12.0,
        check="stun",
        stun_server=Target("192.0.2.9", 3478),
    )


def test_setting_keys_cover_the_model() -> None:
    fields = set(field_names(ProbeSettings)) - {"interval_auto"}
    assert set(loader.SETTING_KEYS) == fields


# --- bindings ----------------------------------------------------------------------------------


def one(
    extra: str = "", name: str = "a", server: str = "sip.example.net", port: str = "5062"
) -> str:
    return f"bindings:\n  - name: {name}\n    server: {server}\n    source_port: {port}\n" + extra


def test_a_minimal_binding() -> None:
    config = parse(one())
    assert config.bindings == (
        BindingConfig(name="a", server=Target("sip.example.net", 5060), source_port=5062),
    )
    assert config == Config(bindings=config.bindings, source="c.yaml")


@pytest.mark.parametrize(
    ("server", "target"),
    [
        ("sip.example.net", Target("sip.example.net", 5060)),
        ("sip.example.net:5080", Target("sip.example.net", 5080)),
        ("203.0.113.10", Target("203.0.113.10", 5060)),
        ("'[2001:db8::1]:5070'", Target("2001:db8::1", 5070)),
        ("2001:db8::1", Target("2001:db8::1", 5060)),
        ("sip:pbx.example.net:5062", Target("pbx.example.net", 5062)),
        ("does-not-resolve.invalid", Target("does-not-resolve.invalid", 5060)),
    ],
)
def test_server_targets(server: str, target: Target) -> None:
    assert parse(one(server=server)).bindings[0].server == target


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        (
            "bindings:\n  - server: x\n    source_port: 5062\n",
            2,
            "bindings[0].name",
            "required key is missing",
        ),
        (
            "bindings:\n  - name: a\n    source_port: 5062\n",
            2,
            "bindings[0].server",
            "required key is missing",
        ),
        (
            "bindings:\n  - name: a\n    server: x\n",
            2,
            "bindings[0].source_port",
            "required key is missing",
        ),
        (
            one(name="'my phone'"),
            2,
            "bindings[0].name",
            "must match [A-Za-z0-9_.-]+, not 'my phone'",
        ),
        (one(name="a/b"), 2, "bindings[0].name", "must match [A-Za-z0-9_.-]+, not 'a/b'"),
        (one(name="''"), 2, "bindings[0].name", "must match [A-Za-z0-9_.-]+, not ''"),
        (one(name=""), 2, "bindings[0].name", "must be a string, not empty"),
        (
            one(server="'sips:sip.example.net'"),
            3,
            "bindings[0].server",
            "sips: (TLS) is not supported, UDP only: 'sips:sip.example.net'",
        ),
        (
            one(server="'sip:x;transport=tcp'"),
            3,
            "bindings[0].server",
            "only UDP is supported, not transport=tcp: 'sip:x;transport=tcp'",
        ),
        (
            one(server="x:70000"),
            3,
            "bindings[0].server",
            "port 70000 out of range 1-65535 in target 'x:70000'",
        ),
        (
            one(server="'bad host'"),
            3,
            "bindings[0].server",
            "bad host name 'bad host' in target 'bad host'",
        ),
        (one(server="''"), 3, "bindings[0].server", "empty target"),
        (one(server="[a, b]"), 3, "bindings[0].server", "must be a string, not a list"),
        (one(port="0"), 4, "bindings[0].source_port", "must be between 1 and 65535, not 0"),
        (one(port="65536"), 4, "bindings[0].source_port", "must be between 1 and 65535, not 65536"),
        (
            one(port="'5062'"),
            4,
            "bindings[0].source_port",
            "must be an integer, not the string '5062'",
        ),
        (one(port="5062.0"), 4, "bindings[0].source_port", "must be an integer, not 5062.0"),
        (
            one(port="true"),
            4,
            "bindings[0].source_port",
            "must be an integer, not a boolean (true)",
        ),
        (
            one("    interface: wan\n    bind: 192.0.2.1\n"),
            6,
            "bindings[0].bind",
            "cannot be used together with 'interface': choose one",
        ),
        (
            one("    interface: 'eth 0'\n"),
            5,
            "bindings[0].interface",
            "must be an interface name (letters, digits, _ . -), not 'eth 0'",
        ),
        (
            one("    interface: eth/0\n"),
            5,
            "bindings[0].interface",
            "must be an interface name (letters, digits, _ . -), not 'eth/0'",
        ),
        (
            one("    interface: ..\n"),
            5,
            "bindings[0].interface",
            "must be an interface name (letters, digits, _ . -), not '..'",
        ),
        (one("    interface:\n"), 5, "bindings[0].interface", "must be a string, not empty"),
        (
            one("    bind: localhost\n"),
            5,
            "bindings[0].bind",
            "must be an IPv4 or IPv6 address, not 'localhost'",
        ),
        (
            one("    bind: 192.0.2\n"),
            5,
            "bindings[0].bind",
            "must be an IPv4 or IPv6 address, not '192.0.2'",
        ),
        (
            one("    bind: 192.0.2.1/24\n"),
            5,
            "bindings[0].bind",
            "must be an IPv4 or IPv6 address, not '192.0.2.1/24'",
        ),
        (
            one("    bind: '[::1]'\n"),
            5,
            "bindings[0].bind",
            "must be an IPv4 or IPv6 address, not '[::1]'",
        ),
        (
            one("    bind: 1:2\n"),
            5,
            "bindings[0].bind",
            "must be an IPv4 or IPv6 address, not '1:2'",
        ),
    ],
)
def test_binding_rules(text: str, line: int, key: str, message: str) -> None:
    check(error(text), line, key, message)


@pytest.mark.parametrize(
    ("extra", "interface", "bind"),
    [
        ("    interface: wan\n", "wan", None),
        ("    interface: eth0.2\n", "eth0.2", None),
        ("    interface: pppoe-wan\n", "pppoe-wan", None),
        ("    bind: 192.0.2.1\n", None, "192.0.2.1"),
        ("    bind: 0.0.0.0\n", None, "0.0.0.0"),
        ("    bind: ::1\n", None, "::1"),
        ("    bind: '::'\n", None, "::"),
        ("    bind: 2001:db8::5\n", None, "2001:db8::5"),
        ("    bind: 1:2:3:4:5:6:7:8\n", None, "1:2:3:4:5:6:7:8"),  # YAML 1.1 would read base 60
    ],
)
def test_interface_and_bind(extra: str, interface: str | None, bind: str | None) -> None:
    binding = parse(one(extra)).bindings[0]
    assert (binding.interface, binding.bind) == (interface, bind)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("provider", "provider"),
        ("a.b-c_d", "a.b-c_d"),
        ("2", "2"),
        ("0x10", "0x10"),
    ],
)
def test_names_are_text_as_written(name: str, expected: str) -> None:
    assert parse(one(name=name)).bindings[0].name == expected


def test_duplicate_binding_names() -> None:
    err = error(one() + "  - name: a\n    server: other.example.net\n    source_port: 5064\n")
    check(err, 5, "bindings[1].name", "duplicate name 'a' (first at line 2)")


def two(first: str, second: str, second_port: int = 5062) -> str:
    return (
        "bindings:\n"
        f"  - name: a\n    server: sip.example.net\n    source_port: 5062\n{first}"
        f"  - name: b\n    server: sip.example.net\n    source_port: {second_port}\n{second}"
    )


def _local(kind: str) -> str:
    if kind == "-":
        return ""
    key, _, value = kind.partition("=")
    return f"    {key}: '{value}'\n"


SHARE = (
    "binding 'b' shares local port 5062 with binding 'a' (line 4); give each its own "
    "source_port, bind address or interface"
)


@pytest.mark.parametrize(
    ("first", "second", "clash"),
    [
        ("-", "-", True),  # both on every address
        ("-", "bind=192.0.2.1", True),  # a wildcard overlaps everything
        ("bind=192.0.2.1", "-", True),
        ("bind=0.0.0.0", "bind=192.0.2.1", True),
        ("bind=192.0.2.1", "bind=::", True),
        ("bind=::", "bind=::1", True),
        ("-", "interface=wan", True),
        ("interface=lan", "bind=0.0.0.0", True),
        ("bind=192.0.2.1", "bind=192.0.2.1", True),  # the same address
        ("bind=::1", "bind=0:0::1", True),  # the same address, written twice
        ("interface=wan", "interface=wan", True),
        ("bind=192.0.2.1", "bind=192.0.2.2", False),
        ("bind=192.0.2.1", "bind=2001:db8::1", False),
        ("interface=wan", "interface=lan", False),
        ("interface=wan", "bind=192.0.2.1", False),  # unknown until run time: allowed
    ],
)
def test_two_bindings_on_one_local_address_and_port(first: str, second: str, clash: bool) -> None:
    text = two(_local(first), _local(second))
    if clash:
        second_port_line = 7 + (first != "-")
        check(error(text), second_port_line, "bindings[1].source_port", SHARE)
    else:
        assert len(parse(text).bindings) == 2


@pytest.mark.parametrize(
    ("first", "second"),
    [("-", "-"), ("bind=0.0.0.0", "bind=0.0.0.0"), ("interface=wan", "interface=wan")],
)
def test_different_ports_never_clash(first: str, second: str) -> None:
    assert len(parse(two(_local(first), _local(second), second_port=5064)).bindings) == 2


def test_a_clash_names_the_earlier_binding() -> None:
    text = two("    bind: 192.0.2.1\n", "    bind: 192.0.2.2\n") + (
        "  - name: c\n    server: sip.example.net\n    source_port: 5062\n    bind: 192.0.2.2\n"
    )
    check(
        error(text),
        12,
        "bindings[2].source_port",
        "binding 'c' shares local port 5062 with binding 'b' (line 8); give each its own "
        "source_port, bind address or interface",
    )


# --- YAML anchors and merge keys ---------------------------------------------------------------


def test_merge_keys_share_settings_between_bindings() -> None:
    config = parse("""
        bindings:
          - &common
            name: a
            server: sip.example.net
            source_port: 5062
            timeout: 5
          - <<: *common
            name: b
            source_port: 5064
            timeout: 2
          - <<: *common
            name: c
            source_port: 5066
    """)
    assert [
        (b.name, b.server.host, b.source_port, b.settings.timeout) for b in config.bindings
    ] == [
        ("a", "sip.example.net", 5062, 5.0),
        ("b", "sip.example.net", 5064, 2.0),
        ("c", "sip.example.net", 5066, 5.0),
    ]


def test_the_first_merged_mapping_wins() -> None:
    config = parse("defaults:\n  <<: [{timeout: 1}, {timeout: 2, jitter: 0.5}]\n" + BINDING)
    assert (config.defaults.timeout, config.defaults.jitter) == (1.0, 0.5)


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        (
            "defaults:\n  <<: {timeuot: 1}\n" + BINDING,
            2,
            "defaults.timeuot",
            "unknown key 'timeuot' (did you mean 'timeout'?)",
        ),
        ("defaults:\n  <<: [1]\n" + BINDING, 2, "defaults", "'<<' must merge a mapping, not 1"),
        ("defaults: &d\n  <<: *d\n" + BINDING, 2, "defaults", "'<<' merges a mapping into itself"),
        (
            "defaults:\n  <<: {timeout: 0}\n" + BINDING,
            2,
            "defaults.timeout",
            "must be greater than 0, not 0",
        ),
    ],
)
def test_merge_key_errors(text: str, line: int, key: str, message: str) -> None:
    check(error(text), line, key, message)


# --- log, status_file, hooks, user -------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("log: {target: stderr}\n", LogConfig(target="stderr")),
        ("log: {facility: local7, level: debug}\n", LogConfig(facility="local7", level="debug")),
        ("log: {address: 192.0.2.5:514}\n", LogConfig(address="192.0.2.5:514")),
        ("log: {address: 'logs.example.net:1514'}\n", LogConfig(address="logs.example.net:1514")),
        ("log: {address: '[2001:db8::5]:514'}\n", LogConfig(address="[2001:db8::5]:514")),
        ("log: {address: /var/run/log}\n", LogConfig(address="/var/run/log")),
        ("log: {level: err}\n", LogConfig(level="err")),
    ],
)
def test_good_log(extra: str, expected: LogConfig) -> None:
    assert parse(extra + BINDING).log == expected


@pytest.mark.parametrize("facility", loader.FACILITIES)
def test_every_facility(facility: str) -> None:
    assert parse(f"log: {{facility: {facility}}}\n" + BINDING).log.facility == facility


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("log: {target: file}", "log.target", "must be one of syslog, stderr, not 'file'"),
        (
            "log: {target: sylog}",
            "log.target",
            "must be one of syslog, stderr, not 'sylog' (did you mean 'syslog'?)",
        ),
        (
            "log: {facility: deamon}",
            "log.facility",
            "must be one of kern, user, mail, daemon, "
            "auth, syslog, lpr, news, uucp, cron, authpriv, "
            "ftp, local0, local1, local2, local3, local4, local5, local6, local7, not 'deamon' "
            "(did you mean 'daemon'?)",
        ),
        (
            "log: {level: error}",
            "log.level",
            "must be one of debug, info, notice, warning, err, not 'error' (did you mean 'err'?)",
        ),
        (
            "log: {level: INFO}",
            "log.level",
            "must be one of debug, info, notice, warning, err, not 'INFO'",
        ),
        (
            "log: {level: 3}",
            "log.level",
            "must be one of debug, info, notice, warning, err, not '3'",
        ),
        (
            "log: {address: dev/log}",
            "log.address",
            "must be a socket path (starting with /) or host:port, not 'dev/log'",
        ),
        (
            "log: {address: localhost}",
            "log.address",
            "must be a socket path (starting with /) or host:port, not 'localhost'",
        ),
        (
            "log: {address: 'host:'}",
            "log.address",
            "must be a socket path (starting with /) or host:port, not 'host:'",
        ),
        ("log: {address: 'host:0'}", "log.address", "port must be between 1 and 65535, not 0"),
        (
            "log: {address: 'host:65536'}",
            "log.address",
            "port must be between 1 and 65535, not 65536",
        ),
        (
            "log: {address: ''}",
            "log.address",
            "must be a socket path (starting with /) or host:port, not ''",
        ),
        (
            "status_file: status.json",
            "status_file",
            "must be an absolute path (starting with /), not 'status.json'",
        ),
        ("status_file:", "status_file", "must be a string, not empty"),
        (
            "hooks: {command: hook.sh}",
            "hooks.command",
            "must be an absolute path (starting with /), not 'hook.sh'",
        ),
        (
            "hooks: {events: reachable}",
            "hooks.events",
            "must be a list, not the string 'reachable'",
        ),
        (
            "hooks: {events: [reachable, binding-change]}",
            "hooks.events[1]",
            "unknown event 'binding-change' (did you mean 'binding-changed'?)",
        ),
        ("hooks: {events: [everything]}", "hooks.events[0]", "unknown event 'everything'"),
        ("hooks: {events: [[reachable]]}", "hooks.events[0]", "must be a string, not a list"),
        ("user: ''", "user", "must not be empty"),
        ("user: [a]", "user", "must be a string, not a list"),
    ],
)
def test_bad_top_level_values(text: str, key: str, message: str) -> None:
    check(error(text + "\n" + BINDING), 1, key, message)


def test_hooks() -> None:
    config = parse(
        "hooks:\n  command: /etc/nat-keepalive/hook\n"
        "  events: [reachable, lagged, reachable, server-changed]\n" + BINDING
    )
    assert config.hooks == HooksConfig(
        command="/etc/nat-keepalive/hook", events=("reachable", "lagged", "server-changed")
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hooks: {command: /x}", HooksConfig(command="/x")),
        ("hooks: {command: }", HooksConfig()),
        ("hooks: {events: []}", HooksConfig(events=())),
    ],
)
def test_hook_defaults(text: str, expected: HooksConfig) -> None:
    assert parse(text + "\n" + BINDING).hooks == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("user: nobody", "nobody"),
        ("user: 1000", "1000"),
        ("user: nat-keepalive", "nat-keepalive"),
        ("user:", None),
    ],
)
def test_user(text: str, expected: str | None) -> None:
    assert parse(text + "\n" + BINDING).user == expected


def test_status_file() -> None:
    assert parse("status_file: /tmp/s.json\n" + BINDING).status_file == "/tmp/s.json"
    assert parse(BINDING).status_file == "/run/nat-keepalive/status.json"


def test_other_mistakes_come_before_missing_bindings() -> None:
    check(
        error("log: {level: loud}\n"),
        1,
        "log.level",
        "must be one of debug, info, notice, warning, err, not 'loud'",
    )


# --- load_config -------------------------------------------------------------------------------


def test_load_config_sets_source(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(BINDING)
    config = load_config(str(path))
    assert config.source == str(path)
    assert config.bindings[0].name == "a"


def test_load_config_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(BINDING + "    max_forwards: 300\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == (
        f"{path}:5: bindings[0].max_forwards: must be between 0 and 255, not 300"
    )


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.file, info.value.line, info.value.message) == (
        path,
        None,
        "cannot read: file not found",
    )
    assert str(info.value) == f"{path}: cannot read: file not found"


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text(BINDING)
    path.chmod(0)
    with monkeypatch.context() as patch, pytest.raises(ConfigError) as info:
        if os.geteuid() == 0:  # root reads anything: make open() refuse the way the kernel would
            real_open = os.open

            def refuse(name: str, *args: int) -> int:
                if name == str(path):
                    raise PermissionError(13, "Permission denied")
                return real_open(name, *args)

            patch.setattr(os, "open", refuse)
        load_config(str(path))
    assert (info.value.file, info.value.message) == (str(path), "cannot read: permission denied")


def test_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path))
    assert info.value.message == "cannot read: is a directory"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"bindings:\n  - name: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert (info.value.line, info.value.message) == (2, "not UTF-8 text (byte 0xe9)")


# --- the example file --------------------------------------------------------------------------


def test_example_loads_with_the_documented_defaults() -> None:
    config = load_config(str(EXAMPLE))
    assert config.source == str(EXAMPLE)
    assert config.defaults == ProbeSettings()
    assert config.log == LogConfig()
    assert config.hooks == HooksConfig()
    assert config.status_file == Config().status_file
    assert config.user is None
    assert config.bindings == (
        BindingConfig(name="provider", server=Target("sip.example.net", 5060), source_port=5062),
    )


def test_example_comments_every_key() -> None:
    keys = {
        *loader.TOP_KEYS,
        *loader.LOG_KEYS,
        *loader.HOOK_KEYS,
        *loader.SETTING_KEYS,
        *loader.BINDING_KEYS,
    }
    lines = EXAMPLE.read_text().splitlines()
    for key in keys:
        found = [line for line in lines if line.lstrip("# -").startswith(f"{key}:")]
        assert found, f"{key} is not in the example"
        index = lines.index(found[0])
        nearby = lines[max(0, index - 2) : index + 2]
        assert any(
            "#" in line.split(f"{key}:", 1)[-1] or line.lstrip().startswith("#") for line in nearby
        ), f"{key} has no comment"


def test_example_second_binding_loads_when_uncommented(tmp_path: Path) -> None:
    lines = EXAMPLE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  # - name:"))
    out = list(lines)
    i = start
    while i < len(out) and out[i].startswith("  # "):
        out[i] = "  " + out[i][4:]
        i += 1
    path = tmp_path / "two.yaml"
    path.write_text("\n".join(out) + "\n")
    second = load_config(str(path)).bindings[1]
    assert second.name == "backup"
    assert second.source_port != 5062
    assert second.settings != ProbeSettings()


# --- config_path -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("explicit", "environ", "expected"),
    [
        ("/a.yaml", {"NAT_KEEPALIVE_CONFIG": "/b.yaml"}, "/a.yaml"),
        ("rel.yaml", {}, "rel.yaml"),
        (None, {"NAT_KEEPALIVE_CONFIG": "/b.yaml"}, "/b.yaml"),
        (None, {"NAT_KEEPALIVE_CONFIG": ""}, DEFAULT_CONFIG_PATH),
        (None, {"OTHER": "/c.yaml"}, DEFAULT_CONFIG_PATH),
        (None, {}, "/etc/nat-keepalive/config.yaml"),
    ],
)
def test_config_path(explicit: str | None, environ: dict[str, str], expected: str) -> None:
    assert config_path(explicit, environ) == expected


@pytest.mark.parametrize(
    "first",
    [
        "natkeepalive.sip.target",
        "natkeepalive.config.model",
        "natkeepalive.config.loader",
        "natkeepalive.config",
    ],
)
def test_no_import_cycle(first: str) -> None:
    code = f"import {first}\nfrom natkeepalive.config import load_config\n"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the package exports -----------------------------------------------------------------------


def test_package_exports() -> None:
    import natkeepalive.config as package

    for name in (
        "load_config",
        "parse_config",
        "config_path",
        "Config",
        "BindingConfig",
        "ProbeSettings",
        "LogConfig",
        "HooksConfig",
        "Target",
        "DEFAULT_CONFIG_PATH",
    ):
        assert name in package.__all__
        assert hasattr(package, name)
