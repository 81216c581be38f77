"""The daemon's process set-up: the open-file limit, the privilege drop, the signal handlers."""

from __future__ import annotations

import os

from natkeepalive.cstdlib import signal, socket
from natkeepalive.errors import ConfigError, SocketSetupError

FD_RESERVE = 32  # status file, syslog, aux and discovery sockets, hooks, the wake-up pair
# Signals the loop acts on; their handler only records them (the loop runs the work).
HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def raise_file_limit(bindings: int) -> None:
    """One descriptor per binding, plus a few: raise the soft limit as far as allowed, or raise
    SocketSetupError saying which limit to change."""
    needed = bindings + FD_RESERVE
    current = os.sysconf("SC_OPEN_MAX")  # the soft limit (-1: none), without `resource`
    if current < 0 or current >= needed:
        return  # the usual case, and `resource` is never imported
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise SocketSetupError(
            f"{bindings} bindings need about {needed} open files, but the limit is {soft} "
            f"(hard limit {hard}); raise it (ulimit -n, LimitNOFILE=, procd limits)"
        )


def drop_privileges(user: str | None, status_path: str, source: str) -> None:
    """Run as `user` from now on when started as root; ConfigError if the account is gone."""
    if user is None or os.geteuid() != 0:
        return
    # Reloads load the file in a child of this process, which then runs as `user` and may
    # not be able to read the Python installation (a root-only virtualenv): import the
    # loader while still root. It costs PyYAML's memory, only in this rare set-up (ports
    # below 1024; packaged services get their user from procd or systemd instead).
    from natkeepalive.config.loader import lookup_user

    ids = lookup_user(user)
    if ids is None:  # `check` refuses this; the account may have gone since
        raise ConfigError(
            f"no such user {user!r} on this host (create it, or remove 'user:')",
            file=source,
            key="user",
        )
    uid, gid = ids
    # The status file's folder (under /run, gone after a reboot) is made while root can,
    # and given to the user who writes the file from now on.
    folder = os.path.dirname(status_path)
    if folder and not os.path.isdir(folder):
        try:
            os.makedirs(folder, mode=0o755, exist_ok=True)
            os.chown(folder, uid, gid)
        except OSError:
            pass  # reported as status-write-failed when the file cannot be written
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


class Wakeup:
    """The loop's wake-up pair: a signal (through signal.set_wakeup_fd) or a worker thread writes
    a byte, the poller sees `reader` readable. Signal handlers only record the signal in
    `pending`; the loop acts on it after the wait."""

    def __init__(self) -> None:
        self.reader, self._writer = socket.socketpair()
        self.pending: set[int] = set()

    def install(self) -> None:
        """Route HANDLED here; SIGCHLD (a finished hook) only wakes the loop, to reap it now."""
        self.reader.setblocking(False)
        self._writer.setblocking(False)
        signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for signum in HANDLED:
            signal.signal(signum, self._on_signal)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.pending.add(signum)

    def wake(self) -> None:
        """From another thread: the loop should look (a lookup finished)."""
        try:
            self._writer.send(b"r")
        except OSError:
            pass

    def drain(self) -> None:
        try:
            while self.reader.recv(512):
                pass
        except OSError:
            pass

    def close(self) -> None:
        try:  # first, so that no later signal writes into a closed (or reused) descriptor
            signal.set_wakeup_fd(-1)
        except ValueError:  # not the main thread: this pair was never installed
            pass
        self.reader.close()
        self._writer.close()

    def take(self) -> set[int]:
        """The signals received since the last call."""
        pending, self.pending = self.pending, set()
        return pending
