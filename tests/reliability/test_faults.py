"""Faults on loopback: the server down and back, a server 1000 times slower than usual, SIGHUP
with a broken file, SIGHUP storms, wall-clock steps, a status directory full or read-only, DNS
failing, recovering and timing out. For each: the agent keeps running, reports the fault once and
the recovery once, and keeps its schedule (measured where the responder receives keepalives)."""

from __future__ import annotations

import calendar
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from natkeepalive import events as ev
from natkeepalive.config.model import ProbeSettings
from natkeepalive.core.engine import BINDING
from tests.reliability.common import (
    WRAP,
    count_lines,
    fd_count,
    first_sends,
    gaps,
    memory_kb,
    status,
    write_config,
)
from tests.reliability.dnsserver import DnsServer
from tests.support.agentproc import Agent
from tests.support.fakenet import SERVER, FakeNet
from tests.support.helpers import free_port
from tests.support.responder import SipResponder
from tests.support.sipfake import answer
from tests.support.tools import require_root, require_tool

REACH = ("reachable", "lagged", "unreachable")


def reach_events(agent: Agent) -> list[str]:
    return [name for name in agent.names() if name in REACH]


def server_text(responder: SipResponder) -> str:
    return f"{responder.address[0]}:{responder.address[1]}"


# --- the server -----------------------------------------------------------------------------------


def test_server_down_and_back(tmp_path: Path) -> None:
    responder = SipResponder().start()
    port = responder.address[1]
    try:
        config = write_config(
            tmp_path / "c.yaml",
            [("p", server_text(responder), free_port())],
            interval=0.5,
            retry_interval=0.5,
        )
        with Agent(config, tmp_path / "status.json") as agent:
            agent.wait_for("reachable")
            responder.stop()  # the port is closed: ICMP port unreachable for every probe
            agent.wait_for("unreachable")
            sent = len(agent.events("probe-sent"))
            time.sleep(3.0)
            assert len(agent.events("probe-sent")) - sent >= 4, "probing stopped while down"
            responder = SipResponder(port=port).start()
            back = time.monotonic()
            agent.wait_for("reachable", count=2)
            time.sleep(3.0)
            entry = status(agent, "p")
            assert agent.proc.poll() is None
            assert agent.stop() == 0
        assert reach_events(agent) == ["reachable", "unreachable", "reachable"]
        assert agent.names().count("send-failed") <= 1
        assert agent.names().count("binding-learned") == 1  # same flow, same mapping
        assert entry["state"] == "reachable"
        resumed = gaps(first_sends(responder.requests, since=back + 1.0))
        assert len(resumed) >= 3 and max(resumed) < 0.5 + 0.1, resumed
    finally:
        responder.stop()


def test_server_1000_times_slower_than_usual(tmp_path: Path) -> None:
    """Usual: 2 ms. Then 0.4 s (over lagged_ms, under the first retransmission at 0.5 s: an
    answer after a retransmission is timed from the last one, Karn's rule), then 5 s (past the
    3-s timeout: late answers to finished transactions arrive all the time), then 2 ms again."""
    with SipResponder() as responder:
        responder.configure(delay=0.002)
        config = write_config(
            tmp_path / "c.yaml",
            [("p", server_text(responder), free_port())],
            interval=1.0,
            timeout=3.0,
            lagged_ms=250,
            retry_interval=1.0,
        )
        with Agent(config, tmp_path / "status.json") as agent:
            agent.wait_for("reachable")
            responder.configure(delay=0.4)
            agent.wait_for("lagged", timeout=10)
            responder.configure(delay=5.0)
            agent.wait_for("unreachable", timeout=15)
            time.sleep(6.0)  # late answers keep arriving for finished transactions
            responder.configure(delay=0.002)
            back = time.monotonic()
            agent.wait_for("reachable", count=2, timeout=15)
            time.sleep(6.0)
            entry = status(agent, "p")
            assert agent.stop() == 0
        events = reach_events(agent)
        print(f"slow server: reachability events {events}")
        # the fault once and the recovery once, in order (stale outcomes only count)
        assert events[:3] == ["reachable", "lagged", "unreachable"], events
        # A probe sent before the switch whose Timer E retransmission lands after it is answered
        # at once, and timed from that retransmission: recovery goes straight to reachable.
        assert events[3:] == ["reachable"], events
        assert events.count("unreachable") == 1
        assert entry["state"] == "reachable" and entry["changes"] == 0
        resumed = gaps(first_sends(responder.requests, since=back + 3.5))
        assert len(resumed) >= 2 and max(resumed) < 1.0 + 0.1, resumed


