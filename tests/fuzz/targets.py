"""Fuzz targets and their invariants, shared by the atheris runner (run.py) and regression tests.

Each target takes one input (bytes) and raises AssertionError (or lets any other exception
escape) when an invariant is broken; returning normally means the input was fine.

- `parser`: natkeepalive.sip.message.parse_message and parse_response raise nothing but
  SipParseError, and whatever they return can be used the way the engine and the log use it.
- `engine`: BindingEngine.receive_datagram with a live transaction outstanding raises nothing;
  a datagram that does not match the outstanding transaction (docs/how-it-works.md: the
  server's address and port, its branch, Call-ID and CSeq) changes nothing but the drop counter,
  and every event a datagram causes formats to one printable log line that parses back to the
  same event.

The first input byte of the engine target picks the scenario, the source and the channel, so
one corpus covers the keepalive, the confirmation probe and the inbound check; the rest is the
datagram. Randomness is seeded, so the outstanding branch and Call-ID are constants the seeds
(made by `engine_seed`) can carry.
"""

from __future__ import annotations

import pickle
import random
import re
from collections.abc import Callable
from typing import Any

from natkeepalive import events as ev
from natkeepalive.config.model import ProbeSettings
from natkeepalive.core.engine import AUX, BINDING, BindingEngine
from natkeepalive.errors import SipParseError
from natkeepalive.logline import format_event, parse_line
from natkeepalive.sip.message import Request, Response, parse_message, parse_response

SERVER = ("203.0.113.10", 5060)
LOCAL = ("192.168.77.2", 5062)
PUBLIC = ("203.0.113.1", 5062)
SOURCES = (SERVER, (SERVER[0], 5061), ("198.51.100.66", 5060), SERVER)
SCENARIOS = ("first", "learned", "inbound", "confirm")
# Counters a dropped datagram may move: `dropped`, and `duplicates` for a datagram carrying the
# branch of a transaction that just finished. Before /tmp/rel-patches/01 such a datagram moved
# `duplicates` alone (tests/reliability/test_spoofing.py); both forms are accepted here so the
# fuzzer keeps looking for other faults until the fix lands.
DROP_COUNTERS = ("dropped", "duplicates")


# --- the parser ----------------------------------------------------------------------------------


def _use_message(message: Request | Response) -> None:
    """Everything the engine, the probe command and the log do with a parsed message."""
    for via in message.vias:
        str(via)
        _ = (via.branch, via.received, via.rport, via.sent_by, via.has_param("rport"))
    _ = (
        message.top_via,
        message.flow_timer,
        message.header("server"),
        message.header_values("via"),
        message.call_id,
        message.cseq,
        message.cseq_method,
    )
    assert message.vias, "a parsed message without a Via"
    assert isinstance(message.cseq, int) and 0 <= message.cseq <= 2**32 - 1
    if isinstance(message, Response):
        assert 100 <= message.status <= 699
        format_event(
            ev.ProbeAnswered(
                "b",
                message.cseq,
                message.status,
                1.0,
                message.top_via.received or message.top_via.host,
            )
        )


