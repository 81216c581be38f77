"""The public mapping of one binding, learned from the top Via of each answer (RFC 3581).

Rules:
- States: NONE (nothing learned), LEARNED (a stable mapping), CONFIRMING (an answer showed another
  mapping; one more probe must show it again before anyone is told).
- The table maps (state, observation) to (next state, action). Observations compare the answer's
  mapping with the learned one (SAME/OTHER) and, while confirming, with the candidate (CANDIDATE).
- A mapping whose port is unknown (the server ignored rport) is compared by address only: we never
  invent a port, and a missing rport is reported once per binding (`rport-unsupported`), unless
  the caller defers it (a bare `rport` that the inbound check may resolve to the local port).
- The engine gives an address from `received`, or from the sent-by host when the answer has an
  rport value but no `received` (RFC 3261 §18.2.1: no NAT on the way), never from the sent-by
  host alone: without either the address stays what was learned before, or unknown (None,
  shown as "?"). An unknown part never differs from a known one, and is filled in (a
  refinement, no event) when an answer brings it.
- A confirmed change to a mapping that we left within FLAP_WINDOW, or a candidate that loses to the
  old mapping, means two mappings alternate (an ALG or a load balancer): `binding-flapping`,
  once per pair.
- A confirmed new port on the same address means the NAT dropped the old binding and made a new
  one: `binding-expired detected=remap` too, unless this cycle already reported the expiry.
"""

from __future__ import annotations

from natkeepalive import events as ev
from natkeepalive.sip.target import format_hostport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

    Mapping = tuple[Optional[str], Optional[int]]

NONE, LEARNED, CONFIRMING = "none", "learned", "confirming"
STATES = (NONE, LEARNED, CONFIRMING)
FIRST, SAME, OTHER, CANDIDATE = "first", "same", "other", "candidate"

# action names: learn, keep, confirm (send a confirmation probe), accept (report the change),
# revert (the candidate lost: flapping)
TRANSITIONS: dict[tuple[str, str], tuple[str, str]] = {
    (NONE, FIRST): (LEARNED, "learn"),
    (LEARNED, SAME): (LEARNED, "keep"),
    (LEARNED, OTHER): (CONFIRMING, "confirm"),
    (CONFIRMING, CANDIDATE): (LEARNED, "accept"),
    (CONFIRMING, SAME): (LEARNED, "revert"),
    (CONFIRMING, OTHER): (CONFIRMING, "confirm"),
}

FLAP_WINDOW = 600.0


def format_mapping(mapping: Mapping | None) -> str | None:
    if mapping is None:
        return None
    address, port = mapping
    if address is None:
        return None if port is None else f"?:{port}"
    return address if port is None else format_hostport(address, port)


def same_mapping(a: Mapping, b: Mapping) -> bool:
    """Whether nothing known of `a` differs from what is known of `b`."""
    return (a[0] is None or b[0] is None or a[0] == b[0]) and (
        a[1] is None or b[1] is None or a[1] == b[1]
    )


