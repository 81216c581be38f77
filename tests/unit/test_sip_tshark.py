"""Wireshark's SIP dissector as an independent judge of the bytes we build and sample.

The pcap is written by hand (Ethernet / IPv4 or IPv6 / UDP with correct checksums), then
`tshark -V`, `-T fields` and `-z expert` must show SIP with the right fields and no expert items.
"""

from __future__ import annotations

import socket
import struct
import subprocess
from pathlib import Path

import pytest

from natkeepalive.record import replace
from natkeepalive.sip import OptionsRequest, build_options
from tests.support.responder import SipResponder
from tests.support.tools import require_tool

DATA = Path(__file__).resolve().parent.parent / "data"
CLIENT, SERVER = "192.168.77.2", "203.0.113.10"
CLIENT6, SERVER6 = "2001:db8:77::2", "2001:db8::10"

TYPICAL = OptionsRequest(
    uri_host="sip.example.net",
    uri_port=None,
    via_host=CLIENT,
    via_port=5062,
    branch="z9hG4bK0123456789abcdef",
    call_id="0123456789abcdef",
    from_tag="89abcdef",
    cseq=1,
)
INBOUND6 = replace(
    TYPICAL,
    uri_host=SERVER6,
    uri_port=5070,
    via_host=CLIENT6,
    via_port=40112,
    rport=False,
    user_agent="",
    cseq=2,
    branch="z9hG4bKfedcba9876543210",
)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An Ethernet frame carrying one UDP datagram over IPv4 or IPv6."""
    six = ":" in src
    family = socket.AF_INET6 if six else socket.AF_INET
    s, d = socket.inet_pton(family, src), socket.inet_pton(family, dst)
    length = 8 + len(payload)
    pseudo = s + d + (struct.pack("!IxxxB", length, 17) if six else struct.pack("!xBH", 17, length))
    udp = struct.pack("!HHHH", sport, dport, length, 0)
    udp = udp[:6] + struct.pack("!H", _checksum(pseudo + udp + payload) or 0xFFFF)
    if six:
        ip = struct.pack("!IHBB", 6 << 28, length, 17, 64) + s + d
        ethertype = 0x86DD
    else:
        ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + length, 1, 0x4000, 64, 17, 0) + s + d
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        ethertype = 0x0800
    ethernet = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01" + struct.pack("!H", ethertype)
    return ethernet + ip + udp + payload


def write_pcap(path: Path, frames: list[bytes]) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # LINKTYPE_ETHERNET
    for number, frame in enumerate(frames):
        out.append(struct.pack("<IIII", 1_700_000_000 + number, 0, len(frame), len(frame)))
        out.append(frame)
    path.write_bytes(b"".join(out))


def tshark(*args: str) -> str:
    tool = require_tool("tshark")
    checks = ("-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE")
    done = subprocess.run(
        [tool, *checks, *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


FIELDS = (
    "sip.Method",
    "sip.r-uri",
    "sip.Status-Code",
    "sip.Via.transport",
    "sip.Via.sent-by.address",
    "sip.Via.sent-by.port",
    "sip.Via.branch",
    "sip.Via.rport",
    "sip.Via.received",
    "sip.Call-ID",
    "sip.CSeq.seq",
    "sip.CSeq.method",
    "sip.from.tag",
    "sip.to.tag",
    "sip.Max-Forwards",
    "sip.User-Agent",
    "sip.Content-Length",
    "_ws.malformed",
    "_ws.expert.severity",
)


def fields(pcap: Path) -> list[dict[str, str]]:
    args = ["-r", str(pcap), "-T", "fields", "-E", "separator=|", "-E", "occurrence=f"]
    for name in FIELDS:
        args += ["-e", name]
    rows = tshark(*args).splitlines()
    return [dict(zip(FIELDS, row.split("|"))) for row in rows]


def expert(pcap: Path) -> str:
    return tshark("-r", str(pcap), "-z", "expert", "-q")


def assert_clean(pcap: Path) -> None:
    verbose = tshark("-r", str(pcap), "-V")
    assert "Malformed" not in verbose
    report = expert(pcap)
    for section in ("Errors", "Warnings", "Notes"):
        assert section not in report, report


def responder_answer(request: bytes) -> bytes:
    """What tests/support/responder actually sends for `request`."""
    with SipResponder() as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        sock.sendto(request, server.address)
        data, _ = sock.recvfrom(65535)
    return data


def test_built_requests_and_responses_dissect_cleanly(tmp_path: Path) -> None:
    pcap = tmp_path / "options.pcap"
    request = build_options(TYPICAL)
    write_pcap(
        pcap,
        [
            udp_frame(CLIENT, SERVER, 5062, 5060, request),
            udp_frame(SERVER, CLIENT, 5060, 5062, (DATA / "kamailio_200.sip").read_bytes()),
            udp_frame(CLIENT6, SERVER6, 40112, 5070, build_options(INBOUND6)),
            udp_frame(SERVER, CLIENT, 5060, 5062, responder_answer(request)),
        ],
    )
    verbose = tshark("-r", str(pcap), "-V")
    assert verbose.count("Session Initiation Protocol") == 4
    assert "Request-Line: OPTIONS sip:sip.example.net SIP/2.0" in verbose
    assert "Request-Line: OPTIONS sip:[2001:db8::10]:5070 SIP/2.0" in verbose
    assert "Status-Line: SIP/2.0 200 OK" in verbose
    assert_clean(pcap)

    request_row, response_row, inbound_row, responder_row = fields(pcap)
    assert request_row == {
        "sip.Method": "OPTIONS",
        "sip.r-uri": "sip:sip.example.net",
        "sip.Status-Code": "",
        "sip.Via.transport": "UDP",
        "sip.Via.sent-by.address": CLIENT,
        "sip.Via.sent-by.port": "5062",
        "sip.Via.branch": "z9hG4bK0123456789abcdef",
        "sip.Via.rport": "rport",
        "sip.Via.received": "",
        "sip.Call-ID": "0123456789abcdef",
        "sip.CSeq.seq": "1",
        "sip.CSeq.method": "OPTIONS",
        "sip.from.tag": "89abcdef",
        "sip.to.tag": "",
        "sip.Max-Forwards": "70",
        "sip.User-Agent": "nat-keepalive",
        "sip.Content-Length": "0",
        "_ws.malformed": "",
        "_ws.expert.severity": "",
    }
    assert response_row["sip.Status-Code"] == "200"
    assert response_row["sip.Via.rport"] == "33785"
    assert response_row["sip.Via.received"] == "203.0.113.1"
    assert response_row["sip.Via.branch"] == "z9hG4bK0123456789abcdef"
    assert inbound_row["sip.r-uri"] == "sip:[2001:db8::10]:5070"
    assert inbound_row["sip.Via.sent-by.address"] == CLIENT6
    assert inbound_row["sip.Via.sent-by.port"] == "40112"
    assert inbound_row["sip.Via.rport"] == ""
    assert inbound_row["sip.User-Agent"] == ""
    assert inbound_row["sip.CSeq.seq"] == "2"
    assert responder_row["sip.Status-Code"] == "200"
    assert responder_row["sip.Via.received"] == "127.0.0.1"  # the sent-by was 192.168.77.2
    assert responder_row["sip.Via.rport"].isdigit()
    assert responder_row["sip.to.tag"] == "resp1"
    assert responder_row["sip.Call-ID"] == "0123456789abcdef"


# mixed_case_spaces.sip is deliberately off-grammar ("sip/2.0 200 ok"): Wireshark's heuristic
# does not take it as SIP, our parser does.
SAMPLES = sorted(p.name for p in DATA.glob("*.sip") if p.name != "mixed_case_spaces.sip")


def test_golden_samples_are_valid_sip_for_wireshark(tmp_path: Path) -> None:
    pcap = tmp_path / "samples.pcap"
    write_pcap(
        pcap,
        [udp_frame(SERVER, CLIENT, 5060, 5062, (DATA / name).read_bytes()) for name in SAMPLES],
    )
    rows = fields(pcap)
    assert len(rows) == len(SAMPLES)
    for name, row in zip(SAMPLES, rows):
        assert row["sip.Call-ID"], name
        assert row["sip.Status-Code"] or row["sip.Method"] == "OPTIONS", name
    assert_clean(pcap)


def test_expert_check_can_fail(tmp_path: Path) -> None:
    # A control: a broken header name must show up, or assert_clean would prove nothing.
    pcap = tmp_path / "broken.pcap"
    broken = build_options(TYPICAL).replace(b"User-Agent", b"User--Agent")
    write_pcap(pcap, [udp_frame(CLIENT, SERVER, 5062, 5060, broken)])
    assert "Notes" in expert(pcap)
    with pytest.raises(AssertionError):
        assert_clean(pcap)
