"""The agent behind a real Linux NAT, against real SIP servers: the scenarios of the NAT lab issue.

Each test builds its own lab (tests/lab/netlab.py), runs `nat-keepalive run` inside the `lan`
namespace and reads its log lines as they come. Timings are seconds and stated per test.

Why the NAT timeouts are never below 4 s: the agent sends a second keepalive PROMOTE_DELAY (3 s)
after the first one of every new flow, so Linux moves the flow to its stream timeout. With an
initial timeout of 3 s that keepalive races the expiry of the flow; real NATs (30 s and more) never
see that race, so the lab does not stage it either.

Why jitter is 0 where expiry is expected: every wait is then exactly `interval`, and each cycle's
idle time is either clearly above or clearly below the NAT timeout (2 s margins both ways), which
lets a test say for every single cycle whether an expiry must or must not be reported.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from natkeepalive.logline import parse_line
from tests.lab import netlab
from tests.lab.agents import (
    KAMAILIO,
    KEPT,
    LAN_2,
    MARGIN,
    PUBLIC_2,
    SIPP,
    SOURCE_PORT,
    Fields,
    TimedAgent,
    nat_mapping,
    write_config,
)
from tests.lab.netlab import Lab
from tests.support.agentproc import agent_env, run_cli
from tests.support.helpers import wait_until
from tests.support.tools import require_tool

pytestmark = pytest.mark.lab

# Expiry: a fixed 6-s interval over a 4-s NAT timeout (both initial and stream).
EXPIRY_NAT = (4, 4)
EXPIRY = {"interval": 6, "jitter": 0, "timeout": 1.0, "retry_interval": 1, "fail_threshold": 2}


def cycles(agent: TimedAgent, kind: str, outcome: str) -> list[tuple[float, bool]]:
    """For every probe-sent of `kind`: (seconds since the binding's previous answer, whether an
    `outcome` event followed before the next probe of that kind). The first probe is skipped."""
    result: list[tuple[float, bool]] = []
    last_answer: float | None = None
    current: list[Any] | None = None
    for _, when, name, fields in agent.timeline():
        if name == "probe-sent" and fields["kind"] == kind:
            if current is not None:
                result.append((current[0], current[1]))
            current = None if last_answer is None else [when - last_answer, False]
        elif name == outcome and current is not None:
            current[1] = True
        elif name == "probe-answered":
            last_answer = when
    if current is not None:
        result.append((current[0], current[1]))
    return result


def assert_every_cycle(found: list[tuple[float, bool]], nat_timeout: float, what: str) -> None:
    for idle, reported in found:
        if idle > nat_timeout + MARGIN:
            assert reported, f"{what}: idle {idle:.1f} s > {nat_timeout} s but nothing reported"
        elif idle < nat_timeout - MARGIN:
            assert not reported, f"{what}: idle {idle:.1f} s < {nat_timeout} s yet reported"
        else:
            pytest.fail(f"{what}: idle {idle:.1f} s too close to the NAT timeout to judge")


# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nat", ["masquerade", "random"])
def test_1_learned_public_mapping_is_the_routers(
    kamailio_lab: Lab, start_agent: Callable[[Lab, Path], TimedAgent], nat: str
) -> None:
    """Timings: NAT 30/120 s (Linux defaults, nothing expires), interval 3 s, jitter 0.2.
    `binding-learned` is expected within 2 s of the start (the first keepalive is sent at once).

    The learned public mapping is the router's wan address and the port in the router's conntrack
    reply tuple; `masquerade random` makes that port differ from the local one, so it cannot be
    guessed. The status file and `nat-keepalive status` show the same."""
    lab = kamailio_lab
    lab.set_nat(random=(nat == "random"))
    agent = start_agent(lab, write_config(lab, KEPT))
    learned = agent.wait_for("binding-learned", timeout=5)
    mapping = nat_mapping(lab)
    assert mapping is not None and mapping[0] == netlab.ROUTER_WAN_IP
    public = f"{mapping[0]}:{mapping[1]}"
    assert learned == {
        "binding": "provider",
        "server": KAMAILIO,
        "local": f"{netlab.LAN_IP}:{SOURCE_PORT}",
        "public": public,
    }
    if nat == "masquerade":
        assert mapping[1] == SOURCE_PORT
    agent.wait_for("reachable", timeout=5)
    agent.signal(signal.SIGUSR1)
    agent.wait_for("probe-answered", count=2, timeout=6)  # the 3-s promotion keepalive
    table = run_cli("status", "--status-file", str(agent.status))  # while it runs
    assert agent.stop() == 0
    entry = agent.binding()
    assert (entry["public"], entry["public_address"], entry["public_port"]) == (
        public,
        netlab.ROUTER_WAN_IP,
        mapping[1],
    )
    assert entry["state"] == "reachable" and entry["server"] == KAMAILIO
    assert entry["local"] == f"{netlab.LAN_IP}:{SOURCE_PORT}"
    assert table.returncode == 0
    row = [line for line in table.stdout.splitlines() if line.startswith("provider")]
    assert len(row) == 1 and row[0].split()[1:3] == ["reachable", public]
    # once stopped, the file left behind is not taken for a running agent
    assert run_cli("status", "--status-file", str(agent.status)).returncode == 3


def test_2_kept_alive_through_three_nat_timeouts(
    kamailio_lab: Lab, start_agent: Callable[[Lab, Path], TimedAgent]
) -> None:
    """Timings: NAT initial 5 s, stream 5 s; interval 3 s, jitter 0.2 (waits 2.4-3 s), inbound
    check before every keepalive, timeout 1 s. Runs until 6 inbound checks went out (~17 s, more
    than 3 NAT timeouts after the learning). Expected: `binding-learned` and `reachable` once,
    then no other event at info or above; every check alive; one conntrack flow throughout."""
    lab = kamailio_lab
    lab.set_udp_timeouts(5, 5)
    agent = start_agent(lab, write_config(lab, KEPT))
    agent.wait_for("binding-learned", timeout=5)
    started = time.monotonic()
    mapping = nat_mapping(lab)
    agent.wait_for("probe-sent", kind="inbound", count=6, timeout=25)
    agent.wait_for("probe-answered", count=7, timeout=5)  # the keepalive after the 6th check
    ran = time.monotonic() - started
    assert ran > 3 * 5
    assert nat_mapping(lab) == mapping == (netlab.ROUTER_WAN_IP, SOURCE_PORT)
    entry = [line for line in lab.udp_entries() if f"sport={SOURCE_PORT} " in line]
    assert len(entry) == 1 and "ASSURED" in entry[0]
    assert agent.stop() == 0
    assert agent.names() == ["started", "binding-learned", "reachable", "stopped"]
    # A silent check followed by an answered keepalive would have been `binding-expired`; a
    # check answered on the wrong socket `inbound-check-unsupported`: neither happened.
    entry_status = agent.binding()
    inbound = agent.count("probe-sent", kind="inbound")
    assert entry_status["inbound_check"] == "alive"
    assert (entry_status["changes"], entry_status["expiries"], entry_status["timeouts"]) == (
        0,
        0,
        0,
    )
    assert entry_status["probes_sent"] == entry_status["responses"] + inbound
    assert agent.count("probe-timeout") == 0


def test_3_expiry_random_port_nat(
    kamailio_lab: Lab, start_agent: Callable[[Lab, Path], TimedAgent]
) -> None:
    """Timings: `masquerade random`, NAT initial 4 s, stream 4 s; interval 6 s, jitter 0,
    timeout 1 s, inbound check off (the new port alone shows the expiry). Keepalives at 0, 3
    (promotion), 9 (expired: new port, confirmed at once, reported), 12 (promotion of the new flow),
    18 (expired again), ...: the test waits for 2 expiries (~19 s).

    Every keepalive sent more than 4 s after the previous answer must be followed by
    `binding-expired detected=remap` and `binding-changed cause=port-remapped`, and no other one;
    the status counters equal the event counts."""
    lab = kamailio_lab
    lab.set_nat(random=True)
    lab.set_udp_timeouts(*EXPIRY_NAT)
    agent = start_agent(lab, write_config(lab, dict(EXPIRY, inbound_check=0)))
    learned = agent.wait_for("binding-learned", timeout=5)
    agent.wait_for("binding-changed", count=2, timeout=30)
    agent.wait_for("probe-answered", count=len(agent.events("probe-answered")) + 1, timeout=5)
    assert agent.stop() == 0

    changed = [f for _, f in agent.events("binding-changed")]
    expired = [f for _, f in agent.events("binding-expired")]
    assert {f["cause"] for f in changed} == {"port-remapped"}
    assert {f["detected"] for f in expired} == {"remap"}
    assert len(expired) == len(changed) >= 2
    publics = [learned["public"]] + [f["new"] for f in changed]
    assert [f["old"] for f in changed] == publics[:-1]
    assert len(set(publics)) == len(publics)
    for f in expired:
        assert float(f["idle_s"] or 0) > EXPIRY_NAT[1]
    names = [n for n in agent.names() if n in ("binding-expired", "binding-changed")]
    assert names == ["binding-expired", "binding-changed"] * len(changed)
    assert_every_cycle(
        cycles(agent, "keepalive", "binding-changed"), EXPIRY_NAT[1], "random NAT keepalive"
    )
    entry = agent.binding()
    assert (entry["changes"], entry["expiries"]) == (len(changed), len(expired))
    assert entry["public"] == publics[-1]
    mapping = nat_mapping(lab)
    assert mapping is not None and f"{mapping[0]}:{mapping[1]}" == publics[-1]


def test_4_expiry_port_preserving_nat_inbound_check(
    kamailio_lab: Lab, start_agent: Callable[[Lab, Path], TimedAgent]
) -> None:
    """Timings: `masquerade` (port-preserving), NAT initial 4 s, stream 4 s; interval 6 s,
    jitter 0, timeout 1 s, inbound check before every keepalive. Cycles at 0 (keepalive),
    3 (check alive, keepalive), 9 (check silent until 10, keepalive at 10: expired), 13 (check
    alive: the new flow is young), 19-20 (expired again), ...: it waits for 2 expiries (~21 s).

    rport never changes (every answer shows 203.0.113.1:5062), yet every check sent more than 4 s
    after the previous answer ends in `binding-expired detected=inbound-check`, and no other does;
    no `binding-changed`; the status counters match."""
    lab = kamailio_lab
    lab.set_udp_timeouts(*EXPIRY_NAT)
    agent = start_agent(lab, write_config(lab, dict(EXPIRY, inbound_check=1)))
    learned = agent.wait_for("binding-learned", timeout=5)
    public = f"{netlab.ROUTER_WAN_IP}:{SOURCE_PORT}"
    assert learned["public"] == public
    agent.wait_for("binding-expired", count=2, timeout=30)
    agent.wait_for("probe-answered", count=len(agent.events("probe-answered")) + 1, timeout=10)
    assert agent.stop() == 0

    assert {f["public"] for _, f in agent.events("probe-answered")} == {public}
    expired = [f for _, f in agent.events("binding-expired")]
    assert {(f["public"], f["detected"]) for f in expired} == {(public, "inbound-check")}
    for f in expired:
        assert float(f["idle_s"] or 0) > EXPIRY_NAT[1]
    assert "binding-changed" not in agent.names()
    assert_every_cycle(
        cycles(agent, "inbound", "binding-expired"),
        EXPIRY_NAT[1],
        "port-preserving NAT inbound check",
    )
    entry = agent.binding()
    assert (entry["changes"], entry["expiries"]) == (0, len(expired))
    assert entry["public"] == public and entry["state"] == "reachable"
    assert agent.count("probe-timeout") == 0  # a silent check is not a failed keepalive


def test_5_isp_readdressing_is_reported_within_one_interval(
    kamailio_lab: Lab, start_agent: Callable[[Lab, Path], TimedAgent]
) -> None:
    """Timings: NAT initial 5 s, stream 5 s; interval 3 s, jitter 0.2, timeout 1 s, inbound check
    off. The router's wan address goes from 203.0.113.1 to 203.0.113.2 (conntrack flushed) after
    the promotion keepalive; `binding-changed cause=address-changed` is expected within one
    interval (3 s) plus the confirming probe's round trip, with no `binding-expired`."""
    lab = kamailio_lab
    lab.set_udp_timeouts(5, 5)
    agent = start_agent(lab, write_config(lab, dict(KEPT, inbound_check=0)))
    agent.wait_for("binding-learned", timeout=5)
    agent.wait_for("probe-answered", count=2, timeout=6)
    lab.readdress_router(PUBLIC_2)
    moved = time.monotonic()
    changed = agent.wait_for("binding-changed", timeout=KEPT["interval"] + 3)
    took = time.monotonic() - moved
    assert took <= KEPT["interval"] + MARGIN, f"reported after {took:.1f} s"
    assert changed == {
        "binding": "provider",
        "old": f"{netlab.ROUTER_WAN_IP}:{SOURCE_PORT}",
        "new": f"{PUBLIC_2}:{SOURCE_PORT}",
        "cause": "address-changed",
    }
    agent.wait_for("probe-answered", count=len(agent.events("probe-answered")) + 1, timeout=5)
    assert agent.stop() == 0
    assert agent.names() == [
        "started",
        "binding-learned",
        "reachable",
        "binding-changed",
        "stopped",
    ]
    entry = agent.binding()
    assert entry["public"] == f"{PUBLIC_2}:{SOURCE_PORT}"
    assert (entry["changes"], entry["expiries"]) == (1, 0)
    print(f"address change reported {took:.2f} s after the re-addressing")


