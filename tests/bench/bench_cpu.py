"""2. CPU per answered keepalive: the agent with 100 and 1000 bindings at a 1-s interval, beside
Kamailio's keepalive module with as many destinations at ping_interval 1 (in the three
configurations of common.PINGERS, as bench_memory) and a plain Python
selectors loop (tests/bench/floor_pinger.py, the floor of any Python pinger) twice: its sends
spread over the interval, and all at once as Kamailio sends; all six at once against the same
Kamailio server. CPU is user + system from schedstat over the window (after a
warm-up), answers are counted by the kernel (nftables counters on the server's replies, by
destination port); the part of it spent in the kernel is split off by the user and system
ticks of /proc/PID/task/*/stat (the same split the kernel applies to the exact run time), to
show how much of a difference is the interpreter. Then the agent alone under cProfile: the top
items.

Budget (docs/performance.md): below Kamailio's CPU per ping.
"""

from __future__ import annotations

import pstats
import signal
import time
from pathlib import Path

from tests.bench import common as c

NAME = "cpu"
TITLE = "2. CPU per answered keepalive"
COUNTS = (100, 1000)
QUICK_COUNTS = (100,)
AGENT_BASE, FLOOR_BASE, BURST_BASE = 22000, 24000, 26000  # below 32768: never ephemeral
# Kamailio's default 64 MB of shared memory runs out at 1000 destinations pinged every second
# (tm: "could not allocate shared memory", keepalive: "unable to ping"), and a pinger that cannot
# ping is no baseline.
PINGER_MEMORY = ("-m", "256")
WAIT_FUNCTION = "<method 'poll' of 'select.epoll' objects>"
# The steady state: by 15 s every binding has had its first inbound check (the 10th keepalive)
# and a two-digit CSeq, and its answers' two shapes are learnt (sip/memo.py); the CSeq stays two
# digits through the window. A learnt shape is a one-time cost, like a process's start-up.
WARMUP = 15.0


def _counters() -> c.Counters:
    def rng(base: int) -> str:
        return f"{base}-{base + 999}"

    return c.Counters(
        {
            "agent": f"udp sport 5060 udp dport {rng(AGENT_BASE)}",
            "floor": f"udp sport 5060 udp dport {rng(FLOOR_BASE)}",
            "burst": f"udp sport 5060 udp dport {rng(BURST_BASE)}",
            **{
                f"kamailio_{kind}": f"udp sport 5060 udp dport {c.pinger_port(kind)}"
                for kind in c.PINGERS
            },
            "agent_sent": f"udp dport 5060 udp sport {rng(AGENT_BASE)}",
        }
    )


