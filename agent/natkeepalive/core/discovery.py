"""Binding lifetime discovery, sans-I/O: how long does this NAT keep an idle UDP binding?

Rules:
- A trial makes a fresh binding (its own new local port), establishes it the way the daemon does
  (two answered exchanges PROMOTE_DELAY apart, so a Linux NAT promotes the flow to its long stream
  timeout), leaves it idle for `idle` seconds counted from the last answer, then tests it.
- Test by the inbound check (METHOD_INBOUND): an answer on the trial socket means it survived; on
  the AUX socket, the server forces rport (the trial ends "unsupported"); silence needs a confirming
  keepalive: answered means expired, unanswered means the server failed (the trial is void).
- Test by the relayed check (METHOD_RELAY) or the STUN check (METHOD_STUN, RFC 5780, with a
  stun_server), the daemon's methods (core/checks.py), for servers that force rport: the check
  goes from the AUX socket (an OPTIONS whose Request-URI is the public address:port; a STUN
  Binding request with RESPONSE-PORT = the trial socket's mapped port toward the STUN server,
  which the trial socket learns with a Binding request beside each of its two establishing
  keepalives). It arriving on the trial socket means the binding survived. The first trial of a
  method verifies it first (VERIFY, right after the promotion, while the binding surely lives): a
  server that does not relay, or a STUN server that ignores RESPONSE-PORT, ends it "unsupported"
  instead of making every silence an expiry. Silence after the idle time needs a confirmation (a
  keepalive for relay, a Binding request from the trial socket for stun) answered: expired.
- Test by rport (METHOD_RPORT, for servers that force rport, behind a random-port NAT): a keepalive
  after the idle time; the same public port means it survived, another port means it expired.
- Methods in order: inbound-check; then relay-check; stun-check with a stun_server; rport.
- A trial's phases move by TRIAL_TABLE: (phase, outcome) -> (next phase, action); the pairs that
  cannot happen are in TRIAL_IMPOSSIBLE with why (tests/unit test that both cover every pair).
  Outcomes: WAKE (a wait ended), TEST_CHECK / TEST_RPORT / UNTESTABLE (the idle time ended, by
  the trial's method, or no public mapping was learnt to aim at or compare with), VERIFY_CHECK
  (the method is to be verified before the idle time: the wait after the promotion was 0),
  ANSWER and MOVED (a final answer on the trial socket showing the learnt mapping, or another;
  for the relayed check its arrival, for the STUN check its answer), AUX_ANSWER (a final answer
  on the AUX socket), SILENCE (the transaction timed out).
- Which idle time the next trial tries, and when the search ends: core/lifetime.py.
"""

from __future__ import annotations

import binascii

from natkeepalive.core import checks
from natkeepalive.core.lifetime import LifetimeSearch, SearchResult
from natkeepalive.core.transaction import ClientTransaction, TransactionKey
from natkeepalive.core.wire import AUX, PROMOTE_DELAY, Address, Datagram
from natkeepalive.errors import SipParseError
from natkeepalive.sip.message import Response, parse_response
from natkeepalive.sip.request import options_template

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

TRIAL = "trial"
METHOD_INBOUND, METHOD_RPORT = "inbound-check", "rport"
METHOD_RELAY, METHOD_STUN = "relay-check", "stun-check"
SURVIVED, EXPIRED, FAILED, UNSUPPORTED = "survived", "expired", "failed", "unsupported"

# trial phases; CONFIRM follows a silent check, RETEST is the rport method's keepalive
# (VERIFY: a relay or stun method's check before its first idle time)
ESTABLISH, SETTLE, PROMOTE, IDLE, VERIFY, CHECK, CONFIRM, RETEST, DONE = (
    "establish",
    "settle",
    "promote",
    "idle",
    "verify",
    "check",
    "confirm",
    "retest",
    "done",
)
PHASES = (ESTABLISH, SETTLE, PROMOTE, IDLE, VERIFY, CHECK, CONFIRM, RETEST, DONE)
WAKE, TEST_CHECK, TEST_RPORT, UNTESTABLE = "wake", "test-check", "test-rport", "untestable"
VERIFY_CHECK = "verify-check"
ANSWER, MOVED, AUX_ANSWER, SILENCE = "answer", "moved", "aux-answer", "silence"
OUTCOMES = (
    WAKE,
    TEST_CHECK,
    TEST_RPORT,
    UNTESTABLE,
    VERIFY_CHECK,
    ANSWER,
    MOVED,
    AUX_ANSWER,
    SILENCE,
)
# actions: send from the trial socket (with rport) or the AUX one (the check), wait, learn the
# mapping and wait, or end the trial with its result
SEND, SEND_CHECK, WAIT_IDLE, LEARN = "send", "send-check", "wait-idle", "learn"

