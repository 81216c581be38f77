"""The check methods in the real daemon, with real sockets on loopback: a SIP responder that
forces rport, and a small STUN server that honours RESPONSE-PORT (or ignores it, like coturn
with one address). On loopback there is no NAT: the binding's mapped port is its local port, so
these tests prove the wiring (the STUN keepalive from the binding's socket, the check from the
AUX socket, the answer into the binding, the status), not a NAT's behaviour (tests/lab does)."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from types import TracebackType

from natkeepalive import stun
from natkeepalive.errors import StunParseError
from tests.loopback.test_daemon import FAST, binding_status, free_port
from tests.support.agentproc import Agent
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

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
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


def write_config(path: Path, server: tuple[str, int], port: int, **settings: object) -> Path:
    values: dict[str, object] = {**FAST, "inbound_check": 1}
    values.update(settings)
    lines = ["log: {target: stderr, level: debug}", "defaults:"]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in values.items()]
    lines += ["bindings:", "  - name: provider", f"    server: {server[0]}:{server[1]}",
              f"    source_port: {port}", "    bind: 127.0.0.1"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_stun_proves_the_binding_when_the_server_forces_rport(
        tmp_path: Path, responder: SipResponder) -> None:
    responder.configure(force_rport=True)
    port = free_port()
    with StunServer() as stun_server:
        config = write_config(tmp_path / "c.yaml", responder.address, port,
                              stun_server=f"127.0.0.1:{stun_server.address[1]}")
        with Agent(config, tmp_path / "status.json") as agent:
            agent.wait_for("probe-answered", count=6)
            agent.proc.send_signal(10)  # SIGUSR1: the status file now
            agent.wait_for("signal-received")
            status = binding_status(agent)
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
        tmp_path: Path, responder: SipResponder) -> None:
    responder.configure(force_rport=True)
    with StunServer(rfc5780=False) as stun_server:
        config = write_config(tmp_path / "c.yaml", responder.address, free_port(),
                              stun_server=f"127.0.0.1:{stun_server.address[1]}")
        with Agent(config, tmp_path / "status.json") as agent:
            unsupported = agent.wait_for("inbound-check-unsupported")
            agent.wait_for("probe-answered", count=6)
            agent.stop()
        assert agent.names().count("inbound-check-unsupported") == 1
        assert unsupported["reason"] == ("server forces rport; server does not relay the "
                                         "check; STUN server does not honour RESPONSE-PORT "
                                         "(RFC 5780 needs two addresses)")
        assert "binding-expired" not in agent.names()
