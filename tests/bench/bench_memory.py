"""1. Memory: PSS of the agent with 1, 100 and 1000 bindings, beside a bare python3 sleeping (the
floor) and Kamailio's keepalive module pinging the same server with 100 destinations (the peer).

Each process runs alone (PSS splits shared pages between the processes mapping them, so a python3
running beside the agent would lower both figures); an agent's PSS is read in its steady state:
once every binding has been through an inbound check (every 10th keepalive), whose answer is the
second shape a binding's memo keeps (sip/memo.py). The agent runs at a 2-s interval to get there
in seconds; nothing it keeps depends on the interval.
Beside them, two plain Python loops with as many sockets (tests/bench/floor_pinger.py, no
parsing or state): the least any Python pinger takes, with `selectors` and with what the agent
imports instead.
Budget (docs/performance.md): 100 bindings at most 1.6 x the bare interpreter and below
Kamailio; at most 8 KB per extra binding.
"""

from __future__ import annotations

import time

from tests.bench import common as c

NAME = "memory"
TITLE = "1. Memory (PSS)"
COUNTS = (1, 100, 1000)
QUICK_COUNTS = (1, 10, 100)
PINGER_DESTINATIONS = 100
QUICK_PINGER_DESTINATIONS = 10
INTERVAL = 2  # s: 12 keepalives (an inbound check among them) in about 24 s
STEADY_AFTER = 12 * INTERVAL
# The floor of any Python pinger (floor_pinger.py, no parsing or state beyond a branch per
# socket: nothing grows after its first answers), with as many sockets as the middle count.
FLOORS = (((), "plain Python selectors"), (("lean",), "lean Python"))
FLOOR_NOTES = {
    "plain Python selectors": "the plain loop of the CPU section's floor",
    "lean Python": "_socket, select.epoll, _heapq: the least a Python pinger takes",
}
FLOOR_AFTER = 4 * INTERVAL


def run(ctx: c.Context) -> None:
    counts = QUICK_COUNTS if ctx.quick else COUNTS
    destinations = QUICK_PINGER_DESTINATIONS if ctx.quick else PINGER_DESTINATIONS
    settle = 0.3 if ctx.quick else 5.0
    steady = 0.0 if ctx.quick else STEADY_AFTER
    floor_wait = settle + (1.0 if ctx.quick else FLOOR_AFTER)
    mid = counts[1]
    section = ctx.section(
        NAME,
        TITLE,
        (
            f"agent: `nat-keepalive run`, default settings but interval {INTERVAL} s, bindings to "
            f"the run's Kamailio server on 127.0.0.1; PSS read {steady + settle:.0f} s after every "
            f"binding was answered (the steady state: an inbound check, every 10th keepalive, "
            f"has gone by then). Kamailio: keepalive module (default -m/-M), {destinations} "
            f"destinations on the same server, ping_interval 25, in three configurations (lean: "
            f"tm + keepalive, children=1; default: the same, children=8; stock: Debian's "
            f"/etc/kamailio/kamailio.cfg with the module added); PSS summed over its "
            f"processes. Python loops: tests/bench/floor_pinger.py, {mid} sockets, every "
            f"{INTERVAL} s, PSS read {floor_wait:.0f} s after start. Bare: `python3 -c 'import "
            f"time; time.sleep(…)'`. One process at a time."
        ),
    )
    pss: dict[str, list[float]] = {}
    processes: dict[str, int] = {}
    for run_index in range(ctx.runs):
        workdir = ctx.subdir(f"memory-{run_index}")
        for count in counts:
            status = workdir / f"status-{count}.json"
            config = c.agent_config(
                workdir / f"agent-{count}.yaml",
                count=count,
                base_port=ctx.ports.take(count),
                status=status,
                interval=INTERVAL,
            )
            with c.Procs() as procs:
                agent = procs.start(
                    ctx.agent_argv(config, status),
                    env=ctx.env(),
                    capture=True,
                    name=f"agent-{count}",
                )
                agent.wait_line(c.is_event("reachable"), timeout=30 + count / 50, count=count)
                time.sleep(settle + steady)
                pss.setdefault(f"agent {count}", []).append(c.pss_kb(agent.pid) / 1024)
        for mode, label in FLOORS:
            with c.Procs() as procs:
                loop = procs.start(
                    [
                        ctx.python,
                        str(c.BENCH_DIR / "floor_pinger.py"),
                        c.SERVER[0],
                        str(c.SERVER[1]),
                        str(ctx.ports.take(mid)),
                        str(mid),
                        str(INTERVAL),
                        "600",
                        *mode,
                    ],
                    env=ctx.env(),
                    name=label,
                )
                time.sleep(floor_wait)
                if not loop.alive():
                    raise c.BenchError(f"the {label} loop exited")
                pss.setdefault(label, []).append(c.pss_kb(loop.pid) / 1024)
        with c.Procs() as procs:
            bare = procs.start(
                [ctx.python, "-c", "import time; time.sleep(600)"], env=ctx.env(), name="python3"
            )
            time.sleep(settle)
            pss.setdefault("bare", []).append(c.pss_kb(bare.pid) / 1024)
        for kind in c.PINGERS:
            with c.Procs() as procs:
                cfg = c.kamailio_pinger(workdir, kind, c.pinger_destinations(destinations), 25)
                log = workdir / f"kamailio-pinger-{kind}.log"
                kam = procs.start(
                    c.kamailio_argv(cfg, workdir / f"kam-{kind}"),
                    env=ctx.env(),
                    log=log,
                    name="kamailio",
                )
                time.sleep(settle + (1.0 if ctx.quick else 4.0))  # its pings answered
                if not kam.alive():
                    raise c.BenchError(f"the Kamailio pinger exited; see {log}")
                pss.setdefault(f"kamailio {kind}", []).append(c.pss_kb(kam.pid) / 1024)
                processes[kind] = len(c.descendants(kam.pid))
    bare_mb = pss["bare"]
    for count in counts:
        ctx.figure(
            section,
            f"agent, {count} binding{'s' if count > 1 else ''}",
            pss[f"agent {count}"],
            "MB",
            digits=2,
        )
    ctx.figure(section, "bare python3 sleeping", bare_mb, "MB", digits=2)
    for _mode, label in FLOORS:
        ctx.figure(
            section, f"{label} loop, {mid} sockets", pss[label], "MB", FLOOR_NOTES[label], digits=2
        )
    for kind in c.PINGERS:
        ctx.figure(
            section,
            f"Kamailio keepalive, {destinations} destinations, {kind} "
            f"({processes[kind]} processes)",
            pss[f"kamailio {kind}"],
            "MB",
            c.PINGER_NOTES[kind],
            digits=2,
        )
    ratio = [a / b for a, b in zip(pss[f"agent {mid}"], bare_mb)]
    ctx.figure(
        section,
        f"agent {mid} bindings / bare python3",
        ratio,
        "x",
        "budget ≤ 1.6 x" if mid == 100 else "",
        digits=2,
    )
    for kind in c.PINGERS:
        vs_kam = [a / k for a, k in zip(pss[f"agent {mid}"], pss[f"kamailio {kind}"])]
        ctx.figure(
            section,
            f"agent {mid} bindings / Kamailio {kind}",
            vs_kam,
            "x",
            "budget < 1" if mid == 100 else "",
            digits=2,
        )
    ctx.figure(
        section,
        f"agent {mid} bindings / lean Python loop",
        [a / f for a, f in zip(pss[f"agent {mid}"], pss["lean Python"])],
        "x",
        "what the agent's code and state add to the least a Python pinger takes",
        digits=2,
    )
    ctx.figure(
        section,
        "lean Python loop / Kamailio lean",
        [f / k for f, k in zip(pss["lean Python"], pss["kamailio lean"])],
        "x",
        digits=2,
    )
    low, high = counts[1], counts[2]
    growth = [
        (h - m) * 1024 / (high - low) for h, m in zip(pss[f"agent {high}"], pss[f"agent {low}"])
    ]
    ctx.figure(section, f"growth per binding ({low} → {high})", growth, "KB", "budget ≤ 8 KB")
    ctx.note(section, _import_costs(ctx))


