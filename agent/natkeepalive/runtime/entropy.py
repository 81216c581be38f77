"""Random bytes for branches, tags and jitter, read from the kernel a page at a time.

Every keepalive needs ten random bytes for its branch, and every wake-up that sends seven for
the jitter: one getrandom() system call each was 0.3 us of the agent's CPU per keepalive, a
tenth of what it spends in the kernel. The pool reads POOL_BYTES from os.urandom at
once and hands every byte out once; it is refilled when it runs out.

A forked child gets a copy of the pool and would hand out its parent's next bytes again: the
children the daemon forks (the configuration's reader, hooks through subprocess) draw none.
"""

from __future__ import annotations

import os

POOL_BYTES = 4096


class RandomPool:
    """A drop-in for os.urandom: `pool(n)` gives n bytes no other call gets."""

    __slots__ = ("_at", "_buffer")

    def __init__(self) -> None:
        self._buffer = b""
        self._at = 0

    def __call__(self, n: int) -> bytes:
        at = self._at
        end = at + n
        if end > len(self._buffer) or end < at:
            if n < 0:
                raise ValueError("negative argument not allowed")  # as os.urandom says
            self._buffer = os.urandom(max(POOL_BYTES, n))
            at, end = 0, n
        self._at = end
        return self._buffer[at:end]