@pytest.mark.parametrize("nat", ["masquerade", "random"])
def test_6_nat_reboot_is_reported_within_one_interval(
    kamailio_lab: Lab, start_agent: Callable[[Lab, Path], TimedAgent], nat: str
) -> None:
    """Timings: NAT initial 5 s, stream 5 s; interval 3 s, jitter 0.2, timeout 1 s. `conntrack -F`
    in the router after the promotion keepalive.

    masquerade (port-preserving), inbound check before every keepalive: the next cycle's check
    goes unanswered (1 s), its keepalive gets the same port: `binding-expired
    detected=inbound-check` within one interval + the check's timeout (4 s), no change event.
    random, inbound check off: the next keepalive gets a new port, confirmed at once:
    `binding-expired detected=remap` + `binding-changed cause=port-remapped` within one interval."""
    lab = kamailio_lab
    random = nat == "random"
    lab.set_nat(random=random)
    lab.set_udp_timeouts(5, 5)
    settings = dict(KEPT, inbound_check=0 if random else 1)
    agent = start_agent(lab, write_config(lab, settings))
    learned = agent.wait_for("binding-learned", timeout=5)
    agent.wait_for("probe-answered", count=2, timeout=6)
    lab.flush_conntrack()
    flushed = time.monotonic()
    limit = settings["interval"] + (0 if random else settings["timeout"])
    expired = agent.wait_for("binding-expired", timeout=limit + 3)
    took = time.monotonic() - flushed
    assert took <= limit + MARGIN, f"reported after {took:.1f} s"
    assert expired["public"] == learned["public"]
    assert expired["detected"] == ("remap" if random else "inbound-check")
    if random:
        changed = agent.wait_for("binding-changed", timeout=1)
        assert changed["cause"] == "port-remapped" and changed["old"] == learned["public"]
    agent.wait_for("probe-answered", count=len(agent.events("probe-answered")) + 1, timeout=5)
    assert agent.stop() == 0
    expected = ["binding-expired"] + (["binding-changed"] if random else [])
    assert agent.names() == ["started", "binding-learned", "reachable", *expected, "stopped"]
    entry = agent.binding()
    assert (entry["changes"], entry["expiries"]) == (1 if random else 0, 1)
    print(f"{nat}: NAT reboot reported {took:.2f} s after conntrack -F")