def run(ctx: c.Context) -> None:
    counts = QUICK_COUNTS if ctx.quick else COUNTS
    warmup = 1.0 if ctx.quick else WARMUP
    window = 2.0 if ctx.quick else 30.0
    section = ctx.section(
        NAME,
        TITLE,
        (
            f"interval 1 s for {window:.0f} s after a {warmup:.0f}-s warm-up; the agent with "
            f"default settings otherwise (jitter 0.2, "
            f"inbound check every 10th keepalive), Kamailio "
            f"keepalive ping_interval 1 in three configurations (lean: children=1; default: "
            f"children=8; stock: Debian's /etc/kamailio/kamailio.cfg with the module added; each "
            f"with -m 256, since 64 MB of shared memory runs out at 1000 destinations), CPU "
            f"summed over its processes; the floor loop every 1 s, spread or in one burst; the six "
            f"run at once against the run's Kamailio server. µs = CPU "
            f"(user+system) / answers received in the window; the kernel's part of it is split "
            f"off by the share of system ticks in /proc's stat."
        ),
    )
    counters = _counters()
    try:
        per: dict[str, list[float]] = {}
        for _ in range(ctx.runs):
            for count in counts:
                for key, value in _one(ctx, counters, count, warmup, window).items():
                    per.setdefault(key, []).append(value)
        for count in counts:
            agent, floor, burst = (per[f"{who} {count}"] for who in ("agent", "floor", "burst"))
            ctx.figure(section, f"agent, {count} bindings", agent, "µs/keepalive")
            for kind in c.PINGERS:
                ctx.figure(
                    section,
                    f"Kamailio keepalive, {count} destinations, {kind}",
                    per[f"kamailio {kind} {count}"],
                    "µs/ping",
                    c.PINGER_NOTES[kind],
                )
            ctx.figure(
                section, f"plain Python selectors loop, {count} sockets", floor, "µs/keepalive"
            )
            ctx.figure(
                section, f"the same loop, all {count} sockets at once", burst, "µs/keepalive"
            )
            for kind in c.PINGERS:
                ctx.figure(
                    section,
                    f"agent / Kamailio {kind}, {count}",
                    [a / k for a, k in zip(agent, per[f"kamailio {kind} {count}"])],
                    "x",
                    "budget < 1",
                    digits=2,
                )
            ctx.figure(
                section,
                f"agent / plain Python loop, {count}",
                [a / f for a, f in zip(agent, floor)],
                "x",
                "steadier than µs on a busy machine",
                digits=2,
            )
            ctx.figure(
                section,
                f"agent / plain Python loop at once, {count}",
                [a / b for a, b in zip(agent, burst)],
                "x",
                digits=2,
            )
            kernel = (
                ("agent", "agent"),
                *((f"Kamailio {kind}", f"kamailio {kind}") for kind in c.PINGERS),
                ("plain Python loop", "floor"),
                ("plain Python loop at once", "burst"),
            )
            for label, who in kernel if count == counts[-1] else ():
                # (only at the largest count: 100 answers a second give too few 10-ms ticks)
                ctx.figure(
                    section,
                    f"{label}, {count}: of it in the kernel",
                    per[f"kernel {who} {count}"],
                    "µs/answer",
                    "system time's share of the ticks" if who == "agent" else "",
                )
            for who in ("agent", *(f"Kamailio {kind}" for kind in c.PINGERS)):
                ctx.figure(
                    section,
                    f"{who} wake-ups per answer, {count}",
                    per[f"wakes {who.lower()} {count}"],
                    "",
                    "voluntary context switches",
                    digits=2,
                )
            ctx.figure(
                section,
                f"agent CPU share, {count} bindings at 1 s",
                per[f"share {count}"],
                "% of a core",
            )
            ctx.figure(
                section, f"agent answered / sent, {count}", per[f"ratio {count}"], "", digits=3
            )
        if ctx.profile:
            _profile(ctx, section, counters, counts[-1], warmup, 1.0 if ctx.quick else window)
    finally:
        counters.close()


def _one(
    ctx: c.Context, counters: c.Counters, count: int, warmup: float, window: float
) -> dict[str, float]:
    workdir = ctx.subdir(f"cpu-{count}")
    status = workdir / "status.json"
    config = c.agent_config(
        workdir / "agent.yaml", count=count, base_port=AGENT_BASE, status=status, interval=1
    )
    with c.Procs() as procs:
        agent = procs.start(
            ctx.agent_argv(config, status), env=ctx.env(), capture=True, name="agent"
        )
        kams = []
        for kind in c.PINGERS:
            pinger = c.kamailio_pinger(workdir, kind, c.pinger_destinations(count), 1)
            kams.append(
                procs.start(
                    c.kamailio_argv(pinger, workdir / f"kam-{kind}", memory=PINGER_MEMORY),
                    env=ctx.env(),
                    log=workdir / f"kamailio-{kind}.log",
                    name=f"kamailio {kind}",
                )
            )
        floors = [
            procs.start(
                [
                    ctx.python,
                    str(c.BENCH_DIR / "floor_pinger.py"),
                    c.SERVER[0],
                    str(c.SERVER[1]),
                    str(base),
                    str(count),
                    "1",
                    str(warmup + window + 30),
                    *mode,
                ],
                env=ctx.env(),
                name=name,
            )
            for name, base, mode in (("floor", FLOOR_BASE, ()), ("burst", BURST_BASE, ("burst",)))
        ]
        agent.wait_line(c.is_event("started"), timeout=30)
        time.sleep(warmup)
        for proc in (agent, *kams, *floors):
            if not proc.alive():
                raise c.BenchError(f"{proc.name} exited during the warm-up")
        before = {p.name: c.sample(p.pid) for p in (agent, *kams, *floors)}
        packets_before = counters.read()
        time.sleep(window)
        after = {p.name: c.sample(p.pid) for p in (agent, *kams, *floors)}
        packets_after = counters.read()
    answers = {k: packets_after[k] - packets_before[k] for k in packets_after}
    out: dict[str, float] = {}
    for who in ("agent", *(f"kamailio {kind}" for kind in c.PINGERS), "floor", "burst"):
        used = after[who].cpu_since(before[who])
        answered = answers[who.replace(" ", "_")]  # nft names have no spaces
        if answered <= 0:
            raise c.BenchError(f"{who}: no answers in the window")
        out[f"{who} {count}"] = used / 1000 / answered
        out[f"kernel {who} {count}"] = after[who].kernel_share_since(before[who]) * (
            used / 1000 / answered
        )
        out[f"wakes {who} {count}"] = (after[who].switches - before[who].switches) / answered
    wall = after["agent"].at - before["agent"].at
    out[f"share {count}"] = after["agent"].cpu_since(before["agent"]) / 1e9 / wall * 100
    out[f"ratio {count}"] = answers["agent"] / max(1, answers["agent_sent"])
    return out


