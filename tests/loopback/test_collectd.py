"""`nat-keepalive collectd` under Debian's real collectd: the exec plugin runs it as an unprivileged
user (as collectd insists), the csv plugin writes what it printed, and the test reads the CSV.
The status file comes from the real agent against the loopback SIP responder."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agentproc import ROOT, Agent, run_cli
from tests.support.helpers import LOOPBACK_TIMERS, free_port, write_config
from tests.support.responder import SipResponder
from tests.support.tools import require_root, require_tool

HOST = "nk-test-host"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the unprivileged exec user can read (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="nk-collectd-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def last_value(csv_dir: Path, plugin_instance: str, name: str) -> float | None:
    """The newest value collectd's csv plugin stored for `type-instance` (files are per day)."""
    files = sorted((csv_dir / HOST / f"nat_keepalive-{plugin_instance}").glob(f"{name}-*"))
    if not files:
        return None
    lines = [
        line for line in files[-1].read_text().splitlines() if line and not line.startswith("epoch")
    ]
    if not lines:
        return None
    field = lines[-1].split(",")[1]
    return float("nan") if field == "nan" else float(field)


def wait_value(
    csv_dir: Path, instance: str, name: str, expected: float | None = None, timeout: float = 20.0
) -> float:
    deadline = time.monotonic() + timeout
    found = None
    while time.monotonic() < deadline:
        found = last_value(csv_dir, instance, name)
        if found is not None and (expected is None or found == expected):
            return found
        time.sleep(0.2)
    raise AssertionError(f"{instance}/{name}: {found}, not {expected} after {timeout} s")


def test_collectd_stores_what_the_status_file_says(
    tmp_path: Path, shared_dir: Path, responder: SipResponder
) -> None:
    require_root()  # collectd's exec plugin needs to switch to another user
    collectd = require_tool("collectd")
    python = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"
    port = free_port()
    status = shared_dir / "status.json"
    config = write_config(
        tmp_path / "c.yaml",
        [
            ("provider", responder.address, port),
            ("silent", ("127.0.0.1", free_port()), free_port()),
        ],
        LOOPBACK_TIMERS,
    )
    # the exec user may not read the checkout (under /root, say): it runs a copy of the package
    package = shutil.copytree(
        ROOT / "agent" / "natkeepalive",
        shared_dir / "agent" / "natkeepalive",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for path in [package, *package.rglob("*")]:  # a checkout made under umask 077 is root's alone
        path.chmod(0o755 if path.is_dir() else 0o644)
    command = shared_dir / "nat-keepalive-collectd"
    command.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH={shared_dir / 'agent'} exec {python} -m natkeepalive collectd "
        f"--status-file {status}\n"
    )
    command.chmod(0o755)
    csv_dir = shared_dir / "csv"
    conf = shared_dir / "collectd.conf"
    conf.write_text(f"""Hostname "{HOST}"
FQDNLookup false
Interval 1
BaseDir "{shared_dir}"
PIDFile "{shared_dir}/collectd.pid"
TypesDB "/usr/share/collectd/types.db"
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "{shared_dir}/collectd.log"
</Plugin>
LoadPlugin exec
LoadPlugin csv
<Plugin exec>
  Exec "nobody" "{command}"
</Plugin>
<Plugin csv>
  DataDir "{csv_dir}"
  StoreRates false
</Plugin>
""")
    check = subprocess.run(
        [collectd, "-t", "-C", str(conf)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    with Agent(config, status) as agent:
        agent.wait_for("reachable", binding="provider")
        responder.configure(rport=port + 1)
        agent.wait_for("binding-changed", binding="provider")
        agent.wait_for("unreachable", binding="silent")
        agent.signal(signal.SIGUSR1)
        daemon = subprocess.Popen(
            [collectd, "-f", "-C", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            assert wait_value(csv_dir, "provider", "bool-reachable", 1) == 1
            assert wait_value(csv_dir, "provider", "derive-changes", 1) == 1
            assert wait_value(csv_dir, "provider", "derive-expiries", 1) == 1
            rtt = wait_value(csv_dir, "provider", "latency-rtt")
            assert 0 < rtt < 1.0, rtt
            assert wait_value(csv_dir, "provider", "duration-interval") == 1.5
            assert wait_value(csv_dir, "provider", "derive-answers") >= 3
            assert wait_value(csv_dir, "silent", "bool-reachable", 0) == 0
            assert wait_value(csv_dir, "silent", "derive-timeouts") >= 2
            assert wait_value(csv_dir, "silent", "derive-answers", 0) == 0
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait(timeout=10)
        agent.stop()
    log = (shared_dir / "collectd.log").read_text()
    assert "cannot read status file" not in log


def test_collectd_once_without_a_status_file_says_so(tmp_path: Path) -> None:
    result = run_cli(
        "collectd",
        "--status-file",
        str(tmp_path / "missing.json"),
        "--once",
        env={"COLLECTD_HOSTNAME": "h", "COLLECTD_INTERVAL": "2"},
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "cannot read status file" in result.stderr
