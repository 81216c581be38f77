"""Run the benchmarks of docs/performance.md and write their figures to tests/bench/results.md.

    sudo python3 tests/bench/run.py [--quick] [--runs N] [NAME ...]

NAME is any of: memory cpu idle startup wire scale detect (default: all, in that order).
`--quick` runs each in seconds (one run, small counts: a smoke test of the harness, not
figures to quote). Needs root: everything runs in a private network namespace (only `lo`), the
detection benchmark in the NAT lab's namespaces. Missing tools (kamailio, sipsak, tshark,
nftables, conntrack, iproute2) are installed with apt-get unless `--no-install`.

Figures are printed as they come; results.md keeps one section per benchmark, replaced when that
benchmark runs again, each with the machine and date it ran on and min/median/max over the runs.
None of this is pass/fail: budgets are printed beside the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import (
    bench_cpu,
    bench_detect,
    bench_idle,
    bench_memory,
    bench_scale,
    bench_startup,
    bench_wire,
    common as c,
)

BENCHES: dict[str, ModuleType] = {
    module.NAME: module
    for module in (
        bench_memory,
        bench_cpu,
        bench_idle,
        bench_startup,
        bench_wire,
        bench_scale,
        bench_detect,
    )
}
DEFAULT_OUT = c.BENCH_DIR / "results.md"
# tool -> Debian package
PACKAGES = {
    "kamailio": "kamailio",
    "sipsak": "sipsak",
    "tshark": "tshark",
    "dumpcap": "tshark",
    "nft": "nftables",
    "conntrack": "conntrack",
    "ip": "iproute2",
}
HEADER = """# Benchmarks