def test_7_server_down_and_back(
    kamailio_lab: Lab, start_agent: Callable[[Lab, Path], TimedAgent]
) -> None:
    """Timings: NAT initial 5 s, stream 5 s; interval 3 s, jitter 0.2, timeout 1 s, fail_threshold
    2, retry_interval 1 s, inbound check before every keepalive. Kamailio is stopped after the
    promotion keepalive: two cycles (check silent 1 s + keepalive timing out 1 s, 3 s apart) give
    `unreachable failures=2` within ~2 intervals + 2 timeouts (8 s). Kamailio restarts; probes
    every 1 s give `reachable` within ~2 s of its first answer. One more cycle runs after that.
    Nothing else: in particular no `binding-expired` from the silent checks (the keepalives after
    them were not answered either) and none after the return (the binding was kept by the
    outbound keepalives)."""
    lab = kamailio_lab
    lab.set_udp_timeouts(5, 5)
    agent = start_agent(lab, write_config(lab, KEPT))
    agent.wait_for("binding-learned", timeout=5)
    agent.wait_for("probe-answered", count=2, timeout=6)
    lab.stop_kamailio()
    stopped = time.monotonic()
    agent.wait_for("unreachable", failures=2, timeout=15)
    down = time.monotonic() - stopped
    lab.start_kamailio(binary=require_tool("kamailio"))
    restarted = time.monotonic()
    agent.wait_for("reachable", count=2, timeout=8)
    back = time.monotonic() - restarted
    checks = agent.count("probe-sent", kind="inbound")
    agent.wait_for("probe-sent", kind="inbound", count=checks + 1, timeout=6)
    agent.wait_for("probe-answered", count=len(agent.events("probe-answered")) + 1, timeout=5)
    assert agent.stop() == 0
    assert agent.names() == [
        "started",
        "binding-learned",
        "reachable",
        "unreachable",
        "reachable",
        "stopped",
    ]
    entry = agent.binding()
    assert entry["state"] == "reachable" and entry["inbound_check"] == "alive"
    assert (entry["changes"], entry["expiries"]) == (0, 0)
    assert entry["timeouts"] >= 2
    assert down <= 2 * KEPT["interval"] + 2 * 2 * KEPT["timeout"] + MARGIN
    print(
        f"unreachable {down:.2f} s after Kamailio stopped, reachable {back:.2f} s after "
        f"it was answering again"
    )


