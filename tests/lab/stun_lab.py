"""STUN servers for the NAT lab: coturn as Debian ships it, with one or two listening addresses.

coturn turns RFC 5780 (RESPONSE-PORT, CHANGE-REQUEST, OTHER-ADDRESS) on only when it listens on two
addresses of one family, and Debian's /etc/turnserver.conf switches it off anyway (`no-rfc5780`,
against amplification). So a server that honours RESPONSE-PORT needs both changes:

    server = start_coturn(lab, second_ip=SECOND_SERVER_IP, rfc5780=True)
    server.port, server.addresses        # 3478, ("203.0.113.10", "203.0.113.11")

`rfc5780=False` runs Debian's file as shipped (with two addresses: RFC 5780 stays off).
`start_responder(lab)` runs the project's own responder there instead (one address).
`add_server_address()` gives the lab's `wan` host a second address; close() of the Lab removes it
with the namespace.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from tests.lab.netlab import PREFIXLEN, WAN_IF, Lab, LabError
from tests.lab.stacks import STUN_PORT, StackServer

SECOND_SERVER_IP = "203.0.113.11"
AGENT_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "agent"
)
DEBIAN_CONFIG = "/etc/turnserver.conf"


def add_server_address(lab: Lab, address: str = SECOND_SERVER_IP) -> None:
    """A second address on the lab's server host (idempotent)."""
    shown = lab.run("wan", ["ip", "-4", "addr", "show", "dev", WAN_IF]).stdout
    if f" {address}/" not in shown:
        lab.run("wan", ["ip", "addr", "add", f"{address}/{PREFIXLEN}", "dev", WAN_IF])


def stun_ping_code() -> str:
    """Python run in a namespace: exit 0 once HOST:PORT answers a STUN Binding request."""
    return (
        "import socket,sys,os,time\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(0.3)\n"
        "end=time.time()+float(sys.argv[3])\n"
        "while time.time()<end:\n"
        "  s.sendto(b'\\x00\\x01\\x00\\x00\\x21\\x12\\xa4\\x42'+os.urandom(12),"
        "(sys.argv[1],int(sys.argv[2])))\n"
        "  try:\n"
        "    s.recv(2048);sys.exit(0)\n"
        "  except OSError: pass\n"
        "sys.exit(1)\n"
    )


class CoturnServer(StackServer):
    """turnserver on the lab's server address and, with `second_ip`, a second one."""

    def __init__(
        self,
        lab: Lab,
        *,
        second_ip: str | None = None,
        rfc5780: bool = True,
        port: int = STUN_PORT,
        name: str = "coturn",
    ) -> None:
        self.second_ip = second_ip
        self.rfc5780 = rfc5780
        super().__init__(lab, name, port)

    @property
    def addresses(self) -> tuple[str, ...]:
        return (self.lab.server_ip,) + ((self.second_ip,) if self.second_ip else ())

    def prepare(self) -> None:
        if self.second_ip:
            add_server_address(self.lab, self.second_ip)
        self.config = DEBIAN_CONFIG
        if self.rfc5780:
            # Debian's file with its one `no-rfc5780` line dropped: what an operator changes.
            with open(DEBIAN_CONFIG) as handle:
                lines = handle.read().splitlines()
            if "no-rfc5780" not in lines:
                raise LabError(
                    f"{DEBIAN_CONFIG} no longer says no-rfc5780: check the lab's assumption"
                )
            self.config = os.path.join(self.workdir, "turnserver.conf")
            with open(self.config, "w") as handle:
                handle.write("\n".join(line for line in lines if line != "no-rfc5780") + "\n")

    def argv(self) -> list[str]:
        argv = ["/usr/bin/turnserver", "-c", self.config]
        for address in self.addresses:
            argv += ["--listening-ip", address]
        return [
            *argv,
            "--listening-port",
            str(self.port),
            "--no-cli",
            "--pidfile",
            os.path.join(self.workdir, "turnserver.pid"),
            "--log-file",
            "stdout",
            "--simple-log",
        ]

    def wait_ready(self, timeout: float) -> bool:
        for address in self.addresses:
            done = self.lab.python(
                "wan", stun_ping_code(), address, str(self.port), str(timeout), timeout=timeout + 5
            )
            if done.returncode != 0:
                return False
        return True


def start_coturn(
    lab: Lab, *, second_ip: str | None = SECOND_SERVER_IP, rfc5780: bool = True, **kw: Any
) -> CoturnServer:
    """Start coturn in the lab's `wan` namespace; returns once every address answers."""
    server = CoturnServer(lab, second_ip=second_ip, rfc5780=rfc5780, **kw)
    server.start()
    return server


RESPONDER_PORT = 3478


class ResponderServer(StackServer):
    """The project's own responder (`nat-keepalive responder`) on the lab's server address."""

    def __init__(self, lab: Lab, port: int = RESPONDER_PORT, *extra: str) -> None:
        self.extra = extra
        super().__init__(lab, "responder", port)

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "natkeepalive",
            "responder",
            "--listen",
            f"{self.lab.server_ip}:{self.port}",
            *self.extra,
        ]

    def popen_kw(self) -> dict[str, Any]:
        env = dict(os.environ)
        env["PYTHONPATH"] = AGENT_DIR + os.pathsep + env.get("PYTHONPATH", "")
        return {"stdin": subprocess.DEVNULL, "env": env}

    def wait_ready(self, timeout: float) -> bool:
        done = self.lab.python(
            "wan",
            stun_ping_code(),
            self.lab.server_ip,
            str(self.port),
            str(timeout),
            timeout=timeout + 5,
        )
        return done.returncode == 0


def start_responder(lab: Lab, port: int = RESPONDER_PORT, *extra: str) -> ResponderServer:
    """Start `nat-keepalive responder` in the lab's `wan` namespace on SERVER_IP:port (extra:
    more command-line options); returns once it answers a STUN Binding request."""
    server = ResponderServer(lab, port, *extra)
    server.start()
    return server
