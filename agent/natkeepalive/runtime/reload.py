"""What a reload changes: bindings by name, compared with the configuration they run with."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from natkeepalive.config.model import BindingConfig


class BindingDiff:
    """Names of bindings that are new, whose configuration differs, and that are gone. A binding
    whose configuration is equal keeps running untouched (socket, state, learned mapping)."""

    __slots__ = ("added", "changed", "removed")

    def __init__(self, added: set[str], changed: set[str], removed: set[str]) -> None:
        self.added, self.changed, self.removed = added, changed, removed

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BindingDiff) and (self.added, self.changed, self.removed) == (
            other.added,
            other.changed,
            other.removed,
        )

    def __repr__(self) -> str:
        return (
            f"BindingDiff(added={sorted(self.added)}, changed={sorted(self.changed)}, "
            f"removed={sorted(self.removed)})"
        )


def diff_bindings(old: Iterable[BindingConfig], new: Iterable[BindingConfig]) -> BindingDiff:
    old_by_name = {b.name: b for b in old}
    new_by_name = {b.name: b for b in new}
    return BindingDiff(
        added={n for n in new_by_name if n not in old_by_name},
        changed={n for n, b in old_by_name.items() if n in new_by_name and b != new_by_name[n]},
        removed={n for n in old_by_name if n not in new_by_name},
    )
