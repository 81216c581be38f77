"""Load the configuration in a short-lived child process.

Why: reading the YAML needs PyYAML and the validating loader, which cost the process about half
a bare interpreter's memory again (docs/performance.md), and the daemon needs neither once the
file is read. A forked child imports them, validates the file, sends the model back as `marshal`
bytes and exits; the long-running process only ever holds the model. Errors come back as the
ConfigError `load_config` raised, so callers cannot tell the difference.

fork() rather than a new interpreter: the child starts within a millisecond with everything the
parent already imported. When fork fails (no memory for the copy), the loader runs in-process.
"""

from __future__ import annotations

import marshal
import os
import select
import sys

from natkeepalive.config.plain import error_from_plain, error_to_plain, from_plain, to_plain
from natkeepalive.cstdlib import signal
from natkeepalive.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

    from natkeepalive.config.model import Config
LOAD_TIMEOUT = 30.0  # a YAML file a router can read takes well under a second
EX_SOFTWARE = 70  # sysexits.h: the child failed in a way it did not report itself


class ChildTimeout(Exception):
    """The child sent nothing within the time allowed; it has been killed."""


def run_in_child(work: Callable[[], bytes], timeout: float | None) -> tuple[int, bytes]:
    """Run `work` in a forked child: (its exit code, the bytes it returned).

    In the child, SystemExit(code) becomes the exit code and any other exception a traceback on
    stderr and exit code 70. OSError when fork is impossible.
    """
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:
        _child(work, read_fd, write_fd)
    os.close(write_fd)
    try:
        data = _read_all(read_fd, timeout)
    except BaseException:
        _kill(pid)
        raise
    finally:
        os.close(read_fd)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), data


def _child(work: Callable[[], bytes], read_fd: int, write_fd: int) -> NoReturn:
    code = EX_SOFTWARE
    try:
        os.close(read_fd)
        # The parent's handlers would answer signals meant for the daemon (and write to its
        # wake-up pipe); the child should just die with its parent's service.
        signal.set_wakeup_fd(-1)
        for signum in (
            signal.SIGTERM,
            signal.SIGINT,
            signal.SIGHUP,
            signal.SIGUSR1,
            signal.SIGUSR2,
            signal.SIGCHLD,
        ):
            signal.signal(signum, signal.SIG_DFL)
        view = memoryview(work())
        while view:
            view = view[os.write(write_fd, view) :]
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed or gone: nothing to say
                pass
        os._exit(code)


def _read_all(fd: int, timeout: float | None) -> bytes:
    chunks: list[bytes] = []
    while True:
        # select() retries after a signal with the time left (PEP 475); a timeout means
        # the child is stuck, not slow.
        if timeout is not None and not select.select([fd], [], [], timeout)[0]:
            raise ChildTimeout(f"no answer within {timeout:g} s")
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def _load(path: str) -> bytes:
    from natkeepalive.config.loader import load_config

    try:
        return marshal.dumps(("ok", to_plain(load_config(path))))
    except ConfigError as exc:
        return marshal.dumps(("error", error_to_plain(exc)))


def load_config_in_child(path: str, timeout: float = LOAD_TIMEOUT) -> Config:
    """`load_config(path)`, run in a child so PyYAML never enters this process."""
    try:
        code, data = run_in_child(lambda: _load(path), timeout)
    except OSError:
        from natkeepalive.config.loader import load_config

        return load_config(path)
    except ChildTimeout as exc:
        raise ConfigError(f"cannot read: {exc}", file=path) from None
    if code != 0 or not data:
        raise ConfigError(f"the loader process failed (exit code {code})", file=path)
    kind, value = marshal.loads(data)
    if kind == "error":
        raise error_from_plain(value)
    return from_plain(value)
