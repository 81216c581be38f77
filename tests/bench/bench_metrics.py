"""What the metrics file costs: the real Daemon in-process (tests/bench/hotpath.py's fake sockets,
poller and clock) with N bindings that have answered for a while, then the status file written
alone and with the metrics file, each timed over several writes (CPU time, time.process_time).
The metrics file is written only where the status file is (a state change, at most once a
second; the counters every 30 s), never per keepalive.

    python3 tests/bench/bench_metrics.py [--bindings N] [--writes W]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def measure(bindings: int, writes: int) -> dict[str, float]:
    from natkeepalive.config.loader import parse_config
    from natkeepalive.runtime import (
        daemon as daemon_module,
        slot as slot_module,
        sockets as sockets_module,
    )
    from natkeepalive.runtime.logsink import Sink
    from tests.bench.hotpath import SERVER, Clock, FakePoller, FakeSocket, Net

    net, clock = Net(), Clock()
    aux = FakeSocket(net, 0)
    saved = (slot_module.open_udp, daemon_module.Poller, sockets_module.AuxSockets.open)
    slot_module.open_udp = lambda address, port, label: FakeSocket(net, port)  # type: ignore
    daemon_module.Poller = lambda: FakePoller(net, clock)  # type: ignore
    sockets_module.AuxSockets.open = lambda self, family: aux  # type: ignore

    class QuietSink(Sink):
        def _deliver(self, severity: int, text: str) -> None:
            pass

    folder = tempfile.mkdtemp(prefix="nk-bench-metrics-")
    metrics = os.path.join(folder, "nat-keepalive.prom")
    try:
        text = (
            f"log: {{target: stderr, level: info}}\nmetrics_file: {metrics}\n"
            "defaults: {interval: 2}\nbindings:\n"
            + "".join(
                f"  - {{name: b{i}, server: '{SERVER[0]}:{SERVER[1]}', source_port: {20000 + i}}}\n"
                for i in range(bindings)
            )
        )
        daemon = daemon_module.Daemon(
            parse_config(text, "bench"),
            QuietSink("info"),
            os.path.join(folder, "status.json"),
            clock=clock,
        )
        daemon.start()
        try:
            warm = clock.now + 6.0
            while clock.now < warm:
                daemon.run_once()
            answered = sum(s.engine.responses for s in daemon.slots.values())
            assert answered >= bindings, "the bindings did not answer"
            path = daemon.config.metrics_file
            assert path is not None
            outputs = daemon.outputs

            def write_metrics() -> None:
                outputs._write_metrics(path, daemon.slots, daemon.autos, daemon.wall(), clock.now)

            write_metrics()  # the writer's import and label cache
            began = time.process_time()
            for _ in range(writes):
                daemon._write_status(clock.now)
            both = (time.process_time() - began) / writes
            began = time.process_time()
            for _ in range(writes):
                write_metrics()
            alone = (time.process_time() - began) / writes
            size = os.path.getsize(metrics)
            with open(metrics) as handle:
                samples = sum(1 for line in handle if not line.startswith("#"))
        finally:
            daemon.shutdown("done")
    finally:
        slot_module.open_udp, daemon_module.Poller, sockets_module.AuxSockets.open = saved
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "status_and_metrics_ms": both * 1e3,
        "metrics_ms": alone * 1e3,
        "status_ms": (both - alone) * 1e3,
        "metrics_bytes": float(size),
        "samples": float(samples),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bindings", type=int, default=10000)
    parser.add_argument("--writes", type=int, default=5)
    args = parser.parse_args(argv)
    f = measure(args.bindings, args.writes)
    print(
        f"{args.bindings} bindings: metrics file {f['metrics_ms']:.0f} ms of CPU per write "
        f"({f['metrics_bytes'] / 1e6:.2f} MB, {f['samples']:.0f} samples); status file "
        f"{f['status_ms']:.0f} ms; both {f['status_and_metrics_ms']:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "agent"))
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
