"""The daemon as users run it (a subprocess, --log stderr) against a real UDP SIP responder on
127.0.0.1 that can play a NAT rebinding, ignore rport, answer late, from the wrong port, with a
wrong branch, or not at all. Intervals are a second or two so each test takes seconds."""

from __future__ import annotations

import functools
import json
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.support import helpers
from tests.support.agentproc import Agent
from tests.support.helpers import free_port
from tests.support.responder import SipResponder

write_config = functools.partial(helpers.write_config, base=helpers.LOOPBACK_TIMERS)


def status_of(agent: Agent) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(agent.status.read_text())
    return data


def binding_status(agent: Agent, name: str = "provider") -> dict:  # type: ignore[type-arg]
    return next(b for b in status_of(agent)["bindings"] if b["name"] == name)


def test_learned_changed_unreachable_reachable_and_status_agrees(
    tmp_path: Path, responder: SipResponder
) -> None:
    port = free_port()
    config = write_config(tmp_path / "c.yaml", [("provider", responder.address, port)])
    with Agent(config, tmp_path / "status.json") as agent:
        learned = agent.wait_for("binding-learned")
        assert learned["public"] == f"127.0.0.1:{port}"
        assert learned["local"] == f"127.0.0.1:{port}"
        agent.wait_for("reachable")
        responder.configure(received="203.0.113.1", rport=40001)
        changed = agent.wait_for("binding-changed")
        assert changed == {
            "binding": "provider",
            "old": f"127.0.0.1:{port}",
            "new": "203.0.113.1:40001",
            "cause": "address-changed",
        }
        responder.configure(silent=True)
        agent.wait_for("unreachable", failures=2)
        responder.configure(silent=False)
        agent.wait_for("reachable", count=2)
        agent.signal(signal.SIGUSR1)
        agent.wait_for("probe-answered", count=len(agent.events("probe-answered")) + 1)
        assert agent.stop() == 0
        names = agent.names()
        assert names[0] == "started" and names[-1] == "stopped"
        assert names.count("binding-changed") == 1
        assert names.count("unreachable") == 1
        assert "binding-expired" not in names  # an address change is not an expiry
        entry = binding_status(agent)
        assert entry["state"] == "reachable"
        assert entry["public"] == "203.0.113.1:40001"
        assert entry["changes"] == 1 and entry["expiries"] == 0
        assert entry["timeouts"] >= 2
        assert entry["probes_sent"] == len(agent.events("probe-sent"))
        assert entry["responses"] == len(agent.events("probe-answered"))


def test_port_remap_on_same_address_is_change_and_expiry(
    tmp_path: Path, responder: SipResponder
) -> None:
    port = free_port()
    config = write_config(tmp_path / "c.yaml", [("provider", responder.address, port)])
    with Agent(config, tmp_path / "status.json") as agent:
        agent.wait_for("binding-learned")
        responder.configure(rport=port + 1)
        agent.wait_for("binding-changed", cause="port-remapped")
        expired = agent.events("binding-expired")
        assert [f["detected"] for _, f in expired] == ["remap"]
        agent.stop()
        entry = binding_status(agent)
        assert (entry["changes"], entry["expiries"]) == (1, 1)


def test_server_ignoring_rport(tmp_path: Path, responder: SipResponder) -> None:
    responder.configure(ignore_rport=True)
    config = write_config(tmp_path / "c.yaml", [("provider", responder.address, free_port())])
    with Agent(config, tmp_path / "status.json") as agent:
        agent.wait_for("rport-unsupported")
        agent.wait_for("probe-answered", count=4)
        agent.stop()
        assert agent.names().count("rport-unsupported") == 1
        assert "binding-changed" not in agent.names()
        entry = binding_status(agent)
        assert entry["public_port"] is None and entry["state"] == "reachable"


def test_late_answers_make_the_binding_lagged(tmp_path: Path, responder: SipResponder) -> None:
    responder.configure(delay=0.3)
    config = write_config(
        tmp_path / "c.yaml", [("provider", responder.address, free_port())], lagged_ms=100
    )
    with Agent(config, tmp_path / "status.json") as agent:
        lagged = agent.wait_for("lagged")
        assert float(lagged["rtt_ms"] or 0) >= 300 and lagged["threshold_ms"] == "100"
        responder.configure(delay=0.0)
        agent.wait_for("reachable")


