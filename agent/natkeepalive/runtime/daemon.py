"""The daemon: one thread, one epoll loop (runtime/poller.py), one timer heap and its queue.

Rules:
- The process sleeps in select() until the earliest deadline of any binding or housekeeping timer;
  every wake-up does the due work and nothing else (no polling).
- Signals only set flags (through the wake-up fd): SIGTERM/SIGINT stop, SIGHUP reloads, SIGUSR1
  writes the status file now, SIGUSR2 re-probes every binding now (an interface came up).
- A reload keeps every binding whose configuration is unchanged, with its socket, state and learned
  mapping; a bad file is rejected (`config-rejected`) and the old configuration keeps running.
- The status file is written when a reported state changed (coalesced to STATUS_MIN_GAP) and, for
  the counters alone, every STATUS_COUNTERS_EVERY seconds when they moved; the metrics file
  (metrics_file) with it.
- The local address is checked whenever a binding's timer fires and every NETWATCH_EVERY s.
- A retransmission's deadline waits in a queue beside the heap (Daemon.later), in the order it
  was set: nearly every one is answered first and then dropped from the queue's head, never
  having been in the heap. It joins the heap once it is due or the earliest deadline of all.
- Errors from the network are counted, never fatal. A full socket buffer drops a datagram like
  the network would; a binding's socket is read one datagram per wake-up, the others at most
  READ_BURST, so a flood cannot starve the timers.
"""

from __future__ import annotations

import _heapq as heapq  # the C functions: heapq.py adds merge, nlargest, … (+50 kB)
import _socket as socket  # not `socket`: its enum wrappers and `enum` cost 0.6 MB
import gc
import os
import time

from natkeepalive import __version__
from natkeepalive import events as ev
from natkeepalive.config.model import Config
from natkeepalive.core.checks import looks_like_stun
from natkeepalive.core.engine import AUX, BINDING, Address, jitter_draw
from natkeepalive.core.reachability import UNREACHABLE
from natkeepalive.core.tracker import format_mapping
from natkeepalive.errors import ConfigError, SipParseError, SocketSetupError
from natkeepalive.runtime.addrwatch import AddressWatch
from natkeepalive.runtime.configproc import load_config_in_child
from natkeepalive.runtime.entropy import RandomPool
from natkeepalive.runtime.logsink import Sink
from natkeepalive.runtime.notify import Notifier
from natkeepalive.runtime.poller import Poller
from natkeepalive.runtime.slot import Slot
from natkeepalive.runtime.sockets import Resolver, family_of, send_datagram, wildcard
from natkeepalive.runtime.status import iso_utc, write_status
from natkeepalive.sip.message import parse_response

TYPE_CHECKING = False  # typing costs 1.6 MB at run time; mypy treats this name as True
if TYPE_CHECKING:
    import signal
    from collections import deque
    from collections.abc import Iterator
    from typing import Callable

    from natkeepalive.config.model import HooksConfig
    from natkeepalive.runtime.auto import AutoInterval
    from natkeepalive.runtime.hooks import HookRunner
    from natkeepalive.runtime.metrics import MetricsWriter
else:
    # the C modules: `signal` wraps it in enums, and `enum` costs 0.6 MB with socket's;
    # `collections` holds the same deque and costs 0.35 MB
    import _signal as signal
    from _collections import deque

READ_BURST = 64
# Keepalives whose window is open (engine.KEEPALIVE_EARLY, the jitter's range) join a wake-up,
# at most BATCH of them: the kernel wakes the loop and the server once for the lot. Sent together
# with one draw for their next wait, they are due together again. BATCH keeps a pass to about a
# millisecond (about 20 µs a keepalive), so it never holds answers or later deadlines up.
BATCH = 64
ADDRESSES = "addresses"  # the selector's tags: the rtnetlink socket, the inbound-check sockets
AUX_TAG = "aux"
ADDRESS_SETTLE = 0.2  # one change comes as several messages: check the bindings once they are in
NETWATCH_EVERY = 30.0
STATUS_MIN_GAP = 1.0
STATUS_COUNTERS_EVERY = 30.0
DROP_REPORT_EVERY = 60.0
HOUSEKEEPING_EARLY = 1 / 3  # of each routine task's period (above)
HOUSEKEEPING_LATE = 1 / 2
FD_RESERVE = 32  # status file, syslog, aux and discovery sockets, hooks, the wake-up pair
# The first keepalives of many bindings are spread out, at least START_GAP apart (about what one
# keepalive costs the loop, with margin) and over at least START_SPREAD, never past an interval:
# jittered waits keep the spacing, so a burst at start would recur every interval.
START_SPREAD = 1.0
START_GAP = 0.002
# Events counted per binding for the metrics file, and the field that splits the count
COUNTED_EVENTS = {"binding-changed": "cause", "binding-expired": "detected",
                  "binding-flapping": ""}


