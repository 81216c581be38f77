"""The keepalive cycle of one binding as a table, and the seam for the inbound check's method.

Phases (where the cycle stands; the engine holds exactly one):
- IDLE: no check out; the next cycle starts when a keepalive is due.
- CHECK: a check is out, aimed at the learned public mapping; the server is not yet shown up.
- CHECK_UP: the same, and the SERVER_UP probe was answered: the server was up while the check's
  copies went, so the check's silence would mean the binding is lost.
- GUESS: a check is out, aimed at a guessed public port (a bare `rport`: the local port).
- SUSPECT: the check went unanswered while the server was up; the keepalive that followed it
  decides: answered means expired (the server is there, the binding was not), unanswered means
  the server (or the WAN) went down meanwhile.
- EXPIRED: that keepalive was answered and the expiry reported: a confirmation probe of a new
  mapping in the same cycle must not report the expiry a second time (as a remap).

Outcomes (what the engine feeds the table):
- DUE_CHECK, DUE_GUESS, DUE_KEEPALIVE: a keepalive is due and the cycle starts, with a check (at
  the learned mapping, or at the guessed port) when one is due and can go, else with the
  keepalive itself.
- UP: the SERVER_UP probe was answered.
- ALIVE: the check was answered on the BINDING socket; CRLF: the server's CRLF keepalive reached
  the binding (alive, but it proves nothing about the server's ability to answer the check).
- FORCED: the check was answered on the AUX socket: the server forces rport (for the relayed
  check also its silence before it was ever relayed; for the STUN check, RESPONSE-PORT not
  honoured): the method does not work with this server.
- SILENT: the check timed out after all its retransmissions.
- ANSWERED, ANSWERED_UNPROVEN: a keepalive's answer (the newest outcome) after a check was ever
  answered on the binding in this flow, or before.
- TIMEOUT: a keepalive timed out (the newest outcome).

Rules:
- TABLE maps every possible (phase, outcome) to (next phase, action); IMPOSSIBLE lists the rest
  with why. tests/unit test that both together cover every pair exactly once.
- A check's end (ALIVE, CRLF, FORCED, SILENT) always sends the keepalive it held back.
- A new flow returns to IDLE whatever the phase (its transactions are aborted).
- On the check's first retransmission the SERVER_UP probe goes with it (on the check's schedule):
  a check answered at once costs none. That is the check's own timer, not a table step.
- A late SERVER_UP answer outside a check (its check already ended) proves nothing about the next
  check and is ignored; a new check that finds its predecessor's probe still out takes its
  answer, since the server was up when both went.
- A cycle that starts while SUSPECT with a check drops the suspicion: the new check decides.
- An expiry (`binding-expired detected=inbound-check`) is reported only once a check was
  answered on the BINDING socket in this flow: a server that never answers the check (it ignores
  a sent-by that is not the source) is given up after UNPROVEN_CHECKS, and reported. A server
  that answers it on the AUX socket forces rport: reported once with what would help, and never
  checked again.
- The engine's _start_cycle (the DUE outcomes), step() and keepalive_answered() below are the
  only writers of its phase besides a new flow. A keepalive answered while IDLE (nearly every
  one) skips the table: a fast path pinned to its row by an assertion in core/answers.py.

The check method (how the check datagram is built, how its answer is recognised) is a seam:
SentByCheck is the first, an OPTIONS from the AUX socket whose Via sent-by is the public mapping,
without rport, so that a server that answers to the sent-by reaches the binding (RFC 3261
18.2.2). The relayed check and the STUN check (RFC 5780), and `check: auto`'s choice among them,
are in core/checks.py and core/methods.py: they build their own datagrams, recognise their own
answers (a STUN answer, the relayed request arriving on the binding) before the SIP parse, and
feed this table the same outcomes (ALIVE, FORCED, SILENT, UP). RPORT_FORCED lets core/methods.py
go on to the next method; REPORT_EXPIRY names the method that proved the binding.
"""

from __future__ import annotations

from natkeepalive import events as ev
from natkeepalive.core import checks
from natkeepalive.core.tracker import format_mapping
from natkeepalive.core.wire import BINDING
from natkeepalive.sip.target import format_hostport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from natkeepalive.core.state import Engine
    from natkeepalive.sip.request import OptionsTemplate

    # template(via_host, via_port, rport): the binding's OPTIONS with that Via, to render
    Templates = Callable[[str, int, bool], OptionsTemplate]

