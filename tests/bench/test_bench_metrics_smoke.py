"""tests/bench/bench_metrics.py for a moment, so it cannot rot: the figures are positive and
the file holds 20 samples per binding plus the agent's two."""

from __future__ import annotations

from tests.bench.bench_metrics import measure


def test_bench_metrics_runs() -> None:
    figures = measure(bindings=20, writes=2)
    assert figures["metrics_ms"] > 0 and figures["status_ms"] > 0
    assert figures["samples"] == 20 * 20 + 2