def _unreachable_with_probes_out(
    fail_threshold: int,
) -> tuple[FakeNet, dict[int, tuple[float, bytes]]]:
    """Engine level: answered at 1 s for 10 s, then silent until unreachable at 20 s, with
    probes still out; returns the net and each probe's first send (time, bytes) by CSeq."""
    net = FakeNet(
        settings=ProbeSettings(
            interval=1.0,
            jitter=0.0,
            timeout=3.0,
            lagged_ms=1000,
            retry_interval=1.0,
            fail_threshold=fail_threshold,
            inbound_check=0,
        ),
        rtt=0.002,
    )
    net.run_until(10.0)
    net.silent = True
    net.run_until(20.001)
    assert net.engine.reach.state == "unreachable"
    first: dict[int, tuple[float, bytes]] = {}
    for sent in net.sent:
        if sent.channel == BINDING and sent.request.cseq not in first:
            first[sent.request.cseq] = (sent.at, sent.raw)
    return net, first


@pytest.mark.parametrize("fail_threshold", [1, 2])
def test_stale_outcomes_do_not_flip_reachability(fail_threshold: int) -> None:
    """Engine level, deterministic: the server comes back while several probes are outstanding.
    The newest probe is answered first (reachable); then the answer to an older probe arrives,
    with the older probe's long RTT, and older probes time out. Those outcomes are older than one
    already applied and must not move reachability: the recovery is reported once."""
    net, first = _unreachable_with_probes_out(fail_threshold)
    live = sorted(tx.key.cseq for tx in net.engine._tx.values())
    newest, older = live[-1], live[0]
    assert 20.0 - first[older][0] > 1.0  # its answer now has an RTT over lagged_ms
    net.now = 20.01
    net.inject(answer(first[newest][1], net.public), SERVER)
    net.now = 20.02
    net.inject(answer(first[older][1], net.public), SERVER)
    net.silent = False
    net.run_until(30.0)
    events = [name for name in net.names() if name in REACH]
    assert events == ["reachable", "unreachable", "reachable"], events


def test_recovery_through_a_retransmission_is_timed_from_its_last_transmission() -> None:
    """Engine level, deterministic: what the slow-server test above may meet by chance. The server
    comes back while a probe sent 2 s earlier is outstanding; its retransmission is answered at
    once. Retransmissions are the same bytes, so the answer cannot tell which one it answers:
    timed from the last (Karn's rule), it is no 2-s round trip, and no false `lagged`."""
    net, first = _unreachable_with_probes_out(fail_threshold=1)
    older = min(tx.key.cseq for tx in net.engine._tx.values())
    last_sent = next(tx.last_sent for tx in net.engine._tx.values() if tx.key.cseq == older)
    assert last_sent > first[older][0]  # it was retransmitted
    net.now = 20.01
    net.inject(answer(first[older][1], net.public), SERVER)
    net.silent = False
    net.run_until(30.0)
    events = [name for name in net.names() if name in REACH]
    assert events == ["reachable", "unreachable", "reachable"], events
    back = net.of(ev.Reachable)[-1]
    assert isinstance(back, ev.Reachable)
    assert back.rtt_ms == pytest.approx((20.01 - last_sent) * 1000, abs=1)
    assert back.rtt_ms < (20.01 - first[older][0]) * 1000 - 400


# --- SIGHUP ---------------------------------------------------------------------------------------


def test_sighup_with_broken_files_keeps_the_old_config(tmp_path: Path) -> None:
    with SipResponder() as responder:
        port = free_port()
        config = write_config(
            tmp_path / "c.yaml", [("p", server_text(responder), port)], interval=0.5
        )
        good = config.read_text()
        with Agent(config, tmp_path / "status.json") as agent:
            agent.wait_for("reachable")
            time.sleep(3.5)  # past the promotion keepalive: from now on one every 0.5 s
            call_id = responder.requests[-1][1].call_id
            for broken in (
                "bindings: [\n",
                good.replace("interval:", "intreval:"),
                good.replace(f"source_port: {port}", "source_port: 70000"),
                "",
                "\0\xff",
            ):
                config.write_text(broken)
                rejected = len(agent.events("config-rejected"))
                agent.signal(signal.SIGHUP)
                agent.wait_for("config-rejected", count=rejected + 1)
            before = len(responder.requests)
            time.sleep(1.5)
            assert len(responder.requests) - before >= 2, "keepalives stopped"
            config.write_text(good)
            agent.signal(signal.SIGHUP)
            reloaded = agent.wait_for("reloaded")
            time.sleep(1.0)
            assert agent.stop() == 0
    assert reloaded == {"added": "0", "changed": "0", "removed": "0"}
    assert agent.names().count("config-rejected") == 5
    assert agent.names().count("binding-learned") == 1
    # the same binding state: its Call-IDs' prefix (a Call-ID is new for every request)
    assert {m.call_id.rpartition("-")[0] for _, m, _ in responder.requests} == {
        call_id.rpartition("-")[0]
    }
    assert {src[1] for src, _, _ in responder.requests} == {port}
    for _, fields in agent.events("config-rejected"):
        assert fields["file"] == str(config) and fields["error"]


def test_sighup_storm(tmp_path: Path) -> None:
    """100 SIGHUPs in one second, with a good file and then a broken one."""
    with SipResponder() as responder:
        config = write_config(
            tmp_path / "c.yaml", [("p", server_text(responder), free_port())], interval=0.5
        )
        good = config.read_text()
        with Agent(config, tmp_path / "status.json") as agent:
            agent.wait_for("reachable")
            time.sleep(3.5)  # past the promotion keepalive
            pid = agent.proc.pid
            fds, memory = fd_count(pid), memory_kb(pid)
            start = time.monotonic()
            for _ in range(100):
                os.kill(pid, signal.SIGHUP)
                time.sleep(0.01)
            config.write_text("bindings: [\n")
            for _ in range(100):
                os.kill(pid, signal.SIGHUP)
                time.sleep(0.01)
            end = time.monotonic()
            config.write_text(good)
            time.sleep(1.5)
            assert agent.proc.poll() is None
            after_fds, after_memory = fd_count(pid), memory_kb(pid)
            assert agent.stop() == 0
    reloads, rejects = agent.names().count("reloaded"), agent.names().count("config-rejected")
    late = [g - 0.5 for g in gaps(first_sends(responder.requests, start - 0.5, end + 1.0))]
    print(
        f"SIGHUP storm: {reloads} reloads, {rejects} rejections for 200 signals; "
        f"keepalive lateness max {max(late) * 1000:.1f} ms; fds {fds}->{after_fds}; "
        f"rss/pss kB {memory}->{after_memory}"
    )
    assert 1 <= reloads <= 100 and 1 <= rejects <= 100
    assert agent.names().count("binding-learned") == 1
    assert reach_events(agent) == ["reachable"]
    assert after_fds == fds
    assert after_memory[0] - memory[0] < 2048
    assert len(late) >= 3 and max(late) < 0.1, late


# --- the wall clock -------------------------------------------------------------------------------


def test_wall_clock_steps_do_not_move_the_schedule(tmp_path: Path) -> None:
    """time.time() of the agent alone jumps by +1 h, then to -1 h (agentwrap.py); scheduling runs
    on CLOCK_MONOTONIC, so the keepalives keep their 0.5-s spacing and nothing is reported; the
    status file's wall-clock times follow the step (proof that it took effect)."""
    offset = tmp_path / "offset"
    offset.write_text("0")
    with SipResponder() as responder:
        config = write_config(
            tmp_path / "c.yaml", [("p", server_text(responder), free_port())], interval=0.5
        )
        with Agent(
            config,
            tmp_path / "status.json",
            prefix=WRAP,
            env={"NK_TEST_WALL_OFFSET_FILE": str(offset)},
        ) as agent:
            agent.wait_for("reachable")
            time.sleep(3.5)
            start = time.monotonic()
            stamps = []
            for step in ("3600", "-3600", "0"):
                offset.write_text(step)
                time.sleep(2.0)
                stamps.append((status(agent)["updated_at"], time.time() + int(step)))
            end = time.monotonic()
            entry = status(agent, "p")
            assert agent.stop() == 0
    # each stamp against the stepped time it was read at: an hour's rollover in between (the
    # former hour-of-day comparison) cannot make it fail
    for stamp, expected in stamps:
        written = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
        assert abs(written - expected) < 10, (stamp, expected)
    assert reach_events(agent) == ["reachable"]
    assert entry["timeouts"] == 0
    late = [g - 0.5 for g in gaps(first_sends(responder.requests, start, end))]
    print(f"wall-clock steps: {len(late)} keepalive gaps, lateness max {max(late) * 1000:.1f} ms")
    assert len(late) >= 10 and max(late) < 0.1 and min(late) > -0.05, late


# --- the status directory -------------------------------------------------------------------------


@contextlib.contextmanager
def tiny_tmpfs(folder: Path, size: str = "64k") -> Iterator[Path]:
    require_root()
    folder.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)], check=True
    )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_status_directory_full_then_read_only(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "run") as run, SipResponder() as responder:
        config = write_config(
            tmp_path / "c.yaml", [("p", server_text(responder), free_port())], interval=0.5
        )
        path = run / "nk" / "status.json"
        with Agent(config, path) as agent:
            agent.wait_for("reachable")
            assert status(agent, "p")["state"] == "reachable"
            filler = run / "filler"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * 4096)
            os.close(fd)
            for _ in range(3):
                agent.signal(signal.SIGUSR1)
                time.sleep(0.3)
            full = agent.wait_line("event=status-write-failed")
            filler.unlink()
            agent.signal(signal.SIGUSR1)
            agent.wait_line("event=status-write-recovered")
            subprocess.run(["mount", "-o", "remount,ro", str(run)], check=True)
            for _ in range(3):
                agent.signal(signal.SIGUSR1)
                time.sleep(0.3)
            read_only = agent.wait_line("Read-only file system")
            subprocess.run(["mount", "-o", "remount,rw", str(run)], check=True)
            agent.signal(signal.SIGUSR1)
            time.sleep(0.5)
            sent = len(agent.events("probe-sent"))
            time.sleep(1.0)
            assert len(agent.events("probe-sent")) > sent, "keepalives stopped"
            entry = status(agent, "p")
            assert agent.stop() == 0
        leftovers = [p.name for p in path.parent.iterdir() if p.name != "status.json"]
    assert "No space left on device" in full and " err: event=status-write-failed " in full
    assert " err: event=status-write-failed " in read_only
    assert count_lines(agent, "event=status-write-failed") == 2  # once per fault
    assert count_lines(agent, "event=status-write-recovered") == 2  # once per recovery
    assert entry["state"] == "reachable"
    assert leftovers == [], leftovers  # no temporary files left behind


# --- DNS ------------------------------------------------------------------------------------------

DNS_IP = "127.0.0.77"
NAME = "sip.nk.test"


@contextlib.contextmanager
def private_resolver(
    tmp_path: Path, timeout: int = 1
) -> Iterator[tuple[DnsServer, tuple[str, ...]]]:
    """A DNS server of the test's own and the Agent prefix that makes the agent use it: a private
    mount namespace with the test's resolv.conf, hosts and nsswitch.conf bind-mounted."""
    require_root()
    unshare = require_tool("unshare")
    files = {
        "resolv.conf": f"nameserver {DNS_IP}\noptions timeout:{timeout} attempts:1\n",
        "hosts": "127.0.0.1 localhost\n",
        "nsswitch.conf": "hosts: files dns\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    script = (
        'mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/hosts && '
        'mount --bind "$3" /etc/nsswitch.conf && shift 3 && exec "$@"'
    )
    prefix = (
        unshare,
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        str(tmp_path / "resolv.conf"),
        str(tmp_path / "hosts"),
        str(tmp_path / "nsswitch.conf"),
        *WRAP,
    )
    with DnsServer(DNS_IP, {NAME: "127.0.0.1"}) as dns:
        yield dns, prefix


FAST_RESOLVE = {"NK_TEST_SET": "natkeepalive.runtime.slot.RESOLVE_EVERY=1"}


