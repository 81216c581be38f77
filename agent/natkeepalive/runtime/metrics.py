"""The metrics file: Prometheus' text exposition format, for node_exporter's textfile collector.

Rules:
- Written by the daemon on the status file's schedule, never per keepalive, and only when
  `metrics_file` is set (this module is not imported otherwise).
- Atomic like the status file: a temporary file in the same directory (a dot name, which the
  textfile collector does not read: it reads `*.prom`), then rename.
- One family per fact, each sample labelled by binding and by the configured server (stable
  across DNS changes). Values that change with the network (the public mapping, the server's
  resolved address) only appear in `nat_keepalive_binding_info`, never on a counter's labels.
- Counters come from the engine, which a reload keeps for an unchanged binding: they are
  monotonic for as long as the binding's configuration is unchanged.
- Written a family at a time, straight to the file: at 10,000 bindings the whole text is
  megabytes, and a router should not hold it all at once.
"""

from __future__ import annotations

import os

from natkeepalive import __version__
from natkeepalive.core.reachability import STATES
from natkeepalive.core.tracker import format_mapping
from natkeepalive.runtime.status import replace_atomically

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from natkeepalive.runtime.auto import AutoInterval
    from natkeepalive.runtime.slot import Slot

PREFIX = "nat_keepalive_"
INBOUND_RESULTS = ("alive", "silent", "unsupported")
CHANGE_CAUSES = ("address-changed", "port-remapped")
EXPIRY_DETECTIONS = ("inbound-check", "relay-check", "stun-check", "remap")


