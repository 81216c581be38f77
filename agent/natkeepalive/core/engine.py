"""One binding's keepalive engine, sans-I/O: bytes and `now` in; datagrams, events and the next
deadline out (the shape of aioquic's connection). The runtime owns sockets, clocks and randomness.

Rules:
- A cycle starts when a keepalive is due; when an inbound check is due too (every
  `inbound_check` keepalives, or at once after a trigger; the public address and port known, the
  server not known to force rport or to ignore the check) the cycle first sends the check from the
  AUX socket, then the keepalive when the check ends: the check runs when the binding has been
  idle longest, and before the keepalive that would silently re-create a lost binding on a
  port-preserving NAT. The cycle's phases and the table that moves them are in core/cycle.py.
- Triggers, each making the next cycle start with a check: a keepalive that timed out (a silence:
  the NAT may have rebooted; the server's comeback after an outage is then checked first), an
  interface event or SIGUSR2 (keepalive_now), and a bare `rport` (the port is then guessed to be
  the local one and the check proves it, or not).
- Every request has a Call-ID of its own (RFC 3261 §8.1.1.4): the binding's random prefix and
  the CSeq number. A CRLF or double-CRLF datagram from the server on the BINDING socket is a
  keepalive, not a malformed answer (RFC 5626 §3.5.1; linphone sends them): it proves inbound
  packets reach the binding, and ends a pending check as alive.
- Keepalives go `interval` (jittered) after the previous one, or `retry_interval` while
  unreachable; when exactly, and how early one may go, is core/schedule.py.
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
from natkeepalive.core import answers, cycle as c, methods
from natkeepalive.core.checks import RELAY, STUN, CheckPlan
from natkeepalive.core.cycle import (
    CHECKING,
    CONFIRM,
    DUE_CHECK,
    DUE_GUESS,
    DUE_KEEPALIVE,
    INBOUND,
    KEEPALIVE,
    SEND_CHECK,
    SEND_KEEPALIVE,
    SENT_BY,
    SERVER_UP,
    TABLE,
)
from natkeepalive.core.probes import ProbeRecords, random_hex
from natkeepalive.core.reachability import UNREACHABLE, Reachability
from natkeepalive.core.schedule import KeepaliveSchedule
from natkeepalive.core.tracker import Tracker
from natkeepalive.core.transaction import T1, ClientTransaction, TransactionKey
from natkeepalive.core.wire import (
    AUX,
    BINDING,
    BRANCH_BYTES,
    PROMOTE_DELAY,
    Address,
    Datagram,
    jitter_draw,
)
from natkeepalive.errors import SipParseError
from natkeepalive.sip.memo import AnswerFacts, AnswerMemo
from natkeepalive.sip.message import Response
from natkeepalive.sip.request import OptionsTemplate
from natkeepalive.sip.target import format_hostport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from natkeepalive.core.tracker import Mapping

    RandomBytes = Callable[[int], bytes]

__all__ = [
    "AUX",
    "BINDING",
    "BRANCH_BYTES",
    "CONFIRM",
    "INBOUND",
    "KEEPALIVE",
    "PROMOTE_DELAY",
    "SERVER_UP",
    "Address",
    "BindingEngine",
    "Datagram",
    "jitter_draw",
]


class BindingEngine(KeepaliveSchedule, ProbeRecords):
    """The keepalive, inbound check, mapping and reachability logic of one binding."""

    # One engine per binding, kept for the agent's life: slots, not a __dict__ per engine.
    __slots__ = (
        "_answers",
        "_check_next",
        "_guess",
        "_keepalive_template",
        "_newest_outcome",
        "_plan",
        "_promote",
        "_proven",
        "_random",
        "_recent_done",
        "_send_failing",
        "_since_check",
        "_suspect_idle",
        "_templates",
        "_tx",
        "_unproven",
        "call_id",
        "crlf_received",
        "cseq",
        "debug_events",
        "detection_note",
        "dropped",
        "duplicates",
        "flow_timer",
        "from_tag",
        "inbound_result",
        "inbound_unsupported",
        "interval",
        "jitter",
        "keepalive_from",
        "last_inbound_at",
        "last_keepalive_at",
        "last_response_at",
        "last_rtt_ms",
        "last_status",
        "local",
        "name",
        "next_keepalive",
        "outbox",
        "phase",
        "probes_sent",
        "queued_events",
        "reach",
        "responses",
        "server",
        "settings",
        "timeouts",
        "tracker",
        "uri_host",
        "uri_port",
    )

    def __init__(
        self,
        name: str,
        settings: ProbeSettings,
        random_bytes: RandomBytes,
        uri_host: str,
        uri_port: int,
    ) -> None:
        self.name = name
        self.settings = settings
        self._random = random_bytes
        self.uri_host = uri_host
        self.uri_port = uri_port
        self.call_id = random_hex(random_bytes, 8)
        self.from_tag = random_hex(random_bytes, 4)
        self.cseq = 0
        self.server: Address | None = None
        self.local: Address | None = None
        self.interval = settings.interval
        self.jitter = settings.jitter
        self.flow_timer: float | None = None
        self.tracker = Tracker(name, "")
        self.reach = Reachability(
            name, settings.fail_threshold, settings.ok_threshold, settings.lagged_ms
        )
        self._tx: dict[str, ClientTransaction] = {}
        self._templates: dict[tuple[str, int, bool], OptionsTemplate] = {}
        # the keepalives' template for the current flow (set_flow clears it): saves _template's
        # key and lookup on every keepalive
        self._keepalive_template: OptionsTemplate | None = None
        # the marks of the last RECENT_DONE finished branches, packed in one int, the smallest
        # form a binding can keep for life (a collision, 1 in 8192, only miscounts `duplicates`)
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
        self.phase = c.IDLE  # where the keepalive cycle stands (core/cycle.py)
        self._suspect_idle = 0.0  # SUSPECT: how long the binding was idle when the check went
        # a trigger: the next cycle that can starts with a check; at first too, so that whether
        # the server can prove an expiry is known at once, not `inbound_check` cycles later
        self._check_next = True
        self._guess = ""  # "", "pending", "confirmed", "failed": the bare rport's port guess
        self._proven = False  # a check was answered on the binding since the flow began
        self._unproven = 0  # checks unanswered while not _proven
        self.detection_note: str | None = None  # why expiry cannot be proven, once known
        self.crlf_received = 0
        self.last_inbound_at: float | None = None
        # servers found to force rport: a tuple, as an empty set is larger and it holds one
        self.inbound_unsupported: tuple[Address, ...] = ()
        # which check method is in use, and what the others found (core/checks.py)
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

    def set_flow(
        self, local: Address, server: Address, now: float, start_offset: float = 0.0
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
            self.queued_events.append(
                ev.ServerChanged(self.name, format_hostport(*old_server), server_text)
            )
            self._plan = methods.new_plan(self)  # what the methods found was this server's
            self.detection_note = None
        if old_local is not None and old_local[0] != local[0]:
            self.queued_events.append(ev.LocalAddressChanged(self.name, old_local[0], local[0]))
        if old_server == server and old_local is not None and old_local[0] == local[0]:
            return
        self._new_flow(server_text)
        self._schedule(now)

    def _new_flow(self, server_text: str) -> None:
        self._abort_all()
        self.tracker.reset(server_text)
        self._promote = True
        self._since_check = 0
        self.last_response_at = None
        self._guess = ""
        self._proven = False
        self._unproven = 0
        self._check_next = True
        self._plan.stun_mapped = None  # a new local address has a new mapping
        if self.detection_note == c.NO_CHECK_ANSWER:
            self.detection_note = None
            self._plan = methods.new_plan(self)

    @property
    def stun_server(self) -> Address | None:  # set by methods.set_stun_server
        return self._plan.stun_server

    def _abort_all(self) -> None:
        self._tx.clear()
        self.phase = c.IDLE

    def send_failed(self, error: str) -> None:
        """The runtime could not send a datagram; reported once per outage."""
        if not self._send_failing:
            self._send_failing = True
            self.queued_events.append(ev.SendFailed(self.name, error))

    def receive_datagram(
        self, data: bytes, source: Address, now: float, channel: str = BINDING
    ) -> None:
        if self.server is None or source != self.server:
            # before parsing: a flood from elsewhere costs a comparison (the STUN server's
            # answers, or a relayed check from another port of the server, one more)
            if not methods.receive_other(self, data, source, now, channel):
                self.dropped += 1
            return
        try:
            branch, cseq, call_id, facts = self._answers.read(data)
        except SipParseError:
            if data and not data.strip(b"\r\n") and channel == BINDING:
                answers.crlf(self, now)
                return
            if not methods.receive_other(self, data, source, now, channel):
                self.dropped += 1
            return
        answers.receive(self, branch, cseq, call_id, facts, now, channel)

    def receive_response(
        self, response: Response, source: Address, now: float, channel: str = BINDING
    ) -> None:
        if self.server is None or source != self.server:
            self.dropped += 1
            return
        answers.receive(
            self,
            response.top_via.branch or "",
            response.cseq,
            response.call_id,
            AnswerFacts(response),
            now,
            channel,
        )

    def handle_timer(self, now: float, *, early: bool = False, draw: float | None = None) -> None:
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
                methods.retransmit(self, channel, again)
                if tx.kind == INBOUND and tx.transmissions == 2:
                    # with the check's first copy, and on its schedule from now on
                    self._send_probe(
                        SERVER_UP, now, timeout=tx.deadline - now, t1=tx.next_retransmit - now
                    )
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
        if self.phase in CHECKING or self.server is None:
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
    def public(self) -> Mapping | None:
        return self.tracker.mapping

    @property
    def expiries(self) -> int:
        return self.tracker.expiries

    @property
    def expiry_detection(self) -> str:
        return answers.expiry_detection(self)

    # ------------------------------------------------------------------ the cycle

    def _start_cycle(self, now: float, draw: float | None = None) -> None:
        outcome = DUE_KEEPALIVE
        if (self._check_next or self._since_check >= self.settings.inbound_check) and c.check_due(
            self
        ):
            mapping = self.tracker.mapping
            outcome = (
                DUE_GUESS
                if mapping is not None
                and mapping[1] is None
                and self._plan.method not in (RELAY, STUN)
                else DUE_CHECK
            )
        self.phase, action = TABLE[(self.phase, outcome)]
        if action == SEND_KEEPALIVE:
            self._send_keepalive(now, draw)
            return
        assert action == SEND_CHECK
        self._since_check = 0
        self._check_next = False
        self._send_probe(INBOUND, now)

    def _send_keepalive(self, now: float, draw: float | None = None) -> None:
        self._since_check += 1
        self._send_probe(KEEPALIVE, now)
        if self._plan.method == STUN:
            methods.stun_keepalive(self)
        self.last_keepalive_at = now
        base = self._base()
        if self._promote:
            self._promote = False
            if base > PROMOTE_DELAY:  # a shorter wait promotes the flow as well, and sooner
                self._schedule(now + PROMOTE_DELAY)
                return
        self._schedule(now + self._wait(draw), now + base * (1.0 - self.jitter))

    def _send_probe(
        self, kind: str, now: float, *, timeout: float | None = None, t1: float = T1
    ) -> None:
        assert self.server is not None and self.local is not None
        self.cseq += 1
        if (
            kind != KEEPALIVE
            and kind != CONFIRM
            and methods.check_request(
                self, kind, now, self.settings.timeout if timeout is None else timeout, t1
            )
        ):
            return
        branch = "z9hG4bK" + random_hex(self._random, BRANCH_BYTES)
        if kind == INBOUND and self._plan.method == RELAY:
            public = self.tracker.mapping
            assert public is not None and public[0] is not None and public[1] is not None
            payload = methods.relay_template(self, public[0], public[1]).render(branch, self.cseq)
        elif kind == INBOUND:
            public = self.tracker.mapping
            assert public is not None and public[0] is not None
            port = public[1]
            if port is None:  # a bare rport: is the public port the local one?
                assert self.phase == c.GUESS
                port = self.local[1]
            payload = SENT_BY.request(self._template, public[0], port, branch, self.cseq)
        else:
            template = self._keepalive_template
            if template is None:
                template = self._keepalive_template = self._template(
                    self.local[0], self.local[1], True
                )
            payload = template.render(branch, self.cseq)
        key = TransactionKey(branch, f"{self.call_id}-{self.cseq}", self.cseq)
        self._tx[branch] = ClientTransaction(
            key, payload, kind, now, self.settings.timeout if timeout is None else timeout, t1
        )
        self.probes_sent += 1
        if self.debug_events:
            self.queued_events.append(ev.ProbeSent(self.name, self.cseq, 1, kind))
        self.outbox.append(
            Datagram(BINDING if kind in (KEEPALIVE, CONFIRM) else AUX, payload, self.server)
        )

    def _send(self, channel: str, payload: bytes) -> None:
        assert self.server is not None
        self.outbox.append(Datagram(channel, payload, self.server))

    def _timed_out(self, tx: ClientTransaction, now: float) -> None:
        if tx.kind == INBOUND:
            c.step(self, methods.silent_outcome(self), now)
            return
        if tx.kind == SERVER_UP:
            return
        self.timeouts += 1
        self.queued_events.append(ev.ProbeTimedOut(self.name, tx.key.cseq, tx.transmissions))
        if self._stale(tx):
            return
        if tx.kind == KEEPALIVE:
            c.step(self, c.TIMEOUT, now)
        transition = self.reach.feed(None)
        if transition is not None:
            self.queued_events.append(transition)
            if (
                self.reach.state == UNREACHABLE
                and self.next_keepalive is not None
                and self.last_keepalive_at is not None
            ):
                self._bring_forward(self.last_keepalive_at + self._wait())