class Daemon:
    def __init__(self, config: Config, sink: Sink, status_path: str | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 random_bytes: Callable[[int], bytes] | None = None,
                 environ: dict[str, str] | None = None) -> None:
        self.config = config
        self.sink = sink
        self.status_path_override = status_path
        self.clock = clock
        self.wall = wall
        self.random_bytes = RandomPool() if random_bytes is None else random_bytes
        self.selector = Poller()
        self.slots: dict[str, Slot] = {}
        self.autos: dict[str, AutoInterval] = {}  # bindings with interval: auto
        self._registered: dict[str, socket.socket] = {}  # selector keys, by owner
        self.by_call_id: dict[str, Slot] = {}
        self.aux: dict[int, socket.socket] = {}
        self.heap: list[tuple[float, int, str]] = []
        # Entries like the heap's whose deadlines never decrease: a retransmission is due T1
        # after its send, sends go in time order, and the answer usually supersedes it.
        # Dropping one from here is O(1); from the heap it was a pop, one in two of the heap's
        # pops (0.39 us per answer at 1000 bindings, tests/bench/hotpath.py).
        self.later: deque[tuple[float, int, str]] = deque()
        self._seq = 0
        self.hooks = make_hooks(config.hooks)
        self.notifier = Notifier.from_env(environ if environ is not None else dict(os.environ))
        self.started_at = wall()
        self._pending_signals: set[int] = set()
        self._stop_reason: str | None = None
        self._stopped: str | None = None
        self._status_dirty = False
        self._status_written_at = float("-inf")
        self._status_counters_at = 0.0
        self._counter_mark = 0
        self._status_error: str | None = None
        # metrics_file: the writer (imported only when set), and each binding's counts of the
        # events whose cause the engine does not keep apart (its totals are in the tracker)
        self._metrics: MetricsWriter | None = None
        self._metrics_error: str | None = None
        self.cause_counts: dict[str, dict[str, int]] = {}
        self._netwatch_at = 0.0
        self._recheck_at: float | None = None  # a local-address check asked for, not routine
        self._drops_reported = 0
        self._drops_at = 0.0
        self._drops_since = 0.0
        self._watchdog_at: float | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self.resolver = Resolver(self._wake)
        self.addresses = AddressWatch.open()

    # ------------------------------------------------------------------ set-up

    @property
    def status_path(self) -> str:
        return self.status_path_override or self.config.status_file

    def start(self) -> None:
        """Open every binding's socket; a port that cannot be bound is fatal at start."""
        now = self.clock()
        self._raise_file_limit(len(self.config.bindings))
        if self.addresses.sock is not None:
            self.selector.register(self.addresses.sock, ADDRESSES)
        self._add_slots(self.config, now, fatal=True)
        self._drop_privileges()
        self._install_signals()
        self.emit(ev.Started(__version__, len(self.slots), self.config.source, self.status_path,
                             self.sink.describe()))
        self.notifier.ready(self._summary())
        interval = self.notifier.watchdog_interval()
        if interval is not None:
            self._watchdog_at = now
        self._netwatch_at = now + NETWATCH_EVERY
        self._status_counters_at = now + STATUS_COUNTERS_EVERY
        self._drops_at = now + DROP_REPORT_EVERY
        self._drops_since = now
        self._write_status(now)
        gc.collect()  # start-up's cyclic garbage (imports, the configuration's reading): 70 kB

    def _add_slots(self, config: Config, now: float, fatal: bool,
                   names: set[str] | None = None) -> None:
        chosen = [b for b in config.bindings if names is None or b.name in names]
        count = max(len(chosen), 1)
        shortest = min((b.settings.interval for b in chosen), default=START_SPREAD)
        spread = min(max(START_SPREAD, count * START_GAP), shortest)
        for index, binding in enumerate(chosen):
            slot = Slot(binding, self.random_bytes, self.addresses)
            slot.engine.debug_events = self.sink.wants(ev.DEBUG)
            slot.start_offset = spread * index / count
            self.slots[slot.name] = slot
            self.by_call_id[slot.engine.call_id] = slot
            found: list[ev.Event] = []
            try:
                # in place at start (a port in use is fatal then), off the loop afterwards
                slot.refresh(now, found, None if fatal else self.resolver)
            except SocketSetupError as exc:
                if fatal:
                    self._close_all()
                    raise
                slot.engine.send_failed(str(exc))
            self._register(slot)
            self._after(slot, found, now)
            if binding.settings.interval_auto:
                from natkeepalive.runtime.auto import AutoInterval

                auto = AutoInterval(slot, self.random_bytes, now)
                self.autos[slot.name] = auto
                self._after_auto(auto, [], now)

    def _raise_file_limit(self, bindings: int) -> None:
        """One descriptor per binding, plus a few: raise the soft limit as far as allowed."""
        needed = bindings + FD_RESERVE
        current = os.sysconf("SC_OPEN_MAX")  # the soft limit (-1: none), without `resource`
        if current < 0 or current >= needed:
            return  # the usual case: `resource` would stay mapped for nothing (32 kB PSS)
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < needed:
            target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            except (ValueError, OSError):
                pass
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft != resource.RLIM_INFINITY and soft < needed:
            raise SocketSetupError(
                f"{bindings} bindings need about {needed} open files, but the limit is {soft} "
                f"(hard limit {hard}); raise it (ulimit -n, LimitNOFILE=, procd limits)")

    def _drop_privileges(self) -> None:
        user = self.config.user
        if user is None or os.geteuid() != 0:
            return
        # Reloads load the file in a child of this process, which then runs as `user` and may
        # not be able to read the Python installation (a root-only virtualenv): import the
        # loader while still root. Costs PyYAML's memory, only in this rare set-up (ports
        # below 1024; packaged services get their user from procd or systemd instead).
        from natkeepalive.config.loader import lookup_user

        ids = lookup_user(user)
        if ids is None:  # `check` refuses this; the account may have gone since
            self._close_all()
            raise ConfigError(f"no such user {user!r} on this host (create it, or remove "
                              "'user:')", file=self.config.source, key="user")
        uid, gid = ids
        # The status file's folder (under /run, gone after a reboot) is made while root can,
        # and given to the user who writes the file from now on.
        folder = os.path.dirname(self.status_path)
        if folder and not os.path.isdir(folder):
            try:
                os.makedirs(folder, mode=0o755, exist_ok=True)
                os.chown(folder, uid, gid)
            except OSError:
                pass  # reported as status-write-failed when the file cannot be written
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    def _install_signals(self) -> None:
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        self.selector.register(self._wake_r, None)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                       signal.SIGUSR2):
            signal.signal(signum, self._on_signal)
        # a finished hook wakes the loop through the wake-up fd, so it is reaped at once
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)

    def _wake(self) -> None:
        """From a resolver thread: a lookup finished; the loop picks it up after select()."""
        try:
            self._wake_w.send(b"r")
        except OSError:
            pass

    def _on_signal(self, signum: int, frame: object) -> None:
        self._pending_signals.add(signum)

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
            elif sock is self._wake_r:
                self._drain_wakeups()
            elif tag is ADDRESSES:
                self._addresses_changed()
            elif tag is AUX_TAG:
                self._read_aux(sock)
            else:  # auto and discovery are imported only for bindings with interval: auto
                self._read_auto(tag)  # type: ignore[arg-type]
        if self._pending_signals:
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
        # A change announced since select() returned must not let a keepalive go out from an
        # address the answers still think current (only checked when a timer pass will send:
        # an answer leaves its retransmission's entry behind, dropped here first).
        heap = self._drop_superseded(now)
        if heap:
            deadline, _seq, name = heap[0]
            if deadline <= now or self._may_go_early(deadline, self.slots.get(name), name, now):
                self._addresses_changed()
        self._run_timers(now)
        self._housekeeping(now)

    def _next_wake(self, now: float) -> float:
        heap = self._drop_superseded(now)  # or each would cost a wake-up that does nothing
        candidates = [self._netwatch_at + NETWATCH_EVERY * HOUSEKEEPING_LATE,
                      self._status_counters_at + STATUS_COUNTERS_EVERY * HOUSEKEEPING_LATE,
                      self._drops_at + DROP_REPORT_EVERY * HOUSEKEEPING_LATE]
        if self._recheck_at is not None:
            candidates.append(self._recheck_at)
        if heap:
            candidates.append(heap[0][0])
        if self._status_dirty:
            candidates.append(self._status_written_at + STATUS_MIN_GAP)
        if self._watchdog_at is not None:
            candidates.append(self._watchdog_at)
        hook = self.hooks.next_deadline()
        if hook is not None:
            candidates.append(hook)
        return max(0.0, min(candidates) - now)

    def _drop_superseded(self, now: float) -> list[tuple[float, int, str]]:
        """Pop superseded entries off the heap's top and the queue's head (an answered probe
        leaves its retransmission deadline behind), and move what is due by `now` or earliest
        of all from the queue into the heap. Returns the heap, whose top is then the earliest
        live deadline."""
        heap, later = self.heap, self.later
        while heap and self._superseded(heap[0][0], heap[0][2]):
            heapq.heappop(heap)
        while later:
            deadline, _seq, name = later[0]
            if self._superseded(deadline, name):
                later.popleft()
            elif deadline <= now or not heap or deadline < heap[0][0]:
                heapq.heappush(heap, later.popleft())
            else:
                break
        return heap

    def _superseded(self, deadline: float, name: str) -> bool:
        """A heap entry whose owner has since been rescheduled or removed."""
        slot = self.slots.get(name)  # first: a binding's name has no ':', so is never "auto:…"
        if slot is not None:
            return slot.scheduled != deadline
        if name.startswith("auto:"):
            auto = self.autos.get(name[5:])
            return auto is None or auto.scheduled != deadline
        return True

    def _run_timers(self, now: float) -> None:
        # Everything due goes in this pass, and up to BATCH keepalives that may go early (see
        # BATCH); the pass ends at the first entry that is neither.
        joined = 0
        draw: float | None = None  # drawn when first needed: most wake-ups are for answers
        heap, slots, resolver = self.heap, self.slots, self.resolver
        while heap:
            deadline, _seq, name = heap[0]
            slot = slots.get(name)
            if deadline > now:
                if joined >= BATCH:
                    break
                if not self._may_go_early(deadline, slot, name, now):
                    break
            heapq.heappop(heap)
            if slot is None:
                if name.startswith("auto:"):
                    auto = self.autos.get(name[5:])
                    if auto is not None and auto.scheduled == deadline:
                        auto.scheduled = None
                        found_auto: list[ev.Event] = []
                        auto.handle_timer(now, found_auto)
                        self._after_auto(auto, found_auto, now)
                continue
            if slot.scheduled != deadline:
                continue  # superseded
            slot.scheduled = None
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
            slot.engine.handle_timer(now, True, draw)
            self._after(slot, found, now)
            if deadline > now and slot.scheduled == deadline:
                break  # it did not go after all: never spin on it
            joined += 1
            if joined % BATCH == 0:
                draw = None  # a new group: no group grows past BATCH
            # The next binding's keepalive is counted from when it really goes: with one `now`
            # for the whole pass, every binding sent in it got the same next deadline, and
            # bindings clumped into ever larger passes (10 000 bindings: p99 116 ms late).
            now = self.clock()

    def _may_go_early(self, deadline: float, slot: Slot | None, name: str, now: float) -> bool:
        """Whether the heap entry (deadline, name), whose slot the caller looked up, may be
        taken before its deadline: a keepalive whose window is open, or an entry that is
        superseded (dropped at no cost)."""
        if slot is None:
            if name.startswith("auto:"):
                auto = self.autos.get(name[5:])
                return auto is None or auto.scheduled != deadline  # superseded: dropped at no cost
            return True
        if slot.scheduled != deadline:
            return True
        engine = slot.engine
        return engine.next_keepalive == deadline and engine.may_go_early(now)

    def _refresh(self, slot: Slot, now: float, found: list[ev.Event]) -> None:
        try:
            slot.refresh(now, found, self.resolver)
        except SocketSetupError as exc:
            slot.engine.send_failed(str(exc))
        self._register(slot)

    def _housekeeping(self, now: float) -> None:
        # Routine work runs up to a third of its period early when the loop is awake anyway
        # (the drop report, a rate limit, never early), and waits up to half a period for such
        # a wake-up: with a 25-s keepalive it never wakes the process on its own (idle: about
        # one wake-up per due event, which the idle benchmark holds it to).
        recheck = self._recheck_at is not None and now >= self._recheck_at
        if recheck or now >= self._netwatch_at - NETWATCH_EVERY * HOUSEKEEPING_EARLY:
            self._netwatch_at = now + NETWATCH_EVERY
            self._recheck_at = None
            self.addresses.forget()
            for slot in list(self.slots.values()):
                found: list[ev.Event] = []
                self._refresh(slot, now, found)
                self._after(slot, found, now)
        if self._watchdog_at is not None and now >= self._watchdog_at:
            self.notifier.watchdog()
            self._watchdog_at = now + (self.notifier.watchdog_interval() or 30.0)
        for problem in self.hooks.poll(now):
            command = self.config.hooks.command or ""
            prefix = f"hook {command} "
            if problem.startswith(prefix):  # the event carries the command on its own
                problem = problem[len(prefix):]
            self.emit(ev.HookFailed(command, problem))
        if now >= self._drops_at:  # a rate limit: late is fine, early is not
            self._drops_at = now + DROP_REPORT_EVERY
            dropped = sum(s.engine.dropped for s in self.slots.values())
            if dropped > self._drops_reported:
                self.emit(ev.DatagramsDropped(dropped - self._drops_reported,
                                              round(now - self._drops_since, 0)))
                self._drops_reported = dropped
            self._drops_since = now
        if now >= self._status_counters_at - STATUS_COUNTERS_EVERY * HOUSEKEEPING_EARLY:
            self._status_counters_at = now + STATUS_COUNTERS_EVERY
            mark = sum(s.engine.probes_sent + s.engine.responses for s in self.slots.values())
            if mark != self._counter_mark:
                self._status_dirty = True
        if self._status_dirty and now >= self._status_written_at + STATUS_MIN_GAP:
            self._write_status(now)

    # ------------------------------------------------------------------ I/O

    def _register(self, slot: Slot) -> None:
        self._track(slot.name, slot.sock, slot)

    def _track(self, key: str, sock: socket.socket | None, owner: Slot | AutoInterval) -> None:
        """Keep the selector in step with an owner's socket, which is replaced when re-opened.

        Sockets are compared as objects, not by fd: a re-opened socket usually gets the closed
        one's fd number back, and closing a socket silently drops it from epoll.
        """
        old = self._registered.get(key)
        if old is sock:
            return
        if old is not None:
            del self._registered[key]
            self.selector.unregister(old)
        if sock is not None:
            self.selector.register(sock, owner)
            self._registered[key] = sock

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
        for data, source in _drain(sock):
            if looks_like_stun(data):  # a STUN check's answer
                prefix = data[8:16].hex()  # a binding's (or trial's) Call-ID prefix
                slot = self.by_call_id.get(prefix)
                if slot is not None and slot.engine.receive_stun(data, now, AUX):
                    self._after(slot, [], now)
                for auto in self.autos.values():
                    if auto.trial is not None and auto.call_id == prefix:
                        found_stun: list[ev.Event] = []
                        auto.receive(data, (source[0], source[1]), now, AUX, found_stun)
                        self._after_auto(auto, found_stun, now)
                continue
            try:
                response = parse_response(data)
            except SipParseError:
                continue
            # a binding's Call-IDs are its prefix, "-" and the request's CSeq number
            slot = self.by_call_id.get(response.call_id.rpartition("-")[0])
            if slot is not None:
                slot.engine.receive_response(response, source, now, AUX)
                self._after(slot, [], now)
                continue
            for auto in self.autos.values():
                if auto.trial is not None and auto.call_id == response.call_id.rpartition("-")[0]:
                    found: list[ev.Event] = []
                    auto.receive_response(response, source, now, AUX, found)
                    self._after_auto(auto, found, now)

    def _read_auto(self, auto: AutoInterval) -> None:
        from natkeepalive.core.discovery import TRIAL

        sock = auto.sock
        if sock is None:
            return
        now = self.clock()
        found: list[ev.Event] = []
        for data, source in _drain(sock):
            auto.receive(data, source, now, TRIAL, found)
        self._after_auto(auto, found, now)

    def _after_auto(self, auto: AutoInterval, found: list[ev.Event], now: float) -> None:
        """Keep a discovery's socket registered, send its datagrams, schedule its deadline."""
        self._track(auto.key, auto.sock, auto)
        for datagram in auto.datagrams_to_send():
            if datagram.channel == AUX:
                self._send_aux(datagram.payload, datagram.destination)
            else:
                auto.send(datagram.payload, datagram.destination)
        for event in found:
            self.emit(event)
        if auto.slot.name in self.slots:
            self._after(auto.slot, [], now)
        self._schedule_auto(auto)

    def _schedule_auto(self, auto: AutoInterval) -> None:
        deadline = auto.next_deadline()
        if deadline is not None and deadline != auto.scheduled:
            auto.scheduled = deadline
            self._seq += 1
            heapq.heappush(self.heap, (deadline, self._seq, auto.key))

    def _aux_socket(self, family: int) -> socket.socket:
        sock = self.aux.get(family)
        if sock is None:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind((wildcard(family), 0))
            self.selector.register(sock, AUX_TAG)
            self.aux[family] = sock
        return sock

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
                    error = self._send_aux(datagram.payload, datagram.destination)
                if error is not None:
                    engine.send_failed(error)
                    self._recheck(now + 1.0)
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
            slot.scheduled = deadline
            self._seq += 1
            later = self.later
            # a transaction's deadline goes to the queue while that keeps it in order
            if deadline != engine.next_keepalive and (not later or later[-1][0] <= deadline):
                later.append((deadline, self._seq, slot.name))
            else:
                heapq.heappush(self.heap, (deadline, self._seq, slot.name))

    def _send_aux(self, payload: bytes, destination: Address) -> str | None:
        return send_datagram(self._aux_socket(family_of(destination[0])), payload, destination)

    # ------------------------------------------------------------------ events and status

    def emit(self, event: ev.Event) -> None:
        self.sink.emit(event)
        if event.SEVERITY < ev.DEBUG:
            self._status_dirty = True
            self.hooks.fire(event, self.clock())
            split = COUNTED_EVENTS.get(event.NAME)
            if split is not None:
                key = f"{event.NAME}:{getattr(event, split)}" if split else event.NAME
                counts = self.cause_counts.setdefault(getattr(event, "binding"), {})  # noqa: B009
                counts[key] = counts.get(key, 0) + 1

    def _summary(self) -> str:
        states: dict[str, int] = {}
        for slot in self.slots.values():
            states[slot.engine.reach.state] = states.get(slot.engine.reach.state, 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        count = len(self.slots)
        return f"{count} binding{'' if count == 1 else 's'}: {parts}" if parts else "no bindings"

    def snapshot(self, now: float) -> dict[str, object]:
        wall_now = self.wall()
        texts: dict[int, str] = {}  # most bindings were answered within the same few seconds

        def wall_of(mono: float | None) -> str | None:
            if mono is None:
                return None
            second = int(wall_now - (now - mono))  # iso_utc writes whole seconds
            text = texts.get(second)
            if text is None:
                text = texts[second] = iso_utc(second)
            return text

        bindings = []
        for slot in self.slots.values():
            engine = slot.engine
            public = engine.public
            local = engine.local
            bindings.append({
                "name": slot.name,
                "server": slot.server_text,
                "local": None if local is None else f"{local[0]}:{local[1]}"
                if ":" not in local[0] else f"[{local[0]}]:{local[1]}",
                "state": engine.reach.state if slot.missing is None else "no-local-address",
                "problem": slot.missing,
                "public": format_mapping(public),
                "public_address": None if public is None else public[0],
                "public_port": None if public is None else public[1],
                "rtt_ms": engine.last_rtt_ms,
                "last_status": engine.last_status,  # a 403 under require_2xx has an RTT too
                "interval_s": round(engine.interval, 3),
                "last_response_at": wall_of(engine.last_response_at),
                "last_change_at": wall_of(engine.tracker.changed_at),
                "changes": engine.tracker.changes,
                "expiries": engine.tracker.expiries,
                "probes_sent": engine.probes_sent,
                "responses": engine.responses,
                "timeouts": engine.timeouts,
                "dropped": engine.dropped,
                "inbound_check": engine.inbound_result,
                "expiry_detection": engine.expiry_detection,
                "crlf_keepalives": engine.crlf_received,
                "lifetime_s": None if slot.name not in self.autos
                else self.autos[slot.name].lifetime,
            })
        data: dict[str, object] = {
            "version": __version__,
            "pid": os.getpid(),
            "started_at": iso_utc(self.started_at),
            "updated_at": iso_utc(wall_now),
            "bindings": bindings,
        }
        if self._stopped is not None:
            data["stopped_at"] = iso_utc(wall_now)
            data["stop_reason"] = self._stopped
        return data

    def _write_status(self, now: float) -> None:
        self._status_dirty = False
        self._status_written_at = now
        self._counter_mark = sum(s.engine.probes_sent + s.engine.responses
                                 for s in self.slots.values())
        if self.config.metrics_file:  # first: a status file that cannot be written stops nothing
            self._write_metrics(self.config.metrics_file, now)
        try:
            write_status(self.status_path, self.snapshot(now))
        except OSError as exc:
            error = str(exc.strerror or exc)
            if error != self._status_error:
                self._status_error = error
                self.sink.emit(ev.StatusWriteFailed(self.status_path, error))
            return
        if self._status_error is not None:
            self._status_error = None
            self.sink.emit(ev.StatusWriteRecovered(self.status_path))
        self.notifier.send(STATUS=self._summary())

    def _write_metrics(self, path: str, now: float) -> None:
        if self._metrics is None:
            from natkeepalive.runtime.metrics import MetricsWriter

            self._metrics = MetricsWriter()
        try:
            self._metrics.write(path, self.slots, self.autos, self.cause_counts,
                                self.started_at, self.wall(), now)
        except OSError as exc:
            error = str(exc.strerror or exc)
            if error != self._metrics_error:
                self._metrics_error = error
                self.sink.emit(ev.MetricsWriteFailed(path, error))
            return
        if self._metrics_error is not None:
            self._metrics_error = None
            self.sink.emit(ev.MetricsWriteRecovered(path))

    def _remove_metrics(self, path: str | None) -> None:
        if path:
            from natkeepalive.runtime.metrics import remove_metrics

            try:
                remove_metrics(path)
            except OSError as exc:
                self.sink.emit(ev.MetricsRemoveFailed(path, str(exc.strerror or exc)))

    # ------------------------------------------------------------------ signals

    def _addresses_changed(self) -> None:
        """rtnetlink announced a change: check every binding's local address shortly."""
        if self.addresses.poll():
            self._recheck(self.clock() + ADDRESS_SETTLE)

    def _recheck(self, at: float) -> None:
        """Check every binding's local address at `at` (or sooner if already asked)."""
        self._recheck_at = at if self._recheck_at is None else min(self._recheck_at, at)

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(512):
                pass
        except OSError:
            pass

    def _handle_signals(self) -> None:
        pending, self._pending_signals = self._pending_signals, set()
        now = self.clock()
        if signal.SIGTERM in pending or signal.SIGINT in pending:
            self._stop_reason = "sigterm" if signal.SIGTERM in pending else "sigint"
            return
        if signal.SIGHUP in pending:
            self.reload(now)
        if signal.SIGUSR2 in pending:
            self.emit(ev.SignalReceived("SIGUSR2", "probe every binding now"))
            self.reprobe(now)
        if signal.SIGUSR1 in pending:
            self.emit(ev.SignalReceived("SIGUSR1", "write the status file now"))
            self._write_status(now)

    def reprobe(self, now: float) -> None:
        """An interface came up: check local addresses and probe every binding now."""
        self.addresses.forget()
        for slot in list(self.slots.values()):
            found: list[ev.Event] = []
            self._refresh(slot, now, found)
            slot.engine.keepalive_now(now)
            self._after(slot, found, now)

    def reload(self, now: float) -> None:
        self.notifier.reloading()
        path = self.config.source
        try:
            new = load_config_in_child(path)
        except ConfigError as exc:
            self.emit(ev.ConfigRejected(path, str(exc)))
            self.notifier.ready(self._summary())
            return
        old_by_name = {b.name: b for b in self.config.bindings}
        new_by_name = {b.name: b for b in new.bindings}
        removed = {n for n in old_by_name if n not in new_by_name}
        changed = {n for n in old_by_name if n in new_by_name and old_by_name[n] != new_by_name[n]}
        added = {n for n in new_by_name if n not in old_by_name}
        for name in removed | changed:
            self._remove_slot(name)
        if new.hooks != self.config.hooks:
            self.hooks.close()
            self.hooks = make_hooks(new.hooks)
        if new.metrics_file != self.config.metrics_file:
            self._remove_metrics(self.config.metrics_file)
        if new.log.level != self.config.log.level:
            self.sink.set_level(new.log.level)
            for slot in self.slots.values():
                slot.engine.debug_events = self.sink.wants(ev.DEBUG)
        self.config = new
        self._add_slots(new, now, fatal=False, names=added | changed)
        self.emit(ev.Reloaded(len(added), len(changed), len(removed)))
        self.notifier.ready(self._summary())
        self._write_status(now)

    def _remove_slot(self, name: str) -> None:
        auto = self.autos.pop(name, None)
        if auto is not None:
            auto.close()
            self._after_auto(auto, [], self.clock())
        slot = self.slots.pop(name)
        self.cause_counts.pop(name, None)  # a new configuration counts afresh, like its engine
        self.resolver.forget(name)
        self.by_call_id.pop(slot.engine.call_id, None)
        slot.close()
        self._register(slot)

    # ------------------------------------------------------------------ shutdown

    def shutdown(self, reason: str) -> None:
        self.notifier.stopping()
        self.emit(ev.Stopped(reason))
        now = self.clock()
        self._stopped = reason  # the last status file says so: `status` then reports no agent
        self._write_status(now)
        self._remove_metrics(self.config.metrics_file)  # a stopped agent keeps nothing alive
        self.hooks.close()
        self._close_all()
        self.sink.close()

    def _close_all(self) -> None:
        for slot in self.slots.values():
            slot.close()
        for auto in self.autos.values():
            auto.close()
        for sock in self.aux.values():
            sock.close()
        self.aux.clear()
        self.addresses.close()
        self.selector.close()


class NoHooks:
    """What the daemon holds when no hook command is configured: runtime/hooks.py (and the
    subprocess module it brings) is then never imported."""

    def fire(self, event: ev.Event, now: float) -> None:
        pass

    def poll(self, now: float) -> list[str]:
        return []

    def next_deadline(self) -> float | None:
        return None

    def close(self) -> None:
        pass


def make_hooks(config: HooksConfig) -> HookRunner | NoHooks:
    if not config.command:
        return NoHooks()
    from natkeepalive.runtime.hooks import HookRunner

    return HookRunner(config.command, config.events)


def _drain(sock: socket.socket) -> Iterator[tuple[bytes, Address]]:
    """What is queued on a socket, at most READ_BURST datagrams so a flood cannot starve timers."""
    for _ in range(READ_BURST):
        try:
            data, source = sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # a queued ICMP error: the transaction times out like a lost datagram
            continue
        yield data, (source[0], source[1])
