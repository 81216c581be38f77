"""Spoofed answers against the engine (fake clock and network) and a real daemon on loopback.

An answer is accepted only from the server's address and port with the outstanding request's Via
branch, Call-ID and CSeq (docs/how-it-works.md). Everything else — another source address or port, a
guessed branch, a replay of an earlier transaction, the right branch with another Call-ID or
CSeq, a keepalive's answer on the inbound-check socket — must change nothing but the `dropped`
counter: not the learned mapping, not reachability, not the other counters, no event, no datagram.
Each spoof carries a tempting payload (another public address, a 503, a Flow-Timer of 1 s).
"""

from __future__ import annotations

import binascii
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from natkeepalive import events as ev
from natkeepalive.config.model import ProbeSettings
from natkeepalive.core.engine import AUX, BINDING, BRANCH_BYTES
from natkeepalive.sip.message import parse_message
from tests.fuzz.targets import counted_once, outstanding, snapshot
from tests.reliability.common import status
from tests.support.agentproc import ROOT, Agent, agent_env
from tests.support.fakenet import SERVER, FakeNet
from tests.support.helpers import free_port, write_config
from tests.support.responder import SipResponder
from tests.support.sipfake import answer

EVIL = ("6.6.6.6", 666)
EVIL_EXTRA = "Flow-Timer: 1"


def settings(**over: object) -> ProbeSettings:
    base: dict[str, object] = {"interval": 20.0, "jitter": 0.2, "inbound_check": 0}
    base.update(over)
    return ProbeSettings(**base)  # type: ignore[arg-type]


def mid_transaction(**over: object) -> FakeNet:
    """A net where the mapping is learned, the binding reachable, and a keepalive is in flight."""
    net = FakeNet(settings=settings(**over))
    net.run_until(2.99)  # the first keepalive is answered; the second goes at 3.0 (promotion)
    assert net.engine.public == ("203.0.113.1", 40000)
    assert net.engine.reach.state == "reachable"
    net.run_until(3.001)  # sent at 3.0, its answer arrives at 3.02
    assert len(outstanding(net.engine)) == 1
    return net


def current_request(net: FakeNet) -> bytes:
    return net.sent[-1].raw


def assert_ignored(
    net: FakeNet,
    data: bytes,
    source: tuple[str, int],
    channel: str = BINDING,
    counter: str = "dropped",
) -> None:
    engine = net.engine
    before, counted = snapshot(engine), getattr(engine, counter)
    log_before, sent_before = len(net.log), len(net.sent)
    net.inject(data, source, channel)
    assert snapshot(engine) == before
    assert len(net.log) == log_before, [e.NAME for e in net.log[log_before:]]
    assert len(net.sent) == sent_before
    assert getattr(engine, counter) == counted + 1


def genuine_answer_still_accepted(net: FakeNet) -> None:
    net.run_until(10.0)
    assert net.engine.public == ("203.0.113.1", 40000)
    assert net.engine.reach.state == "reachable"
    assert net.engine.responses == 2
    assert not [
        e
        for e in net.log
        if isinstance(e, (ev.BindingChanged, ev.Unreachable, ev.Lagged, ev.BindingExpired))
    ]


# --- engine level ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        (SERVER[0], SERVER[1] + 1),
        ("203.0.113.11", SERVER[1]),
        ("::ffff:203.0.113.10", SERVER[1]),
        ("0.0.0.0", 0),
    ],
    ids=["other-port", "other-address", "v4-mapped", "zero"],
)
def test_matching_answer_from_another_source_is_dropped(source: tuple[str, int]) -> None:
    net = mid_transaction()
    spoof = answer(current_request(net), EVIL, status=503, extra=EVIL_EXTRA)
    assert_ignored(net, spoof, source)
    genuine_answer_still_accepted(net)


def test_guessed_branches_are_dropped() -> None:
    net = mid_transaction()
    request = current_request(net)
    real = parse_message(request).top_via.branch
    assert real is not None
    for guess in (
        "z9hG4bK" + "0" * 20,
        real[:-1] + ("0" if real[-1] != "0" else "1"),
        real.upper(),
        real + "0",
        "z9hG4bK",
        "",
        real[:-4],
    ):
        assert_ignored(net, answer(request, EVIL, branch=guess, extra=EVIL_EXTRA), SERVER)
    genuine_answer_still_accepted(net)


