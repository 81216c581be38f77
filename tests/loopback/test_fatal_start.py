"""How `run` ends when it cannot start: exit codes a service manager can act on."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.agentproc import run_cli
from tests.support.tools import require_root, require_tool


def unprivileged_port_start() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())


def free_low_port() -> int:
    """A UDP port below 1024 that nothing holds (root may bind it to check)."""
    for port in range(1023, 900, -1):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free UDP port between 901 and 1023")


def test_no_permission_to_bind_exits_2(tmp_path: Path) -> None:
    require_root()  # to take CAP_NET_BIND_SERVICE away with setpriv
    if unprivileged_port_start() < 1024:
        pytest.fail("net.ipv4.ip_unprivileged_port_start is below 1024: no port needs privilege")
    setpriv = require_tool("setpriv")
    port = free_low_port()
    config = tmp_path / "c.yaml"
    config.write_text(
        f"bindings:\n  - name: low\n    server: 127.0.0.1:5060\n    source_port: {port}\n"
    )
    # root without the capability, as a service whose unit does not grant it (inheritable too:
    # a container manager may leave every capability inheritable)
    done = run_cli(
        "run",
        "-c",
        str(config),
        "--log",
        "stderr",
        "--status-file",
        str(tmp_path / "status.json"),
        prefix=(setpriv, "--inh-caps=-net_bind_service", "--bounding-set=-net_bind_service", "--"),
    )
    # a configuration problem (restarting cannot help): 2, as for a bad file
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"nat-keepalive: binding low: no permission to bind 0.0.0.0:{port} "
        "(ports below 1024 need CAP_NET_BIND_SERVICE)"
    )
