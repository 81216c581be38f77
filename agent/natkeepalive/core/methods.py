"""The check methods in a binding's engine: their datagrams when the check is not the sent-by
one (the relayed check, the STUN check and the STUN keepalive), and what they bring that is not
the SIP server's answer (a STUN answer, the relayed request). Functions of the engine
(core/state.py), like core/answers.py; what the methods are is in core/checks.py, which one the
next check uses (`check`, and `check: auto`'s fallbacks) in core/cycle.py, whose table they feed
the same outcomes for every method: ALIVE, FORCED ("this server does not support it"), SILENT,
UP.
"""

from __future__ import annotations

from natkeepalive import events as ev
from natkeepalive.core import checks
from natkeepalive.core.checks import RELAY, STUN, CheckPlan
from natkeepalive.core.cycle import (
    ALIVE,
    CHECKING,
    FORCED,
    INBOUND,
    SERVER_UP,
    SILENT,
    UP,
    method_failed,
    step,
)
from natkeepalive.core.transaction import ClientTransaction, TransactionKey
from natkeepalive.core.wire import AUX, BINDING, Datagram
from natkeepalive.sip.request import options_template

TYPE_CHECKING = False
if TYPE_CHECKING:
    from natkeepalive.core.state import Engine
    from natkeepalive.core.wire import Address
    from natkeepalive.sip.request import OptionsTemplate


def new_plan(engine: Engine) -> CheckPlan:
    """A fresh plan for the engine's settings (at start, for a new server: every method may be
    tried again), keeping the STUN server's address."""
    settings = engine.settings
    return CheckPlan(settings.check, settings.stun_server is not None, engine.stun_server)


def silent_outcome(engine: Engine) -> str:
    """What a silent check means: for a relayed check never seen arrive, that the server does
    not relay it (FORCED); else SILENT (the cycle decides with the server-up proof)."""
    return FORCED if engine._plan.method == RELAY and not engine._proven else SILENT


def set_stun_server(engine: Engine, address: Address | None) -> None:
    """The STUN server's resolved address (stun_server), or None while unknown."""
    if address != engine._plan.stun_server:
        engine._plan.stun_server = address
        engine._plan.stun_mapped = None


# ------------------------------------------------------------------ datagrams


def check_request(engine: Engine, kind: str, now: float, timeout: float, t1: float) -> bool:
    """The check or server-up probe of the stun method (a STUN transaction to the STUN server,
    from the AUX socket), put out; False for the SIP methods, which the engine sends."""
    plan = engine._plan
    if plan.method != STUN or plan.stun_server is None:
        return False
    txid = checks.stun_txid(engine.call_id, engine.cseq)
    port = None
    if kind == INBOUND:
        assert plan.stun_mapped is not None
        port = plan.stun_mapped[1]
    payload = checks.stun_request(txid, port)
    key = txid.hex()
    engine._tx[key] = ClientTransaction(
        TransactionKey(key, f"{engine.call_id}-{engine.cseq}", engine.cseq),
        payload,
        kind,
        now,
        timeout,
        t1,
    )
    engine.outbox.append(Datagram(AUX, payload, plan.stun_server))
    engine.probes_sent += 1
    if engine.debug_events:
        engine.queued_events.append(ev.ProbeSent(engine.name, engine.cseq, 1, kind))
    return True


def relay_template(engine: Engine, host: str, port: int) -> OptionsTemplate:
    """The relayed check: Request-URI and To the binding's public address:port, our Via with
    rport (the server's own answer comes back to the AUX socket)."""
    key = ("relay:" + host, port, True)
    template = engine._templates.get(key)
    if template is None:
        assert engine.local is not None
        if len(engine._templates) >= 4:  # as the engine's own: old mappings, a handful
            engine._templates.clear()
        template = engine._templates[key] = options_template(
            uri_host=host,
            uri_port=port,
            via_host=engine.local[0],
            via_port=engine.local[1],
            call_id=engine.call_id,
            from_tag=engine.from_tag,
            rport=True,
            max_forwards=engine.settings.max_forwards,
            user_agent=engine.settings.user_agent,
        )
    return template


