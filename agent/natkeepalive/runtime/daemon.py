"""The daemon: one thread, one epoll loop (runtime/poller.py), its deadlines in runtime/timers.py.

Rules:
- The process waits in the poller until the earliest deadline of any binding or housekeeping
  timer; every wake-up does the due work and nothing else (no polling).
- Signals only set flags (through the wake-up fd): SIGTERM/SIGINT stop, SIGHUP reloads, SIGUSR1
  writes the status file now, SIGUSR2 re-probes every binding now (an interface came up).
- What a signal or an address change does (reload, re-probe) is in runtime/control.py.
- The status file is written when a reported state changed (coalesced to STATUS_MIN_GAP) and, for
  the counters alone, every STATUS_COUNTERS_EVERY seconds when they moved; the metrics file
  (metrics_file) with it (runtime/outputs.py, runtime/housekeeping.py).
- The local address is checked whenever a binding's timer fires and every NETWATCH_EVERY s.
- A retransmission's deadline is queued beside the heap (runtime/timers.py): nearly every one
  is answered first and never reaches the heap.
- Errors from the network are counted, never fatal. A full socket buffer drops a datagram like
  the network would; a binding's socket is read one datagram per wake-up, the others at most
  READ_BURST (runtime/sockets.py), so a flood cannot starve the timers.
- The AUX sockets' answers are SIP and go to their binding (or discovery trial) by Call-ID; the
  engine's datagrams name their channel and destination, so a check may address any server.
"""

from __future__ import annotations

import gc
import os
import time

from natkeepalive import __version__, events as ev
from natkeepalive.config.model import Config
from natkeepalive.core.checks import looks_like_stun
from natkeepalive.core.engine import AUX, BINDING, jitter_draw
from natkeepalive.core.methods import receive_stun
from natkeepalive.core.reachability import UNREACHABLE
from natkeepalive.cstdlib import heappop, socket
from natkeepalive.errors import ConfigError, SipParseError, SocketSetupError
from natkeepalive.runtime.addrwatch import AddressWatch
from natkeepalive.runtime.control import Control
from natkeepalive.runtime.entropy import RandomPool
from natkeepalive.runtime.housekeeping import Housekeeping
from natkeepalive.runtime.logsink import Sink
from natkeepalive.runtime.notify import Notifier
from natkeepalive.runtime.outputs import Outputs, counters, make_hooks, summary
from natkeepalive.runtime.poller import Poller
from natkeepalive.runtime.process import Wakeup, drop_privileges, raise_file_limit
from natkeepalive.runtime.registry import Registry
from natkeepalive.runtime.slot import Slot
from natkeepalive.runtime.sockets import AuxSockets, Resolver, drain
from natkeepalive.runtime.timers import Timers
from natkeepalive.sip.message import parse_response

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from natkeepalive.runtime.auto import AutoInterval
    from natkeepalive.runtime.timers import Owner as Timed

# Keepalives whose window is open (engine.KEEPALIVE_EARLY, the jitter's range) join a wake-up,
# at most BATCH of them: the kernel wakes the loop and the server once for the lot. Sent together
# with one draw for their next wait, they are due together again. BATCH keeps a pass to about a
# millisecond, so it never holds answers or later deadlines up.
BATCH = 64
ADDRESSES = "addresses"  # the selector's tags: the rtnetlink socket, the inbound-check sockets
AUX_TAG = "aux"
STATUS_MIN_GAP = 1.0
# The first keepalives of many bindings are spread out, at least START_GAP apart (about what one
# keepalive costs the loop, with margin) and over at least START_SPREAD, never past an interval:
# jittered waits keep the spacing, so a burst at start would recur every interval.
START_SPREAD = 1.0
START_GAP = 0.002