def parser(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError as exc:
        assert str(exc)  # the daemon logs it: it must say something
        message = None
    if message is not None:
        _use_message(message)
    try:
        response = parse_response(data)
    except SipParseError:
        assert not isinstance(message, Response), "parse_response refused a response"
        return
    assert isinstance(message, Response), "parse_response accepted what parse_message did not"
    assert (response.status, response.call_id) == (message.status, message.call_id)


# --- the engine ----------------------------------------------------------------------------------


def _settings(inbound_check: int) -> ProbeSettings:
    return ProbeSettings(
        interval=20.0,
        jitter=0.2,
        timeout=3.0,
        inbound_check=inbound_check,
        fail_threshold=2,
        lagged_ms=2000,
    )


def _answer(request: bytes, public: tuple[str, int]) -> bytes:
    """A Kamailio-style answer to one of the engine's own requests."""
    parsed = parse_message(request)
    assert isinstance(parsed, Request)
    via = parsed.top_via
    params = ";".join(
        f"{k}={public[1]}" if k == "rport" else k if v is None else f"{k}={v}"
        for k, v in via.params
    )
    lines = [
        "SIP/2.0 200 OK",
        f"Via: {via.protocol} {via.sent_by};{params};received={public[0]}",
        f"From: {parsed.header('from')}",
        f"To: {parsed.header('to')};tag=srv",
        f"Call-ID: {parsed.call_id}",
        f"CSeq: {parsed.cseq} {parsed.cseq_method}",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def new_engine(scenario: str) -> BindingEngine:
    """An engine at t=100 with one transaction outstanding, in the given scenario:
    first (the first keepalive), learned (a later keepalive; an earlier one finished),
    inbound (an inbound check), confirm (a confirmation probe after another mapping was seen)."""
    rng = random.Random(1234)
    settings = _settings(1 if scenario == "inbound" else 0)
    engine = BindingEngine("b", settings, rng.randbytes, "sip.example.net", 5060)
    engine.set_flow(LOCAL, SERVER, 0.0)
    now = 0.0
    engine.handle_timer(now)
    if scenario != "first":
        out = engine.datagrams_to_send()
        engine.receive_datagram(_answer(out[-1].payload, PUBLIC), SERVER, now + 0.01)
        now = engine.next_keepalive or 3.0  # the promotion keepalive, or the check before it
        engine.handle_timer(now)
        out = engine.datagrams_to_send()
        if scenario == "inbound":
            assert out and out[-1].channel == AUX, "the inbound check did not start"
        elif scenario == "confirm":
            engine.receive_datagram(
                _answer(out[-1].payload, ("203.0.113.1", 40000)), SERVER, now + 0.01
            )
            out = engine.datagrams_to_send()
            assert out, "no confirmation probe"
    engine.datagrams_to_send()
    engine.events()
    return engine


_ENGINES: dict[str, BindingEngine] = {}


def _clone(engine: BindingEngine) -> BindingEngine:
    clone: BindingEngine = pickle.loads(pickle.dumps(engine, pickle.HIGHEST_PROTOCOL))
    return clone


def _template(scenario: str) -> BindingEngine:
    engine = _ENGINES.get(scenario)
    if engine is None:
        engine = _ENGINES[scenario] = new_engine(scenario)
    return engine


def outstanding(engine: BindingEngine) -> list[tuple[str, str, int, str]]:
    """(branch, call_id, cseq, kind) of every live transaction."""
    return [(b, tx.key.call_id, tx.key.cseq, tx.kind) for b, tx in engine._tx.items()]


def snapshot(engine: BindingEngine) -> dict[str, Any]:
    """Everything a datagram could change, except the drop counters."""
    tracker, reach = engine.tracker, engine.reach
    return {
        "mapping": tracker.mapping,
        "tracker_state": tracker.state,
        "candidate": tracker.candidate,
        "changes": tracker.changes,
        "expiries": tracker.expiries,
        "changed_at": tracker.changed_at,
        "rport_reported": tracker.rport_reported,
        "reach": (reach.state, reach.answers, reach.failures),
        "probes_sent": engine.probes_sent,
        "responses": engine.responses,
        "timeouts": engine.timeouts,
        "rtt": engine.last_rtt_ms,
        "status": engine.last_status,
        "last_response_at": engine.last_response_at,
        "inbound": engine.inbound_result,
        "flow_timer": engine.flow_timer,
        "interval": engine.interval,
        "tx": sorted((b, tx.state, tx.transmissions, tx.due()) for b, tx in engine._tx.items()),
        "next_keepalive": engine.next_keepalive,
        "cseq": engine.cseq,
        "deadline": engine.next_deadline(),
        "unsupported": sorted(engine.inbound_unsupported),
        "phase": engine.phase,
        "suspect": engine._suspect_idle,
    }


def drops(engine: BindingEngine) -> int:
    return sum(getattr(engine, name) for name in DROP_COUNTERS)


def counted_once(engine: BindingEngine, dropped: int, duplicates: int) -> bool:
    """Whether one refused datagram was counted once in `dropped` (what the status file and the
    "dropped N" line show). `duplicates` may also count it, when its branch had just finished;
    it never counts a datagram `dropped` did not."""
    return engine.dropped == dropped + 1 and engine.duplicates in (duplicates, duplicates + 1)


def is_match(engine: BindingEngine, data: bytes, source: tuple[str, int], channel: str) -> bool:
    """Whether the acceptance rule (docs/how-it-works.md) lets `data` in, computed apart from
    the engine."""
    if source != engine.server:
        return False
    try:
        response = parse_response(data)
    except SipParseError:
        return False
    for branch, call_id, cseq, kind in outstanding(engine):
        if (
            response.top_via.branch == branch
            and response.call_id == call_id
            and response.cseq == cseq
            and response.cseq_method.upper() == "OPTIONS"
            and (kind in ("inbound", "server-up") or channel == BINDING)
        ):
            return True
    return False


_PRINTABLE = re.compile(r"^[ -~]*$")


def check_line(event: ev.Event) -> None:
    """One printable ASCII line that parses back to the same event and values."""
    line = format_event(event)
    assert _PRINTABLE.match(line), f"unprintable log line {line!r}"
    name, fields = parse_line(line)
    assert name == event.NAME, (name, event.NAME)
    for key, value in event.items():
        got = fields.get(key)
        if value is None:
            assert got is None, (key, got)
        elif isinstance(value, str):
            assert got == value, (key, got, value)


def decode_engine_input(data: bytes) -> tuple[str, tuple[str, int], str, bytes]:
    if not data:
        return SCENARIOS[0], SOURCES[0], BINDING, b""
    flags = data[0]
    return (
        SCENARIOS[(flags >> 3) & 3],
        SOURCES[flags & 3],
        AUX if flags & 4 else BINDING,
        data[1:],
    )


def engine_input(scenario: str, payload: bytes, source: int = 0, aux: bool = False) -> bytes:
    """The engine target's input for `payload` (the inverse of decode_engine_input)."""
    return bytes([(SCENARIOS.index(scenario) << 3) | (4 if aux else 0) | source]) + payload


def engine(data: bytes, copy: Callable[[BindingEngine], BindingEngine] | None = None) -> None:
    scenario, source, channel, payload = decode_engine_input(data)
    eng = (copy or _clone)(_template(scenario))
    assert outstanding(eng), "the scenario has no live transaction"
    matched = is_match(eng, payload, source, channel)
    before, dropped, duplicates = snapshot(eng), eng.dropped, eng.duplicates
    crlf = eng.crlf_received
    eng.receive_datagram(payload, source, 100.0 + 0.05, channel)
    if payload and not payload.strip(b"\r\n") and source == eng.server and channel == BINDING:
        # a CRLF keepalive from the server (RFC 5626 3.5.1): counted as such, never dropped
        assert eng.crlf_received == crlf + 1 and eng.dropped == dropped
        return
    out = eng.datagrams_to_send()
    events = eng.events()
    for event in events:
        check_line(event)
    if not matched:
        assert not out, f"an unmatched datagram made the engine send {len(out)} datagrams"
        assert not events, f"an unmatched datagram caused events {[e.NAME for e in events]}"
        assert snapshot(eng) == before, "an unmatched datagram changed the engine's state"
        assert counted_once(eng, dropped, duplicates), "an unmatched datagram was not counted once"
        return
    # matched: the engine must carry on through its timers without raising
    now = 100.05
    for _ in range(20):
        deadline = eng.next_deadline()
        if deadline is None:
            break
        now = max(now, deadline)
        eng.handle_timer(now)
        eng.datagrams_to_send()
        for event in eng.events():
            check_line(event)


def engine_seed(response: bytes, scenario: str = "learned") -> bytes:
    """A captured answer rewritten to match the scenario's outstanding transaction, as an input."""
    eng = _template(scenario)
    branch, call_id, cseq, kind = outstanding(eng)[0]
    text = response.decode("utf-8", "replace")
    text = re.sub(r"branch=[^;,\s]+", f"branch={branch}", text, count=1)
    text = re.sub(r"(?im)^(call-id|i)[ \t]*:[^\r\n]*", rf"\1: {call_id}", text, count=1)
    text = re.sub(r"(?im)^(cseq)[ \t]*:[ \t]*\d+[ \t]+\w+", rf"\1: {cseq} OPTIONS", text, count=1)
    del kind  # an answer on the binding socket matches every kind
    return engine_input(scenario, text.encode())


TARGETS: dict[str, Callable[[bytes], None]] = {"parser": parser, "engine": engine}
