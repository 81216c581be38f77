"""The codec (sip/) and the state machines (core/) are sans-I/O: bytes and `now` in, datagrams,
events and deadlines out. Read from the source with ast, every module they import, directly or
through the package's other modules, inside functions too, is free of sockets, files, clocks,
randomness, processes and threads; and the layers import downwards only (sip imports neither
core nor config, config does not import core)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import natkeepalive

PACKAGE = Path(natkeepalive.__file__).resolve().parent

# What would let a module read the world or wait on it. `sys` (modules, recursion limits) and
# `_thread.get_ident` (record.py's guard against a recursive repr) are neither.
FORBIDDEN = frozenset(
    (
        "socket",
        "_socket",
        "select",
        "selectors",
        "ssl",
        "asyncio",
        "os",
        "posix",
        "io",
        "_io",
        "pathlib",
        "shutil",
        "tempfile",
        "fcntl",
        "mmap",
        "subprocess",
        "signal",
        "_signal",
        "threading",
        "multiprocessing",
        "time",
        "datetime",
        "random",
        "_random",
        "secrets",
        "uuid",
        "urllib",
        "http",
        "logging",
        "syslog",
        "netifaces",
        "yaml",
        "natkeepalive.runtime",
        "natkeepalive.cli",
        "natkeepalive.netinfo",
    )
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers inside `if TYPE_CHECKING:` blocks: those imports never run."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ):
            for inner in node.body:
                for sub in ast.walk(inner):
                    if hasattr(sub, "lineno"):
                        lines.add(sub.lineno)
    return lines


def imports_of(name: str) -> set[str]:
    """Every module `name` imports when it runs (at the top or inside a function), by full
    name, with the packages that hold it (importing a module runs their __init__); `from
    package import module` counts the submodule. A package's __init__ counts its top-level
    imports only: config's imports its loader in `__getattr__`, for names core never asks."""
    path = PACKAGE.parent / (name.replace(".", "/") + ".py")
    package = not path.exists()
    if package:
        path = PACKAGE.parent / name.replace(".", "/") / "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_only(tree)
    found: set[str] = set()
    parts = name.split(".")
    found.update(".".join(parts[:i]) for i in range(1, len(parts)))
    nodes = ast.iter_child_nodes(tree) if package else ast.walk(tree)
    for node in nodes:
        if getattr(node, "lineno", None) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists() or (
                    PACKAGE.parent / candidate.replace(".", "/")
                ).is_dir():
                    found.add(candidate)
    return found


def closure(start: str) -> dict[str, str]:
    """Every module reachable from `start`, each with the package module that imports it."""
    seen: dict[str, str] = {start: ""}
    todo = [start]
    while todo:
        current = todo.pop()
        for imported in imports_of(current):
            if imported in seen:
                continue
            seen[imported] = current
            if imported.split(".")[0] == "natkeepalive":
                todo.append(imported)
    return seen


def forbidden(name: str) -> bool:
    return any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)


SANS_IO = sorted(module_name(p) for sub in ("core", "sip") for p in (PACKAGE / sub).glob("*.py"))


def test_the_walk_sees_imports_inside_functions_and_skips_type_checking() -> None:
    loader = imports_of("natkeepalive.config.loader")
    assert "yaml" in loader and "natkeepalive.sip.target" in loader
    assert "natkeepalive.config" in loader  # its package's __init__ runs first
    # sip.target imports `re` inside a function, and `dataclasses` for type checkers only
    target = imports_of("natkeepalive.sip.target")
    assert "re" in target and "dataclasses" not in target
    assert forbidden("natkeepalive.runtime.daemon") and not forbidden("osx")


@pytest.mark.parametrize("module", SANS_IO)
def test_core_and_sip_import_no_io_clock_or_randomness(module: str) -> None:
    reached = closure(module)
    bad = {name: via for name, via in reached.items() if forbidden(name)}
    assert not bad, f"{module} reaches {bad} (module: imported by)"


def _package(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "natkeepalive" else ""


@pytest.mark.parametrize(("layer", "below"), [("sip", ("core", "config")), ("config", ("core",))])
def test_layers_import_downwards_only(layer: str, below: tuple[str, ...]) -> None:
    for path in (PACKAGE / layer).glob("*.py"):
        name = module_name(path)
        upward = {m for m in imports_of(name) if _package(m) in below}
        assert not upward, f"{name} imports {upward}"
