"""Coverage-guided fuzzing of the SIP parser and the engine's datagram entry point with atheris.

    python3 tests/fuzz/run.py [--seconds N | --runs N] [--targets parser,engine] [--json]
    python3 tests/fuzz/run.py --make-seeds          # rebuild tests/fuzz/corpus/ from tests/data/
    python3 tests/fuzz/run.py --replay FILE...      # saved inputs through the targets, no atheris

Each target runs in its own process (in parallel, one per core) under libFuzzer, seeded with
tests/fuzz/corpus/<target>/ (real answers captured from Kamailio and SIPp, tests/data/*.sip, and
hostile shapes), the SIP dictionary sip.dict, and the invariants of tests/fuzz/targets.py. New
corpus entries go to a temporary directory that is removed afterwards unless --keep DIR is
given; a crash, timeout or out-of-memory input is written to --artifacts (default: a temporary
directory that is kept only when something was found) and named in the summary.

The summary gives, per target: executions, executions per second, coverage (libFuzzer's `cov`
edges and `ft` features), corpus size and crashes. Exit status: 0 nothing found, 1 something
found, 2 usage error or atheris missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for _path in (str(ROOT), str(ROOT / "agent")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

CORPUS = HERE / "corpus"
DICTIONARY = HERE / "sip.dict"
DATA = ROOT / "tests" / "data"
TARGET_NAMES = ("parser", "engine")
MAX_LEN = 4096
INPUT_TIMEOUT = 10  # seconds for one input: a parser that takes this long is a finding
RSS_LIMIT_MB = 1024

# Hostile shapes the captured answers do not contain: they start the fuzzer near the escapes,
# limits and odd syntax the parser handles specially.
HOSTILE: dict[str, bytes] = {
    "reason_control_chars": b"SIP/2.0 200 OK\x1b[31m\r\nevent=binding-changed binding=x\x00\r\n"
    b"Via: SIP/2.0/UDP 192.168.77.2:5062;branch=z9hG4bKx;rport=1\r\n"
    b"Call-ID: a\r\nCSeq: 1 OPTIONS\r\n\r\n",
    "server_newline_folded": b"SIP/2.0 200 OK\r\nServer: a\r\n event=x; rm -rf / $(id)`id`\r\n"
    b"v: SIP/2.0/UDP h;branch=z9hG4bKx;received=1.2.3.4;rport=5\r\n"
    b"i: b\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n",
    "via_quoted_params": b'SIP/2.0 200 OK\nVia: SIP/2.0/UDP [::1]:5062;x="a;b,c\\"d";rport=2,'
    b" SIP/2.0/UDP h<a,b>;branch=z9hG4bKy\ni: c\nCSeq: 2 OPTIONS\n\n",
    "received_v6_port": b"SIP/2.0 404 Not Found\r\nVia: SIP/2.0/UDP 10.0.0.1:5062;"
    b"received=[2001:db8::1]:5060;rport=65535;branch=z9hG4bKz\r\n"
    b"Call-ID: d@e\r\nCSeq: 4294967295 OPTIONS\r\nFlow-Timer: 30\r\n"
    b"Content-Length: 5\r\n\r\nhello",
    "many_vias": b"SIP/2.0 200 OK\r\nVia: "
    + b", ".join([b"SIP/2.0/UDP h"] * 70)
    + b"\r\nCall-ID: a\r\nCSeq: 1 OPTIONS\r\n\r\n",
    "unicode_reason": "SIP/2.0 503 Service \u2028Unavailable \u202e\r\nVia: SIP/2.0/UDP h;branch="
    "z9hG4bKq\r\nCall-ID: a\r\nCSeq: 1 OPTIONS\r\n\r\n".encode(),
    "crlf_keepalive": b"\r\n\r\n",
    "request": b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKr\r\nCall-ID: a\r\n"
    b"CSeq: 1 OPTIONS\r\n\r\n",
}


# --- seeds ---------------------------------------------------------------------------------------


def real_answers() -> dict[str, bytes]:
    """Every answer in tests/data/ and tests/data/captured/, by file stem."""
    found: dict[str, bytes] = {}
    for folder, prefix in ((DATA, "data_"), (DATA / "captured", "captured_")):
        for path in sorted(folder.glob("*.sip")):
            data = path.read_bytes()
            if data.startswith(b"SIP/2.0"):
                found[prefix + path.stem] = data
    return found


def make_seeds(out: Path = CORPUS) -> dict[str, int]:
    """Write the seed corpus for both targets; returns the number of files per target."""
    from tests.fuzz.targets import SCENARIOS, engine_input, engine_seed

    parser_dir, engine_dir = out / "parser", out / "engine"
    for folder in (parser_dir, engine_dir):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    answers = real_answers()
    for name, data in {**answers, **HOSTILE}.items():
        (parser_dir / f"{name}.sip").write_bytes(data)
    for name, data in answers.items():
        for scenario in SCENARIOS:
            (engine_dir / f"{scenario}_{name}.bin").write_bytes(engine_seed(data, scenario))
    # the same answer from a spoofed port and address, on the aux socket, and replayed as-is
    kamailio = answers.get("captured_kamailio_keepalive", next(iter(answers.values())))
    for source in (1, 2):
        (engine_dir / f"spoof{source}.bin").write_bytes(
            bytes([source]) + engine_seed(kamailio, "learned")[1:]
        )
    (engine_dir / "aux_keepalive.bin").write_bytes(
        bytes([4]) + engine_seed(kamailio, "learned")[1:]
    )
    (engine_dir / "unrewritten.bin").write_bytes(engine_input("learned", kamailio))
    for name, data in HOSTILE.items():
        (engine_dir / f"hostile_{name}.bin").write_bytes(engine_input("learned", data))
    return {"parser": len(list(parser_dir.iterdir())), "engine": len(list(engine_dir.iterdir()))}


# --- the child: one target under libFuzzer ------------------------------------------------------


def child(target: str, libfuzzer_args: list[str]) -> None:
    import atheris  # type: ignore[import-untyped]

    atheris.enabled_hooks.add("str")
    with atheris.instrument_imports(include=["natkeepalive"]):
        import natkeepalive.config.model
        import natkeepalive.core.engine
        import natkeepalive.runtime.logsink
        import natkeepalive.sip.message  # noqa: F401
    from tests.fuzz.targets import TARGETS

    atheris.Setup([sys.argv[0], *libfuzzer_args], TARGETS[target])
    atheris.Fuzz()


# --- the parent -----------------------------------------------------------------------------------

_STATS = re.compile(r"^stat::(\w+):\s*(\d+)", re.MULTILINE)
_PROGRESS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.MULTILINE)
_FOUND = ("crash-", "timeout-", "oom-", "leak-", "slow-unit-")


def summarize(
    target: str, log: str, artifacts: Path, returncode: int, seconds: float
) -> dict[str, object]:
    stats = {key: int(value) for key, value in _STATS.findall(log)}
    progress = _PROGRESS.findall(log)
    cov = ft = corpus = 0
    if progress:
        _, cov_text, ft_text, corp_text = progress[-1]
        cov, ft, corpus = int(cov_text), int(ft_text), int(corp_text)
    execs = stats.get("number_of_executed_units", int(progress[-1][0]) if progress else 0)
    found = sorted(
        str(p) for p in artifacts.glob(f"{target}-*") if p.name.split("-", 1)[1].startswith(_FOUND)
    )
    return {
        "target": target,
        "execs": execs,
        "seconds": round(seconds, 1),
        "exec_per_s": round(execs / seconds) if seconds > 0 else 0,
        "cov": cov,
        "ft": ft,
        "corpus": corpus,
        "new_units": stats.get("new_units_added", 0),
        "peak_rss_mb": stats.get("peak_rss_mb", 0),
        "crashes": found,
        "returncode": returncode,
        "python_exception": "Uncaught Python exception" in log,
    }


def run_targets(
    targets: list[str],
    *,
    seconds: float | None,
    runs: int | None,
    artifacts: Path,
    keep: Path | None,
    seed: int | None = None,
) -> list[dict[str, object]]:
    artifacts.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="nk-fuzz-"))
    procs: list[tuple[str, subprocess.Popen[bytes], Path, float]] = []
    try:
        for target in targets:
            new_units = (keep / target) if keep is not None else work / target
            new_units.mkdir(parents=True, exist_ok=True)
            flags = [
                f"-artifact_prefix={artifacts}/{target}-",
                f"-max_len={MAX_LEN}",
                f"-timeout={INPUT_TIMEOUT}",
                f"-rss_limit_mb={RSS_LIMIT_MB}",
                "-print_final_stats=1",
                f"-dict={DICTIONARY}",
            ]
            if runs is not None:
                flags.append(f"-runs={runs}")
            if seconds is not None:
                flags.append(f"-max_total_time={max(1, round(seconds))}")
            if seed is not None:
                flags.append(f"-seed={seed}")
            log_path = artifacts / f"{target}.log"
            argv = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                target,
                "--",
                *flags,
                str(new_units),
                str(CORPUS / target),
            ]
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                [str(ROOT), str(ROOT / "agent"), env.get("PYTHONPATH", "")]
            )
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=str(work),
                )
            procs.append((target, proc, log_path, time.monotonic()))
        results = []
        for target, proc, log_path, started in procs:
            limit = None if seconds is None else seconds * 3 + 120
            try:
                code = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            elapsed = time.monotonic() - started
            text = log_path.read_text("utf-8", "replace")
            results.append(summarize(target, text, artifacts, code, elapsed))
        return results
    finally:
        for _, proc, _, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def replay(paths: list[str]) -> int:
    """Run saved inputs through their target (by file-name prefix, else both)."""
    from tests.fuzz.targets import TARGETS

    failed = 0
    for path in paths:
        data = Path(path).read_bytes()
        name = Path(path).name
        chosen = [t for t in TARGETS if name.startswith(t)] or list(TARGETS)
        for target in chosen:
            try:
                TARGETS[target](data)
            except Exception as exc:  # a finding: report it and go on with the next input
                failed += 1
                print(f"{path}: {target}: {type(exc).__name__}: {exc}")
            else:
                print(f"{path}: {target}: ok")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["--child"]:
        child(args_in[1], args_in[3:] if args_in[2:3] == ["--"] else args_in[2:])
        return 0
    parser = argparse.ArgumentParser(description="fuzz the parser and the engine with atheris")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, help="time budget per target (default 60)")
    budget.add_argument("--runs", type=int, help="executions per target")
    parser.add_argument(
        "--targets", default=",".join(TARGET_NAMES), help="comma-separated: parser,engine"
    )
    parser.add_argument("--artifacts", type=Path, help="where crashing inputs and logs go")
    parser.add_argument("--keep", type=Path, help="keep the new corpus entries here")
    parser.add_argument("--seed", type=int, help="libFuzzer's random seed")
    parser.add_argument("--json", action="store_true", help="one JSON object per target")
    parser.add_argument("--make-seeds", action="store_true", help="rebuild tests/fuzz/corpus/")
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="run saved inputs")
    args = parser.parse_args(args_in)
    if args.make_seeds:
        print(json.dumps(make_seeds()))
        return 0
    if args.replay:
        return replay(args.replay)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in targets if t not in TARGET_NAMES]
    if unknown or not targets:
        parser.error(f"unknown target(s) {unknown}; choose from {', '.join(TARGET_NAMES)}")
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: pip install atheris", file=sys.stderr)
        return 2
    seconds = args.seconds if args.seconds is not None or args.runs is not None else 60.0
    artifacts = args.artifacts or Path(tempfile.mkdtemp(prefix="nk-fuzz-artifacts-"))
    results = run_targets(
        targets,
        seconds=seconds,
        runs=args.runs,
        artifacts=artifacts,
        keep=args.keep,
        seed=args.seed,
    )
    bad = False
    for result in results:
        crashed = bool(result["crashes"]) or result["returncode"] != 0
        bad = bad or crashed
        if args.json:
            print(json.dumps(result))
        else:
            print(
                f"{result['target']}: {result['execs']} execs in {result['seconds']} s "
                f"({result['exec_per_s']}/s), cov {result['cov']} ft {result['ft']}, corpus "
                f"{result['corpus']}, crashes {len(result['crashes'])} "  # type: ignore[arg-type]
                f"(exit {result['returncode']})"
            )
            for path in result["crashes"]:  # type: ignore[attr-defined]
                print(f"  found: {path}")
    if bad:
        print(f"logs and inputs: {artifacts}")
    elif args.artifacts is None:
        shutil.rmtree(artifacts, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
