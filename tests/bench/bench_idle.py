"""3. Idle wake-ups: voluntary context switches per minute of the agent with one binding at a
25-s interval (each one is a return from epoll_wait: a wake-up), and its CPU per hour idle,
extrapolated from the window. Several agents run side by side (each is one sample), beside a
bare python3 sleeping and Kamailio's keepalive module with one destination at ping_interval 25.

Expected without polling: one wake-up per due event, i.e. per keepalive sent and per answer
(2 x 60/(25 x 0.9) ≈ 5.3 a minute with the default jitter) plus the agent's housekeeping timers.
"""

from __future__ import annotations

import time

from tests.bench import common as c

NAME = "idle"
TITLE = "3. Idle wake-ups"


def run(ctx: c.Context) -> None:
    warmup = 1.0 if ctx.quick else 5.0
    window = 2.0 if ctx.quick else 120.0
    agents_n = max(1, ctx.runs)
    section = ctx.section(
        NAME,
        TITLE,
        (
            f"{agents_n} agent(s) side by side, 1 binding each at interval 25 s (default jitter "
            f"0.2), measured for {window:.0f} s after a "
            f"{warmup:.0f}-s warm-up; Kamailio keepalive: "
            f"1 destination, ping_interval 25, all its processes summed."
        ),
    )
    workdir = ctx.subdir("idle")
    with c.Procs() as procs:
        agents = []
        for index in range(agents_n):
            status = workdir / f"status-{index}.json"
            config = c.agent_config(
                workdir / f"agent-{index}.yaml",
                count=1,
                base_port=ctx.ports.take(1),
                status=status,
                interval=25,
            )
            agents.append(
                procs.start(
                    ctx.agent_argv(config, status),
                    env=ctx.env(),
                    capture=True,
                    name=f"agent-{index}",
                )
            )
        bare = procs.start(
            [ctx.python, "-c", "import time; time.sleep(3600)"], env=ctx.env(), name="python3"
        )
        cfg = c.kamailio_pinger_config(workdir, c.pinger_destinations(1), 25)
        kam = procs.start(
            c.kamailio_argv(cfg, workdir / "kam"),
            env=ctx.env(),
            log=workdir / "kamailio.log",
            name="kamailio",
        )
        for agent in agents:
            agent.wait_line(c.is_event("reachable"), timeout=30)
        time.sleep(warmup)
        everyone = [*agents, bare, kam]
        before = {p.name: c.sample(p.pid) for p in everyone}
        time.sleep(window)
        after = {p.name: c.sample(p.pid) for p in everyone}
        for proc in everyone:
            if not proc.alive():
                raise c.BenchError(f"{proc.name} exited during the window")

    def per_minute(name: str) -> float:
        return (
            (after[name].switches - before[name].switches)
            * 60.0
            / (after[name].at - before[name].at)
        )

    def ms_per_hour(name: str) -> float:
        return (
            after[name].cpu_since(before[name]) / 1e6 * 3600.0 / (after[name].at - before[name].at)
        )

    names = [a.name for a in agents]
    ctx.figure(
        section,
        "agent, 1 binding at 25 s: wake-ups",
        [per_minute(n) for n in names],
        "per minute",
        "≈ 5.3 keepalive+answer, plus housekeeping",
    )
    ctx.figure(section, "agent: CPU per hour idle", [ms_per_hour(n) for n in names], "ms/h")
    ctx.figure(section, "bare python3 sleeping: wake-ups", [per_minute("python3")], "per minute")
    ctx.figure(
        section,
        "Kamailio keepalive, 1 destination: wake-ups",
        [per_minute("kamailio")],
        "per minute",
    )
    ctx.figure(section, "Kamailio keepalive: CPU per hour idle", [ms_per_hour("kamailio")], "ms/h")