class Tracker:
    __slots__ = (
        "_flap_reported",
        "_left",
        "binding",
        "candidate",
        "candidate_expiry_known",
        "candidate_idle",
        "changed_at",
        "changes",
        "expiries",
        "mapping",
        "rewritten",
        "rport_reported",
        "server",
        "state",
    )

    def __init__(self, binding: str, server: str) -> None:
        self.binding = binding
        self.server = server
        self.state = NONE
        self.mapping: Mapping | None = None
        self.candidate: Mapping | None = None
        self.candidate_expiry_known = False
        self.candidate_idle = 0.0
        self.rport_reported = False
        # the answers name the binding's own lan address (a SIP ALG rewrote them): no mapping
        self.rewritten: str | None = None
        self.changes = 0
        self.expiries = 0
        self.changed_at: float | None = None
        self._left: dict[Mapping, float] = {}  # mappings we changed away from, and when
        self._flap_reported: frozenset[Mapping] | None = None

    def reset(self, server: str) -> None:
        """A new flow (new server address or local address): learn from scratch."""
        self.server = server
        self.state = NONE
        self.mapping = None
        self.candidate = None
        self.rewritten = None
        self._left.clear()

    def _classify(self, seen: Mapping) -> str:
        if self.mapping is None:
            return FIRST
        if same_mapping(seen, self.mapping):
            return SAME
        if (
            self.state == CONFIRMING
            and self.candidate is not None
            and same_mapping(seen, self.candidate)
        ):
            return CANDIDATE
        return OTHER

    def observe(
        self,
        seen: Mapping,
        now: float,
        idle_s: float,
        local: tuple[str, int],
        expiry_known: bool = False,
        defer_rport: bool = False,
    ) -> tuple[list[ev.Event], bool]:
        """One answer's mapping; returns (events, whether to send a confirmation probe now).
        `local` is (address, port), formatted only for the event that names it."""
        if self.state == LEARNED and seen[1] is not None and seen == self.mapping:
            return [], False  # (LEARNED, SAME) -> keep, with nothing to refine: most answers
        out: list[ev.Event] = []
        if seen[1] is None and not defer_rport:
            self.rport_unsupported(out)
        if seen == (None, None):
            return out, False  # nothing learned: no address, no port
        kind = self._classify(seen)
        self.state, action = TRANSITIONS[(self.state, kind)]
        if action == "learn":
            self.mapping = seen
            out.append(
                ev.BindingLearned(
                    self.binding, self.server, format_hostport(*local), format_mapping(seen) or ""
                )
            )
        elif action == "keep":
            old = self.mapping
            assert old is not None
            if (old[0] is None and seen[0] is not None) or (old[1] is None and seen[1] is not None):
                # the server started to send received or rport: a refinement
                self.mapping = (
                    old[0] if seen[0] is None else seen[0],
                    old[1] if seen[1] is None else seen[1],
                )
        elif action == "confirm":
            self.candidate = seen
            self.candidate_idle = idle_s  # the idle time before the first sight counts
            self.candidate_expiry_known = expiry_known or self.candidate_expiry_known
            return out, True
        elif action == "revert":
            assert self.mapping is not None and self.candidate is not None
            self._report_flap(self.mapping, self.candidate, out)
            self.candidate = None
            self.candidate_expiry_known = False
        elif action == "accept":
            old, new = self.mapping, seen
            assert old is not None
            expiry_known = expiry_known or self.candidate_expiry_known
            self.candidate = None
            self.candidate_expiry_known = False
            left_at = self._left.get(new)
            self._left = {m: t for m, t in self._left.items() if now - t <= FLAP_WINDOW}
            self._left[old] = now
            self.mapping = new
            self.changed_at = now
            if left_at is not None and now - left_at <= FLAP_WINDOW:
                self._report_flap(new, old, out)
            else:
                self.changes += 1
                if (old[0] == new[0] or None in (old[0], new[0])) and not expiry_known:
                    self.expiries += 1
                    out.append(
                        ev.BindingExpired(
                            self.binding,
                            format_mapping(old) or "",
                            round(self.candidate_idle, 1),
                            "remap",
                        )
                    )
                moved = old[0] is not None and new[0] is not None and old[0] != new[0]
                cause = "address-changed" if moved else "port-remapped"
                out.append(
                    ev.BindingChanged(
                        self.binding, format_mapping(old) or "", format_mapping(new) or "", cause
                    )
                )
        return out, False

    def rport_unsupported(self, out: list[ev.Event]) -> None:
        """The server gives no port: reported once per binding."""
        if not self.rport_reported:
            self.rport_reported = True
            out.append(ev.RportUnsupported(self.binding, self.server))

    def refine_port(self, port: int) -> None:
        """The inbound check proved the port that a bare `rport` left unknown."""
        if self.mapping is not None and self.mapping[1] is None:
            self.mapping = (self.mapping[0], port)

    def _report_flap(self, public: Mapping, alternate: Mapping, out: list[ev.Event]) -> None:
        pair = frozenset((public, alternate))
        if pair != self._flap_reported:
            self._flap_reported = pair
            out.append(
                ev.BindingFlapping(
                    self.binding, format_mapping(public) or "", format_mapping(alternate) or ""
                )
            )
