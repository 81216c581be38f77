"""Random bytes for branches, tags and jitter, read from the kernel a page at a time.

Every keepalive needs ten random bytes for its branch, and every wake-up that sends seven for
the jitter: a getrandom() system call for each would be a noticeable part of the agent's CPU per
keepalive. The pool reads POOL_BYTES from os.urandom at once and hands every byte out once; it
is refilled when it runs out.

A forked child gets a copy of the pool, whose next bytes its parent hands out too: every pool
filled before a fork is refilled in the child before it hands out anything.
"""

from __future__ import annotations

import os

POOL_BYTES = 4096
_forks = 0  # forks this process came from since the module was imported


def _in_forked_child() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_in_forked_child)


class RandomPool:
    """A drop-in for os.urandom: `pool(n)` gives n bytes no other call gets, in this process or
    any other."""

    __slots__ = ("_at", "_buffer", "_forks")

    def __init__(self) -> None:
        self._buffer = b""
        self._at = 0
        self._forks = _forks

    def __call__(self, n: int) -> bytes:
        at = self._at
        end = at + n
        if end > len(self._buffer) or end < at or self._forks != _forks:
            if n < 0:
                raise ValueError("negative argument not allowed")  # as os.urandom says
            self._buffer = os.urandom(max(POOL_BYTES, n))
            self._forks = _forks
            at, end = 0, n
        self._at = end
        return self._buffer[at:end]
