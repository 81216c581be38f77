"""Runs the agent (`natkeepalive run ...`) with its keepalive deadlines and send times recorded,
for the scale benchmark: how late each keepalive leaves against the deadline the agent itself
set. Nothing in the agent changes; two of its methods are wrapped in this process:

- when a binding's cycle starts (`BindingEngine._start_cycle`), its deadline (`next_keepalive`)
  is noted;
- the binding's next datagram on its own socket (`Slot.send`) is that keepalive: its
  time.monotonic() (the agent's clock) is recorded beside the deadline. Retransmissions and
  confirmations have no noted deadline and are not recorded.

At exit (SIGTERM stops the agent cleanly) the records go to OUT as text, one `due sent first`
per line (`first` is 1 for a binding's first keepalive, whose deadline is the start-up spread).

    python3 agent_probe.py OUT run -c CONFIG --log stderr --status-file PATH
"""

from __future__ import annotations

import array
import atexit
import sys
import time
from typing import Any


def main(argv: list[str]) -> int:
    out, args = argv[0], argv[1:]
    from natkeepalive.cli.main import main as agent_main
    from natkeepalive.core.engine import BindingEngine
    from natkeepalive.runtime.slot import Slot

    due_at: dict[int, tuple[float, int]] = {}  # id(engine) -> (deadline, first cycle?)
    dues, sends, firsts = array.array("d"), array.array("d"), array.array("b")
    start_cycle = BindingEngine._start_cycle
    send = Slot.send

    def timed_start_cycle(self: BindingEngine, now: float, draw: float | None = None) -> None:
        if self.next_keepalive is not None:
            due_at[id(self)] = (self.next_keepalive, int(self.cseq == 0))
        start_cycle(self, now, draw)

    def timed_send(self: Slot, payload: bytes, destination: Any) -> str | None:
        sent = time.monotonic()
        result = send(self, payload, destination)
        noted = due_at.pop(id(self.engine), None)
        if noted is not None:
            dues.append(noted[0])
            sends.append(sent)
            firsts.append(noted[1])
        return result

    def dump() -> None:
        with open(out, "w") as handle:
            handle.writelines(f"{d!r} {s!r} {f}\n" for d, s, f in zip(dues, sends, firsts))

    BindingEngine._start_cycle = timed_start_cycle  # type: ignore[method-assign]
    Slot.send = timed_send  # type: ignore[method-assign]
    atexit.register(dump)
    return agent_main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
