"""The check methods in the real daemon, with real sockets on loopback: a SIP responder that
forces rport, and a small STUN server that honours RESPONSE-PORT (or ignores it, like coturn
with one address). On loopback there is no NAT: the binding's mapped port is its local port, so
these tests prove the wiring (the STUN keepalive from the binding's socket, the check from the
AUX socket, the answer into the binding, the status), not a NAT's behaviour (tests/lab does)."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

import pytest

from natkeepalive import stun
from natkeepalive.errors import StunParseError
from tests.loopback.test_cli import target
from tests.loopback.test_daemon import binding_status
from tests.support.agentproc import Agent, run_cli
from tests.support.helpers import LOOPBACK_TIMERS, free_port
from tests.support.responder import SipResponder


class StunServer:
    """Answers Binding requests on 127.0.0.1; RESPONSE-PORT honoured when `rfc5780`."""

    def __init__(self, rfc5780: bool = True) -> None:
        self.rfc5780 = rfc5780
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = self.sock.getsockname()
        self.requests: list[tuple[tuple[str, int], int | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> StunServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(2048)
            except OSError:
                continue
            try:
                request = stun.parse_binding_request(data)
            except StunParseError:
                continue
            self.requests.append((source, request.response_port))
            target = source
            if request.response_port is not None and self.rfc5780:
                target = (source[0], request.response_port)
            self.sock.sendto(stun.build_binding_success(request.transaction_id, source), target)


def detection(agent: Agent, wanted: str, timeout: float = 20.0) -> dict[str, object]:
    """The binding's status once its expiry_detection is `wanted` (SIGUSR1 writes the status
    file at once), or the last one seen after `timeout`."""
    agent.wait_for("started")  # SIGUSR1 before the handlers are in would end the process
    deadline = time.monotonic() + timeout
    count = 0
    while True:
        count += 1
        agent.proc.send_signal(signal.SIGUSR1)
        agent.wait_for("signal-received", count=count)
        status = binding_status(agent)
        if status["expiry_detection"] == wanted or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


def write_config(path: Path, server: tuple[str, int], port: int, **settings: object) -> Path:
    values: dict[str, object] = {**LOOPBACK_TIMERS, "inbound_check": 1}
    values.update(settings)
    lines = ["log: {target: stderr, level: debug}", "defaults:"]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in values.items()]
    lines += [
        "bindings:",
        "  - name: provider",
        f"    server: {server[0]}:{server[1]}",
        f"    source_port: {port}",
        "    bind: 127.0.0.1",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_stun_proves_the_binding_when_the_server_forces_rport(
    tmp_path: Path, responder: SipResponder
) -> None:
    responder.configure(force_rport=True)
    port = free_port()
    with StunServer() as stun_server:
        config = write_config(
            tmp_path / "c.yaml",
            responder.address,
            port,
            stun_server=f"127.0.0.1:{stun_server.address[1]}",
        )
        with Agent(config, tmp_path / "status.json") as agent:
            status = detection(agent, "stun-check")
            agent.stop()
        assert status["expiry_detection"] == "stun-check"
        assert "inbound-check-unsupported" not in agent.names()
        assert "binding-expired" not in agent.names()
        checks = [r for r in stun_server.requests if r[1] is not None]
        keepalives = [r for r in stun_server.requests if r[1] is None and r[0][1] == port]
        assert checks and keepalives
        assert {r[1] for r in checks} == {port}  # RESPONSE-PORT: the binding's mapped port
        assert all(r[0][1] != port for r in checks)  # the check came from another socket


def test_a_stun_server_ignoring_response_port_is_reported_once(
    tmp_path: Path, responder: SipResponder
) -> None:
    responder.configure(force_rport=True)
    with StunServer(rfc5780=False) as stun_server:
        config = write_config(
            tmp_path / "c.yaml",
            responder.address,
            free_port(),
            stun_server=f"127.0.0.1:{stun_server.address[1]}",
        )
        with Agent(config, tmp_path / "status.json") as agent:
            unsupported = agent.wait_for("inbound-check-unsupported")
            agent.wait_for("probe-answered", count=6)
            agent.stop()
        assert agent.names().count("inbound-check-unsupported") == 1
        assert unsupported["reason"] == (
            "server forces rport; server does not relay the "
            "check; STUN server does not honour RESPONSE-PORT "
            "(RFC 5780 needs two addresses)"
        )
        assert "binding-expired" not in agent.names()


@pytest.mark.parametrize("rfc5780", [True, False])
def test_probe_reports_each_method(responder: SipResponder, rfc5780: bool) -> None:
    responder.configure(force_rport=True)
    with StunServer(rfc5780=rfc5780) as stun_server:
        done = run_cli(
            "probe",
            target(responder),
            "--inbound-check",
            "--timeout",
            "1",
            "--stun-server",
            f"127.0.0.1:{stun_server.address[1]}",
            "--json",
        )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["inbound_check"] == "unsupported: server forces rport"
    assert result["checks"] == {
        "sent-by": "unsupported: server forces rport",
        "relay": "unsupported: the server answered the relayed check itself (200 OK)",
        "stun": "alive"
        if rfc5780
        else "unsupported: the STUN server does not honour RESPONSE-PORT (RFC 5780)",
    }


def test_probe_without_a_stun_server_says_so(responder: SipResponder) -> None:
    done = run_cli("probe", target(responder), "--inbound-check", "--json")
    checks = json.loads(done.stdout)["checks"]
    assert checks["sent-by"] == "alive"
    assert checks["stun"] == "unsupported: no --stun-server given"
    human = run_cli("probe", target(responder), "--inbound-check")
    assert "stun       unsupported: no --stun-server given" in human.stdout