TRIAL_TABLE: dict[tuple[str, str], tuple[str, str]] = {
    (ESTABLISH, ANSWER): (SETTLE, LEARN),
    (ESTABLISH, MOVED): (SETTLE, LEARN),
    (ESTABLISH, SILENCE): (DONE, FAILED),
    (SETTLE, WAKE): (PROMOTE, SEND),
    (PROMOTE, ANSWER): (IDLE, WAIT_IDLE),
    (PROMOTE, MOVED): (IDLE, WAIT_IDLE),
    (PROMOTE, SILENCE): (DONE, FAILED),
    (IDLE, TEST_CHECK): (CHECK, SEND_CHECK),
    (IDLE, TEST_RPORT): (RETEST, SEND),
    (IDLE, UNTESTABLE): (DONE, UNSUPPORTED),
    (IDLE, VERIFY_CHECK): (VERIFY, SEND_CHECK),
    (VERIFY, ANSWER): (IDLE, WAIT_IDLE),  # the method works: now the idle time
    (VERIFY, MOVED): (IDLE, WAIT_IDLE),
    (VERIFY, AUX_ANSWER): (DONE, UNSUPPORTED),
    (VERIFY, SILENCE): (DONE, UNSUPPORTED),  # not even a live binding is reached
    (CHECK, ANSWER): (DONE, SURVIVED),
    (CHECK, MOVED): (DONE, SURVIVED),
    (CHECK, AUX_ANSWER): (DONE, UNSUPPORTED),
    (CHECK, SILENCE): (CONFIRM, SEND),  # silence alone proves nothing: is the server there?
    (CONFIRM, ANSWER): (DONE, EXPIRED),
    (CONFIRM, MOVED): (DONE, EXPIRED),
    (CONFIRM, SILENCE): (DONE, FAILED),
    (RETEST, ANSWER): (DONE, SURVIVED),
    (RETEST, MOVED): (DONE, EXPIRED),
    (RETEST, SILENCE): (DONE, FAILED),
}
_NO_TX = "no request is out in this phase"
_TX_OUT = "a request is out: the trial waits for its answer or its timeout, not a wake-up"
_ONLY_IDLE = "only the end of the idle time tests the binding"
_NOT_ITS_SOCKET = (
    "the request went from the trial socket: an answer on the AUX socket is not "
    "its answer and is dropped before it reaches the transaction"
)
TRIAL_IMPOSSIBLE: dict[tuple[str, str], str] = {}
for _phase in PHASES:
    for _outcome in OUTCOMES:
        if (_phase, _outcome) in TRIAL_TABLE:
            continue
        if _phase == DONE:
            TRIAL_IMPOSSIBLE[(_phase, _outcome)] = "a finished trial takes no input"
        elif (_phase, _outcome) == (IDLE, WAKE):
            TRIAL_IMPOSSIBLE[(_phase, _outcome)] = "the idle time ends as a test or UNTESTABLE"
        elif _outcome in (TEST_CHECK, TEST_RPORT, UNTESTABLE, VERIFY_CHECK) and _phase != IDLE:
            TRIAL_IMPOSSIBLE[(_phase, _outcome)] = _ONLY_IDLE
        elif _phase in (SETTLE, IDLE):
            TRIAL_IMPOSSIBLE[(_phase, _outcome)] = _NO_TX
        elif _outcome == WAKE:
            TRIAL_IMPOSSIBLE[(_phase, _outcome)] = _TX_OUT
        elif _outcome == AUX_ANSWER:
            TRIAL_IMPOSSIBLE[(_phase, _outcome)] = _NOT_ITS_SOCKET
del _phase, _outcome


