"""RFC 3261 §17.1.2 non-INVITE client transaction over UDP, as deadlines (no clock, no socket).

Rules:
- The request is sent at creation; Timer E retransmits it at T1, then doubling up to T2
  (0.5, 1, 2, 4, 4 ... seconds apart) until Timer F (the probe's `timeout`) fires.
- After a provisional (1xx) response retransmissions continue every T2 (§17.1.2.2).
- A final response (2xx-6xx) completes the transaction; RTT is from the LAST transmission
  (Karn's rule): retransmissions carry the same bytes, so an answer cannot tell which one it
  answers, and timing it from the first would report the retransmission timer (about 1.5 s
  after two losses) as the path's delay and make a binding `lagged` falsely. An answer to an
  earlier copy that arrives just after a retransmission reads short, never long.
- Once completed or timed out a transaction ignores everything (late duplicates are dropped by
  the caller, which no longer finds it).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from natkeepalive.record import dataclass

T1 = 0.5
T2 = 4.0

TRYING, PROCEEDING, COMPLETED, TIMED_OUT = "trying", "proceeding", "completed", "timed-out"


@dataclass(frozen=True)
class TransactionKey:
    branch: str
    call_id: str
    cseq: int


class ClientTransaction:
    __slots__ = (
        "_interval",
        "deadline",
        "first_sent",
        "key",
        "kind",
        "last_sent",
        "next_retransmit",
        "payload",
        "state",
        "transmissions",
    )

    def __init__(
        self,
        key: TransactionKey,
        payload: bytes,
        kind: str,
        now: float,
        timeout: float,
        t1: float = T1,
    ) -> None:
        self.key = key
        self.payload = payload
        self.kind = kind
        self.state = TRYING
        self.first_sent = now
        self.last_sent = now
        self.transmissions = 1
        self._interval = t1
        self.next_retransmit = now + t1
        self.deadline = now + timeout

    @property
    def done(self) -> bool:
        return self.state in (COMPLETED, TIMED_OUT)

    def due(self) -> float | None:
        # read twice per keepalive: no property, no min() call
        if self.state == COMPLETED or self.state == TIMED_OUT:
            return None
        retransmit, deadline = self.next_retransmit, self.deadline
        return retransmit if retransmit < deadline else deadline

    def on_timer(self, now: float) -> bytes | None:
        """Advance to `now`; returns the payload when it must be sent again."""
        if self.done:
            return None
        if now >= self.deadline:
            self.state = TIMED_OUT
            return None
        if now < self.next_retransmit:
            return None
        self._interval = T2 if self.state == PROCEEDING else min(self._interval * 2, T2)
        self.next_retransmit = now + self._interval
        self.last_sent = now
        self.transmissions += 1
        return self.payload

    def on_response(self, status: int, now: float) -> tuple[bool, float]:
        """Feed a matched response; returns (final, rtt_seconds)."""
        rtt = now - self.last_sent
        if self.done:
            return False, rtt
        if status < 200:
            if self.state == TRYING:
                self.state = PROCEEDING
            return False, rtt
        self.state = COMPLETED
        return True, rtt
