"""The floor of any Python keepalive: a plain loop with one timer heap that sends a fixed
OPTIONS (fresh branch and CSeq) from N sockets every INTERVAL seconds and reads the answers,
matching only the branch. No parsing, state machines, events or status. Runs for at most
SECONDS, then exits.

Modes (any of them, after SECONDS):
- `burst`: all sockets send at once (as Kamailio's keepalive module sends its pings); else the
  sends are spread evenly over the interval.
- `lean`: the loop on `_socket`, `select.epoll` and `_heapq`, as the agent's runtime uses them,
  instead of `selectors` and `socket` (whose imports, `enum` and `collections`, cost about
  1.4 MB): the least memory a Python pinger can take. Without it, the loop is the plain
  `selectors` loop the CPU section's floor is measured with.

    python3 floor_pinger.py HOST PORT BASE_PORT COUNT INTERVAL SECONDS [burst] [lean]
"""

from __future__ import annotations

import _heapq
import _socket
import os
import select
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    Wait = Callable[[float], list[int]]  # the sockets' indices with a datagram waiting

TEMPLATE = (
    "OPTIONS sip:{host}:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{branch};rport\r\n"
    "Max-Forwards: 70\r\nTo: <sip:{host}>\r\nFrom: <sip:nk@127.0.0.1>;tag={tag}\r\n"
    "Call-ID: {call_id}\r\nCSeq: {cseq} OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


def main(argv: list[str]) -> int:
    host, port, base, count = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    interval, seconds = float(argv[4]), float(argv[5])
    modes = set(argv[6:])
    if modes - {"burst", "lean"}:
        sys.stderr.write(f"unknown mode(s): {' '.join(sorted(modes - {'burst', 'lean'}))}\n")
        return 2
    spread = 0.0 if "burst" in modes else interval
    socks, wait = (_epoll_loop if "lean" in modes else _selectors_loop)(base, count)
    start = time.monotonic()
    heap = [(start + spread * index / count, index) for index in range(count)]
    _heapq.heapify(heap)
    pending, cseqs = [b""] * count, [0] * count
    answered = 0
    end = start + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        for index in wait(max(min(heap[0][0], end) - now, 0.0)):
            try:
                data = socks[index].recv(65535)
            except OSError:
                continue
            if pending[index] and pending[index] in data:
                pending[index] = b""
                answered += 1
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            _, index = _heapq.heappop(heap)
            branch = os.urandom(10).hex()
            cseqs[index] += 1
            payload = TEMPLATE.format(
                host=host,
                port=port,
                local=base + index,
                branch=branch,
                tag="f1",
                call_id=f"floor{index}",
                cseq=cseqs[index],
            )
            pending[index] = branch.encode()
            try:  # noqa: SIM105 (contextlib costs the lean mode 0.4 MB)
                socks[index].sendto(payload.encode(), (host, port))
            except OSError:
                pass  # a lost keepalive shows as a missing answer
            _heapq.heappush(heap, (now + interval, index))
    sys.stdout.write(f"answered={answered}\n")
    return 0


def _selectors_loop(base: int, count: int) -> tuple[list[_socket.socket], Wait]:
    import selectors
    import socket

    selector = selectors.DefaultSelector()
    socks: list[_socket.socket] = []
    for index in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(("0.0.0.0", base + index))
        selector.register(sock, selectors.EVENT_READ, index)
        socks.append(sock)

    def wait(timeout: float) -> list[int]:
        return [key.data for key, _ in selector.select(timeout)]

    return socks, wait


def _epoll_loop(base: int, count: int) -> tuple[list[_socket.socket], Wait]:
    poller = select.epoll()
    socks: list[_socket.socket] = []
    by_fd: dict[int, int] = {}
    for index in range(count):
        sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(("0.0.0.0", base + index))
        poller.register(sock.fileno(), select.EPOLLIN)
        by_fd[sock.fileno()] = index
        socks.append(sock)

    def wait(timeout: float) -> list[int]:
        return [by_fd[fd] for fd, _ in poller.poll(timeout)]

    return socks, wait


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
