"""6. Scale: 10 000 bindings at a 30-s interval against the run's Kamailio server on loopback for
2 minutes: CPU share, PSS, and how late keepalives go out against their schedule, two ways:

- Lateness against the agent's own deadline: the agent runs under tests/bench/agent_probe.py,
  which records each keepalive's deadline (`next_keepalive`) and the moment it is handed to
  sendto(), on the agent's clock (the agent itself is unchanged). A binding's first keepalive is
  reported apart: its deadline is the start-up spread, before all sockets were even bound.
- What the NAT sees, from outside: kernel capture timestamps (dumpcap on lo) of each request's
  first transmission, per binding: (gap between consecutive keepalives) − (the wait the agent
  scheduled; `jitter: 0`, so it is exactly `interval`, or 3 s after the first). The agent counts
  the next wait from the start of the loop pass that sent the previous keepalive, so a send late
  inside a long pass hides part of the next one's lateness (gaps below zero are that): this
  is the extra idle time of the NAT binding, not the lateness.

The agent starts with a soft open-file limit of 1024 (a common default; the hard limit is the
host's) and must raise it itself. Budget (docs/performance.md): p99 lateness under 50 ms, CPU
under 10 % of one core.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from tests.bench import common as c

NAME = "scale"
TITLE = "6. Scale"
BASE_PORT = 10000
PROMOTE_DELAY = 3.0
SOFT_NOFILE = 1024


def run(ctx: c.Context) -> None:
    if ctx.quick:
        count, interval, window = 300, 2.0, 4.0
    else:
        count, interval, window = 10000, 30.0, 120.0
    section = ctx.section(
        NAME,
        TITLE,
        (
            f"{count} bindings, interval {interval:.0f} s, jitter 0 (so the schedule is known), "
            f"other settings default, for {window:.0f} s from exec; soft RLIMIT_NOFILE "
            f"{SOFT_NOFILE} at exec. Lateness against the agent's own deadlines (recorded by "
            f"tests/bench/agent_probe.py) and gap overrun from capture timestamps (see "
            f"tests/bench/bench_scale.py)."
        ),
    )
    results: dict[str, list[float]] = defaultdict(list)
    for run_index in range(ctx.runs):
        for key, value in _one(ctx, run_index, count, interval, window).items():
            results[key].append(value)
    ctx.figure(section, "CPU share, whole run (start-up included)", results["share"], "% of a core")
    ctx.figure(
        section,
        "CPU share, steady state (after the first 10 s)",
        results["steady"],
        "% of a core",
        "budget < 10 %",
    )
    ctx.figure(
        section,
        "start-up: exec to `started` (all sockets bound)",
        results["startup"],
        "s",
        digits=2,
    )
    ctx.figure(section, "PSS at the end", results["pss"], "MB")
    ctx.figure(section, "PSS per binding", results["per_binding"], "KB", digits=2)
    ctx.figure(section, "lateness vs deadline p50", results["late50"], "ms", digits=2)
    ctx.figure(
        section, "lateness vs deadline p99", results["late99"], "ms", "budget < 50 ms", digits=2
    )
    ctx.figure(section, "lateness vs deadline max", results["latemax"], "ms", digits=1)
    ctx.figure(section, "keepalives with a deadline measured", results["late_n"], "", digits=0)
    ctx.figure(
        section,
        "first keepalives (start-up spread): lateness p50",
        results["first50"],
        "ms",
        digits=0,
    )
    ctx.figure(section, "first keepalives: lateness max", results["firstmax"], "ms", digits=0)
    ctx.figure(section, "gap overrun (capture) p50", results["p50"], "ms", digits=2)
    ctx.figure(section, "gap overrun (capture) p99", results["p99"], "ms", digits=2)
    ctx.figure(section, "gap overrun (capture) max", results["max"], "ms", digits=1)
    ctx.figure(section, "gap overrun (capture) min", results["min"], "ms", digits=1)
    ctx.figure(section, "keepalive gaps captured", results["samples"], "", digits=0)
    ctx.figure(
        section, "retransmissions (answers lost or late)", results["retransmissions"], "", digits=0
    )
    ctx.figure(section, "open-file soft limit the agent set", results["nofile"], "", digits=0)


def _one(
    ctx: c.Context, run_index: int, count: int, interval: float, window: float
) -> dict[str, float]:
    workdir = ctx.subdir(f"scale-{run_index}")
    status = workdir / "status.json"
    # one inbound check in ten keepalives, the cadence these figures were first measured with
    # (the default is now a check before every keepalive)
    config = c.agent_config(
        workdir / "agent.yaml",
        count=count,
        base_port=BASE_PORT,
        status=status,
        interval=interval,
        jitter=0,
        inbound_check=10,
    )
    bpf = f"udp dst port 5060 and udp src portrange {BASE_PORT}-{BASE_PORT + count - 1}"
    with c.Procs() as procs:
        capture = c.Capture(workdir / "scale.pcap", bpf, procs)
        record = workdir / "deadlines.txt"
        argv = [
            ctx.python,
            str(c.BENCH_DIR / "agent_probe.py"),
            str(record),
            "run",
            "-c",
            str(config),
            "--log",
            "stderr",
            "--status-file",
            str(status),
        ]
        agent = procs.start(
            argv, env=ctx.env(), capture=True, name="agent", nofile_soft=SOFT_NOFILE
        )
        exec_at = agent.started
        started = agent.wait_line(c.is_event("started"), timeout=120)
        nofile = _soft_nofile(agent.pid)
        steady_from = exec_at + min(10.0, window / 2)
        time.sleep(max(0.0, steady_from - time.monotonic()))
        steady = c.sample(agent.pid)
        time.sleep(max(0.0, exec_at + window - time.monotonic()))
        end = c.sample(agent.pid)
        pss = c.pss_kb(agent.pid)
        if not agent.alive():
            tail = "\n".join(line for _, line in agent.lines[-5:])
            raise c.BenchError(f"the agent exited:\n{tail}")
        procs.stop(agent, grace=60)
        packets = capture.stop()
    late, first = _deadlines(record)
    if not late or not first:
        raise c.BenchError("the agent recorded no keepalive deadlines")
    lateness, retransmissions = _lateness(packets, interval)
    if not lateness:
        raise c.BenchError("no keepalive gaps captured")
    ms = [x * 1000 for x in lateness]
    return {
        "late50": c.percentile(late, 50),
        "late99": c.percentile(late, 99),
        "latemax": max(late),
        "late_n": len(late),
        "first50": c.percentile(first, 50),
        "firstmax": max(first),
        "share": end.cpu / 1e9 / (end.at - exec_at) * 100,
        "steady": end.cpu_since(steady) / 1e9 / (end.at - steady.at) * 100,
        "startup": started - exec_at,
        "pss": pss / 1024,
        "per_binding": pss / count,
        "p50": c.percentile(ms, 50),
        "p99": c.percentile(ms, 99),
        "max": max(ms),
        "min": min(ms),
        "samples": len(ms),
        "retransmissions": retransmissions,
        "nofile": nofile,
    }


def _soft_nofile(pid: int) -> float:
    with open(f"/proc/{pid}/limits") as handle:
        for line in handle:
            if line.startswith("Max open files"):
                return float(line.split()[3])
    return float("nan")


def _deadlines(path: Path) -> tuple[list[float], list[float]]:
    """Milliseconds from deadline to sendto(): (later keepalives, first keepalives)."""
    later: list[float] = []
    first: list[float] = []
    for line in path.read_text().splitlines():
        due, sent, is_first = line.split()
        (first if is_first == "1" else later).append((float(sent) - float(due)) * 1000)
    return later, first


def _lateness(packets: list[c.Packet], interval: float) -> tuple[list[float], int]:
    """Per binding (source port): first transmission of each CSeq, then gap − scheduled wait
    between consecutive keepalives. An inbound check takes a CSeq but leaves from another port:
    a keepalive after one follows the previous keepalive's CSeq by two, and goes when the check
    is answered, so the check's round trip counts as lateness."""
    first: dict[int, dict[int, float]] = defaultdict(dict)
    retransmissions = 0
    for packet in packets:
        cseq_text = c.sip_header(packet.payload, "CSeq")
        if cseq_text is None or not packet.payload.startswith(b"OPTIONS "):
            continue
        cseq = int(cseq_text.split()[0])
        sends = first[packet.sport]
        if cseq in sends:
            retransmissions += 1
            continue
        sends[cseq] = packet.ts
    lateness = []
    for sends in first.values():
        ordered = sorted(sends)
        for previous, cseq in zip(ordered, ordered[1:]):
            if cseq - previous <= 2:
                wait = PROMOTE_DELAY if previous == 1 else interval
                lateness.append(sends[cseq] - sends[previous] - wait)
    return lateness, retransmissions