@pytest.mark.parametrize(
    "fault", ["reply_from_other_port", "wrong_branch", "wrong_call_id", "silent"]
)
def test_answers_that_do_not_match_are_never_accepted(
    tmp_path: Path, responder: SipResponder, fault: str
) -> None:
    responder.configure(**{fault: True})
    config = write_config(tmp_path / "c.yaml", [("provider", responder.address, free_port())])
    with Agent(config, tmp_path / "status.json") as agent:
        agent.wait_for("unreachable")
        agent.signal(signal.SIGUSR1)
        agent.stop()
        names = agent.names()
        assert "binding-learned" not in names and "reachable" not in names
        entry = binding_status(agent)
        assert entry["responses"] == 0
        if fault != "silent":
            assert entry["dropped"] >= 2


def test_inbound_check_alive_on_loopback(tmp_path: Path, responder: SipResponder) -> None:
    config = write_config(
        tmp_path / "c.yaml", [("provider", responder.address, free_port())], inbound_check=1
    )
    with Agent(config, tmp_path / "status.json") as agent:
        agent.wait_for("probe-sent", kind="inbound", count=2)
        agent.wait_for("probe-answered", count=4)
        agent.stop()
        assert "binding-expired" not in agent.names()
        assert binding_status(agent)["inbound_check"] == "alive"
        assert binding_status(agent)["expiry_detection"] == "inbound-check"


def test_linphones_bare_rport_is_resolved_by_the_check_and_crlf_is_a_keepalive(
    tmp_path: Path, responder: SipResponder
) -> None:
    """A server that writes `received` and leaves `rport` bare when the port did not change
    (linphone): the check aimed at the local port is answered there, so the public port is the
    local one and no `rport-unsupported` is said. Its CRLF keepalives are counted as such, not
    as dropped datagrams."""
    responder.configure(bare_rport=True, received="127.0.0.1")
    port = free_port()
    config = write_config(
        tmp_path / "c.yaml", [("provider", responder.address, port)], inbound_check=1
    )
    with Agent(config, tmp_path / "status.json") as agent:
        agent.wait_for("probe-sent", kind="inbound", count=2)
        agent.wait_for("probe-answered", count=3)
        for data in (b"\r\n", b"\r\n\r\n"):
            responder.send_raw(data, ("127.0.0.1", port))
        agent.wait_for("probe-answered", count=len(agent.events("probe-answered")) + 1)
        agent.stop()
        assert "rport-unsupported" not in agent.names()
        entry = binding_status(agent)
        assert entry["public"] == f"127.0.0.1:{port}" and entry["public_port"] == port
        assert entry["expiry_detection"] == "inbound-check"
        assert entry["crlf_keepalives"] == 2 and entry["dropped"] == 0


def test_a_server_outage_is_checked_on_its_return_without_a_false_expiry(
    tmp_path: Path, responder: SipResponder
) -> None:
    """After a silence every cycle starts with a check; a check not answered at once goes with a
    server-up probe from the second socket, whose answer (routed to the binding by its
    Call-ID's prefix) tells whether the server was there when the check went."""
    config = write_config(
        tmp_path / "c.yaml",
        [("provider", responder.address, free_port())],
        inbound_check=1,
        interval=1.0,
        timeout=1.0,
        retry_interval=1.0,
        fail_threshold=1,
    )
    with Agent(config, tmp_path / "status.json") as agent:
        agent.wait_for("probe-sent", kind="inbound", count=1)
        agent.wait_for("reachable")
        responder.configure(silent=True)
        agent.wait_for("unreachable", timeout=10)
        up = agent.wait_for("probe-sent", kind="server-up", timeout=10)
        # the server comes back only once it has seen (and ignored) the server-up probe: the
        # check's copy sent with it went before, so the proof says "down" for both
        helpers.wait_until(
            "the server-up probe at the responder",
            lambda: any(m.cseq == int(str(up["cseq"])) for _, m, _ in list(responder.requests)),
            10,
        )
        responder.configure(silent=False)
        agent.wait_for("reachable", count=2, timeout=10)
        checks = len(agent.events("probe-sent"))
        agent.wait_for("probe-answered", count=len(agent.events("probe-answered")) + 2)
        agent.stop()
        assert len(agent.events("probe-sent")) > checks
        assert "binding-expired" not in agent.names(), "\n".join(agent.lines)
        entry = binding_status(agent)
        assert entry["inbound_check"] == "alive" and entry["expiries"] == 0


