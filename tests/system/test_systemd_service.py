"""The .deb under a real systemd (PID 1 of a Debian 12 container) and its journald, with
Kamailio, as Debian ships it, answering OPTIONS on the container's loopback.

The tests run in file order on one container and one installed package: each leaves the service
running with the good configuration, except the last, which purges the package.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tests.system.container import Container

UNIT = "nat-keepalive.service"
CONFIG = "/etc/nat-keepalive/config.yaml"
HOOK = "/usr/local/bin/nk-hook"
HOOK_LOG = "/run/nat-keepalive/hook.log"
DROP_IN = "/etc/systemd/system/nat-keepalive.service.d/privileged-port.conf"
EXAMPLE_DROP_IN = "/usr/share/nat-keepalive/examples/systemd/privileged-port.conf"
LOW_PORT = 1023
MAX_EXPOSURE = 2.0
# journald's numbers: err 3, warning 4, notice 5, info 6, debug 7
SEVERITY_EVENTS = {
    "unreachable": 3,
    "lagged": 4,
    "started": 5,
    "binding-learned": 6,
    "probe-answered": 7,
}

T = TypeVar("T")


def config_text(source_port: int = 5062, extra: str = "") -> str:
    # lagged_ms well above loopback's answer times, timeout well above lagged_ms: a server held
    # for a second makes a lagged answer, one held past the timeout an unreachable binding
    return (
        "log: {target: stderr, level: debug}\n"
        "status_file: /run/nat-keepalive/status.json\n"
        "defaults: {interval: 2, jitter: 0, timeout: 3, lagged_ms: 300, fail_threshold: 1,\n"
        "           retry_interval: 1, inbound_check: 0}\n"
        f"hooks: {{command: {HOOK}, events: [reachable, unreachable]}}\n"
        "bindings:\n"
        f"  - {{name: pbx, server: '127.0.0.1:5060', source_port: {source_port}}}\n" + extra
    )


HOOK_SCRIPT = f"""#!/bin/sh
# where a hook may write inside the service's sandbox
try() {{ if ( : > "$1/nk-hook-probe" ) 2>/dev/null; then echo "$1=yes"; else echo "$1=no"; fi; }}
{{
  echo "event=$EVENT binding=$BINDING uid=$(id -u)"
  try /tmp; try /var/tmp; try /run/nat-keepalive; try /etc; try /var/lib
}} >> {HOOK_LOG}
"""


def wait_until(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)


def show(box: Container, *props: str) -> dict[str, str]:
    out = box.run("systemctl", "show", UNIT, *(f"--property={p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal(box: Container, *extra: str) -> list[dict[str, str]]:
    out = box.run("journalctl", "--no-pager", "-o", "json", "-u", UNIT, *extra).stdout
    entries = []
    for line in out.splitlines():
        entry = json.loads(line)
        message = entry.get("MESSAGE")
        if isinstance(message, list):  # journald's form for non-UTF-8 bytes
            entry["MESSAGE"] = bytes(message).decode("utf-8", "replace")
        entries.append(entry)
    return entries


def agent_lines(box: Container, event: str, since_pid: str | None = None) -> list[dict[str, str]]:
    return [
        e
        for e in journal(box)
        if str(e.get("MESSAGE", "")).startswith(f"event={event} ")
        and (since_pid is None or e.get("_PID") == since_pid)
    ]


def write(box: Container, inside: str, text: str, mode: int = 0o644) -> None:
    path = box.path(inside)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def read(box: Container, inside: str) -> str:
    """A file as the container sees it (its /run and /tmp are not in the overlay)."""
    done = box.run("cat", inside, check=False)
    return done.stdout if done.returncode == 0 else ""


def exists(box: Container, inside: str) -> bool:
    return box.run("test", "-e", inside, check=False).returncode == 0


def main_pid(box: Container) -> str:
    return show(box, "MainPID")["MainPID"]


def socket_inode(box: Container, port: int) -> str:
    out = box.run("ss", "-H", "-u", "-a", "-n", "-e", "-p", f"sport = :{port}").stdout
    match = re.search(r"ino:(\d+)", out)
    assert match, f"nothing bound to UDP port {port}: {out!r}"
    return match.group(1)


# Every process of Kamailio's unit (its workers answer, not only the main process), read from the
# unit's cgroup: `systemctl kill` can fail with EIO on a host with the legacy cgroup hierarchy.
SIGNAL_UNIT = """cg=$(systemctl show -P ControlGroup "$2")
for procs in /sys/fs/cgroup/systemd$cg/cgroup.procs /sys/fs/cgroup/unified$cg/cgroup.procs \\
             /sys/fs/cgroup$cg/cgroup.procs; do
  pids=$(cat "$procs" 2>/dev/null)  # a cgroup file's size is 0: read it to know
  if [ -n "$pids" ]; then kill -s "$1" $pids; exit; fi
