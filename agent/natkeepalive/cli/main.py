"""The `nat-keepalive` entry point: sends `run` down a lean path, everything else to
cli/commands.py.

`run` must not import argparse, PyYAML or the config loader into the process that then lives for
months (it must stay small on a router); cli/run.py parses its arguments and the file in a child.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["run"]:
        from natkeepalive.cli.run import main_run

        return main_run(args)
    from natkeepalive.cli.commands import main as commands_main

    return commands_main(args)
