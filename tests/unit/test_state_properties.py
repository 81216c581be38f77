"""Hypothesis: random inputs keep every state machine in a valid state, and the counters the
status file shows always equal the events that were reported."""

from __future__ import annotations

from hypothesis import example, given, settings, strategies as st

from natkeepalive import events as ev
from natkeepalive.config.model import ProbeSettings
from natkeepalive.core import cycle as c, reachability as r, tracker as t
from tests.support.fakenet import FakeNet


def test_reachability_table_is_total() -> None:
    assert set(r.TRANSITIONS) == {(s, i) for s in r.STATES for i in r.INPUTS}
    assert all(target in r.STATES for target, _ in r.TRANSITIONS.values())


def test_cycle_table_is_total() -> None:
    """Every (phase, outcome) has a row or is explicitly impossible, never both."""
    pairs = {(phase, outcome) for phase in c.PHASES for outcome in c.OUTCOMES}
    assert set(c.TABLE) | set(c.IMPOSSIBLE) == pairs
    assert not set(c.TABLE) & set(c.IMPOSSIBLE)
    assert all(target in c.PHASES for target, _ in c.TABLE.values())
    # every check end sends the keepalive the check held back, so it leaves the check phases
    for (phase, outcome), (target, _) in c.TABLE.items():
        if phase in c.CHECKING and outcome in (c.ALIVE, c.CRLF, c.FORCED, c.SILENT):
            assert target not in c.CHECKING
        if outcome in (c.DUE_CHECK, c.DUE_GUESS):
            assert target in c.CHECKING


def test_tracker_table_targets_are_states() -> None:
    assert all(target in t.STATES for target, _ in t.TRANSITIONS.values())


@given(
    st.lists(st.one_of(st.none(), st.floats(0, 5000)), max_size=60),
    st.integers(1, 4),
    st.integers(1, 4),
)
def test_reachability_events_only_on_transitions(
    outcomes: list[float | None], fail: int, ok: int
) -> None:
    machine = r.Reachability("b", fail, ok, 2000)
    previous = machine.state
    for outcome in outcomes:
        event = machine.feed(outcome)
        assert machine.state in r.STATES
        assert (event is not None) == (machine.state != previous)
        if machine.state == r.UNREACHABLE and event is not None:
            assert machine.failures >= fail
        previous = machine.state


mappings = st.tuples(
    st.sampled_from(["203.0.113.1", "203.0.113.2"]), st.one_of(st.none(), st.integers(40000, 40003))
)


@given(st.lists(st.tuples(mappings, st.booleans()), max_size=60))
def test_tracker_counters_match_events(observations: list[tuple[t.Mapping, bool]]) -> None:
    tracker = t.Tracker("b", "203.0.113.10:5060")
    out: list[ev.Event] = []
    now = 0.0
    for seen, known in observations:
        now += 20.0
        found, _confirm = tracker.observe(seen, now, 20.0, ("192.168.77.2", 5062), known)
        out.extend(found)
        assert tracker.state in t.STATES
        assert tracker.mapping is not None
        assert (tracker.state == t.CONFIRMING) == (tracker.candidate is not None)
    assert tracker.changes == sum(isinstance(e, ev.BindingChanged) for e in out)
    assert tracker.expiries == sum(isinstance(e, ev.BindingExpired) for e in out)
    assert sum(isinstance(e, ev.RportUnsupported) for e in out) <= 1
    assert sum(isinstance(e, ev.BindingLearned) for e in out) == (1 if observations else 0)


