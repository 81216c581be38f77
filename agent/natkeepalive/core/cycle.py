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
- FORCED: the check was answered on the AUX socket: the server forces rport.
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
SentByCheck is today's, an OPTIONS from the AUX socket whose Via sent-by is the public mapping,
without rport, so that a server that answers to the sent-by reaches the binding (RFC 3261
18.2.2). Another method (a STUN binding request asking for an answer from another address and
port, RFC 5780; a check relayed through a cooperating responder) implements the same two calls:
`request` (the bytes to send from the AUX socket; the engine's _send_probe calls it) and
`outcome` (which of ALIVE and FORCED a final answer matched to the check's transaction means;
answers.receive calls it). A method whose answers are not SIP recognises them, by its own
transaction key, before the SIP parse in receive_datagram. Phases, outcomes, the SERVER_UP proof
and the table stay the same for every method.
"""

from __future__ import annotations

from natkeepalive import events as ev
from natkeepalive.core.tracker import format_mapping
from natkeepalive.core.wire import BINDING
from natkeepalive.sip.target import format_hostport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Protocol

    from natkeepalive.config.model import ProbeSettings
    from natkeepalive.core.reachability import Reachability
    from natkeepalive.core.tracker import Tracker
    from natkeepalive.core.transaction import ClientTransaction
    from natkeepalive.core.wire import Address
    from natkeepalive.sip.request import OptionsTemplate

    # template(via_host, via_port, rport): the binding's OPTIONS with that Via, to render
    Templates = Callable[[str, int, bool], OptionsTemplate]

    class Engine(Protocol):
        """What the cycle's steps here and in core/answers.py use of a BindingEngine: a
        structural type, so that neither module imports the engine (which imports both)."""

        name: str
        settings: ProbeSettings
        server: Address | None
        local: Address | None
        phase: str
        tracker: Tracker
        reach: Reachability
        queued_events: list[ev.Event]
        interval: float
        flow_timer: float | None
        inbound_result: str | None
        inbound_unsupported: tuple[Address, ...]
        detection_note: str | None
        last_response_at: float | None
        last_inbound_at: float | None
        last_rtt_ms: float | None
        last_status: int | None
        crlf_received: int
        responses: int
        dropped: int
        duplicates: int
        debug_events: bool
        _tx: dict[str, ClientTransaction]
        _check_next: bool
        _guess: str
        _proven: bool
        _unproven: int
        _suspect_idle: float
        _send_failing: bool

        def set_interval(self, interval: float, reason: str, now: float) -> None: ...
        def _send_keepalive(self, now: float, draw: float | None = None) -> None: ...
        def _send_probe(self, kind: str, now: float, *, timeout: float | None = None,
                        t1: float = ...) -> None: ...
        def _renew(self, now: float) -> None: ...
        def _finish(self, branch: str) -> None: ...
        def _just_finished(self, branch: str) -> bool: ...
        def _stale(self, tx: ClientTransaction) -> bool: ...

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
FORCES_RPORT = "server forces rport"
NO_CHECK_ANSWER = "server does not answer the check"
REMEDY = ("expiry on a port-preserving NAT cannot be seen, only a remap to another port; a server "
          "that answers to the Via sent-by port when a request has no rport (RFC 3261 18.2.2) "
          "would allow it")

IDLE, CHECK, CHECK_UP, GUESS, SUSPECT, EXPIRED = (
    "idle", "check", "check-up", "guess", "suspect", "expired")
PHASES = (IDLE, CHECK, CHECK_UP, GUESS, SUSPECT, EXPIRED)
CHECKING = frozenset((CHECK, CHECK_UP, GUESS))  # a check is out: the keepalive waits

DUE_CHECK, DUE_GUESS, DUE_KEEPALIVE = "due-check", "due-guess", "due-keepalive"
UP, ALIVE, CRLF, FORCED, SILENT = "up", "alive", "crlf", "forced", "silent"
ANSWERED, ANSWERED_UNPROVEN, TIMEOUT = "answered", "answered-unproven", "timeout"
OUTCOMES = (DUE_CHECK, DUE_GUESS, DUE_KEEPALIVE, UP, ALIVE, CRLF, FORCED, SILENT, ANSWERED,
            ANSWERED_UNPROVEN, TIMEOUT)

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
TABLE.update({
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
})
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

    def request(self, template: Templates, public_host: str, port: int, branch: str,
                cseq: int) -> bytes:
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
        engine.inbound_result = "unsupported"
        if action == RPORT_FORCED_GUESS:
            engine._guess = "failed"
            engine.tracker.rport_unsupported(engine.queued_events)
        if engine.server is not None and engine.server not in engine.inbound_unsupported:
            engine.inbound_unsupported += (engine.server,)
            engine.queued_events.append(ev.InboundCheckUnsupported(
                engine.name, format_hostport(*engine.server), FORCES_RPORT, REMEDY))
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
    if engine._unproven >= UNPROVEN_CHECKS and engine.detection_note is None \
            and engine.server is not None:
        engine.detection_note = NO_CHECK_ANSWER
        engine.queued_events.append(ev.InboundCheckUnsupported(
            engine.name, format_hostport(*engine.server), NO_CHECK_ANSWER, REMEDY))


def keepalive_answered(engine: Engine, now: float) -> None:
    """A keepalive's answer (the newest outcome) moves the cycle: after a suspicion it decides."""
    engine.phase, action = TABLE[(engine.phase, ANSWERED if engine._proven
                                else ANSWERED_UNPROVEN)]
    if action == REPORT_EXPIRY:
        # SUSPECT came from a check, which needs a learned mapping; a new flow ends it
        assert engine.tracker.mapping is not None
        engine.tracker.expiries += 1
        engine.queued_events.append(ev.BindingExpired(
            engine.name, format_mapping(engine.tracker.mapping) or "",
            round(engine._suspect_idle, 1), "inbound-check"))
        engine._renew(now)
    elif action == COUNT_UNPROVEN:
        count_unproven(engine)
    else:
        assert action == OBSERVE, action