# probe kinds (ClientTransaction.kind, the probe-sent event's kind)
KEEPALIVE, CONFIRM, INBOUND = "keepalive", "confirm", "inbound"
# An OPTIONS from the AUX socket with rport, sent with a check's first retransmission and then
# with each of its copies: its answer (to the AUX socket's own mapping) tells that the server was
# up when a copy of the check went, so that the check's silence means the binding is lost, not
# that the server was down.
SERVER_UP = "server-up"

# checks left unanswered (each followed by an answered keepalive) before a check was ever answered
# on the binding: the server ignores them, and silence would only ever mean a false expiry
UNPROVEN_CHECKS = 3
FORCES_RPORT = checks.FORCES_RPORT
NO_CHECK_ANSWER = checks.NO_CHECK_ANSWER
REMEDY = checks.REMEDY

IDLE, CHECK, CHECK_UP, GUESS, SUSPECT, EXPIRED = (
    "idle",
    "check",
    "check-up",
    "guess",
    "suspect",
    "expired",
)
PHASES = (IDLE, CHECK, CHECK_UP, GUESS, SUSPECT, EXPIRED)
CHECKING = frozenset((CHECK, CHECK_UP, GUESS))  # a check is out: the keepalive waits

DUE_CHECK, DUE_GUESS, DUE_KEEPALIVE = "due-check", "due-guess", "due-keepalive"
UP, ALIVE, CRLF, FORCED, SILENT = "up", "alive", "crlf", "forced", "silent"
ANSWERED, ANSWERED_UNPROVEN, TIMEOUT = "answered", "answered-unproven", "timeout"
OUTCOMES = (
    DUE_CHECK,
    DUE_GUESS,
    DUE_KEEPALIVE,
    UP,
    ALIVE,
    CRLF,
    FORCED,
    SILENT,
    ANSWERED,
    ANSWERED_UNPROVEN,
    TIMEOUT,
)

# actions
NOTHING = "nothing"
SEND_CHECK = "send-check"  # the check goes; the keepalive waits for its end
SEND_KEEPALIVE = "send-keepalive"
OBSERVE = "observe"  # apply the keepalive's answer to the mapping and reachability
TRIGGER = "trigger"  # a silence: the NAT may have rebooted; the next cycle starts with a check
BINDING_ALIVE = "binding-alive"  # proof (unless a CRLF) that the server can answer the check
PORT_RIGHT = "port-right"  # alive, and the guessed port is the public one
RPORT_FORCED = "rport-forced"  # reported once per server; no check goes to it again
RPORT_FORCED_GUESS = "rport-forced-guess"  # the same, and the port guess is given up
NO_PROOF = "no-proof"  # silent, but the server may have been down: nothing is concluded
PORT_WRONG = "port-wrong"  # silent on a guessed port: the port guess is given up
SUSPECTED = "suspected"  # silent while the server was up: the keepalive decides
REPORT_EXPIRY = "report-expiry"  # binding-expired detected=inbound-check, then observe
COUNT_UNPROVEN = "count-unproven"  # not an expiry: toward UNPROVEN_CHECKS, then observe

_CHECK_ENDS = {ALIVE: BINDING_ALIVE, CRLF: BINDING_ALIVE, FORCED: RPORT_FORCED}

TABLE: dict[tuple[str, str], tuple[str, str]] = {}
for _phase in (IDLE, SUSPECT, EXPIRED):
    TABLE[(_phase, DUE_CHECK)] = (CHECK, SEND_CHECK)
    TABLE[(_phase, DUE_GUESS)] = (GUESS, SEND_CHECK)
    TABLE[(_phase, DUE_KEEPALIVE)] = (_phase, SEND_KEEPALIVE)
    TABLE[(_phase, UP)] = (_phase, NOTHING)
    TABLE[(_phase, CRLF)] = (_phase, NOTHING)
for _phase in CHECKING:
    TABLE[(_phase, UP)] = (GUESS if _phase == GUESS else CHECK_UP, NOTHING)
    # an older keepalive, still out when the check went, is answered or times out
    TABLE[(_phase, ANSWERED)] = TABLE[(_phase, ANSWERED_UNPROVEN)] = (_phase, OBSERVE)
    TABLE[(_phase, TIMEOUT)] = (_phase, TRIGGER)
    TABLE[(_phase, SILENT)] = (IDLE, NO_PROOF)
    for _outcome, _action in _CHECK_ENDS.items():
        TABLE[(_phase, _outcome)] = (IDLE, _action)