actions = st.sampled_from(
    [
        "advance",
        "silent",
        "answer",
        "remap",
        "readdress",
        "kill-binding",
        "revive-binding",
        "force-rport",
        "slow",
        "fast",
        "error-status",
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(actions, st.floats(0.1, 40)), max_size=25), st.integers(0, 3), st.booleans()
)
def test_engine_random_faults_keep_a_valid_state(
    steps: list[tuple[str, float]], inbound: int, require_2xx: bool
) -> None:
    net = FakeNet(
        settings=ProbeSettings(
            interval=10.0,
            inbound_check=inbound,
            timeout=2.0,
            retry_interval=3.0,
            require_2xx=require_2xx,
        )
    )
    port = 40000
    for action, duration in steps:
        if action == "silent":
            net.silent = True
        elif action == "answer":
            net.silent = False
        elif action == "remap":
            port += 1
            net.public = (net.public[0], port)
        elif action == "readdress":
            net.public = (
                "203.0.113.2" if net.public[0] == "203.0.113.1" else "203.0.113.1",
                net.public[1],
            )
        elif action == "kill-binding":
            net.binding_alive = False
        elif action == "revive-binding":
            net.binding_alive = True
        elif action == "force-rport":
            net.force_rport = not net.force_rport
        elif action == "slow":
            net.rtt = 2.5
        elif action == "fast":
            net.rtt = 0.02
        elif action == "error-status":
            net.status = 503 if net.status == 200 else 200
        net.run_until(net.now + duration)
        engine = net.engine
        assert engine.phase in c.PHASES
        # the phase says a check is out exactly when its transaction is
        assert (engine.phase in c.CHECKING) == any(
            tx.kind == c.INBOUND for tx in engine._tx.values()
        )
        assert engine.reach.state in r.STATES
        assert engine.tracker.state in t.STATES
        deadline = engine.next_deadline()
        assert deadline is not None and deadline >= net.now - 1e-9
    engine = net.engine
    assert engine.tracker.changes == len(net.of(ev.BindingChanged))
    assert engine.expiries == len(net.of(ev.BindingExpired))
    transitions = [e for e in net.log if isinstance(e, (ev.Reachable, ev.Lagged, ev.Unreachable))]
    assert all(a.NAME != b.NAME for a, b in zip(transitions, transitions[1:]))
    assert engine.probes_sent == len(net.of(ev.ProbeSent))
    assert engine.responses == len(net.of(ev.ProbeAnswered))


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from([0.0, 0.2, 0.5]),
    st.lists(
        st.tuples(st.floats(0, 1), st.booleans(), st.floats(0, 1, exclude_max=True)),
        min_size=5,
        max_size=60,
    ),
)
# a draw near 1 left the allowance before the deadline reaching below the jitter's range
@example(
    0.2,
    [
        (0.875, False, 0.0),
        (0.0, True, 0.99609375),
        (1.0, False, 0.0),
        (0.9375, False, 0.0),
        (0.96875, True, 0.0),
    ],
)
# a draw near 1 that rounds the deadline onto the window's start got the allowance too
@example(
    0.5,
    [
        (0.5, True, 0.9999999999999999),
        (1.0, False, 0.0),
        (0.5, False, 0.0),
        (0.875, False, 0.0),
        (0.9375, True, 0.0),
    ],
)
def test_keepalives_offered_early_keep_every_wait_within_the_jitter(
    jitter: float, wakeups: list[tuple[float, bool, float]]
) -> None:
    """However the loop offers early keepalives (any moment before the next deadline, with any
    draw), every wait after the promoting keepalive stays in [interval*(1-jitter), interval],
    or within the small allowance before a deadline when there is no jitter."""
    interval = 20.0
    net = FakeNet(settings=ProbeSettings(interval=interval, jitter=jitter, inbound_check=0))
    net.run_until(10)  # the first keepalive and the promoting one
    for fraction, early, draw in wakeups:
        deadline = net.engine.next_deadline()
        assert deadline is not None
        wake = net.now + fraction * (deadline - net.now)
        net.run_until(wake)  # answers in flight arrive first
        net.engine.handle_timer(net.now, early=early, draw=draw)
        net._deliver_outgoing()
    net.run_until(net.now + 0.5)
    times = net.keepalive_times()[1:]  # after the promoting keepalive
    gaps = [b - a for a, b in zip(times, times[1:])]
    shortest = interval * (1 - jitter) if jitter else interval - 0.05
    assert all(shortest - 1e-6 <= gap <= interval + 1e-6 for gap in gaps), gaps