Written by `tests/bench/run.py` (see its docstring and each `tests/bench/bench_*.py`). Reproduce
all of it with `sudo python3 tests/bench/run.py` (about 25 minutes) or one benchmark with
`sudo python3 tests/bench/run.py NAME`. Every section names the machine and date it ran on; each
row gives min / median / max over the runs (one value: a single measurement). Baselines are
measured in the same run as the agent, since the machines are shared and noisy. Budgets are those
of docs/performance.md; nothing here is pass/fail.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        choices=[[], *BENCHES],
        help="benchmarks to run (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke mode")
    parser.add_argument("--runs", type=int, help="runs per benchmark (default 3, quick 1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown file to update")
    parser.add_argument("--no-install", action="store_true", help="never run apt-get")
    parser.add_argument(
        "--agent-dir",
        type=Path,
        default=c.ROOT / "agent",
        help="the folder holding the natkeepalive package (e.g. a patched "
        "scratch copy); it is copied and byte-compiled, never written to",
    )
    parser.add_argument(
        "--python",
        help="interpreter for the agent and the baselines "
        "(default: /usr/bin/python3 when it has PyYAML, else this one)",
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the cProfile run of the CPU benchmark"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    names = list(dict.fromkeys(args.names)) or list(BENCHES)
    runs = args.runs or (1 if args.quick else 3)
    if os.geteuid() != 0:
        print(
            "run.py needs root: it creates network namespaces and captures on lo", file=sys.stderr
        )
        return 2
    missing = ensure_tools(install=not args.no_install)
    if missing:
        print(f"missing tools: {', '.join(missing)}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    c.cleanup_stale_netns()
    netns = c.PrivateNetns()
    workdir = Path(tempfile.mkdtemp(prefix="nkbench-"))
    python = c.choose_python(args.python)
    agent_dir = args.agent_dir.resolve()
    ctx = c.Context(
        quick=args.quick,
        runs=runs,
        workdir=workdir,
        python=python,
        site=c.install_agent(agent_dir, workdir, python),
        procs=c.Procs(),
        profile=not args.no_profile,
    )
    info = c.machine(python)
    failed = []
    try:
        netns.enter()
        start_server(ctx)
        print(
            f"benchmarks: {' '.join(names)} ({'quick' if args.quick else 'full'}, "
            f"{runs} run(s)); agent from {agent_dir}; work folder {workdir}"
        )
        print(
            f"machine: {info['cpu']}, {info['cores']} cores, {info['python']}, "
            f"Linux {info['kernel']}, {info['kamailio']}"
        )
        for name in names:
            module = BENCHES[name]
            print(f"== {module.TITLE}")
            began = time.monotonic()
            count = len(ctx.sections)
            try:
                module.run(ctx)
            except Exception as exc:  # one broken benchmark must not hide the others
                failed.append(name)
                traceback.print_exc()
                if len(ctx.sections) == count:
                    ctx.section(name, module.TITLE)
                ctx.sections[-1].error = f"{type(exc).__name__}: {exc}"
            ctx.sections[-1].seconds = time.monotonic() - began
            print(f"   ({ctx.sections[-1].seconds:.0f} s)")
    finally:
        ctx.procs.close()
        netns.delete()
        if args.keep:
            print(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    write_results(args.out, ctx.sections, info, args.quick, runs)
    print(f"wrote {args.out}")
    if failed:
        print(f"failed: {' '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def ensure_tools(install: bool) -> list[str]:
    """Install the Debian packages of missing tools (as root); returns what is still missing."""
    missing = sorted({PACKAGES[t] for t in PACKAGES if c.find_tool(t) is None})
    if missing and install:
        print(f"installing: {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(
            ["debconf-set-selections"],
            input="wireshark-common wireshark-common/install-setuid boolean false\n",
            text=True,
            check=False,
            env=env,
            timeout=60,
        )
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            check=False,
            env=env,
            timeout=1200,
        )
    return sorted({t for t in PACKAGES if c.find_tool(t) is None})


def start_server(ctx: c.Context) -> None:
    """The SIP server every loopback benchmark talks to: stateless Kamailio (the lab's config)."""
    workdir = ctx.subdir("server")
    config = c.kamailio_server_config(workdir, *c.SERVER)
    proc = ctx.procs.start(
        c.kamailio_argv(config, workdir / "run", ("-m", "64", "-M", "8")),
        env=ctx.env(),
        log=workdir / "kamailio.log",
        name="kamailio-server",
    )
    c.wait_sip(c.SERVER, 15, proc)


# ------------------------------------------------------------------------------------------------
# results.md


def _block(section: c.Section, info: dict[str, str], quick: bool, runs: int) -> str:
    mode = "quick (smoke) mode" if quick else "full mode"
    lines = [
        f"<!-- bench:{section.name} -->",
        f"## {section.title}",
        "",
        f"Ran {info['date']} on {info['cpu']} ({info['cores']} cores), {info['python']}, "
        f"Linux {info['kernel']}, {info['kamailio'] or 'Kamailio ?'}; {mode}, {runs} "
        f"run(s), {section.seconds:.0f} s.",
        "",
    ]
    if section.setup:
        lines += [section.setup, ""]
    if section.error:
        lines += [f"**Failed:** `{section.error}`", ""]
    if section.figures:
        lines += [
            "| figure | min | median | max | unit | budget / note |",
            "|---|---:|---:|---:|---|---|",
        ]
        for figure in section.figures:
            lo, mid, hi = figure.spread()
            if len(figure.values) == 1:
                cells = ["", figure.fmt(mid), ""]
            else:
                cells = [figure.fmt(lo), figure.fmt(mid), figure.fmt(hi)]
            lines.append(f"| {figure.name} | {' | '.join(cells)} | {figure.unit} | {figure.note} |")
        lines.append("")
    for note in section.notes:
        lines += [note, ""]
    lines.append(f"<!-- /bench:{section.name} -->")
    return "\n".join(lines)


def _old_blocks(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    text = path.read_text()
    blocks = {}
    for name in BENCHES:
        start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        if start in text and end in text:
            blocks[name] = text[text.index(start) : text.index(end) + len(end)]
    return blocks


def write_results(
    path: Path, sections: list[c.Section], info: dict[str, str], quick: bool, runs: int
) -> None:
    blocks = _old_blocks(path)
    for section in sections:
        blocks[section.name] = _block(section, info, quick, runs)
    ordered = [blocks[name] for name in BENCHES if name in blocks]
    path.write_text(HEADER + "\n" + "\n\n".join(ordered) + "\n")


if __name__ == "__main__":
    sys.exit(main())