TABLE.update(
    {
        (IDLE, ANSWERED): (IDLE, OBSERVE),
        (IDLE, ANSWERED_UNPROVEN): (IDLE, OBSERVE),
        (IDLE, TIMEOUT): (IDLE, TRIGGER),
        (CHECK_UP, SILENT): (SUSPECT, SUSPECTED),
        (GUESS, ALIVE): (IDLE, PORT_RIGHT),
        (GUESS, CRLF): (IDLE, PORT_RIGHT),
        (GUESS, FORCED): (IDLE, RPORT_FORCED_GUESS),
        (GUESS, SILENT): (IDLE, PORT_WRONG),
        (SUSPECT, ANSWERED): (EXPIRED, REPORT_EXPIRY),
        (SUSPECT, ANSWERED_UNPROVEN): (IDLE, COUNT_UNPROVEN),
        (SUSPECT, TIMEOUT): (IDLE, TRIGGER),
        (EXPIRED, ANSWERED): (IDLE, OBSERVE),
        (EXPIRED, ANSWERED_UNPROVEN): (IDLE, OBSERVE),
        (EXPIRED, TIMEOUT): (EXPIRED, TRIGGER),
    }
)
del _phase, _outcome, _action

_NO_CHECK_OUT = "no check is out, so nothing can end one"
_CHECK_HOLDS = "the keepalive waits while a check is out: no cycle starts"
IMPOSSIBLE: dict[tuple[str, str], str] = {}
for _phase in (IDLE, SUSPECT, EXPIRED):
    for _outcome in (ALIVE, FORCED, SILENT):
        IMPOSSIBLE[(_phase, _outcome)] = _NO_CHECK_OUT
for _phase in CHECKING:
    for _outcome in (DUE_CHECK, DUE_GUESS, DUE_KEEPALIVE):
        IMPOSSIBLE[(_phase, _outcome)] = _CHECK_HOLDS
del _phase, _outcome


class SentByCheck:
    """Today's check: an OPTIONS from the AUX socket whose Via sent-by is the public mapping (or
    the guessed port), without rport. Answered on the binding: a server that answers to the
    sent-by reached it; answered on the AUX socket: the server answers to the source (forces
    rport) and this method cannot test the binding."""

    __slots__ = ()

    def request(
        self, template: Templates, public_host: str, port: int, branch: str, cseq: int
    ) -> bytes:
        return template(public_host, port, False).render(branch, cseq)

    def outcome(self, channel: str) -> str:
        return ALIVE if channel == BINDING else FORCED


SENT_BY = SentByCheck()


def step(engine: Engine, outcome: str, now: float) -> None:
    """Move `engine`'s cycle by `outcome` (a keepalive's answer: keepalive_answered)."""
    engine.phase, action = TABLE[(engine.phase, outcome)]
    if action == NOTHING:
        return
    if action == TRIGGER:
        # a silence: the NAT may have rebooted, so the cycle that reaches the server again
        # starts with a check (a keepalive first would re-create the binding unseen)
        engine._check_next = True
        return
    if action in (BINDING_ALIVE, PORT_RIGHT):
        engine.inbound_result = "alive"
        engine.last_response_at = engine.last_inbound_at = now
        if outcome == ALIVE:  # the check's own answer, not a CRLF
            engine._proven = True
            engine._unproven = 0
        if action == PORT_RIGHT and engine.local is not None:
            engine._guess = "confirmed"
            engine.tracker.refine_port(engine.local[1])
    elif action in (RPORT_FORCED, RPORT_FORCED_GUESS):
        # the method does not work with this server: the next one (check: auto), or why not
        engine.inbound_result = "unsupported"
        if action == RPORT_FORCED_GUESS:
            engine._guess = "failed"
            engine.tracker.rport_unsupported(engine.queued_events)
        if forced(engine, now):
            return  # the next method's check went at once; the keepalive waits for it
    elif action == PORT_WRONG:
        # the port is not the local one (or the server ignores the check): not an expiry
        engine.inbound_result = "silent"
        engine._guess = "failed"
        engine.tracker.rport_unsupported(engine.queued_events)
    else:
        assert action in (NO_PROOF, SUSPECTED), action
        engine.inbound_result = "silent"
        if action == SUSPECTED:
            # a check needs a learned mapping, which only an answer in this flow brings
            assert engine.last_response_at is not None
            engine._suspect_idle = now - engine.last_response_at
    engine._send_keepalive(now)  # every end of a check: the keepalive it held back