class Trial:
    """One fresh binding, established, left idle, tested. Channels: TRIAL (its socket) and AUX."""

    def __init__(
        self,
        idle: float,
        method: str,
        server: Address,
        local: Address,
        uri_host: str,
        uri_port: int,
        now: float,
        random_bytes: Callable[[int], bytes],
        timeout: float = 3.0,
        stun_server: Address | None = None,
        verify: bool = False,
    ) -> None:
        self.idle = idle
        self.stun_server = stun_server
        # verify the method before the idle time (relay and stun only: see the rules)
        self.verify = verify and method in (METHOD_RELAY, METHOD_STUN)
        self._verify_pending = self.verify
        self.stun_mapped: Address | None = None  # the trial socket's mapping toward it
        self._dest = server  # where the transaction out goes
        self.method = method
        self.server = server
        self.local = local
        self.uri_host = uri_host
        self.uri_port = uri_port
        self.timeout = timeout
        self._random = random_bytes
        self.call_id = binascii.hexlify(random_bytes(8)).decode("ascii")
        self.from_tag = binascii.hexlify(random_bytes(4)).decode("ascii")
        self.cseq = 0
        self.phase = ESTABLISH
        self.result: str | None = None
        self.public: Address | None = None
        self.rewritten = False  # the answers name our own lan address (a SIP ALG)
        self.last_answer: float | None = None
        self._wake: float | None = None
        self._tx: ClientTransaction | None = None
        self._outbox: list[Datagram] = []
        self._send(now, rport=True)

    # ------------------------------------------------------------------ driving

    def next_deadline(self) -> float | None:
        if self.phase == DONE:
            return None
        if self._tx is not None:
            return self._tx.due()
        return self._wake

    def datagrams_to_send(self) -> list[Datagram]:
        out, self._outbox = self._outbox, []
        return out

    def handle_timer(self, now: float) -> None:
        if self.phase == DONE:
            return
        tx = self._tx
        if tx is not None:
            again = tx.on_timer(now)
            if again is not None:
                channel = AUX if self.phase in (CHECK, VERIFY) else TRIAL
                if self.phase == CONFIRM and self.method == METHOD_STUN:
                    channel = TRIAL
                self._outbox.append(Datagram(channel, again, self._dest))
            elif tx.done:
                self._tx = None
                self._step(SILENCE, now)
            return
        if self._wake is not None and now >= self._wake:
            self._wake = None
            if self.phase == IDLE:
                if self.public is None:  # the server ignores rport: no port to aim at or compare
                    self._step(UNTESTABLE, now)
                elif self._verify_pending:
                    self._verify_pending = False
                    self._step(VERIFY_CHECK, now)
                else:
                    self._step(TEST_RPORT if self.method == METHOD_RPORT else TEST_CHECK, now)
            else:
                self._step(WAKE, now)

    def receive_datagram(self, data: bytes, source: Address, now: float, channel: str) -> None:
        if self.stun_server is not None and source == self.stun_server:
            self._receive_stun(data, now, channel)
            return
        try:
            response = parse_response(data)
        except SipParseError:
            if channel == TRIAL and source[0] == self.server[0]:
                self._relayed(data, source, now)
            return
        self.receive_response(response, source, now, channel)

    def _receive_stun(self, data: bytes, now: float, channel: str) -> None:
        answer = checks.stun_answer(data)
        if answer is None or answer[0][:8].hex() != self.call_id:
            return
        txid, mapped = answer
        tx = self._tx
        if tx is not None and txid.hex() == tx.key.branch:
            final, _rtt = tx.on_response(200, now)
            if final:
                self._tx = None
                self._step(ANSWER if channel == TRIAL else AUX_ANSWER, now)
        elif channel == TRIAL and mapped is not None:
            self.stun_mapped = mapped  # a Binding request beside an establishing keepalive

    def _relayed(self, data: bytes, source: Address, now: float) -> None:
        """Our relayed check, arrived on the trial socket: answered 200, and the binding lives."""
        request = checks.relayed_request(data)
        if request is None or request.call_id.rpartition("-")[0] != self.call_id:
            return
        answer, destination = checks.answer_relayed(request, source, self.from_tag)
        self._outbox.append(Datagram(TRIAL, answer, destination))
        tx = self._tx
        if (
            tx is not None
            and self.phase in (CHECK, VERIFY)
            and request.call_id == tx.key.call_id
            and request.cseq == tx.key.cseq
        ):
            self._tx = None
            self._step(ANSWER, now)

    def receive_response(
        self, response: Response, source: Address, now: float, channel: str
    ) -> None:
        tx = self._tx
        if (
            tx is None
            or source != self.server
            or response.top_via.branch != tx.key.branch
            or response.call_id != tx.key.call_id
            or response.cseq != tx.key.cseq
            or (channel != TRIAL and self.phase not in (CHECK, VERIFY))
            or (channel == TRIAL and self.phase in (CHECK, VERIFY) and self.method == METHOD_RELAY)
        ):
            return  # (a relayed check proves the binding by arriving, not by an answer)
        final, _rtt = tx.on_response(response.status, now)
        if not final:
            return
        self._tx = None
        via = response.top_via
        # no `received` and no rport value: the public address is unknown (the sent-by host is
        # only what we wrote); an rport value without `received`: no other address was seen
        seen = (via.received or (via.host if via.rport is not None else None), via.rport)
        if channel != TRIAL:
            self._step(AUX_ANSWER, now)
            return
        self.last_answer = now
        self._step(ANSWER if self.public is not None and seen == self.public else MOVED, now, seen)

    # ------------------------------------------------------------------ steps

    def _step(
        self, outcome: str, now: float, seen: tuple[str | None, int | None] | None = None
    ) -> None:
        self.phase, action = TRIAL_TABLE[(self.phase, outcome)]
        if action == SEND_CHECK and self.method in (METHOD_RELAY, METHOD_STUN):
            self._send_check(now)
        elif action == SEND and self.phase == CONFIRM and self.method == METHOD_STUN:
            self._send_stun(now, None, TRIAL)  # is the STUN server there?
        elif action in (SEND, SEND_CHECK):
            self._send(now, rport=action == SEND)
        elif action == LEARN:
            assert seen is not None
            self.public = None if seen[0] is None or seen[1] is None else (seen[0], seen[1])
            if (
                self.public is not None
                and self.public[0] == self.local[0]
                and checks.private_address(self.local[0])
                and not checks.private_address(self.server[0])
            ):
                self.public = None  # a SIP ALG rewrote the answer: nothing true to test
                self.rewritten = True
            self._wake = now + PROMOTE_DELAY
        elif action == WAIT_IDLE:
            self._wake = now + (0.0 if self._verify_pending else self.idle)
        else:
            assert self.phase == DONE
            self.result = action

    def _send(
        self, now: float, rport: bool, uri: Address | None = None, channel: str | None = None
    ) -> None:
        """An OPTIONS (with rport from the trial socket; without, the inbound check from AUX;
        with `uri`, the relayed check)."""
        self.cseq += 1
        branch = "z9hG4bK" + binascii.hexlify(self._random(10)).decode("ascii")
        call_id = f"{self.call_id}-{self.cseq}"  # a new Call-ID per request (RFC 3261 8.1.1.4)
        if rport:
            via = self.local
        else:
            assert self.public is not None
            via = self.public
        uri_host, uri_port = (self.uri_host, self.uri_port) if uri is None else uri
        payload = options_template(
            uri_host=uri_host,
            uri_port=uri_port,
            via_host=via[0],
            via_port=via[1],
            call_id=self.call_id,
            from_tag=self.from_tag,
            rport=rport,
        ).render(branch, self.cseq)
        self._tx = ClientTransaction(
            TransactionKey(branch, call_id, self.cseq), payload, "discovery", now, self.timeout
        )
        self._dest = self.server
        if channel is None:
            channel = TRIAL if rport else AUX
        self._outbox.append(Datagram(channel, payload, self.server))
        if (
            channel == TRIAL
            and self.method == METHOD_STUN
            and self.stun_server is not None
            and self.phase in (ESTABLISH, PROMOTE)
        ):
            # the mapping toward the STUN server, made and promoted with the binding's own
            txid = checks.stun_txid(self.call_id, self.cseq)
            self._outbox.append(Datagram(TRIAL, checks.stun_request(txid), self.stun_server))

    def _send_check(self, now: float) -> None:
        """The relayed or the STUN check, from the AUX socket (VERIFY or CHECK)."""
        if self.method == METHOD_STUN:
            if self.stun_mapped is None:  # the STUN server never answered the trial socket
                self._give_up_trial(now)
                return
            self._send_stun(now, self.stun_mapped[1], AUX)
            return
        assert self.public is not None  # IDLE ends as UNTESTABLE without one
        self._send(now, rport=True, uri=self.public, channel=AUX)

    def _give_up_trial(self, now: float) -> None:
        """The method cannot test this binding: the check's silence, at once."""
        self._tx = None
        self._step(SILENCE if self.phase == VERIFY else AUX_ANSWER, now)

    def _send_stun(self, now: float, response_port: int | None, channel: str) -> None:
        """A Binding request as this trial's transaction (the check, or the confirmation)."""
        assert self.stun_server is not None
        self.cseq += 1
        txid = checks.stun_txid(self.call_id, self.cseq)
        payload = checks.stun_request(txid, response_port)
        self._tx = ClientTransaction(
            TransactionKey(txid.hex(), "", self.cseq), payload, "discovery", now, self.timeout
        )
        self._dest = self.stun_server
        self._outbox.append(Datagram(channel, payload, self.stun_server))


