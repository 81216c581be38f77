"""Every hook example: shellcheck-clean POSIX sh, executable, documented at its top."""

from __future__ import annotations

import os
import subprocess

from tests.support.tools import require_tool

from .common import EXAMPLES


def test_examples_are_posix_sh_and_shellcheck_clean() -> None:
    shellcheck = require_tool("shellcheck")
    scripts = sorted(
        p for p in EXAMPLES.iterdir() if p.is_file() and not p.name.endswith((".md", ".example"))
    )
    assert len(scripts) >= 5
    for script in scripts:
        assert script.read_text().startswith("#!/bin/sh\n# nat-keepalive hook"), script.name
        assert os.access(script, os.X_OK), script.name
    result = subprocess.run(
        [shellcheck, "-s", "sh", *map(str, scripts)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout
