"""Nothing lost: a bounded lab run (about 60 s) with random faults, logging through a real rsyslogd
into a file. Every state change the status file counts (changes, expiries, the reachability state,
the public mapping) appears exactly once in syslog, in order; nothing fell back to stderr.

Faults, drawn with a fixed seed: a NAT reboot (conntrack flushed; with `masquerade random` the
binding gets a new port), the SIP server stopped and started, the router re-addressed by the ISP,
the default route lost and restored. The local address check runs every 2 s (agentwrap.py)."""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from natkeepalive.logline import parse_line
from tests.lab.netlab import ROUTER_LAN_IP, Lab
from tests.reliability.common import status
from tests.reliability.labagent import lab_agent, lab_config
from tests.support.tools import require_tool

pytestmark = [pytest.mark.lab, pytest.mark.syslog]

RUN_SECONDS = 60.0
REACH = ("reachable", "lagged", "unreachable")


class Rsyslog:
    """rsyslogd with a private imuxsock socket, writing `tag msg` lines to a file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "log"
        self.output = folder / "syslog.txt"
        (folder / "work").mkdir()
        conf = folder / "rsyslog.conf"
        conf.write_text(
            f'global(workDirectory="{folder / "work"}")\n'
            'module(load="imuxsock" SysSock.Use="off")\n'
            f'input(type="imuxsock" Socket="{self.socket}" RateLimit.Interval="0")\n'
            'template(name="nk" type="string" string="%syslogseverity-text% %syslogtag%%msg%\\n")\n'
            f'*.* action(type="omfile" file="{self.output}" template="nk")\n'
        )
        self.proc = subprocess.Popen(
            [require_tool("rsyslogd"), "-n", "-f", str(conf), "-i", str(folder / "pid")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            assert self.proc.poll() is None and time.monotonic() < deadline, "rsyslogd failed"
            time.sleep(0.05)

    def lines(self) -> list[str]:
        if not self.output.exists():
            return []
        return self.output.read_text(errors="replace").splitlines()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def rsyslog(lab: Lab) -> Iterator[Rsyslog]:
    folder = Path(lab.tmpdir) / "rsyslog"
    folder.mkdir()
    server = Rsyslog(folder)
    try:
        yield server
    finally:
        server.stop()


def test_every_counted_change_is_in_syslog_once_in_order(
    kamailio_lab: Lab, rsyslog: Rsyslog
) -> None:
    lab = kamailio_lab
    lab.set_nat(random=True)
    rng = random.Random(int(os.environ.get("NK_FAULT_SEED", "6")))
    config = lab_config(
        lab,
        log=f"{{target: syslog, address: {rsyslog.socket}, level: info}}",
        interval=1.0,
        timeout=1.0,
        fail_threshold=2,
        retry_interval=1.0,
    )
    injected: list[str] = []
    router_ips = ["203.0.113.2", "203.0.113.1"]
    with lab_agent(lab, config, log_from_config=True) as agent:
        deadline = time.monotonic() + 15
        while not any("event=reachable" in line for line in rsyslog.lines()):
            assert time.monotonic() < deadline, rsyslog.lines() + agent.lines
            time.sleep(0.1)
        end = time.monotonic() + RUN_SECONDS
        while time.monotonic() < end - 8:
            fault = rng.choice(["nat-reboot", "server", "readdress", "route", "nat-reboot"])
            injected.append(fault)
            if fault == "nat-reboot":
                lab.flush_conntrack()
            elif fault == "server":
                lab.stop_kamailio()
                time.sleep(rng.uniform(2.5, 4.0))
                lab.start_kamailio()
            elif fault == "readdress":
                lab.readdress_router(router_ips[0])
                router_ips.reverse()
            else:
                lab.run("lan", ["ip", "route", "del", "default"])
                time.sleep(rng.uniform(2.5, 4.0))
                lab.run("lan", ["ip", "route", "add", "default", "via", ROUTER_LAN_IP])
            time.sleep(rng.uniform(3.0, 5.0))
        time.sleep(max(0.0, end - time.monotonic()))
        final = status(agent)["bindings"][0]
        assert agent.stop() == 0
    time.sleep(0.5)
    entry = status(agent, fresh=False)["bindings"][0]  # written at shutdown
    for key in ("state", "public", "changes", "expiries"):
        assert entry[key] == final[key], (key, entry, final)  # nothing changed while stopping
    lines = [line for line in rsyslog.lines() if "nat-keepalive[" in line]
    events = [parse_line(line) for line in lines if "event=" in line]
    names = [name for name, _ in events]
    print(f"nothing lost: faults {injected}; syslog events {names}; status {entry}")
    assert agent.lines == [], f"lines fell back to stderr: {agent.lines}"
    assert names[0] == "started" and names[-1] == "stopped" and names.count("stopped") == 1
    assert names.count("binding-changed") == entry["changes"]
    assert names.count("binding-expired") == entry["expiries"]
    assert _no_duplicated_lines(lines)
    # reachability: alternating, never the same state twice in a row, ending where status is
    reach = [name for name in names if name in REACH]
    assert all(a != b for a, b in zip(reach, reach[1:])), reach
    assert reach and reach[-1] == entry["state"]
    # the mapping: every change starts where the previous one (or the learning) ended
    public = None
    for name, fields in events:
        if name == "binding-learned":
            public = fields["public"]
        elif name == "binding-changed":
            assert fields["old"] == public, (fields, public)
            public = fields["new"]
    assert public == entry["public"]
    assert len(injected) >= 5 and entry["changes"] >= 1


def _no_duplicated_lines(lines: list[str]) -> bool:
    """No line twice, except those that can legitimately repeat word for word."""
    seen: set[str] = set()
    for line in lines:
        if line in seen and "event=reachable" not in line and "event=unreachable" not in line:
            return False
        seen.add(line)
    return True
