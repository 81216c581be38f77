"""Least privilege: started as root with `user: nobody`, the agent binds its (privileged) port,
then runs as nobody with no capability; what it writes is not world-writable; the status file holds
no secret (nothing a spoofer would need: Call-ID, branch, From tag)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.common import status
from tests.support.agentproc import Agent
from tests.support.responder import SipResponder
from tests.support.tools import require_root

HOOK = """#!/bin/sh
id -u > "{out}.uid"; id -g > "{out}.gid"; id -G > "{out}.groups"
"""


def privileged_port() -> int:
    for port in range(1010, 600, -1):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below 1024")


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory nobody can traverse (pytest's tmp_path is 0700 root)."""
    folder = Path(tempfile.mkdtemp(prefix="nk-priv-", dir="/tmp"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def proc_ids(pid: int) -> dict[str, list[str]]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups", "CapEff", "CapPrm", "CapAmb"):
            fields[key] = value.split()
    return fields


def test_drops_to_nobody_after_binding(public_dir: Path) -> None:
    require_root()
    nobody = pwd.getpwnam("nobody")
    run = public_dir / "run"
    run.mkdir()
    os.chown(run, nobody.pw_uid, nobody.pw_gid)
    hook_out = run / "hook"
    hook = public_dir / "hook"
    hook.write_text(HOOK.format(out=hook_out))
    hook.chmod(0o755)
    port = privileged_port()
    config = public_dir / "c.yaml"
    with SipResponder() as responder:
        server = f"{responder.address[0]}:{responder.address[1]}"
        base = [
            "log: {target: stderr, level: debug}",
            "user: nobody",
            "defaults: {interval: 0.5, jitter: 0, timeout: 1, inbound_check: 0}",
            f"hooks: {{command: {hook}, events: [reachable]}}",
            "bindings:",
            "  - name: low",
            f"    server: {server}",
            f"    source_port: {port}",
        ]
        config.write_text("\n".join(base) + "\n")
        config.chmod(0o644)
        with Agent(config, run / "nk" / "status.json") as agent:
            agent.wait_for("reachable")
            ids = proc_ids(agent.proc.pid)
            deadline = time.monotonic() + 5
            while not Path(f"{hook_out}.groups").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            entry = status(agent, "low")
            text = agent.status.read_text()
            # a reload as nobody: a new binding on another port below 1024 cannot be bound;
            # reported, and the running binding goes on
            other = privileged_port() - 1
            config.write_text(
                "\n".join(
                    [*base, "  - name: lower", f"    server: {server}", f"    source_port: {other}"]
                )
                + "\n"
            )
            agent.signal(signal.SIGHUP)
            refused = agent.wait_line("no permission to bind")
            agent.wait_for(
                "probe-answered", count=len(agent.events("probe-answered")) + 2, timeout=6
            )
            assert agent.proc.poll() is None
            assert agent.stop() == 0
        requests = [message for _, message, _ in responder.requests]
        files = [agent.status, agent.status.parent]
        modes = {str(p): stat.S_IMODE(p.stat().st_mode) for p in files}
        owners = {p.stat().st_uid for p in files}
    uid, gid = str(nobody.pw_uid), str(nobody.pw_gid)
    assert ids["Uid"] == [uid] * 4 and ids["Gid"] == [gid] * 4, ids
    assert ids["Groups"] == [], ids
    assert all(int(ids[k][0], 16) == 0 for k in ("CapEff", "CapPrm", "CapAmb")), ids
    assert {src[1] for src, _, _ in responder.requests} == {port}  # the privileged port
    assert Path(f"{hook_out}.uid").read_text().strip() == uid  # hooks inherit the drop
    assert Path(f"{hook_out}.groups").read_text().split() == [gid]
    assert entry["state"] == "reachable"
    assert "lower" in refused and "permission" in refused
    for path, mode in modes.items():
        assert not mode & stat.S_IWOTH, f"{path} is world-writable ({oct(mode)})"
        assert not mode & stat.S_IWGRP, f"{path} is group-writable ({oct(mode)})"
    assert owners == {nobody.pw_uid}
    # no secret in the status: nothing of what an answer must echo to be accepted
    secrets = {m.call_id for m in requests} | {m.top_via.branch or "" for m in requests}
    secrets |= {(m.header("from") or "").rpartition("tag=")[2] for m in requests}
    assert all(secret and secret not in text for secret in secrets)
    data = json.loads(text)
    keys = set(data) | {k for b in data["bindings"] for k in b}
    assert not {k for k in keys if any(w in k for w in ("call", "branch", "tag", "secret"))}


def test_status_folder_is_made_before_privileges_drop(public_dir: Path) -> None:
    """/run/nat-keepalive is gone after a reboot, and /run is root's: the agent makes the folder
    while still root and gives it to `user`, or there would never be a status file."""
    require_root()
    nobody = pwd.getpwnam("nobody")
    run = public_dir / "run"  # root's, 0755: nobody could not make a folder in it
    run.mkdir()
    status_path = run / "nat-keepalive" / "status.json"
    config = public_dir / "c.yaml"
    with SipResponder() as responder:
        server = f"{responder.address[0]}:{responder.address[1]}"
        config.write_text(
            "\n".join(
                [
                    "log: {target: stderr}",
                    "user: nobody",
                    "defaults: {interval: 0.5, jitter: 0, timeout: 1, inbound_check: 0}",
                    "bindings:",
                    "  - name: p",
                    f"    server: {server}",
                    f"    source_port: {privileged_port()}",
                ]
            )
            + "\n"
        )
        config.chmod(0o644)
        with Agent(config, status_path) as agent:
            agent.wait_for("reachable")
            entry = status(agent, "p")
            assert not agent.events("status-write-failed")
            assert agent.stop() == 0
    folder = status_path.parent
    assert (folder.stat().st_uid, folder.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert entry["state"] == "reachable"