def test_8_server_without_rport(
    sipp_lab: Lab, start_agent: Callable[[Lab, Path], TimedAgent]
) -> None:
    """Timings: NAT initial 5 s, stream 5 s; interval 3 s, jitter 0.2, timeout 1 s,
    inbound_check 1 (it cannot run: no public port is known). Server: SIPp on :5070 echoing the
    Via unchanged (no `received`, bare `rport`). Runs for 5 answered keepalives (~10 s).
    Expected: `rport-unsupported` once, `reachable`, no public address or port in the status
    (the Via's sent-by is the agent's own LAN address, not what the server saw), no inbound check
    attempted, no change or expiry, and the status says why expiry cannot be detected."""
    lab = sipp_lab
    lab.set_udp_timeouts(5, 5)
    agent = start_agent(lab, write_config(lab, KEPT, server=SIPP))
    agent.wait_for("rport-unsupported", timeout=5)
    agent.wait_for("probe-answered", count=5, timeout=20)
    assert agent.stop() == 0
    names = agent.names()
    assert names.count("rport-unsupported") == 1
    assert names.count("binding-learned") == 0 and names.count("reachable") == 1
    assert not {
        "binding-changed",
        "binding-expired",
        "binding-flapping",
        "unreachable",
        "inbound-check-unsupported",
    } & set(names)
    assert agent.count("probe-sent", kind="inbound") == 0
    entry = agent.binding()
    assert entry["public_port"] is None and entry["state"] == "reachable"
    assert (entry["changes"], entry["expiries"]) == (0, 0)
    # No `received` and no rport value: nothing is known of the public side.
    assert entry["public_address"] is None and entry["public"] is None
    assert netlab.LAN_IP not in json.dumps(entry["public"])
    assert entry["expiry_detection"] == "unsupported: server sends no received and no rport value"


