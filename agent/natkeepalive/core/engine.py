"""One binding's keepalive engine, sans-I/O: bytes and `now` in; datagrams, events and the next
deadline out (the shape of aioquic's connection). The runtime owns sockets, clocks and randomness.

Rules:
- A cycle starts when a keepalive is due. When an inbound check is due too (every
  `inbound_check` keepalives, or at once after a trigger; the public address and port known, the
  server not known to force rport) the cycle first sends the check from the AUX socket, then the
  keepalive when the check ends: the check runs when the binding has been idle longest, and
  before the keepalive that would silently re-create a lost binding on a port-preserving NAT.
- Triggers, each making the next cycle start with a check: a keepalive that timed out (a silence:
  the NAT may have rebooted; the server's comeback after an outage is then checked first), an
  interface event or SIGUSR2 (keepalive_now), and a bare `rport` (the port is then guessed to be
  the local one and the check proves it, or not).
- The check's answer on the BINDING socket proves the binding alive (and that the server can
  prove it); on the AUX socket it proves the server forces rport (reported once with what would
  help, never tried again for that server). Silence after all retransmissions makes the binding
  suspect only if the SERVER_UP probe sent with the check's copies (from its first
  retransmission on) was answered; then the keepalive that follows must be answered too before
  `binding-expired detected=inbound-check` is reported (else the server is simply down), and
  only once a check was answered on the BINDING socket since the flow began: a server that never
  answers the check (it ignores a sent-by that is not the source) is given up after
  UNPROVEN_CHECKS, and reported.
- Every request has a Call-ID of its own (RFC 3261 §8.1.1.4): the binding's random prefix and
  the CSeq number. A CRLF or double-CRLF datagram from the server on the BINDING socket is a
  keepalive, not a malformed answer (RFC 5626 §3.5.1; linphone sends them): it proves inbound
  packets reach the binding, and ends a pending check as alive.
- Keepalives go `interval` (jittered down by up to `jitter`) after the previous one was sent, or
  `retry_interval` while unreachable. A keepalive may go as soon as its window opens (the shortest
  wait the jitter allows, or KEEPALIVE_EARLY before a deadline that was not drawn) when the loop
  offers it, with the loop's draw for its next wait: bindings sent in one wake-up stay together.
  A new flow (start, new server or local address, a changed or expired binding) gets a second
  keepalive PROMOTE_DELAY after the first, so a Linux NAT moves the flow to its long stream
  timeout; with an interval (or retry_interval while unreachable) no longer than that, the next
  keepalive comes on its usual wait, which is never stretched to PROMOTE_DELAY.
- Answers are accepted only from the server's address and port, with a known branch and the same
  Call-ID and CSeq; everything else (late duplicates and replays too) is counted as dropped and
  changes nothing else.
- Outcomes (an answer or a timeout) move reachability and the mapping in probe order: one of a
  probe older than a probe whose outcome was already applied is stale (a slow server's late answer
  to a retransmission, the timeout of an older probe) and only counts.
"""

from __future__ import annotations

from natkeepalive import events as ev
from natkeepalive.config.model import ProbeSettings
from natkeepalive.core import checks
from natkeepalive.core.checks import DETECTED, RELAY, SENT_BY, STUN, CheckPlan
from natkeepalive.core.reachability import UNREACHABLE, Reachability
from natkeepalive.core.tracker import Tracker, format_mapping
from natkeepalive.core.transaction import T1, ClientTransaction, TransactionKey
from natkeepalive.errors import SipParseError
from natkeepalive.sip.memo import AnswerFacts, AnswerMemo
from natkeepalive.sip.message import Response
from natkeepalive.sip.request import OptionsRequest, OptionsTemplate
from natkeepalive.sip.target import format_hostport

TYPE_CHECKING = False  # typing costs 1.6 MB at run time; mypy treats this name as True
if TYPE_CHECKING:
    from dataclasses import dataclass
    from typing import Callable

    from natkeepalive.core.tracker import Mapping

    RandomBytes = Callable[[int], bytes]
else:
    from natkeepalive.record import dataclass

Address = tuple[str, int]