@pytest.mark.parametrize("what", ["call-id", "cseq", "cseq-method"])
def test_right_branch_with_other_call_id_or_cseq_is_dropped(what: str) -> None:
    net = mid_transaction()
    request = current_request(net)
    parsed = parse_message(request)
    if what == "call-id":
        spoof = answer(request, EVIL, call_id=parsed.call_id + "x")
    elif what == "cseq":
        spoof = answer(request, EVIL, cseq=parsed.cseq + 1)
    else:
        spoof = answer(request, EVIL).replace(b" OPTIONS\r\n", b" INVITE\r\n")
    assert_ignored(net, spoof, SERVER)
    genuine_answer_still_accepted(net)


def test_keepalive_answer_on_the_inbound_check_socket_is_dropped() -> None:
    net = mid_transaction()
    assert_ignored(net, answer(current_request(net), EVIL), SERVER, AUX)
    genuine_answer_still_accepted(net)


def test_replay_of_an_old_transaction_is_dropped() -> None:
    """Answers to keepalives that finished long ago (no longer in the recent-branch list)."""
    net = FakeNet(settings=settings(interval=5.0, jitter=0.0))
    net.run_until(200.0)
    old = [s.raw for s in net.sent[:5]]
    net.run_until(net.engine.next_keepalive + 0.001)  # type: ignore[operator]
    assert outstanding(net.engine)
    responses = net.engine.responses
    for request in old:
        assert_ignored(net, answer(request, EVIL, status=503, extra=EVIL_EXTRA), SERVER)
    net.run_until(net.now + 1.0)
    assert net.engine.responses == responses + 1
    assert net.engine.public == ("203.0.113.1", 40000)


def test_replay_of_the_last_transaction_counts_as_dropped() -> None:
    """A replay of a transaction that just finished is counted in `dropped`, which the status
    file and the daemon's "dropped N" line show, so a replay flood is visible; `duplicates` also
    counts it, as one whose branch had just finished."""
    net = mid_transaction()
    first = net.sent[0].raw  # answered at 0.02: its branch is in the recent list
    duplicates = net.engine.duplicates
    assert_ignored(net, answer(first, EVIL, status=503, extra=EVIL_EXTRA), SERVER)
    assert net.engine.duplicates == duplicates + 1


def test_replay_of_the_last_transaction_changes_nothing_else() -> None:
    """Counted once, and nothing else moves: the genuine answer still gets through."""
    net = mid_transaction()
    first = net.sent[0].raw
    before, dropped, duplicates = snapshot(net.engine), net.engine.dropped, net.engine.duplicates
    net.inject(answer(first, EVIL, status=503, extra=EVIL_EXTRA), SERVER)
    assert snapshot(net.engine) == before
    assert counted_once(net.engine, dropped, duplicates)
    genuine_answer_still_accepted(net)


def test_spoofs_against_the_inbound_check() -> None:
    net = FakeNet(settings=settings(inbound_check=1, interval=20.0))
    net.run_until(2.99)
    net.run_until(3.001)  # the check goes out from the aux socket at 3.0
    ((branch, _, _, kind),) = outstanding(net.engine)
    assert kind == "inbound"
    request = current_request(net)
    # from the wrong source on either socket; the right source with a wrong branch on either
    for source, channel in ((EVIL, BINDING), (EVIL, AUX), ((SERVER[0], 1), AUX)):
        assert_ignored(net, answer(request, EVIL), source, channel)
    for channel in (BINDING, AUX):
        assert_ignored(net, answer(request, EVIL, branch=branch + "1"), SERVER, channel)
    assert net.engine.inbound_result is None and not net.engine.inbound_unsupported
    net.run_until(10.0)
    assert net.engine.inbound_result == "alive"


def test_unmatched_flood_leaves_the_engine_as_it_was() -> None:
    net = mid_transaction()
    request = current_request(net)
    before, total = snapshot(net.engine), net.engine.dropped
    spoofs = [answer(request, EVIL, branch=f"z9hG4bK{n:020x}") for n in range(500)]
    for n, data in enumerate(spoofs):
        net.engine.receive_datagram(data, SERVER if n % 2 else EVIL, net.now)
    assert not net.engine.datagrams_to_send() and not net.engine.events()
    assert snapshot(net.engine) == before
    assert net.engine.dropped == total + 500


