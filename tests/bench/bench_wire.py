"""5. Bytes on the wire: UDP payload of the agent's OPTIONS and of the answer it gets, beside
sipsak's OPTIONS and Kamailio's keepalive OPTIONS to the same Kamailio server, captured with
dumpcap on the namespace's loopback and checked with tshark (malformed or expert warnings).
Everyone uses 127.0.0.1 for its Via and the server, so the sizes compare like for like; with a
server name or a longer address every request grows by as many bytes.

Budget (docs/performance.md): the agent's request is the smallest well-formed one of them.
"""

from __future__ import annotations

import struct
import subprocess
import time
from pathlib import Path

from tests.bench import common as c

NAME = "wire"
TITLE = "5. Bytes on the wire"
HEADERS = 28  # IPv4 + UDP


def run(ctx: c.Context) -> None:
    section = ctx.section(
        NAME,
        TITLE,
        (
            "one exchange each against the run's Kamailio server (127.0.0.1:5060), UDP payload "
            "bytes; the agent with default settings (User-Agent: nat-keepalive); `sipsak -s "
            "sip:127.0.0.1:5060`; Kamailio keepalive with one destination `sip:127.0.0.1:5060`."
        ),
    )
    workdir = ctx.subdir("wire")
    pcap = workdir / "wire.pcap"
    agent_port = ctx.ports.take(1)
    status = workdir / "status.json"
    config = c.agent_config(workdir / "agent.yaml", count=1, base_port=agent_port, status=status)
    with c.Procs() as procs:
        capture = c.Capture(pcap, "udp port 5060", procs)
        agent = procs.start(
            ctx.agent_argv(config, status), env=ctx.env(), capture=True, name="agent"
        )
        agent.wait_line(c.is_event("reachable"), timeout=30)
        # under load the capture may start late: keep the agent until an exchange is on file
        # (its second keepalive follows 3 s after the first)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not _answered(pcap, agent_port):
            time.sleep(0.2)
        procs.stop(agent)
        done = subprocess.run(
            [c.tool("sipsak"), "-s", "sip:127.0.0.1:5060"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise c.BenchError(f"sipsak failed ({done.returncode}): {done.stdout}{done.stderr}")
        cfg = c.kamailio_pinger_config(workdir, c.pinger_destinations(1), 1)
        kam = procs.start(
            c.kamailio_argv(cfg, workdir / "kam"),
            env=ctx.env(),
            log=workdir / "kamailio.log",
            name="kamailio",
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not _answered(pcap, c.PINGER_PORT):
            time.sleep(0.2)
        procs.stop(kam)
        packets = capture.stop()
    requests: dict[str, bytes] = {}
    answers: dict[str, bytes] = {}
    for packet in packets:
        who = _who(packet, agent_port)
        if packet.dport == c.SERVER[1] and packet.payload.startswith(b"OPTIONS "):
            requests.setdefault(who, packet.payload)
        elif packet.sport == c.SERVER[1] and packet.payload.startswith(b"SIP/2.0 "):
            answers.setdefault(who, packet.payload)
    names = {"agent": "agent", "sipsak": "sipsak", "kamailio": "Kamailio keepalive"}
    for who, label in names.items():
        if who not in requests or who not in answers:
            raise c.BenchError(f"no OPTIONS exchange captured for {label}")
    for who, label in names.items():
        ctx.figure(section, f"{label}: OPTIONS", [len(requests[who])], "bytes", digits=0)
        ctx.figure(
            section, f"{label}: answer from Kamailio", [len(answers[who])], "bytes", digits=0
        )
    smallest = min(len(requests[w]) for w in names)
    ctx.figure(
        section,
        "agent OPTIONS − smallest of the three",
        [len(requests["agent"]) - smallest],
        "bytes",
        "budget 0",
        digits=0,
    )
    per_day = 86400 / (25 * 0.9)
    ctx.figure(
        section,
        "agent at 25 s (mean wait 22.5 s), both ways with IPv4+UDP headers",
        [(len(requests["agent"]) + len(answers["agent"]) + 2 * HEADERS) * per_day / 1024],
        "KB/day",
    )
    ctx.figure(
        section,
        "tshark: malformed or warning-level expert items",
        [_expert(pcap)],
        "packets",
        digits=0,
    )
    for who, label in names.items():
        ctx.note(
            section,
            f"{label} OPTIONS ({len(requests[who])} bytes):\n\n```\n"
            + requests[who].decode("latin-1").rstrip()
            + "\n```",
        )


def _who(packet: c.Packet, agent_port: int) -> str:
    port = packet.sport if packet.dport == c.SERVER[1] else packet.dport
    if port == agent_port:
        return "agent"
    if port == c.PINGER_PORT:
        return "kamailio"
    return "sipsak"


def _answered(pcap: Path, port: int) -> bool:
    """Has the pinger had an answer yet? dumpcap writes as it goes; a cut record is skipped."""
    try:
        packets = c.read_pcap(pcap)
    except (OSError, c.BenchError, struct.error):
        return False
    return any(p.sport == c.SERVER[1] and p.dport == port for p in packets)


def _expert(pcap: Path) -> int:
    out = subprocess.run(
        [
            c.tool("tshark"),
            "-r",
            str(pcap),
            "-Y",
            "_ws.malformed || _ws.expert.severity >= 6291456",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if out.returncode != 0:
        raise c.BenchError(f"tshark failed: {out.stderr.strip()}")
    return len([line for line in out.stdout.splitlines() if line.strip()])
