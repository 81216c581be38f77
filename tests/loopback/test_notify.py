"""sd_notify over real AF_UNIX datagram sockets: a path and the abstract namespace."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from natkeepalive.runtime.notify import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(2.0)
        yield path, sock


def test_no_socket_is_a_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.send(READY=1) is False
    assert notifier.watchdog_interval() is None
    notifier.close()


def test_fields_and_raw_text(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.send(READY=1, STATUS="2 bindings, all reachable")
    assert sock.recv(4096) == b"READY=1\nSTATUS=2 bindings, all reachable"
    assert notifier.send("READY=1\nSTATUS=raw")
    assert sock.recv(4096) == b"READY=1\nSTATUS=raw"
    assert notifier.send(STATUS="two\nlines", ERRNO=5)
    assert sock.recv(4096) == b"STATUS=two lines\nERRNO=5"  # no forged assignment
    assert notifier.ready("up")
    assert sock.recv(4096) == b"READY=1\nSTATUS=up"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    assert notifier.reloading()
    reload_fields = sock.recv(4096).decode().split("\n")
    assert reload_fields[0] == "RELOADING=1"
    usec = int(reload_fields[1].removeprefix("MONOTONIC_USEC="))
    assert abs(usec / 1e6 - time.monotonic()) < 5
    notifier.close()


def test_abstract_namespace() -> None:
    name = f"nk-test-notify-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier.send(READY=1)
        assert sock.recv(4096) == b"READY=1"
        notifier.close()


def test_errors_are_swallowed(tmp_path: Path) -> None:
    missing = Notifier(str(tmp_path / "nobody"))
    assert missing.enabled
    assert missing.send(READY=1) is False
    missing.close()
    path = str(tmp_path / "gone")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
    deaf = Notifier(path)
    assert deaf.send(READY=1) is False  # the file exists, nobody listens
    deaf.close()
    assert not Notifier("relative/path").enabled
    assert not Notifier("@").enabled


def test_full_receiver_does_not_block(listener: tuple[str, socket.socket]) -> None:
    path, _ = listener
    notifier = Notifier(path)
    started = time.monotonic()
    results = [notifier.send(STATUS=f"{n}") for n in range(5000)]
    assert time.monotonic() - started < 5
    assert results[0] is True
    assert results[-1] is False  # nobody reads: the queue filled up and send said so
    notifier.close()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "/run/systemd/notify", **environ})
    assert notifier.watchdog_interval() == expected


def test_watchdog_needs_a_socket() -> None:
    assert Notifier.from_env({"WATCHDOG_USEC": "30000000"}).watchdog_interval() is None
