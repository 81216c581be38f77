"""What core/cycle.py, core/answers.py and core/methods.py may use of a binding's engine, as a
Protocol: they are functions of the engine kept apart from it, and naming the engine's class
would tie them and core/engine.py into an import cycle. Type checkers only: at run time this
module defines nothing and nothing imports it."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    from natkeepalive import events as ev
    from natkeepalive.config.model import ProbeSettings
    from natkeepalive.core.checks import CheckPlan
    from natkeepalive.core.reachability import Reachability
    from natkeepalive.core.tracker import Tracker
    from natkeepalive.core.transaction import ClientTransaction
    from natkeepalive.core.wire import Address, Datagram
    from natkeepalive.sip.request import OptionsTemplate

    class Engine(Protocol):
        """The fields and helpers of core/engine.py's BindingEngine (its bases in core/schedule.py
        and core/probes.py included) the cycle's functions use."""

        name: str
        settings: ProbeSettings
        call_id: str
        from_tag: str
        cseq: int
        server: Address | None
        local: Address | None
        interval: float
        flow_timer: float | None
        tracker: Tracker
        reach: Reachability
        phase: str
        outbox: list[Datagram]
        queued_events: list[ev.Event]
        next_keepalive: float | None
        last_response_at: float | None
        last_inbound_at: float | None
        inbound_result: str | None
        inbound_unsupported: tuple[Address, ...]
        detection_note: str | None
        debug_events: bool
        crlf_received: int
        responses: int
        probes_sent: int
        dropped: int
        duplicates: int
        last_rtt_ms: float | None
        last_status: int | None
        _tx: dict[str, ClientTransaction]
        _templates: dict[tuple[str, int, bool], OptionsTemplate]
        _plan: CheckPlan
        _check_next: bool
        _guess: str
        _proven: bool
        _unproven: int
        _suspect_idle: float
        _send_failing: bool

        @property
        def stun_server(self) -> Address | None: ...

        def set_interval(self, interval: float, reason: str, now: float) -> None: ...

        def _start_cycle(self, now: float, draw: float | None = None) -> None: ...

        def _send_keepalive(self, now: float, draw: float | None = None) -> None: ...

        def _send_probe(
            self, kind: str, now: float, *, timeout: float | None = None, t1: float = ...
        ) -> None: ...

        def _send(self, channel: str, payload: bytes) -> None: ...

        def _bring_forward(self, at: float) -> None: ...

        def _finish(self, branch: str) -> None: ...

        def _just_finished(self, branch: str) -> bool: ...

        def _stale(self, tx: ClientTransaction) -> bool: ...

        def _renew(self, now: float) -> None: ...
