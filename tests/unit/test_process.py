"""runtime/process.py: the wake-up pair and signal flags, the open-file limit, the privilege
drop's refusal of an account that is gone. Signal handlers and limits are the test process's own:
each test puts back what it changed."""

from __future__ import annotations

import os
import resource
import select
import signal
import threading
from collections.abc import Iterator

import pytest

from natkeepalive.cstdlib import socket
from natkeepalive.errors import ConfigError, SocketSetupError
from natkeepalive.runtime.process import HANDLED, Wakeup, drop_privileges, raise_file_limit


@pytest.fixture
def wakeup() -> Iterator[Wakeup]:
    saved = {signum: signal.getsignal(signum) for signum in (*HANDLED, signal.SIGCHLD)}
    made = Wakeup()
    try:
        yield made
    finally:
        made.close()  # resets the wake-up fd and closes both ends
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def readable(sock: socket.socket, timeout: float) -> bool:
    return bool(select.select([sock], [], [], timeout)[0])


def test_a_signal_is_recorded_and_wakes_the_loop(wakeup: Wakeup) -> None:
    wakeup.install()
    assert not readable(wakeup.reader, 0)
    os.kill(os.getpid(), signal.SIGUSR1)
    assert readable(wakeup.reader, 5.0)
    assert signal.SIGUSR1 in wakeup.pending
    wakeup.drain()
    assert not readable(wakeup.reader, 0)
    assert wakeup.take() == {signal.SIGUSR1}
    assert wakeup.take() == set()


def test_another_thread_wakes_the_loop(wakeup: Wakeup) -> None:
    wakeup.install()
    worker = threading.Thread(target=wakeup.wake)
    worker.start()
    worker.join(5.0)
    assert readable(wakeup.reader, 5.0)
    assert wakeup.pending == set()  # a wake-up is no signal


def test_a_file_limit_that_suffices_is_left_alone() -> None:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    raise_file_limit(1)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == before


def test_a_file_limit_that_cannot_be_raised_enough_is_an_error_that_says_how() -> None:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        with pytest.raises(SocketSetupError, match=r"100000000 bindings need about .*ulimit -n"):
            raise_file_limit(100_000_000)  # above any kernel's nr_open
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_without_a_user_nothing_is_dropped() -> None:
    before = (os.getuid(), os.getgid())
    drop_privileges(None, "/nonexistent/status.json", "test.yaml")
    assert (os.getuid(), os.getgid()) == before


def test_an_account_that_is_gone_is_refused_before_anything_changes() -> None:
    """As root (how the suite runs) the account is looked up and refused; started by anyone
    else the agent has no privileges to drop and never looks."""
    before = (os.getuid(), os.getgid(), os.getgroups())
    if os.geteuid() == 0:
        with pytest.raises(ConfigError, match="no such user 'nk-no-such-user'"):
            drop_privileges("nk-no-such-user", "/nonexistent/status.json", "test.yaml")
    else:
        drop_privileges("nk-no-such-user", "/nonexistent/status.json", "test.yaml")
    assert (os.getuid(), os.getgid(), os.getgroups()) == before