done
echo "no processes found for $2 ($cg)" >&2; exit 1
"""


def kamailio_signal(box: Container, name: str) -> None:
    box.run("sh", "-c", SIGNAL_UNIT, "signal-unit", name.removeprefix("SIG"), "kamailio.service")


def restart_clean(box: Container) -> None:
    box.run("systemctl", "stop", UNIT, check=False)
    box.run("systemctl", "reset-failed", UNIT, check=False)
    box.run("systemctl", "start", UNIT)


# ------------------------------------------------------------------ tests, in this order


def test_install_with_apt_get(machine: Container, deb: Path) -> None:
    box = machine
    before = box.run("sh", "-c", "find / -xdev -path /proc -prune -o -print | sort").stdout
    box.path("/root/.files-before-install").write_text(before)
    target = box.path(f"/root/{deb.name}")
    target.write_bytes(deb.read_bytes())
    box.run(
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        f"/root/{deb.name}",
        timeout=180,
    )
    target.unlink()
    state = show(box, "LoadState", "ActiveState", "UnitFileState")
    # installed, not enabled and not started: the operator edits the file first
    assert state == {"LoadState": "loaded", "ActiveState": "inactive", "UnitFileState": "disabled"}
    assert box.run("systemctl", "is-active", "kamailio.service").stdout.strip() == "active"


def test_ready_before_active_and_the_status_line(machine: Container) -> None:
    box = machine
    write(box, HOOK, HOOK_SCRIPT, 0o755)
    write(box, CONFIG, config_text())
    box.run("systemctl", "start", UNIT)  # returns once systemd saw READY=1 (Type=notify)
    props = show(
        box,
        "ActiveState",
        "SubState",
        "StatusText",
        "MainPID",
        "NRestarts",
        "ExecMainStartTimestampMonotonic",
        "ActiveEnterTimestampMonotonic",
    )
    assert props["ActiveState"] == "active" and props["SubState"] == "running"
    assert props["NRestarts"] == "0"
    # Type=notify: active only after the agent read its file and bound its socket (a child
    # process and PyYAML: tens of milliseconds at least); Type=simple would be active at fork
    waited_us = int(props["ActiveEnterTimestampMonotonic"]) - int(
        props["ExecMainStartTimestampMonotonic"]
    )
    assert waited_us > 20_000, props
    started = agent_lines(box, "started", props["MainPID"])
    assert len(started) == 1
    assert re.fullmatch(r"1 binding: 1 \w+", props["StatusText"]), props["StatusText"]
    assert wait_until(
        "STATUS= says reachable",
        lambda: show(box, "StatusText")["StatusText"] == "1 binding: 1 reachable",
        15,
    )


def test_journal_priority_of_each_severity(machine: Container) -> None:
    box = machine
    pid = main_pid(box)
    wait_until(
        "binding-learned and probe-answered",
        lambda: (
            agent_lines(box, "binding-learned", pid) and agent_lines(box, "probe-answered", pid)
        ),
        15,
    )
    # a lagged answer (warning): Kamailio held for 2 s while a probe waits. The RTT is timed from
    # the last transmission (at 0.5 and 1.5 s), so the answer on release is at least 0.5 s late
    # and still inside the 3-s timeout.
    sent = len(agent_lines(box, "probe-sent", pid))
    kamailio_signal(box, "SIGSTOP")
    try:
        wait_until(
            "a probe sent while Kamailio is stopped",
            lambda: len(agent_lines(box, "probe-sent", pid)) > sent,
            10,
        )
        time.sleep(2.0)
    finally:
        kamailio_signal(box, "SIGCONT")
    wait_until("lagged", lambda: agent_lines(box, "lagged", pid), 10)
    # an unreachable binding (err): Kamailio held past the timeout
    reachable = len(agent_lines(box, "reachable", pid))
    kamailio_signal(box, "SIGSTOP")
    try:
        wait_until("unreachable", lambda: agent_lines(box, "unreachable", pid), 15)
    finally:
        kamailio_signal(box, "SIGCONT")
    wait_until("reachable again", lambda: len(agent_lines(box, "reachable", pid)) > reachable, 15)
    for event, priority in SEVERITY_EVENTS.items():
        found = {e["PRIORITY"] for e in agent_lines(box, event, pid)}
        assert found == {str(priority)}, (event, found)


def test_hook_runs_inside_the_sandbox(machine: Container) -> None:
    box = machine

    def both_ran() -> str | None:
        text = read(box, HOOK_LOG)
        return text if "event=reachable" in text and "event=unreachable" in text else None

    text = wait_until("the hook ran for unreachable and reachable", both_ran, 15)
    first = text.splitlines()[:6]
    match = re.fullmatch(r"event=(?:un)?reachable binding=pbx uid=(\d+)", first[0])
    assert match, first
    uid = int(match.group(1))
    assert uid >= 60000, "DynamicUser: a transient user, not root"  # 61184-65519
    # writable: the private /tmp and /var/tmp, and RuntimeDirectory; nothing else
    assert first[1:] == [
        "/tmp=yes",
        "/var/tmp=yes",
        "/run/nat-keepalive=yes",
        "/etc=no",
        "/var/lib=no",
    ]
    assert not exists(box, "/tmp/nk-hook-probe"), "PrivateTmp: not the system's /tmp"
    assert not exists(box, "/var/tmp/nk-hook-probe")


def test_status_command(machine: Container) -> None:
    box = machine

    def table() -> list[list[str]]:
        done = box.run("nat-keepalive", "status")
        rows = [line.split() for line in done.stdout.splitlines()]
        header = next(i for i, row in enumerate(rows) if row[:2] == ["NAME", "STATE"])
        return [r[:2] for r in rows[header + 1 :] if r]

    # the file follows a change within a second (writes are coalesced)
    wait_until("status shows pbx reachable", lambda: table() == [["pbx", "reachable"]], 5)
    data = json.loads(box.run("nat-keepalive", "status", "--json").stdout)
    assert str(data["pid"]) == main_pid(box)


def test_reload_keeps_pid_and_socket(machine: Container) -> None:
    box = machine
    pid = main_pid(box)
    inode = socket_inode(box, 5062)
    reloaded = len(agent_lines(box, "reloaded", pid))
    write(
        box,
        CONFIG,
        config_text(extra="  - {name: pbx2, server: '127.0.0.1:5060', source_port: 5064}\n"),
    )
    box.run("systemctl", "reload", UNIT)
    wait_until("reloaded", lambda: len(agent_lines(box, "reloaded", pid)) > reloaded, 10)
    assert main_pid(box) == pid
    assert socket_inode(box, 5062) == inode, "the unchanged binding kept its socket"
    socket_inode(box, 5064)
    assert wait_until(
        "STATUS= counts two bindings",
        lambda: show(box, "StatusText")["StatusText"] == "2 bindings: 2 reachable",
        15,
    )


def test_reload_of_a_bad_file_fails_and_the_old_one_runs_on(machine: Container) -> None:
    box = machine
    pid = main_pid(box)
    good = box.path(CONFIG).read_text()
    write(box, CONFIG, good.replace("source_port: 5064", "source_port: 70000"))
    done = box.run("systemctl", "reload", UNIT, check=False)
    assert done.returncode != 0, "a rejected reload must fail visibly"
    assert show(box, "ActiveState", "MainPID") == {"ActiveState": "active", "MainPID": pid}
    errors = [
        e for e in journal(box, "-p", "err") if "bindings[1].source_port" in str(e.get("MESSAGE"))
    ]
    assert errors and {e["PRIORITY"] for e in errors} == {"3"}, errors
    answered = len(agent_lines(box, "probe-answered", pid))
    wait_until(
        "the old configuration keeps answering",
        lambda: len(agent_lines(box, "probe-answered", pid)) >= answered + 2,
        10,
    )
    assert socket_inode(box, 5064)
    write(box, CONFIG, good)
    box.run("systemctl", "reload", UNIT)


def test_a_healthy_agent_is_never_killed_by_the_watchdog(machine: Container) -> None:
    box = machine
    props = show(box, "WatchdogUSec", "ActiveEnterTimestampMonotonic", "MainPID")
    watchdog_s = (
        int(props["WatchdogUSec"]) / 1e6
        if props["WatchdogUSec"].isdigit()
        else float(props["WatchdogUSec"].rstrip("s"))
    )
    assert watchdog_s == 30
    up_since = int(props["ActiveEnterTimestampMonotonic"]) / 1e6

    def up_for() -> float:  # on the manager's clock: CLOCK_MONOTONIC
        now = box.run("python3", "-c", "import time; print(time.monotonic())").stdout
        return float(now) - up_since

    # one watchdog period and a margin: keepalives, a reload and its rejection happened meanwhile
    wait_until("a watchdog period", lambda: up_for() > watchdog_s + 3, watchdog_s + 10)
    after = show(box, "MainPID", "NRestarts", "ActiveState")
    assert after == {"MainPID": props["MainPID"], "NRestarts": "0", "ActiveState": "active"}
    assert not [e for e in journal(box) if "atchdog" in str(e.get("MESSAGE"))]


def test_watchdog_restarts_a_frozen_agent(machine: Container) -> None:
    box = machine
    pid = main_pid(box)
    box.run("systemctl", "kill", "--kill-whom=main", "--signal=SIGSTOP", UNIT)

    # the last WATCHDOG=1 came at most 15 s before the freeze: at most 30 s, then RestartSec=5
    def replaced() -> str | None:
        now = main_pid(box)
        return now if now not in (pid, "0") else None

    new = wait_until("a new main process", replaced, 60)
    assert show(box, "NRestarts")["NRestarts"] == "1"
    assert [e for e in journal(box) if "Watchdog timeout" in str(e.get("MESSAGE"))]
    wait_until(
        "the new agent is reachable",
        lambda: show(box, "StatusText")["StatusText"] == "2 bindings: 2 reachable",
        20,
    )
    assert agent_lines(box, "started", new)


def test_a_bad_file_at_start_exits_2_without_restarts(machine: Container) -> None:
    box = machine
    good = box.path(CONFIG).read_text()
    box.run("systemctl", "stop", UNIT)
    box.run("systemctl", "reset-failed", UNIT, check=False)
    write(box, CONFIG, good.replace("interval: 2,", "interval: -2,"))
    done = box.run("systemctl", "start", UNIT, check=False)
    assert done.returncode != 0
    time.sleep(6.5)  # longer than RestartSec=5: a restart would have happened by now
    props = show(box, "ActiveState", "Result", "ExecMainStatus", "NRestarts")
    assert props == {
        "ActiveState": "failed",
        "Result": "exit-code",
        "ExecMainStatus": "2",
        "NRestarts": "0",
    }
    # `journalctl -p err -u nat-keepalive` says why, once
    why = [
        e
        for e in journal(box, "-p", "err")
        if str(e.get("MESSAGE", "")).startswith(f"nat-keepalive: {CONFIG}:")
        and "defaults.interval" in str(e.get("MESSAGE"))
    ]
    assert len(why) == 1 and why[0]["PRIORITY"] == "3", why
    write(box, CONFIG, good)
    restart_clean(box)


def exposure(box: Container) -> float:
    out = box.run("systemd-analyze", "security", "--no-pager", UNIT).stdout
    match = re.search(r"Overall exposure level for nat-keepalive\.service: ([0-9.]+)", out)
    assert match, out
    return float(match.group(1))


def test_a_port_below_1024_with_the_documented_drop_in(machine: Container) -> None:
    box = machine
    good = box.path(CONFIG).read_text()
    without = exposure(box)
    box.run("systemctl", "stop", UNIT)
    box.run("systemctl", "reset-failed", UNIT, check=False)
    write(box, CONFIG, config_text(source_port=LOW_PORT))
    # without the drop-in: one err line, exit 2 and no restart loop
    done = box.run("systemctl", "start", UNIT, check=False)
    assert done.returncode != 0
    time.sleep(6.5)
    props = show(box, "ActiveState", "ExecMainStatus", "NRestarts")
    assert props == {"ActiveState": "failed", "ExecMainStatus": "2", "NRestarts": "0"}
    why = [e for e in journal(box, "-p", "err") if "no permission to bind" in str(e.get("MESSAGE"))]
    assert len(why) == 1 and why[0]["PRIORITY"] == "3", why
    # with it, as the documentation says to install it
    box.run("install", "-D", "-m", "0644", EXAMPLE_DROP_IN, DROP_IN)
    try:
        box.run("systemctl", "daemon-reload")
        restart_clean(box)
        with_drop_in = exposure(box)
        wait_until(
            "reachable from port 1023",
            lambda: show(box, "StatusText")["StatusText"] == "1 binding: 1 reachable",
            15,
        )
        socket_inode(box, LOW_PORT)
        status = json.loads(read(box, "/run/nat-keepalive/status.json"))
        assert status["bindings"][0]["state"] == "reachable"
        uid = box.run("stat", "-c", "%u", f"/proc/{main_pid(box)}").stdout.strip()
        assert int(uid) != 0, "still the transient user"
    finally:
        box.run("rm", "-f", DROP_IN)
        box.run("systemctl", "daemon-reload")
    print(
        f"systemd-analyze security under systemd 252: {without} shipped, "
        f"{with_drop_in} with the drop-in"
    )
    assert without <= MAX_EXPOSURE and with_drop_in <= MAX_EXPOSURE
    assert with_drop_in > without
    write(box, CONFIG, good)
    restart_clean(box)


def test_upgrade_restarts_the_agent_and_keeps_the_configuration(
    machine: Container, deb_upgrade: Path
) -> None:
    box = machine
    pid = main_pid(box)
    mine = box.path(CONFIG).read_text()
    box.path(f"/root/{deb_upgrade.name}").write_bytes(deb_upgrade.read_bytes())
    box.run(
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        f"/root/{deb_upgrade.name}",
        timeout=180,
    )
    box.path(f"/root/{deb_upgrade.name}").unlink()
    version = box.run("dpkg-query", "-W", "-f", "${Version}", "nat-keepalive").stdout
    assert version.endswith("-2")
    assert box.path(CONFIG).read_text() == mine, "the edited conffile is kept"
    props = show(box, "ActiveState", "MainPID", "NRestarts")
    assert props["ActiveState"] == "active" and props["MainPID"] not in (pid, "0")
    assert agent_lines(box, "stopped", pid), "the old agent stopped cleanly"


def test_stop_is_clean(machine: Container) -> None:
    box = machine
    pid = main_pid(box)
    box.run("systemctl", "stop", UNIT)
    props = show(box, "ActiveState", "Result", "ExecMainStatus")
    assert props == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    stopped = agent_lines(box, "stopped", pid)
    assert len(stopped) == 1 and stopped[0]["PRIORITY"] == "5"
    assert not exists(box, "/run/nat-keepalive"), "RuntimeDirectory is removed"
    box.run("systemctl", "start", UNIT)


def test_purge_leaves_nothing_behind(machine: Container) -> None:
    box = machine
    box.run("systemctl", "enable", UNIT)
    box.run(
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "purge",
        "-y",
        "-q",
        "nat-keepalive",
        timeout=120,
    )
    box.run("rm", "-f", HOOK)
    assert box.run("dpkg-query", "-W", "nat-keepalive", check=False).returncode != 0
    assert show(box, "LoadState")["LoadState"] == "not-found"
    commands = box.run(
        "sh", "-c", "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' <$f; echo; done 2>/dev/null"
    ).stdout.splitlines()
    assert not [c for c in commands if "/usr/bin/nat-keepalive run" in c]
    named = box.run(
        "sh", "-c", "find / -xdev \\( -name '*nat-keepalive*' -o -name '*natkeepalive*' \\) -print"
    ).stdout.split()
    assert named == []
    before = set(box.path("/root/.files-before-install").read_text().splitlines())
    after = set(
        box.run("sh", "-c", "find / -xdev -path /proc -prune -o -print | sort").stdout.splitlines()
    )
    churn = (
        "/var/log/",
        "/var/lib/dpkg/",
        "/var/lib/apt/",
        "/var/cache/",
        "/run/",
        "/tmp/",
        "/var/tmp/",
        "/var/lib/systemd/",
        "/root/",
        "/etc/ld.so.cache",
    )
    left = sorted(p for p in after - before if not p.startswith(churn))
    assert left == [], left
