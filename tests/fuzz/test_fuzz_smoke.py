"""The fuzzers in the normal suite: about a minute of atheris on each target (both at once, one
per core), with the committed seed corpus; and the corpus kept in step with tests/data/."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from tests.fuzz import run
from tests.support.tools import unavailable

SECONDS = 55


def require_atheris() -> None:
    if importlib.util.find_spec("atheris") is not None:
        return
    message = "atheris is not installed (pip install atheris; .ci/run installs it)"
    unavailable(message)


def test_seed_corpus_is_up_to_date(tmp_path: Path) -> None:
    """tests/fuzz/corpus/ is what `run.py --make-seeds` makes from tests/data/ today."""
    counts = run.make_seeds(tmp_path)
    for target, count in counts.items():
        fresh = {p.name: p.read_bytes() for p in (tmp_path / target).iterdir()}
        committed = {p.name: p.read_bytes() for p in (run.CORPUS / target).iterdir()}
        assert fresh == committed, f"run: python3 tests/fuzz/run.py --make-seeds ({target})"
        assert count >= 30


def test_a_minute_of_fuzzing_finds_nothing(tmp_path: Path) -> None:
    require_atheris()
    done = subprocess.run(
        [
            sys.executable,
            str(run.HERE / "run.py"),
            "--seconds",
            str(SECONDS),
            "--json",
            "--artifacts",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=SECONDS * 3 + 120,
    )
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    for result in results:
        print("FUZZ " + json.dumps(result))
    found = {r["target"]: r["crashes"] for r in results if r["crashes"]}
    logs = {p.name: p.read_text()[-2000:] for p in tmp_path.glob("*.log")} if found else {}
    assert done.returncode == 0 and not found, (found, logs, done.stderr[-2000:])
    assert {r["target"] for r in results} == {"parser", "engine"}
    for result in results:
        assert result["execs"] >= 20_000, result  # it really ran
        assert result["cov"] >= 100, result