def escape(value: str) -> str:
    """A label value as the text format spells it."""
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def number(value: float) -> str:
    if type(value) is int:
        return int.__repr__(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return float.__repr__(float(value))


def header(name: str, kind: str, text: str) -> str:
    return f"# HELP {PREFIX}{name} {text}\n# TYPE {PREFIX}{name} {kind}\n"


class MetricsWriter:
    """Renders the daemon's bindings into the metrics file. Keeps each binding's label text
    (`binding="…",server="…"`), which never changes for a slot."""

    def __init__(self) -> None:
        self._labels: dict[int, tuple[Slot, str]] = {}

    def labels(self, slot: Slot) -> str:
        key = id(slot)
        kept = self._labels.get(key)
        if kept is not None and kept[0] is slot:
            return kept[1]
        text = f'binding="{escape(slot.name)}",server="{escape(str(slot.config.server))}"'
        self._labels[key] = (slot, text)
        return text

    def forget_others(self, slots: Iterable[Slot]) -> None:
        alive = {id(slot) for slot in slots}
        for key in [k for k in self._labels if k not in alive]:
            del self._labels[key]

    def write(
        self,
        path: str,
        slots: Mapping[str, Slot],
        autos: Mapping[str, AutoInterval],
        counts: Mapping[str, Mapping[str, int]],
        started_at: float,
        wall_now: float,
        now: float,
    ) -> None:
        """Replace `path` atomically. Raises OSError."""
        if len(self._labels) > len(slots):
            self.forget_others(slots.values())
        replace_atomically(path, self.render(slots, autos, counts, started_at, wall_now, now))

    def render(
        self,
        slots: Mapping[str, Slot],
        autos: Mapping[str, AutoInterval],
        counts: Mapping[str, Mapping[str, int]],
        started_at: float,
        wall_now: float,
        now: float,
    ) -> Iterator[str]:
        """The text, in pieces: every family's HELP, TYPE and samples together."""
        rows = [(self.labels(slot), slot) for slot in slots.values()]
        yield header("build_info", "gauge", "The agent's version; always 1.")
        yield f'{PREFIX}build_info{{version="{escape(__version__)}"}} 1\n'
        yield header(
            "start_time_seconds",
            "gauge",
            "When the agent started, in seconds since the Unix epoch.",
        )
        yield f"{PREFIX}start_time_seconds {number(round(started_at, 3))}\n"

        yield header(
            "binding_info",
            "gauge",
            "A binding's public mapping, local address and the server's resolved "
            "address (empty when not known); always 1.",
        )
        name = PREFIX + "binding_info"
        for labels, slot in rows:
            engine = slot.engine
            local = "" if engine.local is None else format_mapping(engine.local) or ""
            server = "" if engine.server is None else format_mapping(engine.server) or ""
            yield (
                f'{name}{{{labels},public="{escape(format_mapping(engine.public) or "")}",'
                f'local="{escape(local)}",server_address="{escape(server)}"}} 1\n'
            )

        yield header(
            "binding_state",
            "gauge",
            "The binding's reachability: 1 for the current state, 0 for the others.",
        )
        name = PREFIX + "binding_state"
        for labels, slot in rows:
            current = slot.engine.reach.state
            yield "".join(
                f'{name}{{{labels},state="{state}"}} {1 if state == current else 0}\n'
                for state in STATES
            )

        yield from _counter_family(
            rows,
            "probes_sent_total",
            "Probes sent (keepalives, confirmations, inbound checks).",
            "probes_sent",
        )
        yield from _counter_family(
            rows, "answers_total", "Answers accepted from the server.", "responses"
        )
        yield from _counter_family(
            rows,
            "timeouts_total",
            "Probes that went unanswered after every retransmission.",
            "timeouts",
        )
        yield from _counter_family(
            rows,
            "dropped_datagrams_total",
            "Datagrams refused: from elsewhere, malformed, or not an answer to an open probe.",
            "dropped",
        )

        for family, help_text, event, label, values in (
            (
                "binding_changes_total",
                "Confirmed changes of the public mapping, by cause.",
                "binding-changed",
                "cause",
                CHANGE_CAUSES,
            ),
            (
                "binding_expiries_total",
                "NAT bindings found expired, by how it was detected.",
                "binding-expired",
                "detected",
                EXPIRY_DETECTIONS,
            ),
        ):
            yield header(family, "counter", help_text)
            name = PREFIX + family
            for labels, slot in rows:
                mine = counts.get(slot.name, {})
                yield "".join(
                    f'{name}{{{labels},{label}="{value}"}} {mine.get(f"{event}:{value}", 0)}\n'
                    for value in values
                )
        yield header(
            "binding_flaps_total",
            "counter",
            "Times two public mappings were seen to alternate (an ALG, a load balancer).",
        )
        name = PREFIX + "binding_flaps_total"
        for labels, slot in rows:
            yield f"{name}{{{labels}}} {counts.get(slot.name, {}).get('binding-flapping', 0)}\n"

        yield header(
            "inbound_check",
            "gauge",
            "The last inbound check's result: 1 for it, 0 for the others; all 0 before the first.",
        )
        name = PREFIX + "inbound_check"
        for labels, slot in rows:
            result_now = slot.engine.inbound_result
            yield "".join(
                f'{name}{{{labels},result="{result}"}} {1 if result == result_now else 0}\n'
                for result in INBOUND_RESULTS
            )

        yield header(
            "rtt_seconds", "gauge", "Round-trip time of the last answer; absent before the first."
        )
        name = PREFIX + "rtt_seconds"
        for labels, slot in rows:
            rtt = slot.engine.last_rtt_ms
            if rtt is not None:
                yield f"{name}{{{labels}}} {number(round(rtt / 1000.0, 6))}\n"

        yield header(
            "last_answer_timestamp_seconds",
            "gauge",
            "When the last answer came, in seconds since the Unix epoch; absent before "
            "the first and after a new flow.",
        )
        name = PREFIX + "last_answer_timestamp_seconds"
        for labels, slot in rows:
            at = slot.engine.last_response_at
            if at is not None:
                yield f"{name}{{{labels}}} {number(round(wall_now - (now - at), 3))}\n"

        yield header("interval_seconds", "gauge", "The current keepalive interval.")
        name = PREFIX + "interval_seconds"
        for labels, slot in rows:
            yield f"{name}{{{labels}}} {number(round(slot.engine.interval, 3))}\n"

        yield header(
            "lifetime_seconds",
            "gauge",
            "The NAT binding lifetime measured (interval: auto); absent until measured.",
        )
        name = PREFIX + "lifetime_seconds"
        for labels, slot in rows:
            auto = autos.get(slot.name) if autos else None
            if auto is not None and auto.lifetime is not None:
                yield f"{name}{{{labels}}} {number(auto.lifetime)}\n"


def _counter_family(
    rows: list[tuple[str, Slot]], family: str, help_text: str, attribute: str
) -> Iterator[str]:
    yield header(family, "counter", help_text)
    name = PREFIX + family
    for labels, slot in rows:
        yield f"{name}{{{labels}}} {getattr(slot.engine, attribute)}\n"


def remove_metrics(path: str) -> None:
    """The agent stopped or the file moved: an old file would keep being exported as current."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
