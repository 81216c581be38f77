"""Which OpenWrt packages does the agent's code need? Lists its imports and maps them.

    python tests/packaging/stdlib_imports.py          # a table: module -> OpenWrt package
    python tests/packaging/stdlib_imports.py --depends  # the DEPENDS line for the Makefile

How: every `import` in agent/natkeepalive (also those inside functions: a lazy import is still
needed on the router the day that code runs; not those under `if TYPE_CHECKING:`) is read with
`ast`. The standard-library ones are then imported in a fresh interpreter to see what they pull in
themselves (`http.client` brings `email`), and every module found is mapped to the OpenWrt split
package that ships it (lang/python/python3/files/python3-package-*.mk in openwrt/packages).
Everything else is in python3-light.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "agent" / "natkeepalive"
MAKEFILE = ROOT / "openwrt" / "nat-keepalive" / "Makefile"

BASE = ("python3-light",)  # the interpreter package every Python package depends on

# Top-level module -> the OpenWrt package that ships it, when that is not python3-light.
# From the Py3BasePackage file lists of openwrt/packages lang/python/python3/files/*.mk.
SPLIT: dict[str, str] = {
    "asyncio": "python3-asyncio",
    "cgi": "python3-cgi",
    "cgitb": "python3-cgitb",
    "ctypes": "python3-ctypes",
    "_ctypes": "python3-ctypes",
    "dbm": "python3-dbm",
    "_dbm": "python3-dbm",
    "_gdbm": "python3-dbm",
    "decimal": "python3-decimal",
    "_decimal": "python3-decimal",
    "distutils": "python3-distutils",
    "email": "python3-email",
    "lib2to3": "python3-lib2to3",
    "logging": "python3-logging",
    "lzma": "python3-lzma",
    "_lzma": "python3-lzma",
    "multiprocessing": "python3-multiprocessing",
    "_multiprocessing": "python3-multiprocessing",
    "curses": "python3-ncurses",
    "_curses": "python3-ncurses",
    "_curses_panel": "python3-ncurses",
    # python3-openssl ships _ssl and _hashlib. hashlib itself is in python3-light and falls back
    # to built-in digests without it; loading it would pull OpenSSL onto the router.
    "ssl": "python3-openssl",
    "_ssl": "python3-openssl",
    "hashlib": "python3-openssl",
    "_hashlib": "python3-openssl",
    "doctest": "python3-pydoc",
    "pydoc": "python3-pydoc",
    "pydoc_data": "python3-pydoc",
    "readline": "python3-readline",
    "sqlite3": "python3-sqlite3",
    "_sqlite3": "python3-sqlite3",
    "unittest": "python3-unittest",
    "urllib": "python3-urllib",
    "uuid": "python3-uuid",
    "_uuid": "python3-uuid",
    "venv": "python3-venv",
    "ensurepip": "python3-venv",
    "webbrowser": "python3-webbrowser",
    "xml": "python3-xml",
    "xmlrpc": "python3-xml",
    "pyexpat": "python3-xml",
    "_elementtree": "python3-xml",
    # CJK codecs and unicodedata (which `encodings.idna` needs through stringprep)
    "_codecs_cn": "python3-codecs",
    "_codecs_hk": "python3-codecs",
    "_codecs_iso2022": "python3-codecs",
    "_codecs_jp": "python3-codecs",
    "_codecs_kr": "python3-codecs",
    "_codecs_tw": "python3-codecs",
    "unicodedata": "python3-codecs",
}
# Not in any OpenWrt package (python3-light's file spec removes them).
UNAVAILABLE = frozenset({"tkinter", "_tkinter", "idlelib", "turtledemo", "turtle", "test"})
# Third-party modules: the package that provides them, or None for an optional import that the
# agent must work without (it is never a dependency).
THIRD_PARTY: dict[str, str | None] = {
    "yaml": "python3-yaml",
    "_yaml": "python3-yaml",
    "netifaces": None,
}
OWN = "natkeepalive"


@dataclass
class Imports:
    direct: dict[str, set[str]] = field(default_factory=dict)  # module -> files importing it
    third_party: dict[str, set[str]] = field(default_factory=dict)
    unknown: dict[str, set[str]] = field(default_factory=dict)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _modules_in(tree: ast.AST) -> Iterable[str]:
    """Top-level names of absolute imports, skipping `if TYPE_CHECKING:` bodies."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]
        stack.extend(ast.iter_child_nodes(node))


def scan(package_dir: Path = AGENT) -> Imports:
    found = Imports()
    stdlib = set(sys.stdlib_module_names)
    for path in sorted(package_dir.rglob("*.py")):
        where = str(path.relative_to(package_dir.parent))
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=where)
        for module in _modules_in(tree):
            if module == OWN or module == "__future__":
                continue
            if module in THIRD_PARTY:
                found.third_party.setdefault(module, set()).add(where)
            elif module in stdlib:
                found.direct.setdefault(module, set()).add(where)
            else:
                found.unknown.setdefault(module, set()).add(where)
    return found


def closure(modules: Iterable[str]) -> set[str]:
    """Top-level stdlib modules loaded by importing `modules` in a fresh interpreter (-I -S: no
    site, no user paths, so only what the imports themselves pull in)."""
    names = sorted(modules)
    code = (
        "import importlib, json, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], check=True, capture_output=True, text=True
    ).stdout
    stdlib = set(sys.stdlib_module_names)
    return {m for m in json.loads(out) if m in stdlib}


def package_of(module: str) -> str:
    if module in UNAVAILABLE:
        return "(not available on OpenWrt)"
    return SPLIT.get(module, "python3-light")


def needed(imports: Imports) -> tuple[dict[str, str], set[str]]:
    """(module -> package for every stdlib module loaded, the set of OpenWrt packages)."""
    loaded = closure(imports.direct) | set(imports.direct)
    table = {m: package_of(m) for m in sorted(loaded)}
    packages = set(BASE)
    packages.update(p for p in table.values() if not p.startswith("("))
    packages.update(p for m in imports.third_party if (p := THIRD_PARTY[m]) is not None)
    return table, packages


def makefile_depends(path: Path = MAKEFILE) -> list[str]:
    """The packages after `DEPENDS:=` in the Makefile's main package (without the `+`)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("DEPENDS:="):
            return [word.lstrip("+") for word in stripped[len("DEPENDS:=") :].split()]
    raise ValueError(f"{path}: no DEPENDS:= line")


def main(argv: list[str]) -> int:
    imports = scan()
    table, packages = needed(imports)
    if "--depends" in argv:
        order = sorted(packages, key=lambda p: (p not in BASE, p))
        print("DEPENDS:=" + " ".join("+" + p for p in order))
        return 0
    for module, package in table.items():
        mark = "" if module in imports.direct else "  (pulled in)"
        print(f"{module:24} {package}{mark}")
    for module in sorted(imports.third_party):
        print(f"{module:24} {THIRD_PARTY[module] or '(optional: never a dependency)'}")
    for module, files in sorted(imports.unknown.items()):
        print(f"{module:24} UNKNOWN third-party import in {', '.join(sorted(files))}")
    print("needs: " + " ".join(sorted(packages)))
    return 1 if imports.unknown else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