BINDING, AUX = "binding", "aux"
KEEPALIVE, CONFIRM, INBOUND = "keepalive", "confirm", "inbound"
# An OPTIONS from the AUX socket with rport, sent with a check's first retransmission and then
# with each of its copies: its answer (to the AUX socket's own mapping) tells that the server was
# up when a copy of the check went, so that the check's silence means the binding is lost, not
# that the server was down. A check answered at once (the usual case) costs none.
SERVER_UP = "server-up"
# Linux conntrack promotes a UDP flow to its stream timeout only after > 2 s of two-way traffic
PROMOTE_DELAY = 3.0
# How early a keepalive whose wait was not drawn (the first, the promoting one, one brought
# forward) may go when the loop is awake anyway: 1 % of its interval, at most EARLY_CAP, is
# harmless against any NAT timeout and lets one wake-up serve several bindings. A drawn wait may
# end anywhere the jitter allows. Wake-ups were most of the CPU per keepalive.
KEEPALIVE_EARLY = 0.01
EARLY_CAP = 0.05
BRANCH_BYTES = 10  # 80 random bits
# checks left unanswered (each followed by an answered keepalive) before a check was ever answered
# on the binding: the server ignores them, and silence would only ever mean a false expiry
UNPROVEN_CHECKS = 3
# expiry_detection (status): how an expiry on a port-preserving NAT would be seen
DETECT_CHECK, DETECT_PENDING, DETECT_OFF = "inbound-check", "pending", "off (inbound_check: 0)"
FORCES_RPORT = checks.FORCES_RPORT
NO_CHECK_ANSWER = "server does not answer the check"
REMEDY = checks.REMEDY
RECENT_DONE = 8
# A finished branch's mark: 16 bits of its hash, and a 17th set so that no mark is 0 (empty)
_MARK_BITS = 17
_MARK_MASK = (1 << _MARK_BITS) - 1
_RECENT_MASK = (1 << (RECENT_DONE * _MARK_BITS)) - 1
TEMPLATES_KEPT = 4
BRANCH_PLACEHOLDER = "z9hG4bK-"  # a template's own request is never sent


@dataclass(frozen=True)
class Datagram:
    channel: str  # BINDING or AUX
    payload: bytes
    destination: Address


def _hex(random_bytes: RandomBytes, n: int) -> str:
    return random_bytes(n).hex()


def jitter_draw(random_bytes: RandomBytes) -> float:
    """A draw in [0, 1) for a jittered wait, from 56 random bits."""
    return int.from_bytes(random_bytes(7), "big") / float(1 << 56)


def _mark(branch: str) -> int:
    return (hash(branch) & 0xFFFF) | 0x10000


