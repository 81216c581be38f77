"""Runs the agent (`natkeepalive run ...`) under cProfile from WARMUP seconds after its start
until it stops, for the CPU benchmark's profile: the steady state only. `python3 -m cProfile`
profiled the whole life, so start-up (imports, the wait on the configuration child, the
first sends) weighed in the shares as if it were per-keepalive work.

Nothing in the agent changes: `Daemon.run_once`, one pass of its loop, is wrapped in this process
and turns the profiler on in the first pass after the warm-up (in the loop's thread, the one
cProfile sees). At exit (SIGINT or SIGTERM stops the agent cleanly) the statistics go to OUT,
and the profiled seconds to OUT.seconds.

    python3 agent_profile.py OUT WARMUP run -c CONFIG --log stderr --status-file PATH
"""

from __future__ import annotations

import atexit
import cProfile
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    out, warmup, args = Path(argv[0]), float(argv[1]), argv[2:]
    from natkeepalive.cli.main import main as agent_main
    from natkeepalive.runtime.daemon import Daemon

    profiler = cProfile.Profile()
    began: list[float] = []  # when the profiler was turned on
    start = time.monotonic()
    run_once = Daemon.run_once

    def profiled_run_once(self: Daemon, *a: Any, **kw: Any) -> Any:
        if not began and time.monotonic() - start >= warmup:
            began.append(time.monotonic())
            profiler.enable()
        return run_once(self, *a, **kw)

    def dump() -> None:
        if began:
            profiler.disable()
            profiler.dump_stats(str(out))
            Path(f"{out}.seconds").write_text(f"{time.monotonic() - began[0]:.3f}\n")

    Daemon.run_once = profiled_run_once  # type: ignore[method-assign]
    atexit.register(dump)
    return agent_main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