def count_unproven(engine: Engine) -> None:
    """The keepalive after a silent check was answered before a check was ever answered on
    the binding: a server that ignores the check would make every cycle a false expiry;
    after UNPROVEN_CHECKS such cycles it is given up."""
    engine._unproven += 1
    if (
        engine._unproven >= UNPROVEN_CHECKS
        and engine.detection_note is None
        and engine.server is not None
    ):
        engine._unproven = 0  # the next method (check: auto) starts its own count
        method_failed(
            engine, checks.STUN_SILENT if engine._plan.method == checks.STUN else NO_CHECK_ANSWER
        )


def keepalive_answered(engine: Engine, now: float) -> None:
    """A keepalive's answer (the newest outcome) moves the cycle: after a suspicion it decides."""
    engine.phase, action = TABLE[(engine.phase, ANSWERED if engine._proven else ANSWERED_UNPROVEN)]
    if action == REPORT_EXPIRY:
        # SUSPECT came from a check, which needs a learned mapping; a new flow ends it
        assert engine.tracker.mapping is not None
        engine.tracker.expiries += 1
        engine.queued_events.append(
            ev.BindingExpired(
                engine.name,
                format_mapping(engine.tracker.mapping) or "",
                round(engine._suspect_idle, 1),
                detected(engine),
            )
        )
        engine._renew(now)
    elif action == COUNT_UNPROVEN:
        count_unproven(engine)
    else:
        assert action == OBSERVE, action


# ------------------------------------------------------------------ which check method


def check_due(engine: Engine) -> bool:
    """Whether a check can go: on, and what its method needs known (sent-by: the public address
    and port, or a port guess, and the server not known to force rport or to ignore the check;
    relay: the public address and port; stun: the mapped port toward the STUN server). While
    unreachable too: the first cycle that reaches a server coming back must check before its
    keepalive."""
    plan = engine._plan
    method = plan.method
    if engine.settings.inbound_check <= 0 or method is None or engine.detection_note is not None:
        return False
    if method == checks.STUN:
        return plan.stun_mapped is not None and plan.stun_server is not None
    mapping = engine.tracker.mapping
    if mapping is None or mapping[0] is None:
        return False
    if method == checks.RELAY:
        return mapping[1] is not None
    if engine.server in engine.inbound_unsupported:
        method_failed(engine, FORCES_RPORT)
        return check_due(engine)
    return mapping[1] is not None or engine._guess == "pending"


def method_failed(engine: Engine, why: str) -> None:
    """The method in use cannot prove an expiry with this server: the next (`check: auto`), or,
    none left, remap-only, reported once with every reason and what would help."""
    plan = engine._plan
    if plan.fail(why) is None and engine.detection_note is None and engine.server is not None:
        engine.detection_note = plan.note
        engine.queued_events.append(
            ev.InboundCheckUnsupported(
                engine.name, format_hostport(*engine.server), plan.note, checks.REMEDY
            )
        )


def forced(engine: Engine, now: float) -> bool:
    """The check was answered on the AUX socket (or a relayed check never arrived): this server
    does not support the method. Whether the next method's check went at once (the relayed
    check, right after the sent-by one: the keepalive still waits)."""
    method = engine._plan.method
    if (
        method == checks.SENT_BY
        and engine.server is not None
        and engine.server not in engine.inbound_unsupported
    ):
        engine.inbound_unsupported += (engine.server,)
    method_failed(
        engine,
        checks.STUN_IGNORES_PORT
        if method == checks.STUN
        else checks.NO_RELAY
        if method == checks.RELAY
        else checks.FORCES_RPORT,
    )
    if engine._plan.method == checks.RELAY and check_due(engine):
        engine._check_next = True
        engine._start_cycle(now)
        return engine.phase in CHECKING
    return False


def detected(engine: Engine) -> str:
    """binding-expired's `detected` and expiry_detection's value for the method in use."""
    return checks.DETECTED.get(engine._plan.method or checks.SENT_BY, "inbound-check")
