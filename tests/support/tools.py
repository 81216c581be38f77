"""Finding external tools for tests: under CI a missing tool is a failure, never a silent skip."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

EXTRA_PATH = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in EXTRA_PATH:
        candidate = os.path.join(folder, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def unavailable(message: str) -> NoReturn:
    """A prerequisite is missing: a failure under CI=true, a skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_tool(name: str) -> str:
    """The tool's path; fails the test under CI=true when it is missing, skips it elsewhere."""
    found = find_tool(name)
    if found:
        return found
    unavailable(f"{name} is not installed (.ci/run installs it)")


def require_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("this test needs root (CI runs as root)")
        pytest.skip("needs root")
