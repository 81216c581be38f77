"""The rules of the probe settings: one per key of `defaults:` (and of a binding), each turning
a YAML node into the value ProbeSettings takes or refusing it with the reason.

This table is the single source of the settings' rules: the loader applies it, and
tests/packaging/test_setting_rules.py holds the OpenWrt init script to the same rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Union

from yaml.nodes import Node, ScalarNode

from natkeepalive.config.model import CHECK_CHOICES, Target
from natkeepalive.config.nodes import STR, NodeReader
from natkeepalive.errors import TargetError
from natkeepalive.sip.target import parse_stun_server

# Shorter waits are no keepalive but a flood, on the agent's loop and on the server.
MIN_INTERVAL = 0.1
USER_AGENT_MAX = 100
AUTO = "auto"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

if TYPE_CHECKING:  # an alias used only in annotations
    Value = Union[str, int, float, bool, Target]


def num(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _positive(reader: NodeReader, node: Node, path: str) -> float:
    value = reader.number(node, path)
    if value <= 0:
        reader.fail(f"must be greater than 0, not {num(value)}", node, path)
    return value


def _interval(reader: NodeReader, node: Node, path: str) -> Value:
    if isinstance(node, ScalarNode) and node.tag == STR:
        if node.value == AUTO:
            return AUTO
        reader.fail(f'must be a number of seconds or "auto", not {node.value!r}', node, path)
    return _seconds(reader, node, path)


def _seconds(reader: NodeReader, node: Node, path: str) -> float:
    """A wait between probes: positive, and not below MIN_INTERVAL."""
    value = _positive(reader, node, path)
    if value < MIN_INTERVAL:
        reader.fail(f"must be at least {num(MIN_INTERVAL)} s, not {num(value)}", node, path)
    return value


def _jitter(reader: NodeReader, node: Node, path: str) -> float:
    value = reader.number(node, path)
    if not 0 <= value < 1:
        reader.fail(f"must be at least 0 and less than 1, not {num(value)}", node, path)
    return value


def _safety(reader: NodeReader, node: Node, path: str) -> float:
    value = reader.number(node, path)
    if not 0 < value <= 1:
        reader.fail(f"must be greater than 0 and at most 1, not {num(value)}", node, path)
    return value


def _int_rule(low: int, high: int | None = None) -> Callable[[NodeReader, Node, str], int]:
    def rule(reader: NodeReader, node: Node, path: str) -> int:
        value = reader.integer(node, path)
        if high is not None and not low <= value <= high:
            reader.fail(f"must be between {low} and {high}, not {value}", node, path)
        if value < low:
            reader.fail(f"must be at least {low}, not {value}", node, path)
        return value

    return rule


def _check(reader: NodeReader, node: Node, path: str) -> str:
    return reader.choice(node, path, CHECK_CHOICES)  # as written: a plain `off` is not false


def _stun_server(reader: NodeReader, node: Node, path: str) -> Target:
    try:
        return parse_stun_server(reader.text(node, path))
    except TargetError as exc:
        reader.fail(f"must be host[:port] or [v6addr]:port of a STUN server ({exc})", node, path)


def _user_agent(reader: NodeReader, node: Node, path: str) -> str:
    value = reader.text(node, path)
    if _CONTROL.search(value):
        reader.fail("must not contain control characters", node, path)
    if len(value) > USER_AGENT_MAX:
        reader.fail(f"must be at most {USER_AGENT_MAX} characters, not {len(value)}", node, path)
    return value


SETTING_RULES: dict[str, Callable[[NodeReader, Node, str], Value]] = {
    "interval": _interval,
    "jitter": _jitter,
    "timeout": _positive,
    "lagged_ms": _int_rule(1),
    "fail_threshold": _int_rule(1),
    "ok_threshold": _int_rule(1),
    "retry_interval": _positive,
    "inbound_check": _int_rule(0),
    "check": _check,
    "stun_server": _stun_server,
    "require_2xx": NodeReader.boolean,
    "max_forwards": _int_rule(0, 255),
    "user_agent": _user_agent,
    "interval_min": _seconds,
    "interval_max": _positive,
    "safety": _safety,
    "rediscover": _positive,
}
SETTING_KEYS = tuple(SETTING_RULES)
SETTING_KEYS = tuple(SETTING_RULES)