def test_inbound_check_unsupported_when_server_forces_rport(
    tmp_path: Path, responder: SipResponder
) -> None:
    responder.configure(force_rport=True)
    config = write_config(
        tmp_path / "c.yaml", [("provider", responder.address, free_port())], inbound_check=1
    )
    with Agent(config, tmp_path / "status.json") as agent:
        agent.wait_for("inbound-check-unsupported")
        agent.wait_for("probe-answered", count=5)
        agent.stop()
        assert agent.names().count("inbound-check-unsupported") == 1
        unsupported = agent.events("inbound-check-unsupported")[0][1]
        # check: auto tried the relayed check too (the responder answers it itself)
        reason = "server forces rport; server does not relay the check; no stun_server"
        assert unsupported["reason"] == reason and "stun_server" in str(unsupported["remedy"])
        assert binding_status(agent)["expiry_detection"] == f"remap-only: {reason}"
        assert (
            len(agent.events("probe-sent"))
            - len([1 for _, f in agent.events("probe-sent") if f["kind"] != "inbound"])
            == 2
        )
        assert "binding-expired" not in agent.names()


def test_sighup_keeps_unchanged_bindings_and_rejects_a_bad_file(
    tmp_path: Path, responder: SipResponder
) -> None:
    first, second = free_port(), free_port()
    config = write_config(tmp_path / "c.yaml", [("provider", responder.address, first)])
    with Agent(config, tmp_path / "status.json") as agent:
        agent.wait_for("binding-learned")
        write_config(
            config, [("provider", responder.address, first), ("backup", responder.address, second)]
        )
        agent.signal(signal.SIGHUP)
        reloaded = agent.wait_for("reloaded")
        assert (reloaded["added"], reloaded["changed"], reloaded["removed"]) == ("1", "0", "0")
        agent.wait_for("binding-learned", binding="backup")
        config.write_text("bindings:\n  - name: provider\n    server: x\n    sourceport: 1\n")
        agent.signal(signal.SIGHUP)
        rejected = agent.wait_for("config-rejected")
        assert "did you mean 'source_port'" in (rejected["error"] or "")
        assert "c.yaml:4" in (rejected["error"] or "")
        sent = len(agent.events("probe-sent"))
        agent.wait_for("probe-answered", count=len(agent.events("probe-answered")) + 2)
        assert len(agent.events("probe-sent")) > sent  # the old configuration keeps running
        assert agent.stop() == 0
        learned = [f["binding"] for _, f in agent.events("binding-learned")]
        assert learned == ["provider", "backup"]  # provider kept its mapping through reloads
        assert len(agent.events("started")) == 1


def test_sighup_applies_a_new_log_level_without_a_restart(
    tmp_path: Path, responder: SipResponder
) -> None:
    config = write_config(tmp_path / "c.yaml", [("provider", responder.address, free_port())])
    debug = config.read_text()
    quiet = debug.replace("level: debug", "level: info")
    config.write_text(quiet)
    with Agent(config, tmp_path / "status.json") as agent:
        agent.wait_for("reachable")
        assert not agent.events("probe-sent"), "a debug event below the configured level"
        config.write_text(debug)
        agent.signal(signal.SIGHUP)
        reloaded = agent.wait_for("reloaded")
        assert reloaded["changed"] == "0"  # the binding (and its NAT mapping) was kept
        agent.wait_for("probe-sent")  # debug events of that kept binding now get through
        config.write_text(quiet)
        agent.signal(signal.SIGHUP)
        agent.wait_for("reloaded", count=2)
        sent = len(agent.events("probe-sent"))
        with responder.lock:
            received = len(responder.requests)
        assert responder.wait_for_requests(received + 2, timeout=10)  # two more keepalives
        assert agent.stop() == 0
        assert len(agent.events("probe-sent")) <= sent + 1  # at most one already logged


