"""Local-address answers kept until rtnetlink announces a change (runtime/addrwatch.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator

import pytest

from natkeepalive.runtime.addrwatch import AddressWatch
from tests.support.tools import require_root, require_tool


class Counter:
    def __init__(self, value: object) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        return self.value


def test_without_a_socket_every_question_goes_to_the_system() -> None:
    watch = AddressWatch(None)
    compute = Counter("192.0.2.1")
    assert [watch.ask(("k",), compute) for _ in range(3)] == ["192.0.2.1"] * 3
    assert compute.calls == 3
    assert watch.poll() is False


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A datagram pair standing in for rtnetlink: what is written to one end is an announcement."""
    kernel, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    yield kernel, ours
    kernel.close()
    ours.close()


def test_answers_are_kept_until_an_announcement(pair: tuple[socket.socket, socket.socket]) -> None:
    kernel, ours = pair
    watch = AddressWatch(ours)
    first, other = Counter("192.0.2.1"), Counter(None)
    assert watch.ask(("source", ("198.51.100.1", 5060)), first) == "192.0.2.1"
    assert watch.ask(("source", ("198.51.100.1", 5060)), first) == "192.0.2.1"
    assert watch.ask(("source", ("198.51.100.2", 5060)), other) is None  # None is kept too
    assert watch.ask(("source", ("198.51.100.2", 5060)), other) is None
    assert (first.calls, other.calls) == (1, 1)
    assert watch.poll() is False
    kernel.send(b"x")
    kernel.send(b"y")
    assert watch.poll() is True  # both read at once
    assert watch.poll() is False
    assert watch.ask(("source", ("198.51.100.1", 5060)), first) == "192.0.2.1"
    assert first.calls == 2


def test_forget_and_close(pair: tuple[socket.socket, socket.socket]) -> None:
    _kernel, ours = pair
    watch = AddressWatch(ours)
    compute = Counter(("192.0.2.7",))
    watch.ask(("interface", "eth0"), compute)
    watch.forget()
    watch.ask(("interface", "eth0"), compute)
    assert compute.calls == 2 and watch.changes == 1
    watch.close()
    assert watch.sock is None
    watch.ask(("interface", "eth0"), compute)
    watch.ask(("interface", "eth0"), compute)
    assert compute.calls == 4


WATCHER = textwrap.dedent("""
    import sys, select
    from natkeepalive.runtime.addrwatch import AddressWatch
    watch = AddressWatch.open()
    assert watch.sock is not None, "rtnetlink did not open"
    print("ready", flush=True)
    sys.stdin.readline()  # the test changed an address
    select.select([watch.sock], [], [], 5.0)
    print("changed" if watch.poll() else "quiet", flush=True)
    sys.stdin.readline()  # nothing changed this time
    print("changed" if watch.poll() else "quiet", flush=True)
""")


def test_a_real_address_change_is_announced() -> None:
    """In a namespace of its own: an address added to its `lo` reaches the watch."""
    require_root()
    ip = require_tool("ip")
    name = f"nk-aw-{uuid.uuid4().hex[:8]}"
    subprocess.run([ip, "netns", "add", name], check=True)
    try:
        # `with`: the pipes are closed and the process waited for, also on failure
        with subprocess.Popen(
            [ip, "netns", "exec", name, sys.executable, "-c", WATCHER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        ) as proc:
            try:
                assert proc.stdin is not None and proc.stdout is not None
                assert proc.stdout.readline().strip() == "ready"
                subprocess.run(
                    [ip, "-n", name, "addr", "add", "192.0.2.10/24", "dev", "lo"], check=True
                )
                proc.stdin.write("go\n")
                proc.stdin.flush()
                assert proc.stdout.readline().strip() == "changed"
                proc.stdin.write("again\n")
                proc.stdin.flush()
                assert proc.stdout.readline().strip() == "quiet"
                assert proc.wait(timeout=10) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
    finally:
        subprocess.run([ip, "netns", "delete", name], check=False)