@pytest.mark.parametrize("bind", ["interface", "wildcard"])
def test_9_lan_address_change_rebinds_the_socket(
    kamailio_lab: Lab, start_agent: Callable[[Lab, Path], TimedAgent], bind: str
) -> None:
    """Timings: NAT initial 5 s, stream 5 s; interval 3 s, jitter 0.2, timeout 1 s, inbound
    check before every keepalive. The lan address moves from 192.168.77.2 to 192.168.77.3 after
    the promotion keepalive.

    interface: the binding is bound to `interface: lan0`. The next cycle's check goes unanswered
    (its answer follows the old flow to the vanished address, 1 s), the keepalive cannot be sent
    (the socket's address is gone), the agent looks at its addresses 1 s later:
    `local-address-changed` within interval + timeout + 1 s (5 s) + slack.
    wildcard: bound to 0.0.0.0; SIGUSR2 (what a hotplug script sends when an interface changes)
    right after the change: `local-address-changed` within 1 s.

    Then the socket is re-opened on the new address (port 5062), a new mapping is learned (the
    NAT gives another public port: the old flow still holds 5062) and 3 more keepalives are
    answered on the new socket."""
    lab = kamailio_lab
    lab.set_udp_timeouts(5, 5)
    config = write_config(
        lab, KEPT, binding={"interface": netlab.LAN_IF} if bind == "interface" else {}
    )
    agent = start_agent(lab, config)
    agent.wait_for("binding-learned", timeout=5)
    agent.wait_for("probe-answered", count=2, timeout=6)
    lab.change_lan_address(LAN_2)
    moved = time.monotonic()
    if bind == "interface":
        limit = KEPT["interval"] + KEPT["timeout"] + 1
    else:
        agent.signal(signal.SIGUSR2)
        limit = 1
    changed = agent.wait_for("local-address-changed", timeout=limit + 3)
    took = time.monotonic() - moved
    assert changed == {"binding": "provider", "old": netlab.LAN_IP, "new": LAN_2}
    assert took <= limit + 2 * MARGIN, f"noticed after {took:.1f} s"
    relearned = agent.wait_for("binding-learned", count=2, timeout=5)
    assert relearned["local"] == f"{LAN_2}:{SOURCE_PORT}"
    mapping = nat_mapping(lab)
    assert mapping is not None and relearned["public"] == f"{mapping[0]}:{mapping[1]}"
    answered = len(agent.events("probe-answered"))
    agent.wait_for("probe-answered", count=answered + 3, timeout=12)
    bound = "0.0.0.0" if bind == "wildcard" else LAN_2
    sockets = lab.run("lan", ["ss", "-uanH", "sport", "=", f":{SOURCE_PORT}"]).stdout.split()
    assert f"{bound}:{SOURCE_PORT}" in sockets and f"{netlab.LAN_IP}:{SOURCE_PORT}" not in sockets
    assert agent.stop() == 0
    names = agent.names()
    assert names.count("send-failed") <= (1 if bind == "interface" else 0)
    # SIGUSR2 leaves its own event, before the check it asked for
    hint = ["signal-received"] if bind == "wildcard" else []
    assert [n for n in names if n != "send-failed"] == [
        "started",
        "binding-learned",
        "reachable",
        *hint,
        "local-address-changed",
        "binding-learned",
        "stopped",
    ]
    entry = agent.binding()
    assert entry["local"] == f"{LAN_2}:{SOURCE_PORT}" and entry["state"] == "reachable"
    assert entry["public"] == relearned["public"]
    print(
        f"{bind}: local address change noticed {took:.2f} s after it happened; "
        f"send-failed lines: {agent.count('send-failed')}"
    )