# --- the branch on the wire: >= 64 bits from os.urandom -------------------------------------------

RECORD_URANDOM = """
import os, sys, binascii
_real = os.urandom
_log = open(sys.argv[1], "a", buffering=1)
def urandom(n):
    data = _real(n)
    _log.write(binascii.hexlify(data).decode() + "\\n")
    return data
os.urandom = urandom
from natkeepalive.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


# Short timers, so a spoof meets a live transaction within a second
FAST = {"interval": 0.3, "jitter": 0.2, "timeout": 1.0, "retry_interval": 1, "inbound_check": 0}


def test_branch_on_the_wire_is_80_bits_from_os_urandom(tmp_path: Path) -> None:
    record = tmp_path / "urandom.txt"
    with SipResponder() as responder:
        config = write_config(
            tmp_path / "c.yaml",
            [("provider", responder.address, free_port())],
            FAST,
            inbound_check=2,
        )
        argv = [
            sys.executable,
            "-c",
            RECORD_URANDOM,
            str(record),
            "run",
            "-c",
            str(config),
            "--log",
            "stderr",
            "--status-file",
            str(tmp_path / "status.json"),
        ]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=agent_env(),
            cwd=str(ROOT),
        )
        try:
            assert responder.wait_for_requests(40, timeout=20)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        requests = [message for _, message, _ in responder.requests]
    # The agent reads os.urandom a page at a time (runtime/entropy.py) and hands each byte out
    # once: every value must be bytes of one read, and no two values may share a byte.
    draws = record.read_text().split()
    taken: list[tuple[int, int, int]] = []  # (read, first byte, end)

    def locate(value: str) -> None:
        for index, draw in enumerate(draws):
            at = draw.find(value)
            while at >= 0 and at % 2:  # a value starts on a byte, not in the middle of one
                at = draw.find(value, at + 1)
            if at >= 0:
                taken.append((index, at // 2, at // 2 + len(value) // 2))
                return
        raise AssertionError(f"{value} is not bytes os.urandom returned")

    branches = {m.top_via.branch for m in requests}
    assert len(branches) >= 25  # retransmissions repeat a branch; new requests never do
    for branch in branches:
        assert branch is not None and branch.startswith("z9hG4bK")
        suffix = branch[len("z9hG4bK") :]
        assert len(suffix) * 4 >= 64 and len(suffix) == 2 * BRANCH_BYTES
        locate(suffix)
    # Call-ID: a new one per request (RFC 3261 8.1.1.4), the binding's 64 bits from os.urandom
    # (the other half of what a spoofer must guess), "-" and the CSeq number
    call_ids = {m.call_id: m.cseq for m in requests}
    assert len(call_ids) == len(branches)
    prefixes = {call_id.rpartition("-")[0] for call_id in call_ids}
    assert len(prefixes) == 1 and len(next(iter(prefixes))) * 4 >= 64
    assert all(call_id.rpartition("-")[2] == str(cseq) for call_id, cseq in call_ids.items())
    locate(next(iter(prefixes)))
    taken.sort()
    for (read, _, end), (next_read, start, _) in zip(taken, taken[1:]):
        assert read != next_read or end <= start, "two values share random bytes"
    # uniform enough: every hex digit appears, about half of all bits are set
    bits = "".join(bin(int(b[7:], 16))[2:].zfill(80) for b in branches if b)
    assert set("".join(b[7:] for b in branches if b)) == set("0123456789abcdef")
    assert 0.4 < bits.count("1") / len(bits) < 0.6


# --- a real daemon on loopback --------------------------------------------------------------------


@pytest.fixture
def responder() -> Iterator[SipResponder]:
    with SipResponder() as r:
        yield r


def status_entry(agent: Agent) -> dict[str, Any]:
    entry: dict[str, Any] = status(agent)["bindings"][0]
    return entry


def test_daemon_ignores_every_kind_of_spoof(tmp_path: Path, responder: SipResponder) -> None:
    """The responder answers 0.4 s late (before the first retransmission, so no genuine duplicate
    answer muddies the count), so each keepalive is outstanding while the spoofs, built
    from that very request, arrive: from another port, another address, and the server's own
    address and port with a guessed branch, another Call-ID, another CSeq, another method.
    (Replays are in test_daemon_counts_replays_as_dropped.)"""
    port = free_port()
    responder.configure(delay=0.4)
    config = write_config(
        tmp_path / "c.yaml",
        [("provider", responder.address, port)],
        FAST,
        interval=1.0,
        jitter=0.0,
        timeout=3.0,
    )
    target = ("127.0.0.1", port)
    sent = 0
    with (
        Agent(config, tmp_path / "status.json") as agent,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other_port,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other_address,
    ):
        other_port.bind(("127.0.0.1", 0))
        other_address.bind(("127.0.0.2", 0))
        agent.wait_for("reachable")
        agent.wait_for("probe-answered", count=2)
        baseline = status_entry(agent)
        public = baseline["public"]
        assert public == f"127.0.0.1:{port}"
        for _round in range(5):
            seen = len(responder.requests)
            assert responder.wait_for_requests(seen + 1, timeout=5)
            request = _raw_request(responder.requests[-1][1])
            parsed = parse_message(request)
            evil = answer(request, EVIL, status=503, extra=EVIL_EXTRA)
            from_server = [
                answer(request, EVIL, branch="z9hG4bK" + os.urandom(BRANCH_BYTES).hex()),
                answer(request, EVIL, call_id="spoofed-call-id"),
                answer(request, EVIL, cseq=parsed.cseq + 1000),
                answer(request, EVIL).replace(b" OPTIONS\r\n", b" INVITE\r\n"),
                b"\x00" * 40,
            ]
            for _ in range(10):
                other_port.sendto(evil, target)
                other_address.sendto(evil, target)
                for data in from_server:
                    responder._sock.sendto(data, target)
                sent += 2 + len(from_server)
        agent.wait_for("probe-answered", count=len(agent.events("probe-answered")) + 1)
        after = status_entry(agent)
        assert agent.stop() == 0
    names = agent.names()
    assert after["public"] == public and after["state"] == "reachable"
    assert (after["changes"], after["expiries"], after["timeouts"]) == (0, 0, 0)
    assert names.count("binding-learned") == 1 and names.count("reachable") == 1
    for name in (
        "binding-changed",
        "binding-expired",
        "lagged",
        "unreachable",
        "interval-adjusted",
        "rport-unsupported",
    ):
        assert name not in names
    # every genuine answer was accepted (none timed out) and every spoof was counted as dropped
    assert after["responses"] >= after["probes_sent"] - 1
    assert after["dropped"] - baseline["dropped"] == sent
    assert after["interval_s"] == 1.0  # the spoofed Flow-Timer was not applied


def test_daemon_counts_replays_as_dropped(tmp_path: Path, responder: SipResponder) -> None:
    """A replayed answer (here: to the first keepalive) from the server's address must show up in
    the status file's `dropped`, like every other datagram the agent refuses."""
    port = free_port()
    config = write_config(
        tmp_path / "c.yaml",
        [("provider", responder.address, port)],
        FAST,
        interval=1.0,
        jitter=0.0,
        timeout=3.0,
    )
    with Agent(config, tmp_path / "status.json") as agent:
        agent.wait_for("probe-answered", count=2)
        baseline = status_entry(agent)
        replay = responder.sent[0][1].replace(b"127.0.0.1", b"6.6.6.6")
        for _ in range(50):
            responder._sock.sendto(replay, ("127.0.0.1", port))
        time.sleep(0.5)
        after = status_entry(agent)
        agent.stop()
    assert after["public"] == baseline["public"] and after["changes"] == 0
    assert after["dropped"] - baseline["dropped"] == 50


def _raw_request(message: object) -> bytes:
    """Rebuild the bytes of a parsed request well enough for sipfake.answer."""
    from natkeepalive.sip.message import Request

    assert isinstance(message, Request)
    lines = [f"{message.method} {message.uri} SIP/2.0"]
    lines += [f"{name}: {value}" for name, value in message.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_hex_helper_is_what_the_engine_uses() -> None:
    """The wire test compares hex text: the engine must hexlify exactly what it drew."""
    drawn: list[bytes] = []

    def rnd(n: int) -> bytes:
        data = bytes(range(n))
        drawn.append(data)
        return data

    net = FakeNet(settings=settings())
    net.engine._random = rnd
    net.run_until(3.001)
    branch = parse_message(net.sent[-1].raw).top_via.branch
    assert branch == "z9hG4bK" + binascii.hexlify(bytes(range(BRANCH_BYTES))).decode()
