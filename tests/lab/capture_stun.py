"""Capture real coturn answers for the STUN codec's corpus (tests/data/stun/).

    sudo python3 tests/lab/capture_stun.py [--out tests/data/stun]

coturn runs in a NAT lab twice: with Debian's /etc/turnserver.conf as shipped (one listening
address) and with RFC 5780 on (two addresses, the file's `no-rfc5780` line dropped). Requests go
from the `lan` namespace through the port-preserving NAT, from local ports 5062 (the binding) and
5063 (the second socket). With RFC 5780 on, coturn answers CHANGE-REQUEST from its other address
or port, which the NAT's conntrack does not map back: those answers never reach the `lan` and are
recorded as "no answer", as a client behind such a NAT sees them. Every
datagram is written byte for byte to OUT/coturn-<config>_<case>.stun, and MANIFEST.txt names the
request and the socket it arrived on.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
if str(ROOT / "agent") not in sys.path:
    sys.path.insert(0, str(ROOT / "agent"))

from natkeepalive import stun  # noqa: E402
from tests.lab import netlab  # noqa: E402
from tests.lab.stun_lab import SECOND_SERVER_IP, start_coturn  # noqa: E402

DEFAULT_OUT = ROOT / "tests" / "data" / "stun"
BINDING, OTHER = 5062, 5063


def _unknown_required(txid: bytes) -> bytes:
    """A Binding request with comprehension-required attribute 0x0077: a 420 is due."""
    return b"\x00\x01\x00\x04" + stun.MAGIC_COOKIE.to_bytes(4, "big") + txid + b"\x00\x77\x00\x00"


CASES: list[tuple[str, str, Callable[[bytes], bytes], str]] = [
    ("binding", "binding", stun.build_binding_request, "a plain Binding request"),
    (
        "fingerprint",
        "binding",
        lambda t: stun.build_binding_request(t, fingerprint=True),
        "a Binding request with FINGERPRINT",
    ),
    (
        "response_port",
        "other",
        lambda t: stun.build_binding_request(t, response_port=BINDING),
        f"from port {OTHER}, RESPONSE-PORT {BINDING}",
    ),
    (
        "change_port",
        "binding",
        lambda t: stun.build_binding_request(t, change_port=True),
        "CHANGE-REQUEST change port",
    ),
    (
        "change_ip",
        "binding",
        lambda t: stun.build_binding_request(t, change_ip=True),
        "CHANGE-REQUEST change IP",
    ),
    (
        "unknown_required",
        "binding",
        _unknown_required,
        "an unknown comprehension-required attribute (0x0077)",
    ),
]


def capture(config: str, out: Path) -> list[str]:
    manifest = []
    with netlab.Lab() as lab:
        rfc5780 = config == "rfc5780"
        server = start_coturn(lab, rfc5780=rfc5780, second_ip=SECOND_SERVER_IP if rfc5780 else None)
        shell = lab.udp_shell("lan")
        shell.open("binding", netlab.LAN_IP, BINDING)
        shell.open("other", netlab.LAN_IP, OTHER)
        for case, sock, make, what in CASES:
            shell.send(sock, make(os.urandom(12)), netlab.SERVER_IP, server.port)
            got = shell.recv(1.5, wait_all=True)
            for index, (arrived, data, source) in enumerate(got):
                suffix = f"_{index + 1}" if len(got) > 1 else ""
                name = f"coturn-{config}_{case}{suffix}.stun"
                (out / name).write_bytes(data)
                manifest.append(
                    f"{name}: {what}; sent from {sock}, arrived on {arrived} "
                    f"from {source[0]}:{source[1]}"
                )
            if not got:
                manifest.append(f"coturn-{config}_{case}: {what}; no answer")
    return manifest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["# coturn 4.6.1 (Debian 12) in the NAT lab: see tests/lab/capture_stun.py"]
    for config in ("debian", "rfc5780"):
        lines += capture(config, args.out)
    (args.out / "MANIFEST.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
