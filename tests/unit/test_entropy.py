"""runtime/entropy.py: the pool hands every byte of os.urandom out once, in order."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, strategies as st

from natkeepalive.runtime.entropy import POOL_BYTES, RandomPool


class CountingUrandom:
    """os.urandom's stand-in: a known, never repeating byte stream, and the calls made."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.stream = bytearray()

    def __call__(self, n: int) -> bytes:
        self.calls.append(n)
        start = len(self.stream)
        chunk = bytes((start + i) * 7 % 251 for i in range(n))
        self.stream += chunk
        return chunk


@given(st.lists(st.integers(min_value=0, max_value=POOL_BYTES + 100), max_size=40))
def test_every_byte_handed_out_once_and_in_order(sizes: list[int]) -> None:
    fake = CountingUrandom()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "urandom", fake)  # the module entropy reads from
        pool = RandomPool()
        got = [pool(n) for n in sizes]
    # Each answer is the next n bytes of the current read; one that does not fit starts a new
    # read (of at least POOL_BYTES), whose first bytes it is. So no byte is handed out twice.
    expected, at, end_of_read, reads = [], 0, 0, []
    for n in sizes:
        if at + n > end_of_read:
            reads.append(max(POOL_BYTES, n))
            at = sum(reads[:-1])
            end_of_read = at + reads[-1]
        expected.append(bytes(fake.stream[at : at + n]))
        at += n
    assert fake.calls == reads
    assert got == expected


def test_one_system_call_serves_many_branches() -> None:
    fake = CountingUrandom()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "urandom", fake)  # the module entropy reads from
        pool = RandomPool()
        branches = [pool(10) for _ in range(POOL_BYTES // 10)]
    assert fake.calls == [POOL_BYTES]
    assert b"".join(branches) == fake.stream[: POOL_BYTES // 10 * 10]


def test_more_than_a_pool_at_once() -> None:
    pool = RandomPool()
    assert len(pool(POOL_BYTES * 2 + 3)) == POOL_BYTES * 2 + 3
    assert len(pool(5)) == 5


def test_negative_size_is_refused_like_urandom() -> None:
    with pytest.raises(ValueError):
        RandomPool()(-1)


def test_a_forked_child_never_hands_out_its_parents_bytes() -> None:
    """The child's copy of the pool is refilled before use: without that, the child's next bytes
    would be the very bytes the parent hands out next (the same branches on the wire)."""
    pool = RandomPool()
    pool(10)  # filled: POOL_BYTES - 10 bytes wait in the buffer
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next bytes and leave at once
        try:
            os.write(write, pool(32))
        finally:
            os._exit(0)
    os.close(write)
    try:
        child = b""
        while len(child) < 32:
            chunk = os.read(read, 32 - len(child))
            if not chunk:
                break
            child += chunk
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert len(child) == 32
    assert child != pool(32)  # the parent's next bytes are its own
