"""The floor for CPU per keepalive in Python: a plain `selectors` loop with one timer heap that
sends a fixed OPTIONS (fresh branch and CSeq) from N sockets every INTERVAL seconds and reads
the answers, matching only the branch. No parsing, state machines, events or status: what any
Python keepalive costs at least. Runs for at most SECONDS, then exits. The sockets' sends are
spread evenly over the interval, or with `burst` all go at once (as Kamailio's keepalive module
sends its pings).

    python3 floor_pinger.py HOST PORT BASE_PORT COUNT INTERVAL SECONDS [burst]
"""

from __future__ import annotations

import contextlib
import heapq
import os
import selectors
import socket
import sys
import time

TEMPLATE = ("OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{branch};rport\r\n"
            "Max-Forwards: 70\r\nTo: <sip:{host}>\r\nFrom: <sip:nk@127.0.0.1>;tag={tag}\r\n"
            "Call-ID: {call_id}\r\nCSeq: {cseq} OPTIONS\r\nContent-Length: 0\r\n\r\n")


def main(argv: list[str]) -> int:
    host, port, base, count = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    interval, seconds = float(argv[4]), float(argv[5])
    spread = 0.0 if argv[6:] == ["burst"] else interval
    selector = selectors.DefaultSelector()
    socks, pending, cseqs = [], [b""] * count, [0] * count
    for index in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(("0.0.0.0", base + index))
        selector.register(sock, selectors.EVENT_READ, index)
        socks.append(sock)
    start = time.monotonic()
    heap = [(start + spread * index / count, index) for index in range(count)]
    heapq.heapify(heap)
    answered = 0
    end = start + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        timeout = min(heap[0][0], end) - now
        for key, _ in selector.select(max(timeout, 0.0)):
            index = key.data
            try:
                data = socks[index].recv(65535)
            except OSError:
                continue
            if pending[index] and pending[index] in data:
                pending[index] = b""
                answered += 1
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            _, index = heapq.heappop(heap)
            branch = os.urandom(10).hex()
            cseqs[index] += 1
            payload = TEMPLATE.format(host=host, port=port, local=base + index, branch=branch,
                                      tag="f1", call_id=f"floor{index}", cseq=cseqs[index])
            pending[index] = branch.encode()
            with contextlib.suppress(OSError):  # a lost keepalive shows as a missing answer
                socks[index].sendto(payload.encode(), (host, port))
            heapq.heappush(heap, (now + interval, index))
    sys.stdout.write(f"answered={answered}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