MAX_FAILED_TRIALS = 3


class Discovery:
    """Trials one after another until the search is done; picks and falls back the method.

    The runtime opens a fresh socket for each trial and feeds the trial; this class only decides.
    """

    def __init__(
        self,
        server: Address,
        uri_host: str,
        uri_port: int,
        random_bytes: Callable[[int], bytes],
        max_idle: float = 600.0,
        start: float = 5.0,
        resolution: float = 0.1,
        resolution_min: float = 1.0,
        timeout: float = 3.0,
        stun_server: Address | None = None,
    ) -> None:
        self.server = server
        self.stun_server = stun_server
        self._verified = False  # the current method passed a verification
        self.uri_host = uri_host
        self.uri_port = uri_port
        self._random = random_bytes
        self.timeout = timeout
        self.search = LifetimeSearch(start, max_idle, resolution, resolution_min)
        self.method = METHOD_INBOUND
        self.failed = 0
        self.error: str | None = None
        self.done = False
        self.history: list[tuple[float, str, str]] = []  # (idle, method, result)

    def start_trial(self, local: Address, now: float) -> Trial | None:
        """The next trial on the fresh local address, or None when the search is over."""
        if self.done:
            return None
        idle = self.search.next_idle()
        if idle is None:
            self.done = True
            return None
        return Trial(
            idle,
            self.method,
            self.server,
            local,
            self.uri_host,
            self.uri_port,
            now,
            self._random,
            self.timeout,
            self.stun_server,
            verify=not self._verified,
        )

    def trial_done(self, trial: Trial) -> None:
        result = trial.result
        self.history.append((trial.idle, trial.method, result or ""))
        if result in (SURVIVED, EXPIRED):
            if trial.verify:
                self._verified = True
            if (
                trial.method == METHOD_RPORT
                and trial.public is not None
                and trial.public[1] == trial.local[1]
                and not self.search.trials
            ):
                self._give_up(
                    "the NAT keeps source ports and the server forces rport and does "
                    "not relay the check: neither the checks nor an rport change can "
                    "show expiry"
                    + (
                        ""
                        if self.stun_server is not None
                        else " (a stun_server with RFC 5780 would)"
                    )
                )
                return
            self.search.record(trial.idle, result == SURVIVED)
            return
        if result == UNSUPPORTED:
            if trial.rewritten:
                self._give_up(
                    f"{checks.alg_reason(trial.local[0])}: nothing to test; {checks.ALG_REMEDY}"
                )
            elif trial.public is None:
                self._give_up(
                    "the server gives no public address and port (no received, or no "
                    "rport value): nothing to test"
                )
            elif self.method != METHOD_RPORT:
                self._next_method()
            else:
                self._give_up("the binding cannot be tested")
            return
        self.failed += 1
        if self.failed >= MAX_FAILED_TRIALS:
            self._give_up(f"the server did not answer in {self.failed} trials")

    def _next_method(self) -> None:
        """The server forces rport (or does not relay, or the STUN server does not honour
        RESPONSE-PORT): the next method that may show expiry."""
        self._verified = False
        if self.method == METHOD_INBOUND:
            self.method = METHOD_RELAY
        elif self.method == METHOD_RELAY and self.stun_server is not None:
            self.method = METHOD_STUN
        else:
            self.method = METHOD_RPORT  # the port itself, behind a random-port NAT

    def _give_up(self, why: str) -> None:
        self.error = why
        self.done = True

    def result(self) -> SearchResult:
        return self.search.result(self.method)