class BindingEngine:
    """The keepalive, inbound check, mapping and reachability logic of one binding."""

    # One engine per binding: slots instead of a __dict__ save about 1.6 KB each.
    __slots__ = (
        "_answers", "_check_guess", "_check_next", "_check_pending",
        "_cycle_expired", "_guess", "_keepalive_template", "_newest_outcome", "_plan", "_promote",
        "_proven", "_random", "_recent_done", "_send_failing", "_server_up", "_since_check",
        "_suspect_idle", "_templates", "_tx", "_unproven", "call_id", "crlf_received", "cseq",
        "debug_events", "detection_note", "dropped", "duplicates", "flow_timer", "from_tag",
        "inbound_result", "inbound_unsupported", "interval", "jitter", "keepalive_from",
        "last_inbound_at", "last_keepalive_at", "last_response_at", "last_rtt_ms", "last_status",
        "local", "name", "next_keepalive", "outbox", "probes_sent", "queued_events", "reach",
        "responses", "server", "settings", "timeouts", "tracker", "uri_host", "uri_port",
    )

    def __init__(self, name: str, settings: ProbeSettings, random_bytes: RandomBytes,
                 uri_host: str, uri_port: int) -> None:
        self.name = name
        self.settings = settings
        self._random = random_bytes
        self.uri_host = uri_host
        self.uri_port = uri_port
        self.call_id = _hex(random_bytes, 8)
        self.from_tag = _hex(random_bytes, 4)
        self.cseq = 0
        self.server: Address | None = None
        self.local: Address | None = None
        self.interval = settings.interval
        self.jitter = settings.jitter
        self.flow_timer: float | None = None
        self.tracker = Tracker(name, "")
        self.reach = Reachability(name, settings.fail_threshold, settings.ok_threshold,
                                  settings.lagged_ms)
        self._tx: dict[str, ClientTransaction] = {}
        self._templates: dict[tuple[str, int, bool], OptionsTemplate] = {}
        # the keepalives' template for the current flow (set_flow clears it): saves _template's
        # key and lookup on every keepalive
        self._keepalive_template: OptionsTemplate | None = None
        # the marks of the last RECENT_DONE finished branches, packed in one int: a binding keeps
        # them for life, and eight branch strings cost 600 bytes, eight hash() ints in a list
        # 410, this int 44 (a collision, 1 in 8192, only miscounts `duplicates`, a counter)
        self._recent_done = 0
        # What datagrams_to_send() and events() hand over; the runtime may look whether they
        # are empty (most answers leave both so) before asking for them.
        self.outbox: list[Datagram] = []
        self.queued_events: list[ev.Event] = []
        self.next_keepalive: float | None = None
        self.keepalive_from = 0.0  # when the next keepalive's window opens (see _schedule)
        self.last_keepalive_at: float | None = None
        self.last_response_at: float | None = None
        self._promote = True
        self._since_check = 0
        self._check_pending = False  # a check is out; the keepalive waits for it
        self._suspect_idle: float | None = None  # the check went unanswered
        self._cycle_expired = False
        # a trigger: the next cycle that can starts with a check; at first too, so that whether
        # the server can prove an expiry is known at once, not `inbound_check` cycles later
        self._check_next = True
        self._check_guess = False  # the check out tests a guessed port (a bare rport)
        self._server_up: bool | None = None  # the SERVER_UP probe: None (none), False, True
        self._guess = ""  # "", "pending", "confirmed", "failed": the bare rport's port guess
        self._proven = False  # a check was answered on the binding since the flow began
        self._unproven = 0  # checks unanswered while not _proven
        self.detection_note: str | None = None  # why expiry cannot be proven, once known
        self.crlf_received = 0
        self.last_inbound_at: float | None = None
        # servers found to force rport; an empty set costs 216 bytes per binding, so a tuple
        self.inbound_unsupported: tuple[Address, ...] = ()
        # which check method is in use and what the others found (core/checks.py)
        self._plan = CheckPlan(settings.check, settings.stun_server is not None)
        self._send_failing = False
        # probe-sent and probe-answered (debug) for every probe: the daemon turns them off when
        # its log level hides them, which saves building two events per keepalive
        self.debug_events = True
        self._newest_outcome = 0  # CSeq of the newest probe whose outcome was applied
        self._answers = AnswerMemo()  # the server's answers: the next is mostly the same
        # counters for the status file
        self.probes_sent = 0
        self.responses = 0
        self.timeouts = 0
        self.dropped = 0
        self.duplicates = 0
        self.last_rtt_ms: float | None = None
        self.last_status: int | None = None
        self.inbound_result: str | None = None

    # ------------------------------------------------------------------ inputs from the runtime

    def set_flow(self, local: Address, server: Address, now: float, start_offset: float = 0.0
                 ) -> None:
        """The socket's local address and the server's resolved address; a change is a new flow."""
        old_local, old_server = self.local, self.server
        self.local, self.server = local, server
        self._keepalive_template = None
        server_text = format_hostport(*server)
        if old_server is None and old_local is None:
            self.tracker.reset(server_text)
            self._schedule(now + start_offset)
            return
        if old_server is not None and old_server != server:
            self.queued_events.append(ev.ServerChanged(
                self.name, format_hostport(*old_server), server_text))
            # what the methods found holds for the server they were tried against
            self._plan = CheckPlan(self.settings.check, self.settings.stun_server is not None,
                                   self._plan.stun_server)
            if self.detection_note is not None:
                self.detection_note = None
        if old_local is not None and old_local[0] != local[0]:
            self.queued_events.append(ev.LocalAddressChanged(self.name, old_local[0], local[0]))
        if old_server == server and old_local is not None and old_local[0] == local[0]:
            return
        self._new_flow(server_text)
        self._schedule(now)

    def set_stun_server(self, address: Address | None) -> None:
        """The STUN server's resolved address (stun_server), or None while unknown."""
        plan = self._plan
        if address != plan.stun_server:
            plan.stun_server = address
            plan.stun_mapped = None

    def _new_flow(self, server_text: str) -> None:
        self._abort_all()
        self.tracker.reset(server_text)
        self._promote = True
        self._since_check = 0
        self._suspect_idle = None
        self.last_response_at = None
        self._guess = ""
        self._proven = False
        self._unproven = 0
        self._check_next = True
        self._plan.stun_mapped = None  # a new local address has a new mapping
        if self.detection_note == NO_CHECK_ANSWER:
            self.detection_note = None
            self._plan = CheckPlan(self.settings.check, self.settings.stun_server is not None,
                                   self._plan.stun_server)

    def _abort_all(self) -> None:
        self._tx.clear()
        self._check_pending = False

    def send_failed(self, error: str) -> None:
        """The runtime could not send a datagram; reported once per outage."""
        if not self._send_failing:
            self._send_failing = True
            self.queued_events.append(ev.SendFailed(self.name, error))

    def set_interval(self, interval: float, reason: str, now: float) -> None:
        if self.flow_timer is not None and interval > self.flow_timer:
            interval = self.flow_timer  # RFC 5626: the server's limit is never exceeded
        if interval == self.interval:
            return
        self.queued_events.append(ev.IntervalAdjusted(
            self.name, round(self.interval, 3), round(interval, 3), reason))
        self.interval = interval
        if self.last_keepalive_at is not None and self.next_keepalive is not None:
            self._bring_forward(max(now, self.last_keepalive_at + interval))

    def receive_datagram(self, data: bytes, source: Address, now: float,
                         channel: str = BINDING) -> None:
        if self.server is None or source != self.server:
            # before parsing: a flood from elsewhere costs a comparison (and the STUN server's
            # address, or the server's with another port, one more)
            if not self._check_datagram(data, source, now, channel):
                self.dropped += 1
            return
        try:
            branch, cseq, call_id, facts = self._answers.read(data)
        except SipParseError:
            if data and not data.strip(b"\r\n") and channel == BINDING:
                self._crlf(now)
                return
            if not self._check_datagram(data, source, now, channel):
                self.dropped += 1
            return
        self._receive(branch, cseq, call_id, facts, now, channel)

    def receive_response(self, response: Response, source: Address, now: float,
                         channel: str = BINDING) -> None:
        if self.server is None or source != self.server:
            self.dropped += 1
            return
        self._receive(response.top_via.branch or "", response.cseq, response.call_id,
                      AnswerFacts(response), now, channel)

    def _check_datagram(self, data: bytes, source: Address, now: float, channel: str) -> bool:
        """What a check method brings that is not the server's answer: a STUN answer from the
        STUN server, or on the BINDING socket the relayed check (from the server's address)."""
        plan = self._plan
        if source == plan.stun_server and plan.stun_server is not None:
            return self.receive_stun(data, now, channel)
        if channel != BINDING or self.server is None or source[0] != self.server[0]:
            return False
        request = checks.relayed_request(data)
        if request is None or request.call_id.rpartition("-")[0] != self.call_id:
            return False
        # our own request, relayed: answered (again, for a copy) so the proxy stops sending it
        answer, destination = checks.answer_relayed(request, source, self.from_tag)
        self.outbox.append(Datagram(BINDING, answer, destination))
        for branch, tx in self._tx.items():
            if tx.kind == INBOUND and request.call_id == tx.key.call_id \
                    and request.cseq == tx.key.cseq:
                self._finish(branch)
                self._check_done("alive", now)
                break
        return True

    def receive_stun(self, data: bytes, now: float, channel: str) -> bool:
        """A datagram from the STUN server: the answer to a STUN keepalive (its mapped port), to
        the check (on the BINDING socket: alive; on AUX: the server ignored RESPONSE-PORT), or to
        the server-up probe. Whether it was one."""
        answer = checks.stun_answer(data)
        if answer is None:
            return False
        txid, mapped = answer
        plan = self._plan
        if channel == BINDING:
            first = plan.stun_mapped is None
            if plan.stun_seen(txid, mapped):
                if first and plan.stun_mapped is not None and not self._proven \
                        and not self._check_pending and self.next_keepalive is not None:
                    # the first mapping: check now, so that whether the STUN server proves the
                    # binding is known within seconds, as for the other methods
                    self._check_next = True
                    self._bring_forward(now)
                return True
        branch = txid.hex()
        tx = self._tx.get(branch)
        if tx is None or (tx.kind != INBOUND and tx.kind != SERVER_UP):
            if self._just_finished(branch):
                self.duplicates += 1
            return False
        self._finish(branch)
        if tx.kind == SERVER_UP:
            self._server_up = True
        else:
            self._check_done(AUX if channel == AUX else "alive", now)
        return True

    def _crlf(self, now: float) -> None:
        """A CRLF keepalive from the server reached the binding's socket: the binding is alive."""
        self.crlf_received += 1
        self.last_inbound_at = now
        if self._check_pending:
            for branch, tx in list(self._tx.items()):
                if tx.kind == INBOUND:
                    self._finish(branch)
                    self._check_done("alive", now, proof=False)
                    return

    def _receive(self, branch: str, cseq: int, call_id: str, facts: AnswerFacts, now: float,
                 channel: str) -> None:
        """An answer from the server with this top-Via branch and CSeq number."""
        tx = self._tx.get(branch)
        if tx is None:
            # Every refused datagram is `dropped` (status file, the "dropped N" line): a replay
            # flood of a finished transaction's answer must not be invisible. `duplicates` only
            # tells how many of them carried a branch that just finished.
            self.dropped += 1
            if self._just_finished(branch):
                self.duplicates += 1
            return
        method = facts.cseq_method
        if call_id != tx.key.call_id or cseq != tx.key.cseq \
                or (method != "OPTIONS" and method.upper() != "OPTIONS"):
            self.dropped += 1
            return
        if tx.kind != INBOUND and tx.kind != SERVER_UP and channel != BINDING:
            self.dropped += 1
            return
        final, rtt = tx.on_response(facts.status, now)
        if not final:
            return
        # _finish, inlined: once per answer
        del self._tx[branch]
        self._recent_done = ((self._recent_done << _MARK_BITS) | _mark(branch)) & _RECENT_MASK
        if tx.kind == INBOUND:
            self._check_done(AUX if channel == AUX else "alive", now)
        elif tx.kind == SERVER_UP:
            self._server_up = True
        else:
            self._answered(tx, facts, rtt, now)

    def handle_timer(self, now: float, early: bool = False, draw: float | None = None) -> None:
        """Advance to `now`. With `early`, a keepalive whose window is open goes now, so one
        wake-up can send several; retransmissions and timeouts are never early. `draw` (in
        [0, 1)) replaces the random draw of the next wait: the loop passes one per wake-up, so
        the bindings it sends together are due together again."""
        for branch, tx in list(self._tx.items()) if self._tx else ():  # usually none is out
            due = tx.due()
            if due is None or due > now:
                continue
            again = tx.on_timer(now)
            if again is not None:
                channel = AUX if tx.kind == INBOUND or tx.kind == SERVER_UP else BINDING
                if again[0] < 4 and self._plan.stun_server is not None:  # STUN (RFC 7983)
                    self.outbox.append(Datagram(channel, again, self._plan.stun_server))
                else:
                    self._send(channel, again)
                if tx.kind == INBOUND and self._server_up is None:
                    # the same schedule as the check's copies from now on
                    self._server_up = False
                    self._send_probe(SERVER_UP, now, tx.deadline - now, tx.next_retransmit - now)
            elif tx.done:
                self._finish(branch)
                self._timed_out(tx, now)
        due = self._keepalive_deadline()
        if due is not None and (due <= now or (early and self.keepalive_from <= now)):
            self._start_cycle(now, draw)

    def may_go_early(self, now: float) -> bool:
        """Whether handle_timer(now, early=True) would start a keepalive cycle."""
        return self._keepalive_deadline() is not None and self.keepalive_from <= now

    def _keepalive_deadline(self) -> float | None:
        """The next keepalive's deadline, unless it waits (for a check, or for a server)."""
        if self._check_pending or self.server is None:
            return None
        return self.next_keepalive

    def keepalive_now(self, now: float) -> None:
        """Make the next keepalive due at `now` (an interface came up, SIGUSR2): the cycle
        starts with a check when the public port is known, so a WAN reconnect that lost the
        binding is reported, and one that kept it is confirmed alive, before the keepalive
        would re-create it."""
        if self.next_keepalive is not None:
            self._check_next = True
            self._schedule(now)

    # ------------------------------------------------------------------ outputs

    def datagrams_to_send(self) -> list[Datagram]:
        out, self.outbox = self.outbox, []
        return out

    def events(self) -> list[ev.Event]:
        out, self.queued_events = self.queued_events, []
        return out

    def next_deadline(self) -> float | None:
        # A plain loop: called twice per keepalive, and a comprehension builds a function each
        # time on Python < 3.12.
        first = self._keepalive_deadline()
        if self._tx:  # none after an answer, one after a keepalive
            for tx in self._tx.values():
                due = tx.due()
                if due is not None and (first is None or due < first):
                    first = due
        return first

    @property
    def stun_server(self) -> Address | None:
        """stun_server's resolved address, or None (none configured, or not resolved yet)."""
        return self._plan.stun_server

    @property
    def public(self) -> Mapping | None:
        return self.tracker.mapping

    @property
    def expiries(self) -> int:
        return self.tracker.expiries

    @property
    def expiry_detection(self) -> str:
        """How an expiry on a port-preserving NAT is seen (the status file's field):
        `inbound-check` once a check was answered on the binding, `pending` until then, or
        `remap-only: <why>` (a remap to another port is still seen), `off (inbound_check: 0)`."""
        if self.settings.inbound_check <= 0:
            return DETECT_OFF
        if self.settings.check == checks.OFF:
            return "off (check: off)"
        if self.detection_note is not None:
            return f"remap-only: {self.detection_note}"
        if self._proven:
            return DETECTED.get(self._plan.method or SENT_BY, DETECT_CHECK)
        mapping = self.tracker.mapping
        if mapping is None and self.tracker.rport_reported:
            return "unsupported: server sends no received and no rport value"
        if mapping is not None and mapping[0] is None and mapping[1] is not None:
            return "remap-only: server sends no received (the public address is unknown)"
        if mapping is not None and mapping[1] is None and self._guess in ("", "failed"):
            return ("unsupported: server sends no rport value"
                    if self._guess == "failed" or mapping[0] is None
                    else "unsupported: server sends no rport")
        return DETECT_PENDING

    # ------------------------------------------------------------------ the cycle

    def _start_cycle(self, now: float, draw: float | None = None) -> None:
        if (self._check_next or self._since_check >= self.settings.inbound_check) \
                and self._check_due():
            self._since_check = 0
            self._check_next = False
            self._check_pending = True
            self._send_probe(INBOUND, now)
            return
        self._send_keepalive(now, draw)

    def _check_due(self) -> bool:
        """Whether a check can go: on, and what its method needs known (sent-by: the public
        address and port, or a port guess, and the server not known to force rport or to ignore
        the check; relay: the public address and port; stun: the mapped port toward the STUN
        server). While unreachable too: the first cycle that reaches a server coming back must
        check before its keepalive."""
        method = self._plan.method
        if self.settings.inbound_check <= 0 or method is None or self.detection_note is not None:
            return False
        if method == STUN:
            return self._plan.stun_mapped is not None
        mapping = self.tracker.mapping
        if mapping is None or mapping[0] is None:
            return False
        if method == RELAY:
            return mapping[1] is not None
        if self.server in self.inbound_unsupported:
            self._method_failed(FORCES_RPORT)
            return self._check_due()
        return mapping[1] is not None or self._guess == "pending"

    def _method_failed(self, why: str) -> None:
        """The check method in use cannot prove an expiry with this server: the next (`check:
        auto`), or, none left, remap-only, reported once with why and what would help."""
        if self._plan.fail(why) is None and self.detection_note is None \
                and self.server is not None:
            self.detection_note = self._plan.note
            self.queued_events.append(ev.InboundCheckUnsupported(
                self.name, format_hostport(*self.server), self._plan.note, REMEDY))

    def _send_keepalive(self, now: float, draw: float | None = None) -> None:
        self._since_check += 1
        self._send_probe(KEEPALIVE, now)
        if self._plan.method == STUN:
            self._send_stun_keepalive()
        self.last_keepalive_at = now
        base = self._base()
        if self._promote:
            self._promote = False
            if base > PROMOTE_DELAY:  # a shorter wait promotes the flow as well, and sooner
                self._schedule(now + PROMOTE_DELAY)
                return
        self._schedule(now + self._wait(draw), now + base * (1.0 - self.jitter))

    def _base(self) -> float:
        if self.reach.state == UNREACHABLE:
            return min(self.interval, self.settings.retry_interval)
        return self.interval

    def _wait(self, draw: float | None = None) -> float:
        if draw is None:
            draw = jitter_draw(self._random)
        return self._base() * (1.0 - self.jitter * draw)

    def _schedule(self, at: float, window: float | None = None) -> None:
        """The next keepalive is due at `at`; it may go from `window` (where a drawn wait's
        range begins) when that is earlier, else KEEPALIVE_EARLY before `at`. A drawn wait never
        goes before its window: with a draw near 1 the allowance would reach below the jitter's
        range (20 s, jitter 0.2: a wait of 15.985 s, found by test_state_properties). That holds
        also when such a draw rounds `at` onto the window (jitter 0.5, a draw of 1 - 2**-53: a
        wait of 9.96 s); only without jitter, where the window is `at` itself, does the
        allowance apply."""
        self.next_keepalive = at
        if window is not None and (window < at or self.jitter > 0):
            self.keepalive_from = window
        else:
            self.keepalive_from = at - self._allowance()

    def _bring_forward(self, at: float) -> None:
        assert self.next_keepalive is not None
        if at < self.next_keepalive:
            self.next_keepalive = at
        self.keepalive_from = min(self.keepalive_from, self.next_keepalive - self._allowance())

    def _allowance(self) -> float:
        """How early a deadline that was not drawn may be met."""
        early = KEEPALIVE_EARLY * self.interval
        return early if early < EARLY_CAP else EARLY_CAP

    def _send_probe(self, kind: str, now: float, timeout: float | None = None,
                    t1: float = T1) -> None:
        assert self.server is not None and self.local is not None
        self.cseq += 1
        if kind != KEEPALIVE and kind != CONFIRM and self._plan.method == STUN:
            self._send_stun(kind, now, timeout, t1)
            return
        branch = "z9hG4bK" + _hex(self._random, BRANCH_BYTES)
        if kind == INBOUND and self._plan.method == RELAY:
            public = self.tracker.mapping
            assert public is not None and public[0] is not None and public[1] is not None
            template = self._relay_template(public[0], public[1])
        elif kind == INBOUND:
            public = self.tracker.mapping
            assert public is not None and public[0] is not None
            port = public[1]
            self._check_guess = port is None
            if port is None:  # a bare rport: is the public port the local one?
                port = self.local[1]
            template = self._template(public[0], port, False)
        else:
            template = self._keepalive_template  # type: ignore[assignment]
            if template is None:
                template = self._keepalive_template = self._template(
                    self.local[0], self.local[1], True)
        payload = template.render(branch, self.cseq)
        key = TransactionKey(branch, f"{self.call_id}-{self.cseq}", self.cseq)
        self._tx[branch] = ClientTransaction(key, payload, kind, now,
                                             self.settings.timeout if timeout is None else timeout,
                                             t1)
        self.probes_sent += 1
        if self.debug_events:
            self.queued_events.append(ev.ProbeSent(self.name, self.cseq, 1, kind))
        self.outbox.append(Datagram(BINDING if kind in (KEEPALIVE, CONFIRM) else AUX,
                                    payload, self.server))

    def _send_stun(self, kind: str, now: float, timeout: float | None, t1: float) -> None:
        """A STUN check (RESPONSE-PORT: the BINDING socket's mapped port) or server-up probe
        (a plain Binding request), from the AUX socket to the STUN server."""
        plan = self._plan
        assert plan.stun_server is not None
        txid = checks.stun_txid(self.call_id, self.cseq)
        port = None
        if kind == INBOUND:
            assert plan.stun_mapped is not None
            port = plan.stun_mapped[1]
        payload = checks.stun_request(txid, port)
        key = txid.hex()
        self._tx[key] = ClientTransaction(
            TransactionKey(key, f"{self.call_id}-{self.cseq}", self.cseq), payload, kind, now,
            self.settings.timeout if timeout is None else timeout, t1)
        self.probes_sent += 1
        if self.debug_events:
            self.queued_events.append(ev.ProbeSent(self.name, self.cseq, 1, kind))
        self.outbox.append(Datagram(AUX, payload, plan.stun_server))

    def _send_stun_keepalive(self) -> None:
        """With the stun method: a Binding request from the BINDING socket beside each keepalive,
        which keeps the mapping toward the STUN server and tells its port (not a transaction:
        a lost one is made up by the next)."""
        plan = self._plan
        if plan.stun_server is None:  # not resolved (yet)
            return
        if plan.stun_txid:
            plan.stun_unanswered += 1
            if plan.stun_unanswered >= checks.STUN_UNANSWERED and plan.stun_mapped is None:
                plan.stun_txid = b""
                self._method_failed(checks.STUN_SILENT)
                return
        plan.stun_txid = checks.stun_txid(self.call_id, self.cseq)
        self.outbox.append(Datagram(BINDING, checks.stun_request(plan.stun_txid),
                                    plan.stun_server))

    def _relay_template(self, host: str, port: int) -> OptionsTemplate:
        """The relayed check: Request-URI and To the binding's public address:port, our Via with
        rport (the server's own answer comes back to the AUX socket)."""
        key = ("relay:" + host, port, True)
        template = self._templates.get(key)
        if template is None:
            assert self.local is not None
            if len(self._templates) >= TEMPLATES_KEPT:
                self._templates.clear()
            template = self._templates[key] = OptionsTemplate(OptionsRequest(
                uri_host=host, uri_port=port, via_host=self.local[0], via_port=self.local[1],
                branch=BRANCH_PLACEHOLDER, call_id=self.call_id, from_tag=self.from_tag, cseq=0,
                rport=True, max_forwards=self.settings.max_forwards,
                user_agent=self.settings.user_agent), numbered_call_id=True)
        return template

    def _template(self, via_host: str, via_port: int, rport: bool) -> OptionsTemplate:
        """The request around branch and CSeq, built once per Via (local or public mapping)."""
        key = (via_host, via_port, rport)
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) >= TEMPLATES_KEPT:  # old mappings: keep a handful at most
                self._templates.clear()
            template = self._templates[key] = OptionsTemplate(OptionsRequest(
                uri_host=self.uri_host,
                uri_port=None if self.uri_port == 5060 else self.uri_port,
                via_host=via_host, via_port=via_port, branch=BRANCH_PLACEHOLDER,
                call_id=self.call_id, from_tag=self.from_tag, cseq=0, rport=rport,
                max_forwards=self.settings.max_forwards, user_agent=self.settings.user_agent),
                numbered_call_id=True)
        return template

    def _send(self, channel: str, payload: bytes) -> None:
        assert self.server is not None
        self.outbox.append(Datagram(channel, payload, self.server))

    def _finish(self, branch: str) -> None:
        self._tx.pop(branch, None)
        self._recent_done = ((self._recent_done << _MARK_BITS) | _mark(branch)) & _RECENT_MASK

    def _just_finished(self, branch: str) -> bool:
        """Whether `branch` is one of the last RECENT_DONE to finish (asked for refused answers
        only)."""
        mark, done = _mark(branch), self._recent_done
        while done:
            if done & _MARK_MASK == mark:
                return True
            done >>= _MARK_BITS
        return False

    def _check_done(self, result: str, now: float, proof: bool = True) -> None:
        """result: alive (answer on BINDING; `proof`: the check's own answer, not a CRLF), aux
        (the server forces rport), silent."""
        self._check_pending = False
        guess, self._check_guess = self._check_guess, False
        # a suspicion left by an earlier check (its keepalive still out when this check went:
        # a timeout longer than the cycle) is this check's to confirm or clear
        self._suspect_idle = None
        method = self._plan.method
        if result == AUX:
            self.inbound_result = "unsupported"
            why = checks.STUN_IGNORES_PORT if method == STUN else checks.NO_RELAY \
                if method == RELAY else FORCES_RPORT
            if method == SENT_BY:
                if guess:
                    self._guess = "failed"
                    self.tracker.rport_unsupported(self.queued_events)
                if self.server is not None and self.server not in self.inbound_unsupported:
                    self.inbound_unsupported += (self.server,)
            self._method_failed(why)
            if self._plan.method == RELAY and self._check_due():
                # the relayed check is tried at once, before the keepalive, like the first
                self._server_up = None
                self._check_pending = True
                self._send_probe(INBOUND, now)
                return
        elif result == "alive":
            self.inbound_result = "alive"
            self.last_response_at = self.last_inbound_at = now
            if proof:
                self._proven = True
                self._unproven = 0
            if guess and self.local is not None:
                self._guess = "confirmed"
                self.tracker.refine_port(self.local[1])
        elif guess:
            # the port is not the local one (or the server ignores the check): not an expiry
            self.inbound_result = "silent"
            self._guess = "failed"
            self.tracker.rport_unsupported(self.queued_events)
        elif method == RELAY and not self._proven:
            # tried once: a server that relays answers the binding within the check's timeout
            self.inbound_result = "silent"
            self._method_failed(checks.NO_RELAY)
        else:
            self.inbound_result = "silent"
            idle_from = self.last_response_at
            self._suspect_idle = None if idle_from is None else now - idle_from
            if self._server_up is not True:  # the server (or the WAN) was down: no proof
                self._suspect_idle = None
        self._server_up = None
        self._send_keepalive(now)

    def _silent_check_answered(self) -> bool:
        """The keepalive after a silent check was answered: whether that is an expiry. Not
        before a check was ever answered on the binding: a server that ignores the check would
        make every cycle a false expiry; after UNPROVEN_CHECKS such cycles it is given up."""
        if self._proven:
            return True
        self._unproven += 1
        if self._unproven >= UNPROVEN_CHECKS and self.detection_note is None \
                and self.server is not None:
            self._unproven = 0
            self._method_failed(checks.STUN_SILENT if self._plan.method == STUN
                                else NO_CHECK_ANSWER)
        return False

    def _answered(self, tx: ClientTransaction, facts: AnswerFacts, rtt: float,
                  now: float) -> None:
        self._send_failing = False
        self.responses += 1
        rtt_ms = rtt * 1000.0
        self.last_rtt_ms = round(rtt_ms, 3)
        self.last_status = facts.status
        idle_s = 0.0 if self.last_response_at is None else tx.first_sent - self.last_response_at
        self.last_response_at = now
        ok = not self.settings.require_2xx or 200 <= facts.status < 300
        flow_timer = facts.flow_timer
        if flow_timer is not None and flow_timer > 0 and flow_timer != self.flow_timer:
            self.flow_timer = float(flow_timer)
            if self.interval > self.flow_timer:
                self.set_interval(self.flow_timer, "flow-timer", now)
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
                learned = self.tracker.mapping
                received = None if learned is None else learned[0]
        seen: Mapping = (received, facts.rport)
        if self.debug_events:
            self.queued_events.append(ev.ProbeAnswered(
                self.name, tx.key.cseq, facts.status, round(rtt_ms, 3),
                format_mapping(seen) or ""))
        if tx.key.cseq < self._newest_outcome:  # _stale, inlined: once per answer
            return
        self._newest_outcome = tx.key.cseq
        if tx.kind == KEEPALIVE:
            self._cycle_expired = False
            if self._suspect_idle is not None and self.tracker.mapping is not None \
                    and self._silent_check_answered():
                self._cycle_expired = True
                self.tracker.expiries += 1
                self.queued_events.append(ev.BindingExpired(
                    self.name, format_mapping(self.tracker.mapping) or "",
                    round(self._suspect_idle, 1),
                    DETECTED.get(self._plan.method or SENT_BY, "inbound-check")))
                self._renew(now)
            self._suspect_idle = None
        assert self.local is not None
        tracker = self.tracker
        changes_before = tracker.changes + tracker.expiries
        bare = facts.rport_bare and seen[0] is not None and self._guess != "failed" \
            and self.settings.inbound_check > 0
        found, confirm = tracker.observe(seen, now, idle_s, self.local,
                                         expiry_known=self._cycle_expired, defer_rport=bare)
        if bare and self._guess == "" and tracker.mapping is not None \
                and tracker.mapping[1] is None:
            self._guess = "pending"
            self._check_next = True
        if found:  # a change or an expiry always comes with its event
            self.queued_events.extend(found)
            if tracker.changes + tracker.expiries != changes_before:
                self._renew(now)
        transition = self.reach.feed(rtt_ms) if ok else self.reach.feed(
            None, f"answered {facts.status}, not 2xx (require_2xx)")
        if transition is not None:
            self.queued_events.append(transition)
        if confirm:
            self._send_probe(CONFIRM, now)

    def _stale(self, tx: ClientTransaction) -> bool:
        """Whether a newer probe's outcome was applied already; if not, this one is the newest."""
        if tx.key.cseq < self._newest_outcome:
            return True
        self._newest_outcome = tx.key.cseq
        return False

    def _renew(self, now: float) -> None:
        """The NAT made a new binding: promote its flow with an early second keepalive."""
        if self.last_keepalive_at is not None and self.next_keepalive is not None:
            self._bring_forward(max(now, self.last_keepalive_at + PROMOTE_DELAY))

    def _timed_out(self, tx: ClientTransaction, now: float) -> None:
        if tx.kind == INBOUND:
            self._check_done("silent", now)
            return
        if tx.kind == SERVER_UP:
            return
        self.timeouts += 1
        self.queued_events.append(ev.ProbeTimedOut(self.name, tx.key.cseq, tx.transmissions))
        if self._stale(tx):
            return
        if tx.kind == KEEPALIVE:
            self._suspect_idle = None  # no answer at all: the server, not the binding
            # a silence: the NAT may have rebooted, so the cycle that reaches the server again
            # starts with a check (a keepalive first would re-create the binding unseen)
            self._check_next = True
        transition = self.reach.feed(None)
        if transition is not None:
            self.queued_events.append(transition)
            if self.reach.state == UNREACHABLE and self.next_keepalive is not None \
                    and self.last_keepalive_at is not None:
                self._bring_forward(self.last_keepalive_at + self._wait())
