"""A 30-s flood of 20 000 junk datagrams per second at a binding's port (loopback, bounded).

Half the junk comes from other ports and addresses (dropped before parsing), half is forged with
the SIP server's own address and port through a raw socket (root only; otherwise all of it comes
from other sockets), so it reaches the parser. Measured and printed: the rate achieved, the
keepalives' lateness as the responder saw them (p50, p99, max), the agent's RSS and PSS before,
during and after. Asserted, with margins: the binding stays reachable, the log has a few
rate-limited `datagrams-dropped` events and no line per packet, memory does not grow by more
than 4 MB.

The daemon's DROP_REPORT_EVERY (60 s) is set to 10 s through tests/reliability/agentwrap.py so
that the rate-limited line shows up within the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from natkeepalive.logline import parse_line
from tests.reliability.common import first_sends, memory_kb
from tests.support.agentproc import Agent
from tests.support.helpers import free_port
from tests.support.responder import SipResponder

HERE = Path(__file__).resolve().parent
RATE = 20000
SECONDS = 30.0
INTERVAL = 1.0
REPORT_EVERY = 10.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def test_flood_keeps_schedule_reachability_memory_and_a_quiet_log(tmp_path: Path) -> None:
    port = free_port()
    with SipResponder() as responder:
        config = tmp_path / "c.yaml"
        config.write_text(
            "\n".join(
                [
                    "log: {target: stderr, level: info}",
                    "defaults:",
                    f"  interval: {INTERVAL}",
                    "  jitter: 0",
                    "  timeout: 3.0",
                    "  inbound_check: 0",
                    "  fail_threshold: 2",
                    "  lagged_ms: 2000",
                    "bindings:",
                    "  - name: provider",
                    f"    server: {responder.address[0]}:{responder.address[1]}",
                    f"    source_port: {port}",
                    "",
                ]
            )
        )
        env = {"NK_TEST_SET": f"natkeepalive.runtime.housekeeping.DROP_REPORT_EVERY={REPORT_EVERY}"}
        with Agent(
            config,
            tmp_path / "status.json",
            prefix=(sys.executable, str(HERE / "agentwrap.py")),
            env=env,
        ) as agent:
            agent.wait_for("reachable")
            time.sleep(4.0)  # past the promotion keepalive; let the heap settle
            before = memory_kb(agent.proc.pid)
            lines_before = len(agent.lines)
            argv = [
                sys.executable,
                str(HERE / "flooder.py"),
                "--target",
                f"127.0.0.1:{port}",
                "--rate",
                str(RATE),
                "--seconds",
                str(SECONDS),
            ]
            if os.geteuid() == 0:
                argv += ["--spoof", f"{responder.address[0]}:{responder.address[1]}"]
            flood_start = time.monotonic()
            flooder = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
            peak = before
            try:
                while flooder.poll() is None:
                    time.sleep(1.0)
                    now = memory_kb(agent.proc.pid)
                    peak = (max(peak[0], now[0]), max(peak[1], now[1]))
                out, _ = flooder.communicate(timeout=SECONDS + 30)
            finally:
                if flooder.poll() is None:
                    flooder.kill()
                    flooder.wait()
            flood_end = time.monotonic()
            during = memory_kb(agent.proc.pid)
            time.sleep(REPORT_EVERY + 1.0)  # the last rate-limited line
            after = memory_kb(agent.proc.pid)
            agent.signal(signal.SIGUSR1)
            time.sleep(0.5)
            status = json.loads((tmp_path / "status.json").read_text())["bindings"][0]
            alive = agent.proc.poll() is None
            assert agent.stop() == 0
    report = json.loads(out)
    arrivals = first_sends(responder.requests, flood_start, flood_end)
    lateness = [(b - a) - INTERVAL for a, b in zip(arrivals, arrivals[1:])]
    flood_lines = agent.lines[lines_before:]
    drop_lines = [line for line in flood_lines if "event=datagrams-dropped " in line]
    figures = {
        "flood": report,
        "keepalives_during_flood": len(arrivals),
        "lateness_ms": {
            "p50": round(percentile(lateness, 0.5) * 1000, 1),
            "p99": round(percentile(lateness, 0.99) * 1000, 1),
            "max": round(max(lateness) * 1000, 1),
            "min": round(min(lateness) * 1000, 1),
        },
        "memory_kb": {"before": before, "peak": peak, "end_of_flood": during, "after": after},
        "dropped_status": status["dropped"],
        "timeouts": status["timeouts"],
        "log_lines_during_flood": len(flood_lines),
        "drop_lines": drop_lines,
    }
    print("FLOOD FIGURES " + json.dumps(figures))
    (tmp_path / "figures.json").write_text(json.dumps(figures, indent=2))
    assert alive
    assert report["rate"] >= 0.5 * RATE, f"the flooder reached only {report['rate']}/s"
    names = agent.names()
    assert "unreachable" not in names and "lagged" not in names
    assert status["state"] == "reachable"
    assert len(arrivals) >= SECONDS / INTERVAL * 0.8, "keepalives stopped during the flood"
    # a handful of rate-limited lines, each naming a count; not one line per packet
    assert 2 <= len(drop_lines) <= SECONDS / REPORT_EVERY + 2, drop_lines
    assert all(int(parse_line(line)[1]["count"] or 0) > 0 for line in drop_lines)
    assert len(flood_lines) < 40, flood_lines[:50]
    assert status["dropped"] >= report["sent"] * 0.05  # the agent saw and counted the junk
    # memory: PSS (or RSS) growth well under what per-packet state would cost
    assert after[0] - before[0] < 4096 and after[1] - before[1] < 4096, figures["memory_kb"]
