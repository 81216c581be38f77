"""A binding's answers: what a keepalive's (or a confirmation's) final answer changes (RTT,
status, the server's flow timer, the public mapping in its top Via, reachability), and how an
expiry on a port-preserving NAT can be seen (the status file's `expiry_detection`). Functions of
BindingEngine kept apart from its timers and its cycle; they read and write the engine's fields
(typed by core/cycle.py's Engine protocol, so that this module does not import the engine).
"""

from __future__ import annotations

from natkeepalive import events as ev
from natkeepalive.core import checks
from natkeepalive.core.cycle import (
    ANSWERED,
    ANSWERED_UNPROVEN,
    CHECKING,
    CONFIRM,
    CRLF,
    EXPIRED,
    IDLE,
    INBOUND,
    KEEPALIVE,
    OBSERVE,
    SENT_BY,
    SERVER_UP,
    TABLE,
    UP,
    detected,
    keepalive_answered,
    step,
)
from natkeepalive.core.tracker import format_mapping
from natkeepalive.core.wire import BINDING
from natkeepalive.sip.target import format_hostport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from natkeepalive.core.state import Engine
    from natkeepalive.core.tracker import Mapping
    from natkeepalive.core.transaction import ClientTransaction
    from natkeepalive.sip.memo import AnswerFacts

# A keepalive answered while IDLE (nearly every one) leaves the cycle as it is: no table step.
assert TABLE[(IDLE, ANSWERED)] == TABLE[(IDLE, ANSWERED_UNPROVEN)] == (IDLE, OBSERVE)

# expiry_detection (status): how an expiry on a port-preserving NAT would be seen
DETECT_CHECK, DETECT_PENDING, DETECT_OFF = "inbound-check", "pending", "off (inbound_check: 0)"


def crlf(engine: Engine, now: float) -> None:
    """A CRLF keepalive from the server reached the binding's socket: the binding is alive."""
    engine.crlf_received += 1
    engine.last_inbound_at = now
    if engine.phase in CHECKING:
        for branch, tx in list(engine._tx.items()):
            if tx.kind == INBOUND:
                engine._finish(branch)
                break
    step(engine, CRLF, now)


def receive(
    engine: Engine,
    branch: str,
    cseq: int,
    call_id: str,
    facts: AnswerFacts,
    now: float,
    channel: str,
) -> None:
    """An answer from the server with this top-Via branch and CSeq number."""
    tx = engine._tx.get(branch)
    if tx is None:
        # Every refused datagram is `dropped` (status file, the "dropped N" line): a replay
        # flood of a finished transaction's answer must not be invisible. `duplicates` only
        # tells how many of them carried a branch that just finished.
        engine.dropped += 1
        if engine._just_finished(branch):
            engine.duplicates += 1
        return
    method = facts.cseq_method
    if (
        call_id != tx.key.call_id
        or cseq != tx.key.cseq
        or (method != "OPTIONS" and method.upper() != "OPTIONS")
    ):
        engine.dropped += 1
        return
    if tx.kind != INBOUND and tx.kind != SERVER_UP and channel != BINDING:
        engine.dropped += 1
        return
    final, rtt = tx.on_response(facts.status, now)
    if not final:
        return
    engine._finish(branch)
    if tx.kind == INBOUND:
        step(engine, SENT_BY.outcome(channel), now)
    elif tx.kind == SERVER_UP:
        step(engine, UP, now)
    else:
        apply_answer(engine, tx, facts, rtt, now)


