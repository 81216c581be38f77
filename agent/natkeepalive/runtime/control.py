"""What the daemon does on a signal or an address change: reload the configuration, probe every
binding now, write the status file, stop. A base class of runtime/daemon.py's Daemon, whose loop
calls it when the wake-up fd or the rtnetlink socket is ready.

A reload keeps every binding whose configuration is unchanged, with its socket, state and learned
mapping; a bad file is rejected (`config-rejected`) and the old configuration keeps running.
"""

from __future__ import annotations

from natkeepalive import events as ev
from natkeepalive.cstdlib import signal
from natkeepalive.errors import ConfigError
from natkeepalive.runtime.configproc import load_config_in_child
from natkeepalive.runtime.outputs import make_hooks, summary
from natkeepalive.runtime.reload import diff_bindings
from natkeepalive.runtime.timers import Timers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from natkeepalive.config.model import Config
    from natkeepalive.runtime.addrwatch import AddressWatch
    from natkeepalive.runtime.auto import AutoInterval
    from natkeepalive.runtime.hooks import HookRunner
    from natkeepalive.runtime.housekeeping import Housekeeping
    from natkeepalive.runtime.logsink import Sink
    from natkeepalive.runtime.notify import Notifier
    from natkeepalive.runtime.outputs import NoHooks, Outputs
    from natkeepalive.runtime.process import Wakeup
    from natkeepalive.runtime.registry import Registry
    from natkeepalive.runtime.slot import Slot
    from natkeepalive.runtime.sockets import Resolver

# one change comes as several messages: check the bindings once they are in
ADDRESS_SETTLE = 0.2


class Control:
    """The daemon's answers to signals and address changes."""

    # the daemon's fields and methods used here
    config: Config
    sink: Sink
    clock: Callable[[], float]
    slots: dict[str, Slot]
    registry: Registry
    hooks: HookRunner | NoHooks
    notifier: Notifier
    outputs: Outputs
    routine: Housekeeping
    wakeup: Wakeup
    resolver: Resolver
    addresses: AddressWatch
    _stop_reason: str | None

    if TYPE_CHECKING:

        def emit(self, event: ev.Event) -> None: ...

        def _write_status(self, now: float) -> None: ...

        def _refresh(self, slot: Slot, now: float, found: list[ev.Event]) -> None: ...

        def _after(self, slot: Slot, found: list[ev.Event], now: float) -> None: ...

        def _after_auto(self, auto: AutoInterval, found: list[ev.Event], now: float) -> None: ...

        def _add_slots(
            self, config: Config, now: float, fatal: bool, names: set[str] | None = None
        ) -> None: ...

    def _addresses_changed(self) -> None:
        """rtnetlink announced a change: check every binding's local address shortly."""
        if self.addresses.poll():
            self.routine.recheck(self.clock() + ADDRESS_SETTLE)

    def _handle_signals(self) -> None:
        pending = self.wakeup.take()
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
            self.notifier.ready(summary(self.slots.values()))
            return
        diff = diff_bindings(self.config.bindings, new.bindings)
        added, changed, removed = diff.added, diff.changed, diff.removed
        for name in removed | changed:
            self._remove_slot(name)
        if new.hooks != self.config.hooks:
            self.hooks.close()
            self.hooks = make_hooks(new.hooks)
        if new.metrics_file != self.config.metrics_file:
            self.outputs.remove_metrics(self.config.metrics_file)
        if new.log.level != self.config.log.level:
            self.sink.set_level(new.log.level)
            for slot in self.slots.values():
                slot.engine.debug_events = self.sink.wants(ev.DEBUG)
        self.config = new
        self._add_slots(new, now, fatal=False, names=added | changed)
        self.emit(ev.Reloaded(len(added), len(changed), len(removed)))
        self.notifier.ready(summary(self.slots.values()))
        self._write_status(now)

    def _remove_slot(self, name: str) -> None:
        slot, auto = self.registry.remove(name)
        if auto is not None:
            auto.close()
            self._after_auto(auto, [], self.clock())
            Timers.cancel(auto)
        Timers.cancel(slot)
        self.outputs.forget(name)
        self.resolver.forget(name)
        slot.close()
        self.registry.track(slot)