# ------------------------------------------------------------------------------------------------
# Scenario 10: the syslog path, with a real rsyslogd.


class Rsyslogd:
    """rsyslogd in the lab's lan namespace, listening on a unix socket in the lab's tmpdir (the
    filesystem is shared, so the path is the same everywhere) and writing one line per message:
    `facility severity tag msg`."""

    def __init__(self, lab: Lab, binary: str) -> None:
        folder = Path(lab.tmpdir) / "rsyslog"
        (folder / "work").mkdir(parents=True)
        self.socket = str(folder / "log")
        self.output = folder / "messages"
        conf = folder / "rsyslog.conf"
        conf.write_text(
            f'global(workDirectory="{folder / "work"}")\n'
            'module(load="imuxsock" SysSock.Use="off")\n'
            f'input(type="imuxsock" Socket="{self.socket}" RateLimit.Interval="0")\n'
            'template(name="nk" type="string" '
            'string="%syslogfacility-text% %syslogseverity-text% %syslogtag% %msg%\\n")\n'
            f'*.* action(type="omfile" file="{self.output}" template="nk" '
            'asyncWriting="off" flushOnTXEnd="on")\n'
        )
        self.stderr = folder / "rsyslogd.stderr"
        with open(self.stderr, "ab") as err:
            self.proc = lab.popen(
                "lan",
                [binary, "-n", "-f", str(conf), "-i", str(folder / "rsyslogd.pid")],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket):
            assert self.proc.poll() is None, self.stderr.read_text()
            assert time.monotonic() < deadline, "rsyslogd made no socket"
            time.sleep(0.05)

    def lines(self) -> list[str]:
        try:
            text = self.output.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if " nat-keepalive[" in line]

    def events(self) -> list[tuple[str, str, str, Fields]]:
        """(facility, severity, event, fields) per line from the agent."""
        out = []
        for line in self.lines():
            facility, severity, _tag, _msg = line.split(" ", 3)
            name, fields = parse_line(line)
            out.append((facility, severity, name, fields))
        return out

    def wait_for(self, name: str, count: int = 1, timeout: float = 10.0, **fields: str) -> None:
        def enough() -> bool:
            return (
                len(
                    [
                        f
                        for _, _, n, f in self.events()
                        if n == name and all(f.get(k) == v for k, v in fields.items())
                    ]
                )
                >= count
            )

        wait_until(
            f"{count}x {name} {fields} in syslog",
            enough,
            timeout,
            interval=0.05,
            detail=lambda: "\n".join(self.lines()),
        )


