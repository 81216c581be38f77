"""The YAML node reader under the loader: a composed node turned into one value at a time.

Every value is checked against the type the key expects (strict where YAML 1.1 guesses), and
every refusal raises ConfigError with the file, the node's 1-based line and the key path. The
loader (loader.py) walks the sections with it; the probe settings' rules (rules.py) use it too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from natkeepalive.errors import ConfigError

_T = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = _T + "str", _T + "int", _T + "float", _T + "bool", _T + "null"
MAP, SEQ, MERGE = _T + "map", _T + "seq", _T + "merge"
SCALAR_TAGS = frozenset((STR, INT, FLOAT, BOOL, NULL, _T + "timestamp"))

if TYPE_CHECKING:  # an alias used only in annotations
    Pairs = dict[str, tuple[Node, Node]]  # key -> (key node, value node)


def line_of(node: Node) -> int | None:
    return node.start_mark.line + 1 if node.start_mark is not None else None


def describe(node: Node) -> str:
    """A node as an error message should show it."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == NULL:
        return "empty"
    if node.tag == BOOL:
        return f"a boolean ({node.value})"
    if node.tag == STR:
        return f"the string {node.value!r}"
    return str(node.value)


def suggest(word: str, choices: Sequence[str]) -> str:
    import difflib  # only on the error path: it is not small

    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def join_key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class NodeReader:
    """Reads nodes of one file; every check raises ConfigError with the node's line and key path."""

    def __init__(self, file: str) -> None:
        self.file = file
        self._constructor = yaml.constructor.SafeConstructor()

    def fail(self, message: str, node: Node | None, key: str) -> NoReturn:
        line = line_of(node) if node is not None else None
        raise ConfigError(message, file=self.file, line=line, key=key)

    # --- structure ----------------------------------------------------------------------------

    def mapping(self, node: Node, path: str, allowed: Sequence[str]) -> Pairs:
        """key -> (key node, value node). YAML merge keys (`<<: *anchor`) are honoured; keys
        written in this mapping win over merged ones and may not repeat."""
        if node.tag == NULL:  # an empty section (`hooks:`) means all defaults
            return {}
        if not isinstance(node, MappingNode):
            self.fail(f"must be a mapping, not {describe(node)}", node, path)
        if node.tag != MAP:
            self.fail(f"unsupported YAML tag {node.tag!r}", node, path)
        own: Pairs = {}
        merged: Pairs = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                for key, pair in self._merged(key_node, value_node, path, [node]).items():
                    if key not in allowed:
                        self.fail(
                            f"unknown key {key!r}{suggest(key, allowed)}",
                            pair[0],
                            join_key(path, key),
                        )
                    merged.setdefault(key, pair)
                continue
            if not isinstance(key_node, ScalarNode):
                self.fail(f"keys must be names, not {describe(key_node)}", key_node, path)
            key = str(key_node.value)
            full = join_key(path, key)
            if key in own:
                first = line_of(own[key][0])
                self.fail(f"duplicate key {key!r} (first at line {first})", key_node, full)
            if key not in allowed:
                self.fail(f"unknown key {key!r}{suggest(key, allowed)}", key_node, full)
            own[key] = (key_node, value_node)
        merged.update(own)
        return merged

    def _merged(self, at: Node, node: Node, path: str, seen: list[Node]) -> Pairs:
        """The pairs a `<<` (the key node `at`) brings in; the first mapping listed wins."""
        sources = node.value if isinstance(node, SequenceNode) else [node]
        result: Pairs = {}
        for source in sources:
            if not isinstance(source, MappingNode):
                self.fail(f"'<<' must merge a mapping, not {describe(source)}", source, path)
            if any(source is s for s in seen):  # an anchor merged into itself
                self.fail("'<<' merges a mapping into itself", at, path)
            pairs: Pairs = {}
            for key_node, value_node in source.value:
                if key_node.tag == MERGE:
                    for key, pair in self._merged(
                        key_node, value_node, path, [*seen, source]
                    ).items():
                        pairs.setdefault(key, pair)
                elif isinstance(key_node, ScalarNode):
                    pairs[str(key_node.value)] = (key_node, value_node)
            for key, pair in pairs.items():
                result.setdefault(key, pair)
        return result

    def sequence(self, node: Node, path: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            self.fail(f"must be a list, not {describe(node)}", node, path)
        if node.tag != SEQ:
            self.fail(f"unsupported YAML tag {node.tag!r}", node, path)
        return list(node.value)

    # --- scalars ------------------------------------------------------------------------------

    def _scalar(self, node: Node, path: str, what: str) -> object:
        if not isinstance(node, ScalarNode):
            self.fail(f"must be {what}, not {describe(node)}", node, path)
        if node.tag not in SCALAR_TAGS:
            self.fail(f"unsupported YAML tag {node.tag!r}", node, path)
        try:
            return self._constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError):
            self.fail(f"must be {what}, not {describe(node)}", node, path)

    def number(self, node: Node, path: str) -> float:
        value = self._scalar(node, path, "a number")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(f"must be a number, not {describe(node)}", node, path)
        if not math.isfinite(value):
            self.fail(f"must be a finite number, not {node.value}", node, path)
        return float(value)

    def integer(self, node: Node, path: str) -> int:
        value = self._scalar(node, path, "an integer")
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"must be an integer, not {describe(node)}", node, path)
        return value

    def boolean(self, node: Node, path: str) -> bool:
        value = self._scalar(node, path, "true or false")
        if not isinstance(value, bool):
            self.fail(f"must be true or false, not {describe(node)}", node, path)
        return value

    def text(self, node: Node, path: str) -> str:
        """Text as written: a plain `1000` or `2001:db8::1` is text here, not a number."""
        if not isinstance(node, ScalarNode) or node.tag == NULL:
            self.fail(f"must be a string, not {describe(node)}", node, path)
        if node.tag not in SCALAR_TAGS:
            self.fail(f"unsupported YAML tag {node.tag!r}", node, path)
        return str(node.value)

    def choice(self, node: Node, path: str, choices: Sequence[str]) -> str:
        value = self.text(node, path)
        if value not in choices:
            self.fail(
                f"must be one of {', '.join(choices)}, not {value!r}{suggest(value, choices)}",
                node,
                path,
            )
        return value

    def absolute_path(self, node: Node, path: str) -> str:
        value = self.text(node, path)
        if not value.startswith("/"):
            self.fail(f"must be an absolute path (starting with /), not {value!r}", node, path)
        return value
