"""Capture real SIP responses from Kamailio and the SIPp no-rport server in the NAT lab, as seeds
for the fuzzers (tests/fuzz/run.py) and fixtures for tests.

    sudo python3 tests/fuzz/capture_seeds.py [--out tests/data/captured]

Builds a lab (tests/lab/netlab.py), sends each request below from the `lan` namespace through the
NAT and writes every answer byte for byte to OUT/<server>_<case>.sip, plus MANIFEST.txt naming the
request each came from. The agent's own request shapes come from natkeepalive.sip.request, so the
seeds are what the agent really meets; the rest are shapes a server answers differently (several
Vias, compact headers, a body, an unknown method, an IPv6 sent-by).
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

from natkeepalive.sip.request import OptionsRequest, build_options  # noqa: E402
from tests.lab import netlab  # noqa: E402

DEFAULT_OUT = ROOT / "tests" / "data" / "captured"
PORT = 5062  # the binding's fixed source port in the lab
KAMAILIO_PORT = 5060
SIPP_PORT = 5070


def _agent_options(
    server_port: int,
    *,
    via_host: str = netlab.LAN_IP,
    via_port: int = PORT,
    rport: bool = True,
    cseq: int = 1,
) -> bytes:
    suffix = os.urandom(10).hex()
    return build_options(
        OptionsRequest(
            uri_host=netlab.SERVER_IP,
            uri_port=None if server_port == 5060 else server_port,
            via_host=via_host,
            via_port=via_port,
            branch="z9hG4bK" + suffix,
            call_id=os.urandom(8).hex(),
            from_tag=os.urandom(4).hex(),
            cseq=cseq,
            rport=rport,
        )
    )


def _crlf(lines: list[str], body: str = "") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def _multi_via(server_port: int) -> bytes:
    branch = "z9hG4bK" + os.urandom(8).hex()
    return _crlf(
        [
            f"OPTIONS sip:{netlab.SERVER_IP}:{server_port} SIP/2.0",
            f"Via: SIP/2.0/UDP {netlab.LAN_IP}:{PORT};branch={branch};rport",
            "Via: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKproxy1;received=10.0.0.8, "
            "SIP/2.0/TCP [2001:db8::7]:5061;branch=z9hG4bKproxy2",
            "v: SIP/2.0/UDP 198.51.100.4;branch=z9hG4bKproxy3",
            "Max-Forwards: 68",
            f'From: "Lab; one" <sip:lab@{netlab.LAN_IP}>;tag=1928301774',
            f"To: <sip:{netlab.SERVER_IP}>",
            f"Call-ID: {os.urandom(6).hex()}@lab.example",
            "CSeq: 7 OPTIONS",
            "Content-Length: 0",
        ]
    )


def _compact(server_port: int) -> bytes:
    branch = "z9hG4bK" + os.urandom(8).hex()
    return _crlf(
        [
            f"OPTIONS sip:{netlab.SERVER_IP}:{server_port} SIP/2.0",
            f"v: SIP/2.0/UDP {netlab.LAN_IP}:{PORT} ;branch={branch} ; rport",
            "Max-Forwards: 70",
            f"f: <sip:lab@{netlab.LAN_IP}>;tag=77",
            f"t: <sip:{netlab.SERVER_IP}>",
            f"i: {os.urandom(6).hex()}",
            "CSeq: 2 OPTIONS",
            "k: path, outbound",
            "l: 0",
        ]
    )


def _with_body(server_port: int) -> bytes:
    branch = "z9hG4bK" + os.urandom(8).hex()
    body = "v=0\r\no=- 1 1 IN IP4 192.168.77.2\r\ns=-\r\nt=0 0\r\n"
    return _crlf(
        [
            f"OPTIONS sip:{netlab.SERVER_IP}:{server_port} SIP/2.0",
            f"Via: SIP/2.0/UDP {netlab.LAN_IP}:{PORT};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:lab@{netlab.LAN_IP}>;tag=88",
            f"To: <sip:{netlab.SERVER_IP}>",
            f"Call-ID: {os.urandom(6).hex()}",
            "CSeq: 3 OPTIONS",
            "Accept: application/sdp",
            "Content-Type: application/sdp",
            f"Content-Length: {len(body)}",
        ],
        body,
    )


def _method(server_port: int, method: str) -> bytes:
    branch = "z9hG4bK" + os.urandom(8).hex()
    return _crlf(
        [
            f"{method} sip:{netlab.SERVER_IP}:{server_port} SIP/2.0",
            f"Via: SIP/2.0/UDP {netlab.LAN_IP}:{PORT};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:lab@{netlab.LAN_IP}>;tag=99",
            f"To: <sip:{netlab.SERVER_IP}>",
            f"Call-ID: {os.urandom(6).hex()}",
            f"CSeq: 4 {method}",
            "Content-Length: 0",
        ]
    )


def _ipv6_sent_by(server_port: int) -> bytes:
    branch = "z9hG4bK" + os.urandom(8).hex()
    return _crlf(
        [
            f"OPTIONS sip:{netlab.SERVER_IP}:{server_port} SIP/2.0",
            f"Via: SIP/2.0/UDP [2001:db8::2]:{PORT};branch={branch};rport",
            "Max-Forwards: 70",
            "From: <sip:lab@[2001:db8::2]>;tag=66",
            f"To: <sip:{netlab.SERVER_IP}>",
            f"Call-ID: {os.urandom(6).hex()}",
            "CSeq: 5 OPTIONS",
            "Content-Length: 0",
        ]
    )


Case = tuple[str, Callable[[int], bytes], str]

CASES: tuple[Case, ...] = (
    ("keepalive", lambda p: _agent_options(p), "the agent's keepalive (Via with rport)"),
    (
        "keepalive_cseq_high",
        lambda p: _agent_options(p, cseq=2**32 - 1),
        "the agent's keepalive, CSeq 2**32-1",
    ),
    (
        "inbound_check",
        lambda p: _agent_options(p, via_host=netlab.ROUTER_WAN_IP, rport=False),
        "the inbound check: Via sent-by = public address:port, no rport",
    ),
    (
        "norport_lan",
        lambda p: _agent_options(p, rport=False),
        "no rport, Via sent-by = the private address",
    ),
    ("multi_via", _multi_via, "three Via headers, five values, an IPv6 hop, a quoted From"),
    ("compact", _compact, "compact header names, spaces around ';'"),
    ("body", _with_body, "OPTIONS with an SDP body"),
    ("info", lambda p: _method(p, "INFO"), "an INFO request (not OPTIONS)"),
    ("ipv6_sent_by", _ipv6_sent_by, "an IPv6 sent-by over IPv4"),
)


def capture(out: Path) -> list[tuple[str, str, int]]:
    """Run every case against both servers; returns (file name, description, size) per answer."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[tuple[str, str, int]] = []
    with netlab.Lab() as lab:
        lab.start_kamailio(port=KAMAILIO_PORT)
        lab.start_sipp_norport(port=SIPP_PORT)
        shell = lab.udp_shell("lan")
        shell.open("binding", netlab.LAN_IP, PORT)
        for server, port in (("kamailio", KAMAILIO_PORT), ("sipp", SIPP_PORT)):
            for name, make, what in CASES:
                request = make(port)
                answer = shell.exchange("binding", request, netlab.SERVER_IP, port, timeout=2.0)
                if answer is None:
                    print(f"{server} {name}: no answer ({what})")
                    continue
                filename = f"{server}_{name}.sip"
                (out / filename).write_bytes(answer)
                written.append((filename, f"{server}: {what}", len(answer)))
                print(f"{filename}: {len(answer)} bytes")
    manifest = [
        "# Answers captured by tests/fuzz/capture_seeds.py in the NAT lab",
        "# (Kamailio 5.6 stateless with sl_send_reply; SIPp UAS echoing the Via).",
        "# file: server: request",
    ]
    manifest += [f"{name}: {what} ({size} bytes)" for name, what, size in written]
    (out / "MANIFEST.txt").write_text("\n".join(manifest) + "\n")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    netlab.cleanup_stale()
    written = capture(args.out)
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
