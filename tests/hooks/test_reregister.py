"""The PBX re-register hooks. baresip is Debian's real one: it registers to a registrar socket
in the test, the hook (through busybox's `nc`, as on OpenWrt) makes it register again. Asterisk
and FreeSWITCH are not in Debian: their hooks run against recording stand-ins of `asterisk` and
`fs_cli`, which check the command line and the failure handling, not the PBX."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.helpers import free_port
from tests.support.tools import require_tool

from .common import install, run_hook


class Registrar:
    """A UDP socket on loopback that answers REGISTER with 200 OK and counts the ones that
    register (Expires other than 0)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.registers = 0

    def serve(self, until: float) -> None:
        while time.monotonic() < until:
            self.sock.settimeout(max(0.01, until - time.monotonic()))
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                return
            text = data.decode("utf-8", "replace")
            if not text.startswith("REGISTER "):
                continue
            lines = text.split("\r\n")
            keep = [
                line
                for line in lines
                if line.split(":", 1)[0].strip().lower()
                in ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq", "contact", "m")
            ]
            unregister = any(line.lower().startswith("expires: 0") for line in lines) or any(
                "expires=0" in line.lower()
                for line in lines
                if line.lower().startswith(("contact", "m:"))
            )
            if not unregister:
                self.registers += 1
            reply = (
                "SIP/2.0 200 OK\r\n"
                + "\r\n".join(keep)
                + "\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
            )
            self.sock.sendto(reply.encode(), source)

    def wait_registers(self, count: int, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while self.registers < count and time.monotonic() < deadline:
            self.serve(min(deadline, time.monotonic() + 0.2))
        return self.registers


@pytest.fixture
def baresip(tmp_path: Path) -> Iterator[tuple[Registrar, int, str]]:
    binary = require_tool("baresip")
    registrar = Registrar()
    ctrl = free_port(kind=socket.SOCK_STREAM)
    home = tmp_path / "baresip"
    home.mkdir()
    account = f"<sip:nk@127.0.0.1:{registrar.port};transport=udp>;regint=600"
    (home / "config").write_text(
        f"sip_listen 127.0.0.1:{free_port(kind=socket.SOCK_DGRAM)}\n"
        "module_path /usr/lib/baresip/modules\n"
        "module_app account.so\nmodule_app menu.so\nmodule_app ctrl_tcp.so\n"
        f"ctrl_tcp_listen 127.0.0.1:{ctrl}\n"
    )
    (home / "accounts").write_text(account + "\n")
    proc = subprocess.Popen(
        [binary, "-f", str(home)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert registrar.wait_registers(1) == 1, "baresip did not register"
        yield registrar, ctrl, account
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        registrar.sock.close()


def busybox_nc_path(folder: Path) -> str:
    """A PATH where `nc` is busybox's, as on OpenWrt, before the system's."""
    tools = folder / "nc-bin"
    tools.mkdir()
    (tools / "nc").symlink_to(require_tool("busybox"))
    return f"{tools}:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.mark.parametrize("shell", ["dash", "busybox"])
def test_baresip_registers_again(
    tmp_path: Path, baresip: tuple[Registrar, int, str], shell: str
) -> None:
    registrar, ctrl, account = baresip
    hook = install(
        tmp_path, "reregister-baresip", f"BARESIP_CTRL_PORT={ctrl}\nBARESIP_ACCOUNT='{account}'\n"
    )
    path = busybox_nc_path(tmp_path)
    result = run_hook(
        hook,
        "binding-changed",
        {"EVENT": "binding-changed", "BINDING": "p"},
        shell=shell,
        path=path,
    )
    assert result.returncode == 0, result.stderr
    assert registrar.wait_registers(2) == 2
    # other events, and other bindings when limited, leave baresip alone
    assert run_hook(hook, "reachable", {"EVENT": "reachable"}, path=path).returncode == 0
    (tmp_path / "reregister-baresip.conf").write_text(
        f"BARESIP_CTRL_PORT={ctrl}\nBARESIP_ACCOUNT='{account}'\nPBX_BINDINGS='other'\n"
    )
    result = run_hook(
        hook, "binding-expired", {"EVENT": "binding-expired", "BINDING": "p"}, path=path
    )
    assert result.returncode == 0
    assert registrar.wait_registers(3, timeout=2) == 2


def test_baresip_not_running_fails_the_hook(tmp_path: Path) -> None:
    hook = install(
        tmp_path, "reregister-baresip", f"BARESIP_CTRL_PORT={free_port(kind=socket.SOCK_STREAM)}\n"
    )
    result = run_hook(
        hook, "binding-changed", {"EVENT": "binding-changed"}, path=busybox_nc_path(tmp_path)
    )
    assert result.returncode == 1
    assert "no answer" in result.stderr


STAND_IN = """#!/bin/sh
for arg in "$@"; do printf '%s\\n' "$arg"; done >> "{log}"
printf '%s\\n' "$STAND_IN_OUTPUT"
exit "${{STAND_IN_EXIT:-0}}"
"""


def stand_in(folder: Path, name: str) -> tuple[str, Path]:
    tools = folder / "stand-in"
    tools.mkdir(exist_ok=True)
    log = folder / f"{name}.args"
    script = tools / name
    script.write_text(STAND_IN.format(log=log))
    script.chmod(0o755)
    return f"{tools}:/usr/bin:/bin", log


@pytest.mark.parametrize(
    "output, code, expected",
    [
        ("", 0, 0),
        ("Unable to retrieve registration provider", 0, 1),
        ("Unable to connect to remote asterisk (does /var/run/asterisk/asterisk.ctl exist?)", 1, 1),
    ],
)
def test_asterisk_command_and_failures(
    tmp_path: Path, output: str, code: int, expected: int
) -> None:
    path, log = stand_in(tmp_path, "asterisk")
    hook = install(tmp_path, "reregister-asterisk", "ASTERISK_REGISTRATION=provider\n")
    result = run_hook(
        hook,
        "binding-changed",
        {
            "EVENT": "binding-changed",
            "BINDING": "b",
            "STAND_IN_OUTPUT": output,
            "STAND_IN_EXIT": str(code),
        },
        path=path,
    )
    assert result.returncode == expected, result.stderr
    assert log.read_text().splitlines() == ["-rx", "pjsip send register provider"]
    if expected:
        assert output.split(" (")[0] in result.stderr


@pytest.mark.parametrize(
    "output, code, expected",
    [
        ("+OK", 0, 0),
        ("-ERR no such gateway", 0, 1),
        ("[ERROR] Error Connecting []", 1, 1),
    ],
)
def test_freeswitch_command_and_failures(
    tmp_path: Path, output: str, code: int, expected: int
) -> None:
    path, log = stand_in(tmp_path, "fs_cli")
    hook = install(tmp_path, "reregister-freeswitch", "FS_GATEWAY=provider\n")
    result = run_hook(
        hook,
        "binding-expired",
        {
            "EVENT": "binding-expired",
            "BINDING": "b",
            "STAND_IN_OUTPUT": output,
            "STAND_IN_EXIT": str(code),
        },
        path=path,
    )
    assert result.returncode == expected, result.stderr
    assert log.read_text().splitlines() == ["-x", "sofia profile external register provider"]


def test_freeswitch_several_commands(tmp_path: Path) -> None:
    path, log = stand_in(tmp_path, "fs_cli")
    hook = install(
        tmp_path,
        "reregister-freeswitch",
        "FS_COMMANDS='sofia profile external killgw gw1;sofia profile external rescan'\n",
    )
    result = run_hook(hook, "binding-changed", {"EVENT": "binding-changed"}, path=path)
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == [
        "-x",
        "sofia profile external killgw gw1",
        "-x",
        "sofia profile external rescan",
    ]


def test_run_all_runs_each_and_reports_a_failure(tmp_path: Path) -> None:
    hook = install(tmp_path, "run-all", None)
    folder = tmp_path / "run-all.d"
    folder.mkdir()
    for name, code in (("a-ok", 0), ("b-fails", 3), ("c-ok", 0)):
        script = folder / name
        script.write_text(f'#!/bin/sh\necho "$1 $BINDING" >> {tmp_path}/{name}.out\nexit {code}\n')
        script.chmod(0o755)
    (folder / "d-not-executable").write_text("#!/bin/sh\nexit 1\n")
    result = run_hook(hook, "unreachable", {"EVENT": "unreachable", "BINDING": "p"})
    assert result.returncode == 1
    assert result.stderr.strip() == "run-all: b-fails failed"
    for name in ("a-ok", "b-fails", "c-ok"):
        assert (tmp_path / f"{name}.out").read_text() == "unreachable p\n"