def test_dns_failing_keeps_the_old_address_and_is_reported_once(tmp_path: Path) -> None:
    with private_resolver(tmp_path) as (dns, prefix), SipResponder() as responder:
        config = write_config(
            tmp_path / "c.yaml",
            [("p", f"{NAME}:{responder.address[1]}", free_port())],
            interval=0.5,
        )
        with Agent(config, tmp_path / "status.json", prefix=prefix, env=FAST_RESOLVE) as agent:
            agent.wait_for("reachable")
            for mode in ("servfail", "nxdomain"):  # "silent": test_dns_timeout_...
                dns.mode = mode
                time.sleep(3.0)
            failed_queries = len(dns.queries)
            dns.mode = "ok"
            back = time.monotonic()
            time.sleep(3.0)
            entry = status(agent, "p")
            assert agent.proc.poll() is None
            assert agent.stop() == 0
    names = agent.names()
    assert names.count("resolve-failed") == 1, names
    assert reach_events(agent) == ["reachable"]  # the old address kept answering
    assert "server-changed" not in names and names.count("binding-learned") == 1
    assert entry["state"] == "reachable"
    assert failed_queries >= 4, "the agent stopped asking"
    assert [q for q in dns.queries if q[2] == "ok"], "no lookup after the recovery"
    resumed = gaps(first_sends(responder.requests, since=back))
    assert resumed


def test_dns_recovery_is_reported_once(tmp_path: Path) -> None:
    """`resolve-failed` is said once per outage; the end of the outage is said nowhere, so a
    reader of the log cannot tell a resolver that is still failing from one that recovered."""
    with private_resolver(tmp_path) as (dns, prefix), SipResponder() as responder:
        config = write_config(
            tmp_path / "c.yaml",
            [("p", f"{NAME}:{responder.address[1]}", free_port())],
            interval=0.5,
        )
        with Agent(config, tmp_path / "status.json", prefix=prefix, env=FAST_RESOLVE) as agent:
            agent.wait_for("reachable")
            dns.mode = "servfail"
            agent.wait_for("resolve-failed")
            dns.mode = "ok"
            time.sleep(3.0)
            agent.stop()
    failed_at = agent.names().index("resolve-failed")
    after = agent.names()[failed_at + 1 :]
    assert after.count("resolve-recovered") == 1, after


def test_dns_unresolvable_at_start_then_resolving(tmp_path: Path) -> None:
    with private_resolver(tmp_path) as (dns, prefix), SipResponder() as responder:
        dns.mode = "nxdomain"
        config = write_config(
            tmp_path / "c.yaml",
            [("p", f"{NAME}:{responder.address[1]}", free_port())],
            interval=0.5,
            retry_interval=1.0,
        )
        with Agent(config, tmp_path / "status.json", prefix=prefix) as agent:
            agent.wait_for("resolve-failed")
            time.sleep(2.5)
            dns.mode = "ok"
            agent.wait_for("reachable", timeout=10)
            assert agent.stop() == 0
    names = agent.names()
    assert names.count("resolve-failed") == 1
    assert names.index("resolve-failed") < names.index("binding-learned")


def test_dns_timeout_does_not_stall_other_bindings(tmp_path: Path) -> None:
    """A resolver that does not answer (the DNS server is down, or its link is) must not stop the
    keepalives of a binding whose server is an IP address: getaddrinfo() blocks, and the daemon
    has one thread. Measured at that binding's server: lateness of its keepalives."""
    with (
        private_resolver(tmp_path, timeout=2) as (dns, prefix),
        SipResponder() as literal,
        SipResponder() as named,
    ):
        config = write_config(
            tmp_path / "c.yaml",
            [
                ("literal", server_text(literal), free_port()),
                ("named", f"{NAME}:{named.address[1]}", free_port()),
            ],
            interval=0.5,
        )
        with Agent(config, tmp_path / "status.json", prefix=prefix, env=FAST_RESOLVE) as agent:
            agent.wait_for("reachable", count=2)
            time.sleep(3.5)
            dns.mode = "silent"
            start = time.monotonic()
            time.sleep(6.0)
            end = time.monotonic()
            dns.mode = "ok"
            agent.stop()
    late = [g - 0.5 for g in gaps(first_sends(literal.requests, start, end))]
    print(
        f"DNS timeout: keepalive lateness of the other binding: max "
        f"{max(late, default=0) * 1000:.0f} ms over {len(late)} gaps"
    )
    assert len(late) >= 8 and max(late) < 0.1, late