def test_10_syslog_output_has_every_event_exactly_once(kamailio_lab: Lab) -> None:
    """Timings: `masquerade random`, NAT initial 5 s, stream 5 s; interval 3 s, jitter 0.2,
    timeout 1 s, fail_threshold 2, retry_interval 1 s, inbound check off; log to syslog
    (local3, info) only, through a real rsyslogd. Steps, each awaited in the syslog file:
    learned + reachable (~0 s); NAT reboot -> expired + changed (<= 3 s); NAT reboot again ->
    expired + changed (<= 3 s); ISP re-addressing -> changed, address (<= 3 s); Kamailio stopped
    -> unreachable (<= 8 s); Kamailio back -> reachable (<= 2 s); SIGTERM -> stopped. ~25 s.

    The whole syslog output is then exactly that sequence of events (nothing lost, nothing
    doubled, in order, right facility and severities, no debug lines), the status counters agree
    with it (changes 3, expiries 2), and the agent wrote nothing to stderr."""
    lab = kamailio_lab
    rsyslog = Rsyslogd(lab, require_tool("rsyslogd"))
    lab.set_nat(random=True)
    lab.set_udp_timeouts(5, 5)
    log = f"{{target: syslog, address: {rsyslog.socket}, facility: local3, level: info}}"
    config = write_config(lab, dict(KEPT, inbound_check=0), log=log)
    status = Path(lab.tmpdir) / "status.json"
    err_path = Path(lab.tmpdir) / "agent.stderr"
    with open(err_path, "wb") as err:
        agent = lab.popen(
            "lan",
            [
                sys.executable,
                "-m",
                "natkeepalive",
                "run",
                "-c",
                str(config),
                "--status-file",
                str(status),
            ],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            env=agent_env(),
        )
    rsyslog.wait_for("reachable")
    lab.flush_conntrack()
    rsyslog.wait_for("binding-changed", count=1, timeout=8)
    lab.flush_conntrack()
    rsyslog.wait_for("binding-changed", count=2, timeout=8)
    lab.readdress_router(PUBLIC_2)
    rsyslog.wait_for("binding-changed", timeout=8, cause="address-changed")
    lab.stop_kamailio()
    rsyslog.wait_for("unreachable", timeout=15)
    lab.start_kamailio(binary=require_tool("kamailio"))
    rsyslog.wait_for("reachable", count=2, timeout=8)
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(10) == 0
    rsyslog.wait_for("stopped")
    time.sleep(0.5)  # anything written after `stopped` would be a doubled or stray line
    lab.stop(rsyslog.proc)

    found = rsyslog.events()
    expected = [
        ("started", "notice"),
        ("binding-learned", "info"),
        ("reachable", "notice"),
        ("binding-expired", "warning"),
        ("binding-changed", "warning"),
        ("binding-expired", "warning"),
        ("binding-changed", "warning"),
        ("binding-changed", "warning"),
        ("unreachable", "err"),
        ("reachable", "notice"),
        ("stopped", "notice"),
    ]
    assert [(name, severity) for _, severity, name, _ in found] == expected, "\n".join(
        rsyslog.lines()
    )
    assert {facility for facility, _, _, _ in found} == {"local3"}
    assert all(line.split(" ", 3)[2].startswith("nat-keepalive[") for line in rsyslog.lines())
    causes = [f["cause"] for _, _, n, f in found if n == "binding-changed"]
    assert causes == ["port-remapped", "port-remapped", "address-changed"]
    entry = json.loads(status.read_text())["bindings"][0]
    names = [name for _, _, name, _ in found]
    assert entry["changes"] == names.count("binding-changed") == 3
    assert entry["expiries"] == names.count("binding-expired") == 2
    assert entry["state"] == "reachable"
    assert entry["public"] == [f for _, _, n, f in found if n == "binding-changed"][-1]["new"]
    assert err_path.read_text() == ""
