"""runtime/reload.py: which bindings a reload adds, restarts and removes."""

from __future__ import annotations

from natkeepalive.config.loader import parse_config
from natkeepalive.config.model import BindingConfig
from natkeepalive.runtime.reload import BindingDiff, diff_bindings

HEAD = "defaults: {interval: 20}\nbindings:\n"


def bindings(*lines: str) -> tuple[BindingConfig, ...]:
    return parse_config(HEAD + "".join(f"  - {line}\n" for line in lines), "test").bindings


A = "{name: a, server: '192.0.2.1:5060', source_port: 5070}"
B = "{name: b, server: '192.0.2.2:5060', source_port: 5071}"
B_MOVED = "{name: b, server: '192.0.2.2:5060', source_port: 5072}"
C = "{name: c, server: '192.0.2.3:5060', source_port: 5073}"


def test_an_unchanged_file_changes_nothing() -> None:
    assert diff_bindings(bindings(A, B), bindings(A, B)) == BindingDiff(set(), set(), set())


def test_added_changed_and_removed_are_told_apart() -> None:
    diff = diff_bindings(bindings(A, B), bindings(B_MOVED, C))
    assert (diff.added, diff.changed, diff.removed) == ({"c"}, {"b"}, {"a"})


def test_order_does_not_matter() -> None:
    assert diff_bindings(bindings(A, B), bindings(B, A)) == BindingDiff(set(), set(), set())


def test_a_changed_default_changes_every_binding_it_reaches() -> None:
    old = bindings(A, B)
    new = parse_config(
        "defaults: {interval: 30}\nbindings:\n" + f"  - {A}\n  - {B}\n", "test"
    ).bindings
    assert diff_bindings(old, new).changed == {"a", "b"}


def test_from_nothing_and_to_nothing() -> None:
    assert diff_bindings((), bindings(A)).added == {"a"}
    assert diff_bindings(bindings(A), ()).removed == {"a"}
    text = repr(diff_bindings((), bindings(A)))
    assert text == "BindingDiff(added=['a'], changed=[], removed=[])"
