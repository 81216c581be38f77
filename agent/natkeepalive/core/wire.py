"""What the sans-I/O machines (the binding engine, discovery's trials) hand the runtime, and the
few constants they share. A leaf: it imports nothing of the package but the record decorator."""

from __future__ import annotations

TYPE_CHECKING = False  # the daemon does not import typing; mypy treats this name as True
if TYPE_CHECKING:
    from dataclasses import dataclass
    from typing import Callable

    RandomBytes = Callable[[int], bytes]
else:
    from natkeepalive.record import dataclass

Address = tuple[str, int]

# the sockets a datagram goes out of or came in on: the binding's own, and the AUX socket whose
# source is another mapping (a check's request must not refresh the binding it tests)
BINDING, AUX = "binding", "aux"
# Linux conntrack promotes a UDP flow to its stream timeout only after > 2 s of two-way traffic
PROMOTE_DELAY = 3.0
BRANCH_BYTES = 10  # 80 random bits


@dataclass(frozen=True)
class Datagram:
    channel: str  # BINDING or AUX (or discovery's TRIAL)
    payload: bytes
    destination: Address


def jitter_draw(random_bytes: RandomBytes) -> float:
    """A draw in [0, 1) for a jittered wait, from 56 random bits."""
    return int.from_bytes(random_bytes(7), "big") / float(1 << 56)
