"""The agent's own Python per answered keepalive, without the kernel and without the noise.

Whole-agent CPU figures (bench_cpu) move by ±8 % between identical runs on these shared machines,
more than most single changes to the hot path are worth. This runs the real Daemon in-process with
fake sockets, a fake poller and a fake clock: the "server" answers every OPTIONS at once with a
Kamailio-shaped answer (tests/data/kamailio_200.sip with the branch, Call-ID, CSeq, rport and
To-tag of the request), the clock jumps to the next deadline instead of sleeping, and the CPU time
(time.process_time) of the loop, less the time spent building answers, is divided by the answers.
What remains is what the agent's Python costs per keepalive: engine, parser and daemon glue.

    python3 tests/bench/hotpath.py [--bindings N] [--seconds S] [--split] [--profile]

--inbound-check N sets the bindings' cadence of checks (the default configuration's otherwise:
a check before every keepalive, whose cost is counted in the keepalive's). --split also times the
main parts (parse, the engine's answer and timer, the daemon's _after and
_refresh; each adds a wrapper and two clock reads), --profile prints cProfile's top items. Not a
pass/fail test; tests/bench/test_bench_smoke.py runs it for a moment so it cannot rot.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ANSWER = (ROOT / "tests" / "data" / "kamailio_200.sip").read_bytes()
SERVER = ("127.0.0.1", 5060)
BASE_PORT = 30000
WARMUP = 15.0  # simulated s: the answers' two shapes are learnt and the CSeq has two digits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Net:
    """The fake sockets' shared state: what was sent, who has datagrams waiting, and the time
    spent building answers (in the poller, outside the agent's code, and subtracted)."""

    def __init__(self) -> None:
        self.by_port: dict[int, FakeSocket] = {}
        self.sent: list[bytes] = []
        self.ready: dict[FakeSocket, None] = {}  # insertion-ordered, like epoll's list
        self.building = 0.0

    def deliver(self) -> None:
        """The server answers everything sent since the last wait."""
        began = time.process_time()
        for payload in self.sent:
            answer, port = answer_for(payload)
            target = self.by_port.get(port)
            if target is not None:
                target.queue.append((answer, SERVER))
                self.ready[target] = None
        self.sent.clear()
        self.building += time.process_time() - began


def _field(payload: bytes, start: bytes, ends: bytes) -> bytes:
    i = payload.index(start) + len(start)
    j = min((k for k in (payload.find(e, i) for e in ends) if k >= 0), default=len(payload))
    return payload[i:j]


def answer_for(payload: bytes) -> tuple[bytes, int]:
    """The answer a server behind no NAT gives, and the port it goes to."""
    sent_by = _field(payload, b"Via: SIP/2.0/UDP ", (b";",))
    port = int(sent_by.rsplit(b":", 1)[1])
    branch = _field(payload, b"branch=", (b";", b"\r\n"))
    cseq = _field(payload, b"CSeq: ", (b" ",))
    call_id = _field(payload, b"Call-ID: ", (b"\r\n",))
    answer = (
        ANSWER.replace(b"192.168.77.2:5062", sent_by)
        .replace(b"z9hG4bK0123456789abcdef", branch)
        .replace(b"rport=33785", b"rport=%d" % port)
        .replace(b"-4e3f", b"-%04x" % (int(cseq) & 0xFFFF))
        .replace(b"Call-ID: 0123456789abcdef", b"Call-ID: " + call_id)
        .replace(b"CSeq: 1 OPTIONS", b"CSeq: " + cseq + b" OPTIONS")
    )
    return answer, port


class FakeSocket:
    _fd = 100000

    def __init__(self, net: Net, port: int) -> None:
        self.net = net
        self.queue: collections.deque[tuple[bytes, tuple[str, int]]] = collections.deque()
        FakeSocket._fd += 1
        self.fd = FakeSocket._fd
        if port:
            net.by_port[port] = self

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        self.fd = -1

    def sendto(self, payload: bytes, destination: tuple[str, int]) -> int:
        self.net.sent.append(payload)
        return len(payload)

    def recvfrom(self, size: int) -> tuple[bytes, tuple[str, int]]:
        if not self.queue:
            raise BlockingIOError
        item = self.queue.popleft()
        if not self.queue:
            self.net.ready.pop(self, None)
        return item


class FakePoller:
    def __init__(self, net: Net, clock: Clock) -> None:
        self.net, self.clock = net, clock
        self.owners: dict[int, tuple[Any, object]] = {}

    def register(self, sock: Any, tag: object) -> None:
        self.owners[id(sock)] = (sock, tag)

    def unregister(self, sock: Any) -> None:
        self.owners.pop(id(sock), None)

    def select(self, timeout: float | None) -> list[tuple[Any, object]]:
        if self.net.sent:
            self.net.deliver()
        if self.net.ready:
            return [self.owners[id(s)] for s in list(self.net.ready) if id(s) in self.owners]
        if timeout is not None:
            self.clock.now += timeout  # asleep until the deadline: no time passes here
        return []

    def close(self) -> None:
        pass


def measure(
    bindings: int,
    seconds: float,
    split: bool = False,
    profile: bool = False,
    inbound_check: int | None = None,
) -> dict[str, float]:
    """µs of CPU per answered keepalive (key "total") and, with `split`, per part."""
    from natkeepalive.config.loader import parse_config
    from natkeepalive.core import answers as answers_module, engine as engine_module
    from natkeepalive.runtime import (
        daemon as daemon_module,
        slot as slot_module,
        sockets as sockets_module,
    )
    from natkeepalive.runtime.logsink import Sink
    from natkeepalive.sip import memo as memo_module

    net, clock = Net(), Clock()
    aux = FakeSocket(net, 0)
    saved = (slot_module.open_udp, daemon_module.Poller, sockets_module.AuxSockets.open)
    slot_module.open_udp = lambda address, port, label: FakeSocket(net, port)  # type: ignore
    daemon_module.Poller = lambda: FakePoller(net, clock)  # type: ignore
    sockets_module.AuxSockets.open = lambda self, family: aux  # type: ignore
    parts: dict[str, float] = collections.defaultdict(float)
    wrapped: list[tuple[Any, str, Any]] = []
    try:
        if split:
            for owner, name, label in (
                (memo_module.AnswerMemo, "read", "parse"),  # the engine's way in
                (answers_module, "receive", "engine: answer"),
                (engine_module.BindingEngine, "handle_timer", "engine: timer"),
                (daemon_module.Daemon, "_after", "daemon: _after"),
                (daemon_module.Daemon, "_refresh", "daemon: _refresh"),
            ):
                wrapped.append((owner, name, getattr(owner, name)))
                setattr(owner, name, _timed(getattr(owner, name), parts, label))

        class QuietSink(Sink):
            def _deliver(self, severity: int, text: str) -> None:
                pass

        check = "" if inbound_check is None else f", inbound_check: {inbound_check}"
        text = (
            f"log: {{target: stderr, level: info}}\ndefaults: {{interval: 1{check}}}\nbindings:\n"
        ) + "".join(
            f"  - {{name: b{i}, server: '{SERVER[0]}:{SERVER[1]}', source_port: {BASE_PORT + i}}}\n"
            for i in range(bindings)
        )
        folder = tempfile.mkdtemp(prefix="nk-hotpath-")
        daemon = daemon_module.Daemon(
            parse_config(text, "hotpath"),
            QuietSink("info"),
            str(Path(folder) / "status.json"),
            clock=clock,
        )
        daemon.start()
        try:
            warm = clock.now + WARMUP
            while clock.now < warm:
                daemon.run_once()
            answered = sum(s.engine.responses for s in daemon.slots.values())
            net.building = 0.0
            parts.clear()
            profiler = None
            if profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            began, end = time.process_time(), clock.now + seconds
            while clock.now < end:
                daemon.run_once()
            used = time.process_time() - began - net.building
            if profiler is not None:
                profiler.disable()
                import pstats

                pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            answered = sum(s.engine.responses for s in daemon.slots.values()) - answered
        finally:
            daemon.shutdown("done")
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        slot_module.open_udp, daemon_module.Poller, sockets_module.AuxSockets.open = saved
        for owner, name, original in wrapped:
            setattr(owner, name, original)
    if answered <= 0:
        raise RuntimeError("no keepalive was answered")
    out = {label: value / answered * 1e6 for label, value in parts.items()}
    out["total"] = used / answered * 1e6
    out["answers"] = float(answered)
    return out


def _timed(function: Any, parts: dict[str, float], label: str) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            parts[label] += time.process_time() - began

    return timed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bindings", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0, help="simulated seconds")
    parser.add_argument("--split", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--inbound-check",
        type=int,
        default=None,
        help="the bindings' inbound_check (default: the configuration's)",
    )
    args = parser.parse_args(argv)
    figures = measure(args.bindings, args.seconds, args.split, args.profile, args.inbound_check)
    print(
        f"{args.bindings} bindings, {figures.pop('answers'):.0f} answers: "
        f"{figures.pop('total'):.2f} µs of Python per answered keepalive"
    )
    for label, value in sorted(figures.items(), key=lambda item: -item[1]):
        print(f"  {label:18s} {value:6.2f} µs")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "agent"))
    sys.exit(main(sys.argv[1:]))