# What imports cost on their own: PSS of `python3 -c "import …"` minus the bare one. The first
# rows are what the daemon avoids (they stay in cli/, the config child or nowhere).
IMPORTS = (
    ("socket, signal (enum wrappers) — daemon uses _socket, _signal", "socket, signal"),
    ("selectors (imports collections) — daemon uses select.epoll", "selectors"),
    ("threading (imports collections, functools) — daemon uses _thread", "threading"),
    ("heapq — daemon uses _heapq", "heapq"),
    ("_socket, _signal, select, _heapq — what the daemon uses", "_socket, _signal, select, _heapq"),
    ("json (imports re) — daemon writes its own JSON", "json"),
    ("contextlib", "contextlib"),
    ("yaml (PyYAML) — config child only", "yaml"),
    ("argparse — config child only", "argparse"),
    ("typing — type checkers only", "typing"),
    ("dataclasses (inspect, ast, dis, …) — natkeepalive.record instead", "dataclasses"),
    ("natkeepalive.config.loader (yaml) — config child only", "natkeepalive.config.loader"),
    ("natkeepalive.runtime.daemon", "natkeepalive.runtime.daemon"),
    (
        "everything `run` keeps",
        "natkeepalive.cli.main, natkeepalive.cli.run, "
        "natkeepalive.runtime.daemon, natkeepalive.runtime.logsink",
    ),
)


def _import_costs(ctx: c.Context) -> str:
    wait = 0.5 if ctx.quick else 1.5  # imports are done by then; nothing else runs

    def pss_of(modules: str) -> float:
        code = "import time" + (f", {modules}" if modules else "") + "; time.sleep(600)"
        with c.Procs() as procs:
            proc = procs.start([ctx.python, "-c", code], env=ctx.env(), name="python3")
            time.sleep(wait)
            if not proc.alive():
                raise c.BenchError(f"python3 -c {code!r} exited")
            return c.pss_kb(proc.pid) / 1024

    bare = pss_of("")
    lines = [
        f"Where the memory goes: PSS of `python3 -c 'import …'` (one process alone) above "
        f"the bare interpreter ({bare:.2f} MB here); modules shared between rows count in "
        "each.",
        "",
        "| import | + MB |",
        "|---|---:|",
    ]
    for label, modules in IMPORTS[-1:] if ctx.quick else IMPORTS:
        lines.append(f"| {label} | {pss_of(modules) - bare:+.2f} |")
    return "\n".join(lines)
