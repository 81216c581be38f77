"""4. Start-up: from exec of the agent as the packages start it (`nat-keepalive run`, one
binding) to its first OPTIONS arriving on a UDP socket of the harness, beside the wall time of
`python3 -c pass`; samples alternate so both see the same machine. Bytecode is cached (like an
installed package: a warm-up run fills a private PYTHONPYCACHEPREFIX first). Then `-X importtime`
of one start: the imports that cost most.

Budget (docs/performance.md): at most the interpreter's start-up + 60 ms.
"""

from __future__ import annotations

import select
import socket
import subprocess
import time

from tests.bench import common as c

NAME = "startup"
TITLE = "4. Start-up"
TARGET_PORT = 5199


def run(ctx: c.Context) -> None:
    samples = 2 if ctx.quick else max(10, ctx.runs * 4)
    section = ctx.section(
        NAME,
        TITLE,
        (
            f"{samples} samples each, alternating; the agent's first keepalive goes at once "
            f"(one binding); bytecode cached; interpreter {ctx.python}."
        ),
    )
    workdir = ctx.subdir("startup")
    status = workdir / "status.json"
    port = ctx.ports.take(1)
    config = c.agent_config(
        workdir / "agent.yaml",
        count=1,
        base_port=port,
        status=status,
        server=("127.0.0.1", TARGET_PORT),
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", TARGET_PORT))
        _first_options(ctx, sink, ctx.agent_argv(config, status))  # fills the bytecode cache
        agent_ms, bare_ms = [], []
        for _ in range(samples):
            agent_ms.append(_first_options(ctx, sink, ctx.agent_argv(config, status)))
            start = time.perf_counter()
            subprocess.run([ctx.python, "-c", "pass"], env=ctx.env(), check=True, timeout=30)
            bare_ms.append((time.perf_counter() - start) * 1000)
        imports = _importtime(ctx, sink, ctx.agent_argv(config, status))
    ctx.figure(section, "agent: exec to first OPTIONS", agent_ms, "ms")
    ctx.figure(section, "python3 -c pass", bare_ms, "ms")
    ctx.figure(
        section,
        "difference (medians)",
        [_median(agent_ms) - _median(bare_ms)],
        "ms",
        "budget ≤ 60 ms",
    )
    ctx.note(section, imports)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _drain(sink: socket.socket) -> None:
    sink.setblocking(False)
    try:
        while True:
            sink.recv(65535)
    except BlockingIOError:
        pass
    finally:
        sink.setblocking(True)


def _first_options(ctx: c.Context, sink: socket.socket, argv: list[str]) -> float:
    """Milliseconds from Popen to the first datagram on `sink`."""
    _drain(sink)
    with c.Procs() as procs:
        start = time.perf_counter()
        agent = procs.start(argv, env=ctx.env(), name="agent")
        ready, _, _ = select.select([sink], [], [], 30.0)
        elapsed = (time.perf_counter() - start) * 1000
        if not ready:
            raise c.BenchError("no OPTIONS within 30 s of the start")
        if not sink.recv(65535).startswith(b"OPTIONS "):
            raise c.BenchError("the first datagram was not an OPTIONS")
        procs.stop(agent)
    return elapsed


def _importtime(ctx: c.Context, sink: socket.socket, argv: list[str]) -> str:
    """The costliest imports (cumulative µs) of one start, up to its first OPTIONS."""
    _drain(sink)
    argv = [argv[0], "-X", "importtime", *argv[1:]]
    with c.Procs() as procs:
        agent = procs.start(argv, env=ctx.env(), capture=True, name="agent-importtime")
        ready, _, _ = select.select([sink], [], [], 30.0)
        if not ready:
            raise c.BenchError("no OPTIONS within 30 s of the start (importtime)")
        time.sleep(0.2)
        procs.stop(agent)
    rows = []
    for _, line in agent.lines:
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        cumulative, name = parts[1].strip(), parts[2][1:]  # name keeps 2 spaces per level
        rows.append((int(cumulative), name))
    top_level = [(us, name) for us, name in rows if not name.startswith(" ")]
    total = sum(us for us, _ in top_level)
    lines = [
        f"`-X importtime`, one start: {total / 1000:.1f} ms in top-level imports "
        "(site included). Costliest imports, cumulative:",
        "",
        "| module | ms |",
        "|---|---|",
    ]
    for us, name in sorted(rows, reverse=True)[:12]:
        lines.append(f"| `{name.strip()}` | {us / 1000:.1f} |")
    return "\n".join(lines)
