"""Run the agent's CLI with test-only adjustments made before anything is imported.

    python3 agentwrap.py [python -m natkeepalive] ARGS...

Used as the `prefix` of tests.support.agentproc.Agent, so argv arrives as
`agentwrap.py python -m natkeepalive run ...`; the interpreter and `-m natkeepalive` are skipped.

Adjustments, from the environment:
- NK_TEST_SET="module.ATTR=number;...": set module constants (e.g. the daemon's
  DROP_REPORT_EVERY, so a 30-s test sees its rate-limited line several times).
- NK_TEST_LOG_FROM_CONFIG=1: drop `--log stderr` (which agentproc.Agent always passes), so the
  log goes where the configuration says (e.g. a test's own rsyslogd).
- NK_TEST_WALL_OFFSET_FILE=path: time.time() returns the real time plus the number of seconds in
  that file (re-read at most every 50 ms), so a test can step the wall clock of this process alone
  without touching the host's clock. CLOCK_MONOTONIC is left alone.
"""

from __future__ import annotations

import importlib
import os
import sys
import time


def _install_wall_offset(path: str) -> None:
    real = time.time
    state = {"offset": 0.0, "read_at": -1.0}

    def stepped_time() -> float:
        now = time.monotonic()
        if now - state["read_at"] > 0.05:
            state["read_at"] = now
            try:
                with open(path) as handle:
                    state["offset"] = float(handle.read().strip() or 0)
            except (OSError, ValueError):
                pass
        return real() + state["offset"]

    time.time = stepped_time


def _apply_settings(spec: str) -> None:
    for item in filter(None, (part.strip() for part in spec.split(";"))):
        target, _, value = item.partition("=")
        module_name, _, attr = target.rpartition(".")
        module = importlib.import_module(module_name)
        if not hasattr(module, attr):
            raise SystemExit(f"agentwrap: {module_name} has no {attr}")
        setattr(module, attr, float(value))


def main() -> int:
    args = sys.argv[1:]
    if args and os.path.basename(args[0]).startswith("python"):
        args = args[1:]
    if args[:2] == ["-m", "natkeepalive"]:
        args = args[2:]
    if os.environ.get("NK_TEST_LOG_FROM_CONFIG") == "1" and "--log" in args:
        at = args.index("--log")
        del args[at : at + 2]
    offset_file = os.environ.get("NK_TEST_WALL_OFFSET_FILE")
    if offset_file:
        _install_wall_offset(offset_file)  # before natkeepalive binds time.time anywhere
    _apply_settings(os.environ.get("NK_TEST_SET", ""))
    from natkeepalive.cli.main import main as cli_main

    result = cli_main(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