def apply_answer(
    engine: Engine, tx: ClientTransaction, facts: AnswerFacts, rtt: float, now: float
) -> None:
    """A keepalive's or confirmation's final answer: RTT, status, flow timer, the mapping in
    its Via, reachability; a keepalive's steps the cycle too."""
    engine._send_failing = False
    engine.responses += 1
    rtt_ms = rtt * 1000.0
    engine.last_rtt_ms = round(rtt_ms, 3)
    engine.last_status = facts.status
    idle_s = 0.0 if engine.last_response_at is None else tx.first_sent - engine.last_response_at
    engine.last_response_at = now
    ok = not engine.settings.require_2xx or 200 <= facts.status < 300
    flow_timer = facts.flow_timer
    if flow_timer is not None and flow_timer > 0 and flow_timer != engine.flow_timer:
        engine.flow_timer = float(flow_timer)
        if engine.interval > engine.flow_timer:
            engine.set_interval(engine.flow_timer, "flow-timer", now)
    received = facts.received
    if received is None:
        if facts.rport is not None:
            # a server that reads the Via (it wrote rport) adds `received` whenever the
            # source address differs from the sent-by host (RFC 3261 §18.2.1): none, so
            # they are the same (no NAT on the way, as Kamailio answers then)
            received = facts.host
        else:
            # no rport value either (SIPp): the server may not read the Via at all, and the
            # sent-by host is only what we wrote: the address stays what it was, or unknown
            learned = engine.tracker.mapping
            received = None if learned is None else learned[0]
    seen: Mapping = (received, facts.rport)
    local, server = engine.local, engine.server
    if (
        facts.received is not None
        and local is not None
        and server is not None
        and facts.received == local[0]
        and checks.private_address(local[0])
        and not checks.private_address(server[0])
    ):
        # A server across the internet cannot have seen a private source address: a SIP ALG on
        # the router rewrote `received`/`rport` back to ours, so the public mapping is unknown,
        # and an inbound check would be answered through the ALG whatever the binding's state.
        if engine.tracker.rewritten is None:
            engine.queued_events.append(
                ev.InboundCheckUnsupported(
                    engine.name,
                    format_hostport(*server),
                    checks.alg_reason(local[0]),
                    checks.ALG_REMEDY,
                )
            )
        engine.tracker.rewritten = local[0]
    elif facts.received is not None:
        engine.tracker.rewritten = None  # the ALG is gone: learn the mapping again
    if engine.debug_events:
        engine.queued_events.append(
            ev.ProbeAnswered(
                engine.name, tx.key.cseq, facts.status, round(rtt_ms, 3), format_mapping(seen) or ""
            )
        )
    if engine._stale(tx):
        return
    if tx.kind == KEEPALIVE and engine.phase != IDLE:  # IDLE: the fast path, pinned below
        keepalive_answered(engine, now)
    assert engine.local is not None
    tracker = engine.tracker
    changes_before = tracker.changes + tracker.expiries
    bare = (
        facts.rport_bare
        and seen[0] is not None
        and engine._guess != "failed"
        and engine.settings.inbound_check > 0
    )
    found: list[ev.Event] = []
    confirm = False
    if tracker.rewritten is None:
        found, confirm = tracker.observe(
            seen, now, idle_s, engine.local, expiry_known=engine.phase == EXPIRED, defer_rport=bare
        )
    if bare and engine._guess == "" and tracker.mapping is not None and tracker.mapping[1] is None:
        engine._guess = "pending"
        engine._check_next = True
    if found:  # a change or an expiry always comes with its event
        engine.queued_events.extend(found)
        if tracker.changes + tracker.expiries != changes_before:
            engine._renew(now)
    transition = (
        engine.reach.feed(rtt_ms)
        if ok
        else engine.reach.feed(None, f"answered {facts.status}, not 2xx (require_2xx)")
    )
    if transition is not None:
        engine.queued_events.append(transition)
    if confirm:
        engine._send_probe(CONFIRM, now)


def expiry_detection(engine: Engine) -> str:
    """How an expiry on a port-preserving NAT is seen (the status file's field):
    the check method that proved the binding (`inbound-check`, `relay-check`, `stun-check`),
    `pending` until one did, `remap-only: <why>` (a remap to another port is still seen; why
    no method works), `off (inbound_check: 0)` or `off (check: off)`."""
    if engine.settings.inbound_check <= 0:
        return DETECT_OFF
    if engine.settings.check == "off":
        return "off (check: off)"
    if engine.tracker.rewritten is not None:
        reason = checks.alg_reason(engine.tracker.rewritten)
        return f"unsupported: {reason}; the public address is unknown"
    if engine.detection_note is not None:
        return f"remap-only: {engine.detection_note}"
    if engine._proven:
        return detected(engine)
    mapping = engine.tracker.mapping
    if mapping is None and engine.tracker.rport_reported:
        return "unsupported: server sends no received and no rport value"
    if mapping is not None and mapping[0] is None and mapping[1] is not None:
        return "remap-only: server sends no received (the public address is unknown)"
    if mapping is not None and mapping[1] is None and engine._guess in ("", "failed"):
        return (
            "unsupported: server sends no rport value"
            if engine._guess == "failed" or mapping[0] is None
            else "unsupported: server sends no rport"
        )
    return DETECT_PENDING
