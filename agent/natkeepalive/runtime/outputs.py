"""What the daemon reports besides its log lines: the status file, the metrics file, hooks.

Rules:
- Both files are written together, the metrics file first: a status file that cannot be
  written stops nothing. When to write is the daemon's (it marks `dirty` and calls write()).
- A write error is reported once (status-write-failed, metrics-write-failed), and again only
  when it changes; the first success after it is reported as a recovery.
- Without `metrics_file` the metrics writer is never imported; without a hook command neither is
  runtime/hooks.py (and the subprocess module it brings).
"""

from __future__ import annotations

from natkeepalive import events as ev
from natkeepalive.runtime.status import snapshot, write_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from natkeepalive.config.model import HooksConfig
    from natkeepalive.runtime.auto import AutoInterval
    from natkeepalive.runtime.hooks import HookRunner
    from natkeepalive.runtime.logsink import Sink
    from natkeepalive.runtime.metrics import MetricsWriter
    from natkeepalive.runtime.notify import Notifier
    from natkeepalive.runtime.slot import Slot

# Events counted per binding for the metrics file, and the field that splits the count (the
# engine keeps only their totals)
COUNTED_EVENTS = {"binding-changed": "cause", "binding-expired": "detected", "binding-flapping": ""}


class Outputs:
    def __init__(self, sink: Sink, notifier: Notifier, started_at: float) -> None:
        self.sink = sink
        self.notifier = notifier
        self.started_at = started_at
        self.dirty = False  # a reported state changed since the last write
        self.written_at = float("-inf")
        self.counter_mark = 0  # the counters' sum at the last write
        self.cause_counts: dict[str, dict[str, int]] = {}
        self._status_error: str | None = None
        self._metrics: MetricsWriter | None = None
        self._metrics_error: str | None = None

    def count(self, event: ev.Event) -> None:
        """Note a reported event: the files are due, and some events are counted by cause."""
        self.dirty = True
        split = COUNTED_EVENTS.get(event.NAME)
        if split is not None:
            key = f"{event.NAME}:{getattr(event, split)}" if split else event.NAME
            counts = self.cause_counts.setdefault(getattr(event, "binding"), {})  # noqa: B009
            counts[key] = counts.get(key, 0) + 1

    def forget(self, name: str) -> None:
        """A binding removed or reconfigured counts afresh, like its new engine."""
        self.cause_counts.pop(name, None)

    def write(
        self,
        status_path: str,
        metrics_path: str | None,
        slots: Mapping[str, Slot],
        autos: Mapping[str, AutoInterval],
        wall_now: float,
        now: float,
        stopped: str | None = None,
    ) -> None:
        self.dirty = False
        self.written_at = now
        self.counter_mark = counters(slots.values())
        if metrics_path:
            self._write_metrics(metrics_path, slots, autos, wall_now, now)
        try:
            write_status(
                status_path,
                snapshot(slots.values(), autos, self.started_at, wall_now, now, stopped),
            )
        except OSError as exc:
            error = str(exc.strerror or exc)
            if error != self._status_error:
                self._status_error = error
                self.sink.emit(ev.StatusWriteFailed(status_path, error))
            return
        if self._status_error is not None:
            self._status_error = None
            self.sink.emit(ev.StatusWriteRecovered(status_path))
        self.notifier.send(STATUS=summary(slots.values()))

    def _write_metrics(
        self,
        path: str,
        slots: Mapping[str, Slot],
        autos: Mapping[str, AutoInterval],
        wall_now: float,
        now: float,
    ) -> None:
        if self._metrics is None:
            from natkeepalive.runtime.metrics import MetricsWriter

            self._metrics = MetricsWriter()
        try:
            self._metrics.write(
                path, slots, autos, self.cause_counts, self.started_at, wall_now, now
            )
        except OSError as exc:
            error = str(exc.strerror or exc)
            if error != self._metrics_error:
                self._metrics_error = error
                self.sink.emit(ev.MetricsWriteFailed(path, error))
            return
        if self._metrics_error is not None:
            self._metrics_error = None
            self.sink.emit(ev.MetricsWriteRecovered(path))

    def remove_metrics(self, path: str | None) -> None:
        """A stopped agent, or one told to write no metrics file, leaves none behind."""
        if path:
            from natkeepalive.runtime.metrics import remove_metrics

            try:
                remove_metrics(path)
            except OSError as exc:
                self.sink.emit(ev.MetricsRemoveFailed(path, str(exc.strerror or exc)))


def counters(slots: Iterable[Slot]) -> int:
    """A sum that moves whenever a keepalive goes out or is answered."""
    return sum(s.engine.probes_sent + s.engine.responses for s in slots)


def summary(slots: Iterable[Slot]) -> str:
    """`3 bindings: 2 reachable, 1 unreachable`, for the service manager's status line."""
    states: dict[str, int] = {}
    count = 0
    for slot in slots:
        count += 1
        states[slot.engine.reach.state] = states.get(slot.engine.reach.state, 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    return f"{count} binding{'' if count == 1 else 's'}: {parts}" if parts else "no bindings"


class NoHooks:
    """What the daemon holds when no hook command is configured."""

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
