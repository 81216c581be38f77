"""A bounded junk-datagram flood at one UDP port on this machine (loopback only), as a process.

    python3 flooder.py --target 127.0.0.1:PORT --rate 20000 --seconds 30 [--spoof 127.0.0.1:5060]
                       [--spoof-share 0.5]

Half the junk (by default) comes from eight ordinary sockets on other ports and addresses of
127.0.0.0/8; with --spoof the other half is sent through a raw socket (root) with the source set
to the given address and port, the SIP server's, so it passes the agent's source check and reaches
the parser. Junk is random bytes and well-formed answers with random branches and Call-IDs.

Paced by the monotonic clock (no faster than --rate on average, bursts of a few ms); stops by
itself after --seconds; prints one JSON line: sent, seconds, rate achieved, send errors.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import struct
import sys
import time

LOOPBACK = ("127.0.0.1", "127.0.0.3", "127.0.0.4", "127.0.0.5")


def _junk(rng: random.Random, count: int) -> list[bytes]:
    out = []
    for n in range(count):
        if n % 2:
            out.append(os.urandom(rng.randrange(1, 600)))
            continue
        branch = "z9hG4bK" + os.urandom(10).hex()
        out.append(
            (
                f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch={branch};rport=1;"
                f"received=6.6.6.{n % 250}\r\nFrom: <sip:nk@127.0.0.1>;tag=x\r\n"
                f"To: <sip:x>;tag=y\r\nCall-ID: {os.urandom(8).hex()}\r\nCSeq: {n} OPTIONS\r\n"
                "Flow-Timer: 1\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        )
    return out


def _udp_packet(source: tuple[str, int], dest: tuple[str, int], payload: bytes) -> bytes:
    length = 8 + len(payload)
    udp = struct.pack("!HHHH", source[1], dest[1], length, 0) + payload  # checksum 0: none
    # version/IHL, TOS, total length, id (0: the kernel fills it in), flags, TTL, UDP, checksum
    # (the kernel fills it in), source, destination
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + length,
        0,
        0,
        64,
        socket.IPPROTO_UDP,
        0,
        socket.inet_aton(source[0]),
        socket.inet_aton(dest[0]),
    )
    return ip + udp


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if host not in ("127.0.0.1", "localhost") and not host.startswith("127."):
        raise SystemExit("flooder: loopback targets only")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--rate", type=float, default=20000.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--spoof", help="host:port to forge as the source (raw socket, root)")
    parser.add_argument("--spoof-share", type=float, default=0.5)
    args = parser.parse_args(argv)
    target = _hostport(args.target)
    seconds = min(args.seconds, 120.0)  # bounded whatever the caller asks
    rng = random.Random(7)
    junk = _junk(rng, 64)
    plain = []
    for n in range(8):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOOPBACK[n % len(LOOPBACK)], 0))
        sock.setblocking(False)
        plain.append(sock)
    raw: socket.socket | None = None
    forged: list[bytes] = []
    if args.spoof:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        raw.setblocking(False)
        source = _hostport(args.spoof)
        forged = [_udp_packet(source, target, payload) for payload in junk]
    share = args.spoof_share if raw is not None else 0.0
    every = max(1, round(1 / share)) if share > 0 else 0
    sent = errors = spoofed = 0
    start = time.monotonic()
    end = start + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - start) * args.rate)
        if sent >= due:
            time.sleep(0.0005)
            continue
        for _ in range(min(due - sent, 200)):
            n = sent
            sent += 1
            try:
                if every and n % every == 0:
                    assert raw is not None
                    raw.sendto(forged[n % len(forged)], (target[0], 0))
                    spoofed += 1
                else:
                    plain[n % len(plain)].sendto(junk[n % len(junk)], target)
            except OSError:  # ENOBUFS/EAGAIN: the receiver's queue is full; counts as sent
                errors += 1
    elapsed = time.monotonic() - start
    for sock in plain:
        sock.close()
    if raw is not None:
        raw.close()
    print(
        json.dumps(
            {
                "sent": sent,
                "seconds": round(elapsed, 3),
                "rate": round(sent / elapsed) if elapsed else 0,
                "errors": errors,
                "spoofed": spoofed,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