def test_sigterm_stops_cleanly_and_sigusr1_writes_status(
    tmp_path: Path, responder: SipResponder
) -> None:
    config = write_config(tmp_path / "c.yaml", [("provider", responder.address, free_port())])
    status = tmp_path / "status.json"
    with Agent(config, status) as agent:
        agent.wait_for("binding-learned")
        status.unlink()
        agent.signal(signal.SIGUSR1)
        agent.wait_for("probe-sent", count=len(agent.events("probe-sent")) + 1)
        assert status.exists()
        assert agent.stop() == 0
        assert agent.events("stopped")[0][1]["reason"] == "sigterm"
        assert status_of(agent)["bindings"][0]["name"] == "provider"


def test_port_in_use_is_a_clear_error(tmp_path: Path, responder: SipResponder) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("0.0.0.0", 0))
        port = busy.getsockname()[1]
        config = write_config(tmp_path / "c.yaml", [("provider", responder.address, port)])
        with Agent(config, tmp_path / "status.json") as agent:
            code = agent.proc.wait(10)
            agent.kill()
        assert code == 1
        assert any(f"local port {port} is already in use" in line for line in agent.lines)


def _many(tmp_path: Path, responder: SipResponder, count: int) -> Path:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return write_config(
        tmp_path / "c.yaml", [(f"b{i}", responder.address, port) for i, port in enumerate(ports)]
    )


def test_raises_its_open_file_limit_when_the_hard_limit_allows(
    tmp_path: Path, responder: SipResponder
) -> None:
    prlimit = ("prlimit", "--nofile=40:4096")  # 60 bindings need about 92 descriptors
    with Agent(_many(tmp_path, responder, 60), tmp_path / "status.json", prefix=prlimit) as agent:
        agent.wait_for("started")
        agent.wait_for("binding-learned", count=60)
        limits = Path(f"/proc/{agent.proc.pid}/limits").read_text()
        soft = int(
            next(line for line in limits.splitlines() if line.startswith("Max open files")).split()[
                3
            ]
        )
        assert soft >= 60 + 32
        assert agent.stop() == 0


def test_says_clearly_when_the_file_limit_is_too_low(
    tmp_path: Path, responder: SipResponder
) -> None:
    prlimit = ("prlimit", "--nofile=40:40")
    with Agent(_many(tmp_path, responder, 60), tmp_path / "status.json", prefix=prlimit) as agent:
        code = agent.proc.wait(10)
        agent.kill()
    assert code == 1
    assert any(
        "60 bindings need about 92 open files, but the limit is 40" in line for line in agent.lines
    ), agent.lines


def test_keepalives_of_many_bindings_go_together_within_the_jitter(
    tmp_path: Path, responder: SipResponder
) -> None:
    """A wake-up sends every keepalive whose window is open (up to a batch), with one
    draw for their next wait, so 20 bindings started 50 ms apart soon go in a few bursts (about
    one per jitter window: groups further apart than that cannot merge); each binding's waits
    still lie in [interval*(1-jitter), interval]. Without it the average burst was 1.3 here."""
    interval, jitter, count = 1.5, 0.2, 20
    with Agent(_many(tmp_path, responder, count), tmp_path / "status.json") as agent:
        agent.wait_for("started")
        assert responder.wait_for_requests(count * 9, timeout=40)
        assert agent.stop() == 0
    with responder._cond:
        requests = [(at, source[1]) for source, _, at in responder.requests]
    by_port: dict[int, list[float]] = {}
    for at, port in requests:
        by_port.setdefault(port, []).append(at)
    assert len(by_port) == count
    for times in by_port.values():
        gaps = [b - a for a, b in zip(times[2:], times[3:])]  # after the promoting keepalive
        # arrival times at the responder: allow for scheduling noise on a busy machine
        assert all(interval * (1 - jitter) - 0.1 <= g <= interval + 0.5 for g in gaps), gaps
    # from the sixth second on, keepalives arrive in bursts (5 ms apart at most inside one)
    start = min(at for at, _ in requests) + 6.0
    late = sorted(at for at, _ in requests if at >= start)
    bursts = 1 + sum(1 for a, b in zip(late, late[1:]) if b - a > 0.005)
    assert len(late) >= count * 2
    assert bursts * 2.5 <= len(late), (bursts, len(late))
