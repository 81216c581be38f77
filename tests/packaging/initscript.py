"""The OpenWrt init script run without OpenWrt: under dash or busybox ash, after the emulations of
the UCI and procd shell API (uci_emul.sh, procd_emul.sh) and netifd's interface status, with its
paths pointed into a test's folder. Shared by the tests of the package, of its settings' rules
and of its examples; tests/openwrt/compare_message.py compares its procd message with the real
one."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from natkeepalive.config.loader import parse_config
from natkeepalive.config.model import Config
from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "openwrt" / "nat-keepalive"
FILES = PKG / "files"
INIT = FILES / "nat-keepalive.init"
HERE = Path(__file__).resolve().parent

SHELLS = ("dash", "busybox")
# The tools the init script runs besides shell builtins; in busybox mode they are busybox
# applets, as on a router.
BUSYBOX_APPLETS = ("awk", "cat", "chmod", "cmp", "grep", "mkdir", "mv", "rm", "sed")

# the least a rendered file needs: one binding
BINDING = """\
config binding 'provider'
	option server 'sip.example.net'
	option source_port '5062'
"""


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    trace: list[str]
    tmp: Path
    messages: list[str]  # the JSON of each `ubus call service set` that `start` sent

    def message(self) -> dict:  # type: ignore[type-arg]
        """The last service message as procd parses it (a repeated key: the last one)."""
        return json.loads(self.messages[-1])  # type: ignore[no-any-return]

    @property
    def conf(self) -> Path:
        return self.tmp / "var" / "etc" / "nat-keepalive" / "config.yaml"

    def text(self) -> str:
        return self.conf.read_text(encoding="utf-8")


def shell_command(shell: str, tmp: Path) -> tuple[list[str], str]:
    """argv prefix and PATH for running a script under `shell`."""
    if shell == "dash":
        return [require_tool("dash")], "/usr/bin:/bin"
    busybox = require_tool("busybox")
    applets = tmp / "busybox-bin"
    applets.mkdir(exist_ok=True)
    for applet in BUSYBOX_APPLETS:
        link = applets / applet
        if not link.exists():
            link.symlink_to(busybox)
    return [busybox, "sh"], f"{applets}:/usr/bin:/bin"


def netifd(
    tmp: Path,
    iface: str,
    up: bool,
    uptime: int = 0,
    l3_device: str | None = None,
    device: str = "eth0",
) -> None:
    """netifd's `status` of an interface as `ubus call network.interface.IFACE status` shows
    it: while down it has no l3_device and `device` is the physical device."""
    status: dict[str, object] = {"up": up, "pending": False, "available": True, "device": device}
    if up:
        status.update(uptime=uptime, l3_device=l3_device or device)
    folder = tmp / "netifd"
    folder.mkdir(exist_ok=True)
    (folder / f"{iface}.json").write_text(json.dumps(status), encoding="utf-8")


# network.sh's two functions the init script calls, over the emulated netifd status: a key
# the status lacks makes them fail, as __network_export does.
NETWORK_SH = """\
nk_emul_netdev() {
	local status
	status="$(ubus call "network.interface.$3" status 2>/dev/null)" || return 1
	eval "$1=\\$(jsonfilter -s \\"\\$status\\" -e '@.$2')"
}
network_get_device() { nk_emul_netdev "$1" l3_device "$2"; }
network_get_physdev() { nk_emul_netdev "$1" device "$2"; }
"""


def run_init(
    shell: str,
    tmp: Path,
    uci: str | None,
    body: str,
    running: bool = False,
    wan_device: str | None = "eth0.2",
) -> Run:
    """Source the init script after the emulations, point its paths into `tmp`, run `body`.
    `wan_device`: netifd has wan up on it (uptime 100 s), unless None (then the test set
    netifd's state itself)."""
    etc = tmp / "etc" / "config"
    etc.mkdir(parents=True, exist_ok=True)
    if uci is not None:
        (etc / "nat-keepalive").write_text(uci, encoding="utf-8")
    functions = tmp / "root" / "lib" / "functions"
    functions.mkdir(parents=True, exist_ok=True)
    (functions / "network.sh").write_text(NETWORK_SH, encoding="utf-8")
    (tmp / "netifd").mkdir(exist_ok=True)
    if wan_device is not None:
        netifd(tmp, "wan", True, 100, wan_device)
    trace = tmp / "trace"
    trace.write_text("", encoding="utf-8")
    messages = tmp / "procd.json"
    messages.write_text("", encoding="utf-8")
    script = tmp / "drive.sh"
    script.write_text(
        f'. "{HERE}/uci_emul.sh"\n'
        f'. "{HERE}/procd_emul.sh"\n'
        f'. "{INIT}"\n'
        f'CONF_DIR="{tmp}/var/etc/nat-keepalive"\n'
        'CONF="$CONF_DIR/config.yaml"\n'
        f'RUN_DIR="{tmp}/var/run/nat-keepalive"\n'
        f"{body}\n",
        encoding="utf-8",
    )
    argv, path = shell_command(shell, tmp)
    env = {
        "PATH": path,
        "LC_ALL": "C",
        "UCI_CONFIG_DIR": str(etc),
        "IPKG_INSTROOT": str(tmp / "root"),
        "PROCD_TRACE": str(trace),
        "PROCD_JSON": str(messages),
        "EMUL_NETIFD": str(tmp / "netifd"),
        "EMUL_PROCD_RUNNING": "1" if running else "0",
    }
    done = subprocess.run(
        [*argv, str(script)], cwd=tmp, env=env, capture_output=True, text=True, timeout=30
    )
    return Run(
        done.returncode,
        done.stdout,
        done.stderr,
        trace.read_text(encoding="utf-8").splitlines(),
        tmp,
        messages.read_text(encoding="utf-8").splitlines(),
    )


def render(shell: str, tmp: Path, uci: str | None) -> Run:
    return run_init(shell, tmp, uci, 'nk_render "$CONF"')


def parse(run: Run) -> Config:
    """The rendered file as the agent's loader reads it."""
    return parse_config(run.text(), str(run.conf))


def errors(run: Run) -> list[str]:
    return [line for line in run.stderr.splitlines() if line.startswith("nat-keepalive: ")]