class Daemon(Control):
    def __init__(
        self,
        config: Config,
        sink: Sink,
        status_path: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        random_bytes: Callable[[int], bytes] | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.sink = sink
        self.status_path_override = status_path
        self.clock = clock
        self.wall = wall
        self.random_bytes = RandomPool() if random_bytes is None else random_bytes
        self.selector = Poller()
        self.registry = Registry(self.selector)
        self.slots = self.registry.slots  # the same dicts, for short
        self.autos = self.registry.autos
        self.aux = AuxSockets(lambda sock: self.selector.register(sock, AUX_TAG))
        self.timers = Timers()
        self.hooks = make_hooks(config.hooks)
        self.notifier = Notifier.from_env(environ if environ is not None else dict(os.environ))
        self.started_at = wall()
        self._stop_reason: str | None = None
        self._stopped: str | None = None
        self.outputs = Outputs(sink, self.notifier, self.started_at)
        self.routine = Housekeeping(0.0, watchdog=False)  # replaced at start
        self.wakeup = Wakeup()
        self.resolver = Resolver(self.wakeup.wake)
        self.addresses = AddressWatch.open()

    # ------------------------------------------------------------------ set-up

    @property
    def status_path(self) -> str:
        return self.status_path_override or self.config.status_file

    def start(self) -> None:
        """Open every binding's socket; a port that cannot be bound is fatal at start."""
        now = self.clock()
        raise_file_limit(len(self.config.bindings))
        if self.addresses.sock is not None:
            self.selector.register(self.addresses.sock, ADDRESSES)
        self._add_slots(self.config, now, fatal=True)
        try:
            drop_privileges(self.config.user, self.status_path, self.config.source)
        except ConfigError:
            self._close_all()
            raise
        self.selector.register(self.wakeup.reader, None)
        self.wakeup.install()
        self.emit(
            ev.Started(
                __version__,
                len(self.slots),
                self.config.source,
                self.status_path,
                self.sink.describe(),
            )
        )
        self.notifier.ready(summary(self.slots.values()))
        self.routine = Housekeeping(now, self.notifier.watchdog_interval() is not None)
        self._write_status(now)
        gc.collect()  # start-up's cyclic garbage (imports, the configuration's reading)

    def _add_slots(
        self, config: Config, now: float, fatal: bool, names: set[str] | None = None
    ) -> None:
        chosen = [b for b in config.bindings if names is None or b.name in names]
        count = max(len(chosen), 1)
        shortest = min((b.settings.interval for b in chosen), default=START_SPREAD)
        spread = min(max(START_SPREAD, count * START_GAP), shortest)
        for index, binding in enumerate(chosen):
            slot = Slot(binding, self.random_bytes, self.addresses)
            slot.engine.debug_events = self.sink.wants(ev.DEBUG)
            slot.start_offset = spread * index / count
            self.registry.add(slot)
            found: list[ev.Event] = []
            try:
                # in place at start (a port in use is fatal then), off the loop afterwards
                slot.refresh(now, found, None if fatal else self.resolver)
            except SocketSetupError as exc:
                if fatal:
                    self._close_all()
                    raise
                slot.engine.send_failed(str(exc))
            self.registry.track(slot)
            self._after(slot, found, now)
            if binding.settings.interval_auto:
                from natkeepalive.runtime.auto import AutoInterval

                auto = AutoInterval(slot, self.random_bytes, now)
                self.autos[slot.name] = auto
                self._after_auto(auto, [], now)

    # ------------------------------------------------------------------ the loop

    def run(self) -> int:
        self.start()
        try:
            while self._stop_reason is None:
                self.run_once()
        finally:
            self.shutdown(self._stop_reason or "error")
        return 0

    def run_once(self) -> None:
        now = self.clock()
        timeout = self._next_wake(now)
        for sock, tag in self.selector.select(timeout):
            if isinstance(tag, Slot):
                self._read_binding(tag)
            elif sock is self.wakeup.reader:
                self.wakeup.drain()
            elif tag is ADDRESSES:
                self._addresses_changed()
            elif tag is AUX_TAG:
                self._read_aux(sock)
            else:  # auto and discovery are imported only for bindings with interval: auto
                self._read_auto(tag)  # type: ignore[arg-type]
        if self.wakeup.pending:
            self._handle_signals()
        now = self.clock()
        for name in self.resolver.ready():
            slot = self.slots.get(name.partition("\0")[0])  # "\0stun": its stun_server
            if slot is None:
                self.resolver.forget(name)
                continue
            found: list[ev.Event] = []
            self._refresh(slot, now, found)
            self._after(slot, found, now)
        # A change announced since the poller returned must not let a keepalive go out from an
        # address the answers still think current (only checked when a timer pass will send:
        # an answer leaves its retransmission's entry behind, dropped here first).
        heap = self.timers.settle(now)
        if heap:
            deadline, _seq, owner = heap[0]
            if deadline <= now or self._may_go_early(deadline, owner, now):
                self._addresses_changed()
        self._run_timers(now)
        self._housekeeping(now)

    def _next_wake(self, now: float) -> float:
        heap = self.timers.settle(now)  # or each superseded entry would cost a wake-up
        candidates = [self.routine.wake_by()]
        if heap:
            candidates.append(heap[0][0])
        if self.outputs.dirty:
            candidates.append(self.outputs.written_at + STATUS_MIN_GAP)
        hook = self.hooks.next_deadline()
        if hook is not None:
            candidates.append(hook)
        return max(0.0, min(candidates) - now)

    def _run_timers(self, now: float) -> None:
        # Everything due goes in this pass, and up to BATCH keepalives that may go early (see
        # BATCH); the pass ends at the first entry that is neither.
        joined = 0
        draw: float | None = None  # drawn when first needed: most wake-ups are for answers
        heap, resolver = self.timers.heap, self.resolver
        while heap:
            deadline, _seq, owner = heap[0]
            if deadline > now:
                if joined >= BATCH:
                    break
                if not self._may_go_early(deadline, owner, now):
                    break
            heappop(heap)
            if owner.scheduled != deadline:
                continue  # superseded
            owner.scheduled = None
            if owner.__class__ is not Slot:  # a discovery's (interval: auto)
                auto: AutoInterval = owner  # type: ignore[assignment]
                found_auto: list[ev.Event] = []
                auto.handle_timer(now, found_auto)
                self._after_auto(auto, found_auto, now)
                continue
            slot = owner
            found: list[ev.Event] = []
            # Every timer may send (a keepalive, a retransmission): one from a local address that
            # moved gets a new NAT mapping, which would be reported as an expiry and a remap. So
            # look for the move first (a connect(), no packet, and only after rtnetlink announced
            # a change: runtime/addrwatch.py): it is then reported as what it is,
            # local-address-changed and a new flow. refresh() resolves only when due. A quiet
            # slot (Slot.quiet) has nothing to look at, and its socket stays registered as is.
            if slot.engine.reach.state == UNREACHABLE or not slot.quiet(now, resolver):
                slot.resolve_due(now)  # brings the next lookup forward while unreachable
                self._refresh(slot, now, found)
            if draw is None:
                draw = jitter_draw(self.random_bytes)  # one for the pass (engine.handle_timer)
            slot.engine.handle_timer(now, early=True, draw=draw)
            self._after(slot, found, now)
            if deadline > now and slot.scheduled == deadline:
                break  # it did not go after all: never spin on it
            joined += 1
            if joined % BATCH == 0:
                draw = None  # a new group: no group grows past BATCH
            # The next binding's keepalive is counted from when it really goes: with one `now`
            # for the whole pass, every binding sent in it would get the same next deadline, and
            # bindings would clump into ever larger passes.
            now = self.clock()

    @staticmethod
    def _may_go_early(deadline: float, owner: Timed, now: float) -> bool:
        """Whether the timer entry (deadline, owner) may be taken before its deadline: a
        keepalive whose window is open, or an entry that is superseded (dropped at no cost)."""
        if owner.scheduled != deadline:
            return True
        if owner.__class__ is not Slot:
            return False
        engine = owner.engine
        return engine.next_keepalive == deadline and engine.may_go_early(now)

    def _refresh(self, slot: Slot, now: float, found: list[ev.Event]) -> None:
        try:
            slot.refresh(now, found, self.resolver)
        except SocketSetupError as exc:
            slot.engine.send_failed(str(exc))
        self.registry.track(slot)

    def _housekeeping(self, now: float) -> None:
        routine = self.routine
        if routine.netwatch_due(now):
            self.addresses.forget()
            for slot in list(self.slots.values()):
                found: list[ev.Event] = []
                self._refresh(slot, now, found)
                self._after(slot, found, now)
        if routine.watchdog_due(now, self.notifier.watchdog_interval()):
            self.notifier.watchdog()
        for problem in self.hooks.poll(now):
            command = self.config.hooks.command or ""
            prefix = f"hook {command} "
            if problem.startswith(prefix):  # the event carries the command on its own
                problem = problem[len(prefix) :]
            self.emit(ev.HookFailed(command, problem))
        if routine.drops.due(now):
            report = routine.drop_report(now, sum(s.engine.dropped for s in self.slots.values()))
            if report is not None:
                self.emit(ev.DatagramsDropped(*report))
        if routine.counters_due(now) and counters(self.slots.values()) != self.outputs.counter_mark:
            self.outputs.dirty = True
        if self.outputs.dirty and now >= self.outputs.written_at + STATUS_MIN_GAP:
            self._write_status(now)

    # ------------------------------------------------------------------ I/O

    def _read_binding(self, slot: Slot) -> None:
        sock = slot.sock
        if sock is None:
            return
        # One datagram per readiness: a binding's socket holds one answer at a time, and trying
        # for a second costs a raised BlockingIOError per answer. More waiting (a flood) keeps
        # the socket ready, so the loop comes back to it after its timers.
        try:
            data, source = sock.recvfrom(65535)
        except OSError:  # nothing after all, or a queued ICMP error: lost like a datagram
            return
        now = self.clock()
        slot.engine.receive_datagram(data, (source[0], source[1]), now, BINDING)
        self._after(slot, [], now)

    def _read_aux(self, sock: socket.socket) -> None:
        now = self.clock()
        for data, source in drain(sock):
            if looks_like_stun(data):  # a STUN check's answer: its id starts with a Call-ID's
                stun_owner = self.registry.answered(data[8:16].hex() + "-")
                if isinstance(stun_owner, Slot):
                    if receive_stun(stun_owner.engine, data, now, AUX):
                        self._after(stun_owner, [], now)
                elif stun_owner is not None:
                    found_stun: list[ev.Event] = []
                    stun_owner.receive(data, (source[0], source[1]), now, AUX, found_stun)
                    self._after_auto(stun_owner, found_stun, now)
                continue
            try:
                response = parse_response(data)
            except SipParseError:
                continue
            owner = self.registry.answered(response.call_id)
            if isinstance(owner, Slot):
                owner.engine.receive_response(response, source, now, AUX)
                self._after(owner, [], now)
            elif owner is not None:
                found: list[ev.Event] = []
                owner.receive_response(response, source, now, AUX, found)
                self._after_auto(owner, found, now)

    def _read_auto(self, auto: AutoInterval) -> None:
        from natkeepalive.core.discovery import TRIAL

        sock = auto.sock
        if sock is None:
            return
        now = self.clock()
        found: list[ev.Event] = []
        for data, source in drain(sock):
            auto.receive(data, source, now, TRIAL, found)
        self._after_auto(auto, found, now)

    def _after_auto(self, auto: AutoInterval, found: list[ev.Event], now: float) -> None:
        """Keep a discovery's socket registered, send its datagrams, schedule its deadline."""
        self.registry.track(auto)
        for datagram in auto.datagrams_to_send():
            if datagram.channel == AUX:
                self.aux.send(datagram.payload, datagram.destination)
            else:
                auto.send(datagram.payload, datagram.destination)
        for event in found:
            self.emit(event)
        if self.slots.get(auto.slot.name) is auto.slot:
            self._after(auto.slot, [], now)
        self._schedule_auto(auto)

    def _schedule_auto(self, auto: AutoInterval) -> None:
        deadline = auto.next_deadline()
        if deadline is not None and deadline != auto.scheduled:
            self.timers.schedule(auto, deadline)

    def _after(self, slot: Slot, found: list[ev.Event], now: float) -> None:
        """Flush a slot's datagrams and events, and put its next deadline in the heap."""
        engine = slot.engine
        # Twice per keepalive (its sending, its answer): the engine's lists are looked at before
        # they are asked for, since an answer usually leaves both empty.
        if engine.outbox:
            for datagram in engine.datagrams_to_send():
                if datagram.channel == BINDING:
                    error = slot.send(datagram.payload, datagram.destination)
                else:
                    error = self.aux.send(datagram.payload, datagram.destination)
                if error is not None:
                    engine.send_failed(error)
                    self.routine.recheck(now + 1.0)
        for event in found:
            self.emit(event)
        auto = self.autos.get(slot.name) if self.autos else None
        if engine.queued_events:
            pending = engine.events()
            while pending:
                for event in pending:
                    self.emit(event)
                    if auto is not None:
                        auto.on_event(event, now)
                pending = engine.events()  # set_interval from on_event reports too
        if auto is not None:
            self._schedule_auto(auto)
        deadline = engine.next_deadline()
        if slot.resolve_failing or (slot.server is None and deadline is None):
            deadline = slot.next_resolve if deadline is None else min(deadline, slot.next_resolve)
        if deadline != slot.scheduled and deadline is not None:
            # a transaction's deadline (not the next keepalive's) is likely superseded
            self.timers.schedule(slot, deadline, queued=deadline != engine.next_keepalive)

    # ------------------------------------------------------------------ events and status

    def emit(self, event: ev.Event) -> None:
        self.sink.emit(event)
        if event.SEVERITY < ev.DEBUG:
            self.outputs.count(event)
            self.hooks.fire(event, self.clock())

    def _write_status(self, now: float) -> None:
        self.outputs.write(
            self.status_path,
            self.config.metrics_file,
            self.slots,
            self.autos,
            self.wall(),
            now,
            self._stopped,
        )

    # ------------------------------------------------------------------ shutdown

    def shutdown(self, reason: str) -> None:
        self.notifier.stopping()
        self.emit(ev.Stopped(reason))
        now = self.clock()
        self._stopped = reason  # the last status file says so: `status` then reports no agent
        self._write_status(now)
        self.outputs.remove_metrics(self.config.metrics_file)  # a stopped agent keeps nothing alive
        self.hooks.close()
        self._close_all()
        self.sink.close()

    def _close_all(self) -> None:
        self.registry.close()
        self.aux.close()
        self.addresses.close()
        self.selector.close()
        self.wakeup.close()