def stun_keepalive(engine: Engine) -> None:
    """With the stun method: a Binding request from the BINDING socket beside each keepalive,
    which keeps the mapping toward the STUN server and tells its port (not a transaction: a
    lost one is made up by the next)."""
    plan = engine._plan
    if plan.stun_server is None:  # not resolved (yet)
        return
    if plan.stun_txid:
        plan.stun_unanswered += 1
        if plan.stun_unanswered >= checks.STUN_UNANSWERED and plan.stun_mapped is None:
            plan.stun_txid = b""
            method_failed(engine, checks.STUN_SILENT)
            return
    plan.stun_txid = checks.stun_txid(engine.call_id, engine.cseq)
    engine.outbox.append(Datagram(BINDING, checks.stun_request(plan.stun_txid), plan.stun_server))


def retransmit(engine: Engine, channel: str, payload: bytes) -> None:
    """A transaction's copy: a STUN one goes to the STUN server, a SIP one to the server."""
    stun_server = engine._plan.stun_server
    if payload[0] < 4 and stun_server is not None:  # STUN's first byte (RFC 7983)
        engine.outbox.append(Datagram(channel, payload, stun_server))
    else:
        engine._send(channel, payload)


# ------------------------------------------------------------------ what comes in


def receive_other(engine: Engine, data: bytes, source: Address, now: float, channel: str) -> bool:
    """What a check method brings that is not the server's answer: a STUN answer from the STUN
    server, or on the BINDING socket the relayed check (from the server's address). Whether it
    was one (else the datagram is dropped)."""
    plan = engine._plan
    if plan.stun_server is not None and source == plan.stun_server:
        return receive_stun(engine, data, now, channel)
    if (
        channel != BINDING
        or plan.method != RELAY
        or engine.server is None
        or source[0] != engine.server[0]
    ):
        return False
    request = checks.relayed_request(data)
    if request is None:
        return False
    # our own relayed check: its Via (below the proxy's) carries the branch of the check out,
    # or of one that just ended (a copy: the proxy did not get our 200); nothing else is
    # answered
    branches = [via.branch for via in request.vias if via.branch]
    tx = next((engine._tx[b] for b in branches if b in engine._tx), None)
    if tx is not None and (
        tx.kind != INBOUND or request.call_id != tx.key.call_id or request.cseq != tx.key.cseq
    ):
        return False
    if tx is None and (
        request.call_id.rpartition("-")[0] != engine.call_id
        or not any(engine._just_finished(b) for b in branches)
    ):
        return False
    answer, destination = checks.answer_relayed(request, source, engine.from_tag)
    engine.outbox.append(Datagram(BINDING, answer, destination))
    if tx is not None:
        engine._finish(tx.key.branch)
        step(engine, ALIVE, now)
    return True


def receive_stun(engine: Engine, data: bytes, now: float, channel: str) -> bool:
    """A datagram from the STUN server: the answer to a STUN keepalive (its mapped port), to the
    check (on the BINDING socket: alive; on AUX: RESPONSE-PORT was not honoured), or to the
    server-up probe. Whether it was one."""
    answer = checks.stun_answer(data)
    if answer is None:
        return False
    txid, mapped = answer
    plan = engine._plan
    if channel == BINDING:
        first = plan.stun_mapped is None
        if plan.stun_seen(txid, mapped):
            if (
                first
                and plan.stun_mapped is not None
                and not engine._proven
                and engine.phase not in CHECKING
                and engine.next_keepalive is not None
            ):
                # the first mapping: check now, so that whether the STUN server proves the
                # binding is known within seconds, as for the other methods
                engine._check_next = True
                engine._bring_forward(now)
            return True
    branch = txid.hex()
    tx = engine._tx.get(branch)
    if tx is None or (tx.kind != INBOUND and tx.kind != SERVER_UP):
        if engine._just_finished(branch):
            engine.duplicates += 1
        return False
    engine._finish(branch)
    if tx.kind == SERVER_UP:
        step(engine, UP, now)
    else:
        step(engine, FORCED if channel == AUX else ALIVE, now)
    return True
