"""Keepalives per day needed to hold one binding, for NAT lifetimes of 30, 60, 120 and 180 s:
the agent on `interval: auto` against fixed intervals of 15 s (pjsua), 25 s (this agent's
default), 30 s (Kamailio) and 60 s (Asterisk), beside the physical minimum of one per lifetime.

Simulated with the sans-I/O core on a fake clock (tests/support/natsim.py): a NAT that forgets a
binding idle longer than its lifetime, a server that answers like Kamailio. Every setting runs a
simulated day with the agent's default jitter (0.2); `auto` includes its discovery trials (it
rediscovers every 24 h, so once a day). Run: python3 tests/bench/keepalives_per_day.py
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "agent"))

from natkeepalive.config.model import ProbeSettings
from natkeepalive.core.engine import BindingEngine
from natkeepalive.core.lifetime import recommended_interval
from natkeepalive.runtime.auto import ADAPTED_JITTER, RESOLUTION, RESOLUTION_MIN
from tests.support.natsim import NatSim, run_discovery, run_engine

DAY = 86_400.0
LIFETIMES = (30.0, 60.0, 120.0, 180.0)
FIXED = (15.0, 25.0, 30.0, 60.0)


def fixed_day(lifetime: float, interval: float, seed: int = 1) -> tuple[int, int]:
    """(keepalives sent in a day, NAT expiries) at a fixed interval."""
    settings = ProbeSettings(interval=interval, inbound_check=0)
    engine = BindingEngine("b", settings, random.Random(seed).randbytes, "sip.example.net", 5060)
    engine.set_flow(("192.168.77.2", 5062), ("203.0.113.10", 5060), 0.0)
    nat = NatSim(lifetime, random_ports=True)
    counts = run_engine(engine, nat, DAY)
    return counts["keepalive"] + counts["confirm"], nat.expiries


def auto_day(lifetime: float, first: bool, seed: int = 1) -> tuple[int, int, float]:
    """(keepalives + discovery packets in a day, NAT expiries, adapted interval).

    The first day runs at the safe 25 s while the lifetime is measured; later days keep the
    adapted interval and only add the daily rediscovery's trial packets.
    """
    settings = ProbeSettings(interval=25.0, interval_auto=True, inbound_check=0)
    nat = NatSim(lifetime, random_ports=True)
    discovery, result, took = run_discovery(
        nat,
        max_idle=settings.interval_max / settings.safety,
        start=settings.interval_min,
        resolution=RESOLUTION,
        resolution_min=RESOLUTION_MIN,
    )
    # per trial: two establishing exchanges, the check, and a confirming keepalive if silent
    trial_packets = sum(4 if r == "expired" else 3 for _, _, r in discovery.history)
    interval = recommended_interval(
        result.lo_s, settings.safety, settings.interval_min, settings.interval_max
    )
    engine = BindingEngine("b", settings, random.Random(seed).randbytes, "sip.example.net", 5060)
    engine.set_flow(("192.168.77.2", 5062), ("203.0.113.10", 5060), 0.0)
    binding_nat = NatSim(lifetime, random_ports=True)
    start = took if first else 0.0
    before = run_engine(engine, binding_nat, start) if first else {"keepalive": 0, "confirm": 0}
    engine.jitter = min(settings.jitter, ADAPTED_JITTER)
    engine.set_interval(interval, "lifetime-discovered", start)
    after = run_engine(engine, binding_nat, DAY, now=start)
    sent = sum(before[k] + after[k] for k in ("keepalive", "confirm"))
    return sent + trial_packets, binding_nat.expiries, interval


def main() -> int:
    started = time.perf_counter()
    header = ["NAT lifetime", "minimum", "auto, a day", "auto, first day"] + [
        f"fixed {i:g} s" for i in FIXED
    ]
    rows = []
    for lifetime in LIFETIMES:
        minimum = DAY / lifetime
        cells = [f"{lifetime:g} s", f"{minimum:,.0f}"]
        for first in (False, True):
            total, expiries, interval = auto_day(lifetime, first)
            note = f"**expires {expiries}x**" if expiries else "holds"
            cells.append(f"{total:,} ({total / minimum:.2f}x, {interval:g} s, {note})")
        for fixed in FIXED:
            sent, expired = fixed_day(lifetime, fixed)
            note = f"**expires {expired}x**" if expired else "holds"
            cells.append(f"{sent:,} ({sent / minimum:.2f}x, {note})")
        rows.append(cells)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    print("Keepalives per day to hold one binding (x = multiple of the physical minimum);")
    print("fixed intervals use the default jitter 0.2; auto includes its daily rediscovery, and")
    print("on its first day the time at the safe 25 s while it measures.\n")
    print("\n".join(lines))
    print(f"\n(simulated in {time.perf_counter() - started:.1f} s of CPU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
