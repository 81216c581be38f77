"""A test-controlled DNS server (UDP, one thread) for resolver faults.

It answers A queries for the names in `records` and NODATA for other types of a known name; the
`mode` decides what happens to everything: "ok", "nxdomain", "servfail", or "silent" (no answer,
so the client's resolver times out). The agent is pointed at it through a private mount namespace
(`unshare -m`) in which /etc/resolv.conf, /etc/hosts and /etc/nsswitch.conf are bind-mounted
files of the test, so the host's resolver is never touched.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

A, AAAA = 1, 28


class DnsServer:
    def __init__(self, host: str, records: dict[str, str]) -> None:
        self.records = {name.lower().rstrip("."): address for name, address in records.items()}
        self.mode = "ok"
        self.queries: list[tuple[str, int, str]] = []  # (name, type, mode when asked)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 53))
        self.sock.settimeout(0.2)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="dns", daemon=True)

    def __enter__(self) -> DnsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join(5)
        self.sock.close()

    def _run(self) -> None:
        while not self._stop:
            try:
                data, source = self.sock.recvfrom(4096)
            except (socket.timeout, OSError):
                continue
            reply = self.answer(data)
            if reply is not None:
                with contextlib.suppress(OSError):
                    self.sock.sendto(reply, source)

    def answer(self, query: bytes) -> bytes | None:
        if len(query) < 12:
            return None
        ident, _flags, qdcount = struct.unpack("!HHH", query[:6])
        if qdcount != 1:
            return None
        labels, pos = [], 12
        while pos < len(query) and query[pos]:
            length = query[pos]
            labels.append(query[pos + 1 : pos + 1 + length].decode("ascii", "replace"))
            pos += 1 + length
        pos += 1
        if pos + 4 > len(query):
            return None
        qtype, _qclass = struct.unpack("!HH", query[pos : pos + 4])
        question = query[12 : pos + 4]
        name = ".".join(labels).lower()
        mode = self.mode
        self.queries.append((name, qtype, mode))
        if mode == "silent":
            return None
        rcode = {"nxdomain": 3, "servfail": 2}.get(mode, 0)
        address = self.records.get(name)
        if mode == "ok" and address is None:
            rcode = 3
        answers = b""
        count = 0
        if rcode == 0 and qtype == A and address is not None:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", A, 1, 5, 4) + socket.inet_aton(address)
            count = 1
        flags = 0x8180 | rcode  # response, recursion desired and available
        header = struct.pack("!HHHHHH", ident, flags, 1, count, 0, 0)
        return header + question + answers
