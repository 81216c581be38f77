"""The loop's readiness wait: epoll, as selectors.DefaultSelector uses it on Linux.

Not `selectors` itself: it imports `collections` for a namedtuple and a Mapping, which the
long-running process, small on a router, has no other use for. What the daemon needs is four calls:
register a socket with a tag, unregister it, wait, close.
"""

from __future__ import annotations

import select

TYPE_CHECKING = False
if TYPE_CHECKING:
    from natkeepalive.cstdlib import socket


class Poller:
    """Sockets by file descriptor, each with the tag the loop dispatches on."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._owners: dict[int, tuple[socket.socket, object]] = {}

    def register(self, sock: socket.socket, tag: object) -> None:
        fd = sock.fileno()
        self._epoll.register(fd, select.EPOLLIN)
        self._owners[fd] = (sock, tag)

    def unregister(self, sock: socket.socket) -> None:
        """Forget `sock`, closed or not. A closed socket has left epoll already and its fd
        number may belong to a new socket by now, so it is found by identity."""
        fd = sock.fileno()
        if fd < 0 or self._owners.get(fd, (None,))[0] is not sock:
            fd = next((n for n, (s, _) in self._owners.items() if s is sock), -1)
            if fd < 0:
                return
        del self._owners[fd]
        try:
            self._epoll.unregister(fd)
        except OSError:  # closed, so epoll dropped it itself
            pass

    def select(self, timeout: float | None) -> list[tuple[socket.socket, object]]:
        """The ready sockets and their tags; waits at most `timeout` seconds (rounded up to
        epoll's millisecond, so a deadline is never reached early), None for no limit."""
        try:
            ready = self._epoll.poll(-1 if timeout is None else timeout, max(len(self._owners), 1))
        except InterruptedError:  # a signal: its handler ran, the loop looks at the flags
            return []
        owners = self._owners
        return [owners[fd] for fd, _ in ready if fd in owners]

    def close(self) -> None:
        self._epoll.close()