def _profile(
    ctx: c.Context,
    section: c.Section,
    counters: c.Counters,
    count: int,
    warmup: float,
    window: float,
) -> None:
    """cProfile of the steady state: tests/bench/agent_profile.py turns it on after the warm-up."""
    workdir = ctx.subdir("cpu-profile")
    status = workdir / "status.json"
    out = workdir / "agent.prof"
    config = c.agent_config(
        workdir / "agent.yaml", count=count, base_port=AGENT_BASE, status=status, interval=1
    )
    argv = [
        ctx.python,
        str(c.BENCH_DIR / "agent_profile.py"),
        str(out),
        str(warmup),
        *c.run_args(config, status),
    ]
    with c.Procs() as procs:
        agent = procs.start(argv, env=ctx.env(), capture=True, name="agent-profiled")
        agent.wait_line(c.is_event("started"), timeout=60)
        time.sleep(warmup)
        first = counters.read()["agent"]
        time.sleep(window)
        answers = counters.read()["agent"] - first
        agent.send_signal(signal.SIGINT)  # a clean stop: the wrapper writes its file on exit
        agent.wait_line(c.is_event("stopped"), timeout=60)
        procs.stop(agent, grace=30)
    seconds = Path(f"{out}.seconds")
    if not out.exists() or not seconds.exists():
        raise c.BenchError("the profiled agent wrote no profile")
    ctx.note(section, _profile_text(out, count, float(seconds.read_text()), answers))


def _label(key: tuple[str, int, str]) -> str:
    filename, line, function = key
    if filename == "~":
        return function
    path = Path(filename)
    parts = path.parts
    short = "/".join(parts[parts.index("natkeepalive") :]) if "natkeepalive" in parts else path.name
    return f"{short}:{line}({function})"


def _profile_text(path: Path, count: int, window: float, answers: int) -> str:
    stats = pstats.Stats(str(path))
    table = stats.stats  # type: ignore[attr-defined]
    rows = []
    wait = 0.0
    for key, (_cc, calls, tottime, cumtime, _callers) in table.items():
        label = _label(key)
        if label == WAIT_FUNCTION:
            wait = tottime
            continue
        rows.append((label, calls, tottime, cumtime))
    busy = sum(r[2] for r in rows) or 1.0
    lines = [
        f"cProfile of the agent, {count} bindings at 1 s, {window:.1f} s after a warm-up "
        f"(start-up left out; about {answers} answers; {busy:.2f} s profiled outside "
        f"epoll.poll, {wait:.1f} s waiting in it). cProfile inflates many small calls; "
        "read the shares, not the absolute times.",
        "",
        "Top by own time:",
        "",
        "| function | calls | own s | share of busy | µs/call |",
        "|---|---|---|---|---|",
    ]
    for label, calls, tottime, _ in sorted(rows, key=lambda r: -r[2])[:12]:
        lines.append(
            f"| `{label}` | {calls} | {tottime:.3f} | {tottime / busy * 100:.1f} % "
            f"| {tottime / max(calls, 1) * 1e6:.1f} |"
        )
    lines += [
        "",
        "Top agent functions by cumulative time (the loop itself left out):",
        "",
        "| function | calls | cumulative s | share of busy |",
        "|---|---|---|---|",
    ]
    skip = (
        "(run)",
        "(run_once)",
        "(main)",
        "(cmd_run)",
        "(main_run)",
        "(start_daemon)",
        "(<module>)",
    )
    agent_rows = [
        r
        for r in rows
        if r[0].startswith("natkeepalive/")
        and not r[0].endswith(skip)
        and not (
            r[0].startswith("natkeepalive/runtime/poller.py:")  # holds the wait
            and r[0].endswith("(select)")
        )
    ]
    for label, calls, _, cumtime in sorted(agent_rows, key=lambda r: -r[3])[:12]:
        lines.append(f"| `{label}` | {calls} | {cumtime:.3f} | {cumtime / busy * 100:.1f} % |")
    return "\n".join(lines)
