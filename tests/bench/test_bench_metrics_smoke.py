"""tests/bench/bench_metrics.py for a moment, so it cannot rot: the figures are positive and
the file holds the same samples for every binding plus the agent's two."""

from __future__ import annotations

from tests.bench.bench_metrics import measure

AGENT_SAMPLES = 2  # nat_keepalive_build_info and nat_keepalive_start_time_seconds


def test_bench_metrics_runs() -> None:
    one = measure(bindings=1, writes=1)["samples"] - AGENT_SAMPLES
    figures = measure(bindings=20, writes=2)
    assert figures["metrics_ms"] > 0 and figures["status_ms"] > 0
    assert one > 0
    assert figures["samples"] == 20 * one + AGENT_SAMPLES
