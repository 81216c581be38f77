"""The whole suite's configuration. Fixtures live in plugin modules, listed here once, so any
test folder can use them without one conftest importing another; plain helpers (a free port, a
configuration file, a bounded wait) are in tests/support/helpers.py."""

from __future__ import annotations

pytest_plugins = ("tests.support.fixtures", "tests.lab.fixtures")
