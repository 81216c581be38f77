"""The OpenWrt package without OpenWrt: the Makefile's dependencies against the agent's imports,
and the procd init script run under dash and busybox ash against a small emulation of the UCI
and procd shell API, netifd's interface status and procd's trigger rule (uci_emul.sh,
procd_emul.sh in this folder). tests/openwrt/real.sh runs the same package under the real
procd, ubusd, uci, validate_data and logd."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.packaging import stdlib_imports
from tests.packaging.initscript import (
    BINDING,
    FILES,
    HERE,
    INIT,
    PKG,
    ROOT,
    SHELLS,
    Run,
    errors,
    netifd,
    parse,
    render,
    run_init,
    shell_command,
)
from tests.support.tools import require_tool

FORBIDDEN = {"python3-asyncio", "python3-logging", "python3-uuid", "python3-openssl"}

FULL_UCI = """\
config agent 'main'
	option enabled '1'
	option log_level 'notice'
	option interval '30'
	option jitter '0.10'
	list hook_event 'binding-changed'
	list hook_event 'reachable'

config binding 'provider'
	option server 'sip.example.net'
	option source_port '05062'
	option interface 'wan'
	option interval 'auto'
	option interval_max '40'
	option stun_server 'stun.example.net'
	option user_agent 'it'\\''s "me" $(touch PWNED) `touch PWNED` \\n #x: y'

config binding
	option name 'pbx.2'
	option server '[2001:db8::1]:5080'
	option source_port '5064'
	option bind '2001:db8::2'
	option require_2xx 'yes'
	option max_forwards '010'
	option check 'off'
	option stun_server '[2001:db8::9]:3479'

config binding 'lab'
	option enabled '0'
	option server 'ignored.example'
	option source_port 'not checked when disabled'

config binding 'lan_side'
	option server 'sip:pbx.lan:5070'
	option source_port '5066'
	option interface 'lan2'
"""


# --- the Makefile ----------------------------------------------------------------------------


def makefile() -> str:
    return (PKG / "Makefile").read_text(encoding="utf-8")


def test_makefile_depends_are_exactly_what_the_agent_imports() -> None:
    imports = stdlib_imports.scan()
    assert not imports.unknown, (
        f"imports that are neither stdlib nor a known OpenWrt package: {imports.unknown}"
    )
    _, needed = stdlib_imports.needed(imports)
    declared = stdlib_imports.makefile_depends()
    assert sorted(set(declared)) == sorted(declared), "a DEPENDS entry is repeated"
    assert set(declared) == needed, (
        "openwrt/nat-keepalive/Makefile DEPENDS is out of date; "
        "`python tests/packaging/stdlib_imports.py --depends` prints the right line"
    )


def test_agent_needs_no_heavy_stdlib_packages() -> None:
    table, _needed = stdlib_imports.needed(stdlib_imports.scan())
    culprits = {m: p for m, p in table.items() if p in FORBIDDEN}
    assert not culprits, f"heavy packages the router should not need: {culprits}"
    assert "python3-netifaces" not in stdlib_imports.makefile_depends()
    assert not [m for m, p in table.items() if p.startswith("(")], "module missing on OpenWrt"


def test_scanner_finds_lazy_imports_and_skips_type_checking(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "m.py").write_text(
        "from __future__ import annotations\n"
        "import socket, os.path\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import asyncio\n"
        "def f():\n    import logging.handlers\n    from uuid import uuid4\n"
        "try:\n    import netifaces\nexcept ImportError:\n    netifaces = None\n"
        "import yaml, somethingelse\n",
        encoding="utf-8",
    )
    imports = stdlib_imports.scan(package)
    assert set(imports.direct) == {"socket", "os", "typing", "logging", "uuid"}
    assert set(imports.third_party) == {"netifaces", "yaml"}
    assert set(imports.unknown) == {"somethingelse"}
    _table, needed = stdlib_imports.needed(imports)
    assert {"python3-logging", "python3-uuid", "python3-yaml", "python3-light"} <= needed
    assert "python3-asyncio" not in needed
    assert not any(p is None for p in needed)


def test_closure_follows_stdlib_imports() -> None:
    # http.client imports email: importing it on a router needs python3-email.
    assert "email" in stdlib_imports.closure(["http.client"])


def test_makefile_layout() -> None:
    text = makefile()
    from natkeepalive import __version__

    assert re.search(rf"^PKG_VERSION:={re.escape(__version__)}$", text, re.M)
    order = [
        text.index(s)
        for s in (
            "include $(TOPDIR)/rules.mk",
            "pypi.mk",
            "include $(INCLUDE_DIR)/package.mk",
            "python3-package.mk",
        )
    ]
    assert order == sorted(order), "includes: rules.mk, pypi.mk, package.mk, python3-package.mk"
    for line in (
        "$(eval $(call Py3Package,nat-keepalive))",
        "$(eval $(call BuildPackage,nat-keepalive))",
        "$(eval $(call BuildPackage,nat-keepalive-src))",
        "USERID:=nat-keepalive:nat-keepalive",
        "$(LN) /var/etc/nat-keepalive/config.yaml $(1)/etc/nat-keepalive/config.yaml",
    ):
        assert line in text
    assert "CONF_DIR=/var/etc/nat-keepalive\n" in INIT.read_text(encoding="utf-8")
    conffiles = re.search(r"define Package/nat-keepalive/conffiles\n(.*?)\nendef", text, re.S)
    assert conffiles and conffiles.group(1).split() == ["/etc/config/nat-keepalive"]
    # Every file under files/ is installed, and every installed file exists.
    used = set(re.findall(r"\./files/([\w.-]+)", text))
    assert used == {p.name for p in FILES.iterdir()}
    assert "netifaces" not in text.split("DEPENDS:=")[1].splitlines()[0]


def test_the_command_is_the_lean_launcher_not_installers_console_script() -> None:
    """installer's console script imports `re`, which the daemon would then hold."""
    text = makefile()
    assert "$(INSTALL_BIN) ./files/nat-keepalive.launcher $(1)/usr/bin/nat-keepalive" in text
    assert "$(PKG_INSTALL_DIR)/usr/bin/nat-keepalive" not in text.replace(
        "# Not $(PKG_INSTALL_DIR)/usr/bin/nat-keepalive", ""
    )
    assert (FILES / "nat-keepalive.launcher").read_bytes() == (
        ROOT / "packaging" / "nat-keepalive.launcher"
    ).read_bytes()


def test_ubus_acl_lets_the_agent_user_send_its_events() -> None:
    acl = json.loads((FILES / "nat-keepalive.acl.json").read_text(encoding="utf-8"))
    assert acl == {"user": "nat-keepalive", "send": ["nat-keepalive.*"]}


# --- shellcheck ---------------------------------------------------------------------------------


def shell_files() -> list[Path]:
    found = []
    for base in (ROOT / "openwrt", ROOT / "packaging", HERE):
        for path in sorted(base.rglob("*")):
            if not path.is_file():
                continue
            head = path.read_bytes()[:64]
            if path.suffix == ".sh" or head.startswith((b"#!/bin/sh", b"#!/bin/bash")):
                found.append(path)
    return found


def test_shellcheck_every_shell_file() -> None:
    shellcheck = require_tool("shellcheck")
    files = shell_files()
    names = {p.name for p in files}
    assert {
        "nat-keepalive.init",
        "nat-keepalive.hook",
        "uci_emul.sh",
        "procd_emul.sh",
        "build-deb.sh",
        "ci-install-check.sh",
    } <= names
    done = subprocess.run(
        [shellcheck, "-s", "sh", *map(str, files)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- rendering ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shell", SHELLS)
def test_render_full_config(shell: str, tmp_path: Path) -> None:
    run = render(shell, tmp_path, FULL_UCI)
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "PWNED").exists()
    config = parse(run)
    assert config.log.level == "notice" and config.log.target == "syslog"
    assert config.log.address == "/dev/log"
    assert config.status_file == f"{tmp_path}/var/run/nat-keepalive/status.json"
    assert config.hooks.command == "/usr/libexec/nat-keepalive/hook"
    assert config.hooks.events == ("binding-changed", "reachable")
    assert config.user is None
    assert config.defaults.interval == 30 and config.defaults.jitter == 0.1
    provider, pbx, lan = config.bindings
    assert (provider.name, provider.server.host, provider.server.port) == (
        "provider",
        "sip.example.net",
        5060,
    )
    assert provider.source_port == 5062  # '05062' is not octal
    assert provider.interface == "eth0.2"  # the device carrying UCI's 'wan'
    assert provider.settings.interval_auto and provider.settings.interval_max == 40
    assert provider.settings.jitter == 0.1  # from the agent section
    assert provider.settings.user_agent == 'it\'s "me" $(touch PWNED) `touch PWNED` \\n #x: y'
    assert (pbx.name, pbx.server.host, pbx.server.port) == ("pbx.2", "2001:db8::1", 5080)
    assert pbx.bind == "2001:db8::2" and pbx.interface is None
    assert pbx.settings.require_2xx is True
    assert pbx.settings.max_forwards == 10
    from natkeepalive.config.model import Target

    assert pbx.settings.check == "off"  # quoted: YAML would read a plain off as false
    assert pbx.settings.stun_server == Target("2001:db8::9", 3479)
    assert provider.settings.check == "auto"
    assert provider.settings.stun_server == Target("stun.example.net", 3478)
    assert pbx.settings.interval == 30
    assert (lan.name, lan.interface, lan.server.port) == ("lan_side", "lan2", 5070)
    mode = run.conf.stat().st_mode & 0o777
    assert mode == 0o644, "the agent re-reads it as an unprivileged user on SIGHUP"
    assert not list(run.conf.parent.glob("*.tmp.*"))


def run_check_on(text: str) -> subprocess.CompletedProcess[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        handle.write(text)
        handle.flush()
        return subprocess.run(
            [sys.executable, "-m", "natkeepalive", "check", "-c", handle.name],
            capture_output=True,
            text=True,
            timeout=60,
        )


def test_rendered_config_passes_nat_keepalive_check(tmp_path: Path) -> None:
    """The real CLI on the rendered file (needs natkeepalive.cli.main)."""
    run = render("dash", tmp_path, FULL_UCI)
    assert run.returncode == 0, run.stderr
    # `check` asks this host whether the hook can run: on the router the package installs it
    # at /usr/libexec/nat-keepalive/hook, here a stand-in takes its place in the rendered file
    text = run.conf.read_text()
    assert "command: /usr/libexec/nat-keepalive/hook" in text
    hook = tmp_path / "hook"
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o755)
    run.conf.write_text(text.replace("/usr/libexec/nat-keepalive/hook", str(hook)))
    done = subprocess.run(
        [sys.executable, "-m", "natkeepalive", "check", "-c", str(run.conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    missing = run_check_on(text)
    assert missing.returncode == 2 and "hook does not exist" in missing.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_shipped_uci_file(shell: str, tmp_path: Path) -> None:
    shipped = (FILES / "nat-keepalive.config").read_text(encoding="utf-8")
    run = render(shell, tmp_path, shipped)
    assert run.returncode == 2, run.stderr
    assert "nothing to keep alive" in run.stderr
    assert not run.conf.exists()
    # Its commented example works once uncommented, as the file tells the user to do.
    head, example = shipped.split("#config binding", 1)
    uncommented = head + "\n".join(
        line[1:] if line.startswith("#") else line
        for line in ("#config binding" + example).splitlines()
    )
    run = render(shell, tmp_path, uncommented + "\n")
    assert run.returncode == 0, run.stderr
    (binding,) = parse(run).bindings
    assert (binding.name, binding.source_port, binding.interface) == ("provider", 5062, "eth0.2")
    assert binding.settings.interval_auto


@pytest.mark.parametrize("shell", SHELLS)
def test_no_uci_file_means_nothing_to_run(shell: str, tmp_path: Path) -> None:
    run = render(shell, tmp_path, None)
    assert run.returncode == 2
    assert not run.conf.exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_disabled_agent(shell: str, tmp_path: Path) -> None:
    run = render(shell, tmp_path, "config agent 'main'\n\toption enabled '0'\n\n" + BINDING)
    assert run.returncode == 2
    assert "disabled" in run.stderr


BAD_VALUES = [
    ("source_port", "70000", "nat-keepalive.provider.source_port='70000'", "1 to 65535"),
    ("source_port", "http", "nat-keepalive.provider.source_port='http'", "1 to 65535"),
    ("interval", "abc", "nat-keepalive.provider.interval='abc'", "'auto'"),
    ("interval", "0", "nat-keepalive.provider.interval='0'", "at least 0.1"),
    ("timeout", "1e3", "nat-keepalive.provider.timeout='1e3'", "greater than 0"),
    ("jitter", "1", "nat-keepalive.provider.jitter='1'", "up to (not including) 1"),
    ("safety", "1.5", "nat-keepalive.provider.safety='1.5'", "at most 1"),
    ("safety", "0.0", "nat-keepalive.provider.safety='0.0'", "greater than 0"),
    ("max_forwards", "256", "nat-keepalive.provider.max_forwards='256'", "0 to 255"),
    ("fail_threshold", "0", "nat-keepalive.provider.fail_threshold='0'", "at least 1"),
    ("require_2xx", "maybe", "nat-keepalive.provider.require_2xx='maybe'", "0 or 1"),
    ("bind", "my-box", "nat-keepalive.provider.bind='my-box'", "IPv4 or IPv6"),
    ("name", "a b", "nat-keepalive.provider.name='a b'", "letters, digits"),
    ("server", "sip.example.net; reboot", "nat-keepalive.provider.server=", "host[:port]"),
    ("interface", "wan'x", "nat-keepalive.provider.interface=", "interface name"),
    ("check", "maybe", "nat-keepalive.provider.check='maybe'", "auto, sent-by, relay, stun, off"),
    ("stun_server", "a b;c", "nat-keepalive.provider.stun_server=", "host[:port]"),
]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(("option", "value", "where", "hint"), BAD_VALUES)
def test_bad_uci_value_is_rejected_clearly(
    shell: str, option: str, value: str, where: str, hint: str, tmp_path: Path
) -> None:
    uci = (
        BINDING.replace("\toption source_port '5062'\n", "") if option == "source_port" else BINDING
    )
    quoted = value.replace("'", "'\\''")
    run = render(shell, tmp_path, uci + f"\toption {option} '{quoted}'\n")
    assert run.returncode == 1
    lines = errors(run)
    assert any(where in line and hint in line for line in lines), run.stderr
    assert lines[-1].endswith("the agent was not (re)configured")
    assert not run.conf.exists()
    assert (
        f"logger -t nat-keepalive -p daemon.err -- /etc/config/nat-keepalive: {where}"
        in "\n".join(run.trace)
    )


@pytest.mark.parametrize("shell", SHELLS)
def test_agent_section_errors_and_missing_options(shell: str, tmp_path: Path) -> None:
    uci = (
        "config agent 'main'\n\toption interval 'abc'\n\toption log_level 'loud'\n\n"
        "config binding 'a'\n\toption server 'x.example'\n\n"
        "config binding\n\toption server 'y.example'\n\toption source_port '5070'\n\n"
        "config binding 'c'\n\toption source_port '5072'\n\n"
        "config binding 'd'\n\toption server 'z.example'\n\toption source_port '5074'\n"
        "\toption interface 'wan'\n\toption bind '10.0.0.1'\n"
    )
    run = render(shell, tmp_path, uci)
    assert run.returncode == 1
    text = "\n".join(errors(run))
    assert "nat-keepalive.main.interval='abc'" in text
    assert "nat-keepalive.main.log_level='loud'" in text
    assert "nat-keepalive.a.source_port: missing" in text
    assert "nat-keepalive.@binding[1]: an unnamed section needs option name" in text
    assert "nat-keepalive.c.server: missing" in text
    assert "nat-keepalive.d.bind: set either interface or bind, not both" in text


@pytest.mark.parametrize("shell", SHELLS)
def test_failed_render_keeps_the_running_config(shell: str, tmp_path: Path) -> None:
    good = render(shell, tmp_path, BINDING)
    assert good.returncode == 0
    before = good.text()
    bad = render(shell, tmp_path, BINDING.replace("5062", "99999"))
    assert bad.returncode == 1
    assert bad.text() == before


# --- procd -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shell", SHELLS)
def test_start_service_runs_the_agent_unprivileged_under_procd(shell: str, tmp_path: Path) -> None:
    run = run_init(shell, tmp_path, BINDING, "start_service")
    assert run.returncode == 0, run.stderr
    conf = run.conf
    assert run.trace == [
        f"chown nat-keepalive:nat-keepalive {tmp_path}/var/run/nat-keepalive",
        "procd_open_instance ",
        f"procd_set_param command /usr/bin/nat-keepalive run -c {conf} --log syslog",
        "procd_set_param user nat-keepalive",
        "procd_set_param respawn",
        "procd_set_param stdout 1",
        "procd_set_param stderr 1",
        "procd_close_instance",
    ]
    assert (tmp_path / "var" / "run" / "nat-keepalive").is_dir()
    assert "run-as: user" in run.text()


@pytest.mark.parametrize("shell", SHELLS)
def test_port_below_1024_starts_as_root_and_the_agent_drops_privileges(
    shell: str, tmp_path: Path
) -> None:
    run = run_init(shell, tmp_path, BINDING.replace("5062", "506"), "start_service")
    assert run.returncode == 0, run.stderr
    assert not [line for line in run.trace if line.startswith("procd_set_param user")]
    assert parse(run).user == "nat-keepalive"


@pytest.mark.parametrize("shell", SHELLS)
def test_start_service_with_bad_config_starts_nothing(shell: str, tmp_path: Path) -> None:
    run = run_init(shell, tmp_path, BINDING.replace("5062", "0"), "start_service")
    assert run.returncode == 1
    assert not [line for line in run.trace if line.startswith("procd_")]


@pytest.mark.parametrize("shell", SHELLS)
def test_start_sends_procd_one_service_message(shell: str, tmp_path: Path) -> None:
    run = run_init(shell, tmp_path, FULL_UCI, "start")
    assert run.returncode == 0, run.stderr
    (raw,) = run.messages
    message = run.message()
    assert message["name"] == "nat-keepalive"
    assert message["script"] == "/etc/init.d/nat-keepalive"
    assert message["instances"] == {
        "instance1": {
            "command": ["/usr/bin/nat-keepalive", "run", "-c", str(run.conf), "--log", "syslog"],
            "user": "nat-keepalive",  # procd sets it before exec; nothing else drops privileges
            "stdout": True,
            "stderr": True,
            "respawn": ["3600", "5", "5"],
        }
    }
    script = ["run_script", "/etc/init.d/nat-keepalive"]
    assert message["triggers"] == [
        ["config.change", ["if", ["eq", "package", "nat-keepalive"], [*script, "reload"]], 1000],
        *[
            ["interface.*", ["if", ["eq", "interface", iface], [*script, "ifevent", iface]], 1000]
            for iface in ("wan", "wan6", "lan2")
        ],
    ]
    # One schema with both section types: a second "validate" key would replace the first.
    assert raw.count('"validate":') == 1
    schema = {(v["package"], v["type"]): v["data"] for v in message["validate"]}
    assert set(schema) == {("nat-keepalive", "agent"), ("nat-keepalive", "binding")}
    assert schema["nat-keepalive", "binding"]["source_port"] == "range(1,65535)"
    assert schema["nat-keepalive", "agent"]["interval"] == "or(auto,ufloat)"
    assert "no_new_privs" not in raw
    assert message["data"] == {}  # rc.common's empty service_data


def test_the_emulation_keeps_both_validate_keys_like_procd_sh(tmp_path: Path) -> None:
    """Two procd_add_validation calls give two "validate" keys, and procd sees the last."""
    run = run_init(
        "dash",
        tmp_path,
        BINDING,
        "service_triggers() { "
        "procd_add_validation nk_validate_agent; "
        "procd_add_validation nk_validate_binding; }; start",
    )
    assert run.returncode == 0, run.stderr
    assert run.messages[-1].count('"validate":') == 2
    assert [v["type"] for v in run.message()["validate"]] == ["binding"]


# --- procd's interface triggers, netifd's events -------------------------------------------------


def procd_trigger_matches(event: str, trigger_type: str) -> bool:
    """procd's trigger_match(): a trigger type with ".*" matches every event type that starts
    with the text before it ("interface.*.up" matches interface.down); else the whole name."""
    wildcard = trigger_type.find(".*")
    if wildcard >= 0:
        return event.startswith(trigger_type[:wildcard])
    return event == trigger_type


def procd_event(message: dict, event: str, data: dict) -> list[list[str]]:  # type: ignore[type-arg]
    """The commands procd runs for an event: each matching trigger's json_script, of the
    ["if", ["eq", KEY, VALUE], ["run_script", ...]] form the init script uses."""
    commands = []
    for trigger_type, (keyword, (op, key, value), action), _delay in message["triggers"]:
        assert (keyword, op, action[0]) == ("if", "eq", "run_script")
        if procd_trigger_matches(event, trigger_type) and data.get(key) == value:
            commands.append(action[1:])
    return commands


def test_procds_trigger_rule() -> None:
    assert procd_trigger_matches("interface.down", "interface.*.up")
    assert procd_trigger_matches("interface.update", "interface.*")
    assert not procd_trigger_matches("config.change", "interface.*")
    assert procd_trigger_matches("config.change", "config.change")


class Router:
    """The init script under the emulated procd, with netifd's events delivered as procd
    delivers them: the service message's triggers pick the commands, which then run."""

    def __init__(self, shell: str, tmp: Path, uci: str) -> None:
        self.shell, self.tmp, self.uci = shell, tmp, uci
        run = run_init(shell, tmp, uci, "start", wan_device=None)
        assert run.returncode == 0, run.stderr
        self.message = run.message()

    def event(self, event: str, iface: str) -> list[str]:
        """netifd's event for `iface`: the trace of every command procd runs for it."""
        trace: list[str] = []
        for argv in procd_event(self.message, event, {"interface": iface}):
            assert argv[0] == "/etc/init.d/nat-keepalive"
            body = " ".join(argv[1:])
            run = run_init(self.shell, self.tmp, self.uci, body, running=True, wan_device=None)
            assert run.returncode == 0, run.stderr
            trace += run.trace
            if run.messages:
                self.message = run.message()
        return trace


def signals(trace: list[str]) -> list[str]:
    return [line.split()[-1] for line in trace if line.startswith("procd_send_signal")]


@pytest.mark.parametrize("shell", SHELLS)
def test_interface_events_act_only_when_an_interface_came_up(shell: str, tmp_path: Path) -> None:
    netifd(tmp_path, "wan", True, 100, "eth0.2")
    router = Router(shell, tmp_path, BINDING + "\toption interface 'wan'\n")
    netifd(tmp_path, "wan", True, 160, "eth0.2")
    assert router.event("interface.update", "wan") == [], "an update of an interface that stayed up"
    assert router.event("interface.update", "lan") == [], "not an interface of the agent"
    netifd(tmp_path, "wan", False)
    assert router.event("interface.down", "wan") == []
    netifd(tmp_path, "wan", True, 2, "eth0.2")
    assert signals(router.event("interface.update", "wan")) == ["USR2"]
    netifd(tmp_path, "wan", True, 30, "eth0.2")
    assert router.event("interface.update", "wan") == []
    # A down and up merged into one run (procd delays and merges): the uptime went back.
    netifd(tmp_path, "wan", True, 1, "eth0.2")
    assert signals(router.event("interface.update", "wan")) == ["USR2"]


@pytest.mark.parametrize("shell", SHELLS)
def test_a_pppoe_link_that_drops_keeps_its_device(shell: str, tmp_path: Path) -> None:
    netifd(tmp_path, "wan", True, 100, "pppoe-wan")
    uci = BINDING + "\toption interface 'wan'\n"
    router = Router(shell, tmp_path, uci)
    assert parse(Run(0, "", "", [], tmp_path, [])).bindings[0].interface == "pppoe-wan"
    netifd(tmp_path, "wan", False)  # while down, netifd shows only the Ethernet device
    trace = router.event("interface.down", "wan")
    assert trace == []
    assert parse(Run(0, "", "", [], tmp_path, [])).bindings[0].interface == "pppoe-wan"
    netifd(tmp_path, "wan", True, 1, "pppoe-wan")
    trace = router.event("interface.update", "wan")
    assert signals(trace) == ["USR2"] and "start" not in trace


@pytest.mark.parametrize("shell", SHELLS)
def test_a_new_device_while_up_reloads(shell: str, tmp_path: Path) -> None:
    netifd(tmp_path, "wan", True, 100, "eth0.2")
    uci = BINDING + "\toption interface 'wan'\n"
    router = Router(shell, tmp_path, uci)
    netifd(tmp_path, "wan", True, 150, "eth0.3")
    trace = router.event("interface.update", "wan")
    assert "start" in trace and signals(trace) == ["HUP"]
    assert parse(Run(0, "", "", [], tmp_path, [])).bindings[0].interface == "eth0.3"


@pytest.mark.parametrize("shell", SHELLS)
def test_the_first_event_after_start_compares_with_the_state_at_start(
    shell: str, tmp_path: Path
) -> None:
    netifd(tmp_path, "wan", False)  # at start wan is down: the binding gets its physical device
    router = Router(shell, tmp_path, BINDING + "\toption interface 'wan'\n")
    assert parse(Run(0, "", "", [], tmp_path, [])).bindings[0].interface == "eth0"
    netifd(tmp_path, "wan", True, 3, "eth0.2")
    assert signals(router.event("interface.update", "wan")) == ["HUP"]  # re-rendered, reloaded
    assert parse(Run(0, "", "", [], tmp_path, [])).bindings[0].interface == "eth0.2"
    netifd(tmp_path, "wan", True, 40, "eth0.2")
    assert router.event("interface.update", "wan") == []


@pytest.mark.parametrize("shell", SHELLS)
def test_reload_sends_sighup_to_a_running_agent(shell: str, tmp_path: Path) -> None:
    run_init(shell, tmp_path, BINDING, "start_service")
    run = run_init(shell, tmp_path, BINDING.replace("5062", "5070"), "reload_service", running=True)
    assert run.returncode == 0, run.stderr
    assert run.trace[0] == "start"
    assert run.trace[-1] == "procd_send_signal nat-keepalive * HUP"
    assert "source_port: 5070" in run.text()
    assert not (run.conf.parent / "config.yaml.new").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_reload_with_bad_config_leaves_the_agent_alone(shell: str, tmp_path: Path) -> None:
    run_init(shell, tmp_path, BINDING, "start_service")
    before = (tmp_path / "var" / "etc" / "nat-keepalive" / "config.yaml").read_text()
    run = run_init(
        shell, tmp_path, BINDING + "\toption interval 'abc'\n", "reload_service", running=True
    )
    assert run.returncode == 1
    assert not [line for line in run.trace if line == "start" or line.startswith("procd_")]
    assert run.text() == before


@pytest.mark.parametrize("shell", SHELLS)
def test_reload_to_disabled_stops_without_signal(shell: str, tmp_path: Path) -> None:
    run_init(shell, tmp_path, BINDING, "start_service")
    run = run_init(
        shell,
        tmp_path,
        BINDING.replace("'5062'", "'5062'\n\toption enabled '0'"),
        "reload_service",
        running=True,
    )
    assert run.returncode == 0, run.stderr
    assert "start" in run.trace
    assert not [
        line for line in run.trace if line.startswith(("procd_open_instance", "procd_send_signal"))
    ]


@pytest.mark.parametrize("shell", SHELLS)
def test_reload_when_run_as_changes_lets_procd_restart(shell: str, tmp_path: Path) -> None:
    run_init(shell, tmp_path, BINDING, "start_service")
    run = run_init(shell, tmp_path, BINDING.replace("5062", "506"), "reload_service", running=True)
    assert run.returncode == 0, run.stderr
    assert "procd_open_instance " in run.trace  # a changed instance: procd restarts it
    assert not [line for line in run.trace if line.startswith("procd_send_signal")]


@pytest.mark.parametrize("shell", SHELLS)
def test_reprobe_sends_sigusr2(shell: str, tmp_path: Path) -> None:
    uci = BINDING + "\toption interface 'wan'\n"
    run_init(shell, tmp_path, uci, "start_service")
    run = run_init(shell, tmp_path, uci, "reprobe", running=True)
    assert run.returncode == 0, run.stderr
    assert run.trace == ["procd_send_signal nat-keepalive * USR2"]
    assert not (run.conf.parent / "config.yaml.new").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_reprobe_with_a_new_device_reloads(shell: str, tmp_path: Path) -> None:
    uci = BINDING + "\toption interface 'wan'\n"
    run_init(shell, tmp_path, uci, "start_service")
    run = run_init(shell, tmp_path, uci, "reprobe", running=True, wan_device="pppoe-wan")
    assert run.returncode == 0, run.stderr
    assert "start" in run.trace
    assert run.trace[-1] == "procd_send_signal nat-keepalive * HUP"
    assert parse(run).bindings[0].interface == "pppoe-wan"


def test_uci_settings_match_the_agents_setting_keys(tmp_path: Path) -> None:
    from natkeepalive.config.loader import SETTING_KEYS

    run = run_init("dash", tmp_path, None, "nk_with_settings_spec echo")
    names = [spec.split(":")[0] for spec in run.stdout.split()]
    assert sorted(names) == sorted(SETTING_KEYS)


def test_the_emulation_refuses_datatypes_it_does_not_know(tmp_path: Path) -> None:
    run = run_init(
        "dash",
        tmp_path,
        BINDING,
        "uci_load_validate nat-keepalive binding provider '' 'server:macaddr'; echo rc=$?",
    )
    assert "rc=0" not in run.stdout
    assert "datatype 'macaddr' is not emulated" in run.stderr


def test_busybox_mode_really_uses_busybox(tmp_path: Path) -> None:
    _argv, path = shell_command("busybox", tmp_path)
    awk = shutil.which("awk", path=path)
    assert awk and os.path.realpath(awk) == os.path.realpath(require_tool("busybox"))


# --- hook events -------------------------------------------------------------------------------


def test_init_scripts_event_list_is_the_agents() -> None:
    from natkeepalive.events import ALL_EVENTS

    run = subprocess.run(
        [require_tool("dash"), "-c", f'extra_command() {{ :; }}; . "{INIT}"; echo $NK_EVENTS'],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.stdout.split() == list(ALL_EVENTS)


@pytest.mark.parametrize("shell", SHELLS)
def test_unknown_hook_event_is_rejected_before_the_agent_sees_it(
    shell: str, tmp_path: Path
) -> None:
    uci = (
        "config agent 'main'\n\tlist hook_event 'binding-changed'\n"
        "\tlist hook_event 'binding-chnged'\n\n" + BINDING
    )
    run = render(shell, tmp_path, uci)
    assert run.returncode == 1
    assert any(
        "nat-keepalive.main.hook_event='binding-chnged': not an event of the agent" in line
        for line in errors(run)
    ), run.stderr
    assert not run.conf.exists()
    run = render(shell, tmp_path, uci.replace("chnged", "changed"))
    assert run.returncode == 0, run.stderr
    assert parse(run).hooks.events == ("binding-changed",)


# --- postinst / postrm -------------------------------------------------------------------------


def package_script(kind: str) -> str:
    """Package/nat-keepalive/KIND from the Makefile, as the build writes it ($$ -> $)."""
    found = re.search(
        rf"^define Package/nat-keepalive/{kind}\n(.*?)^endef", makefile(), re.S | re.M
    )
    assert found, kind
    return found.group(1).replace("$$", "$")


@pytest.mark.parametrize("kind", ["postinst", "postrm"])
@pytest.mark.parametrize(
    ("instroot", "ubusd", "signalled"),
    [("", "812", ["-HUP 812"]), ("", "", []), ("/build/root", "812", [])],
)
def test_package_scripts_make_a_running_ubusd_reread_its_acls(
    kind: str, instroot: str, ubusd: str, signalled: list[str], tmp_path: Path
) -> None:
    script = tmp_path / kind
    script.write_text(package_script(kind), encoding="utf-8")
    kills = tmp_path / "kills"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pidof").write_text(
        f'#!/bin/sh\n[ "$1" = ubusd ] && [ -n "{ubusd}" ] && echo {ubusd}\n', encoding="utf-8"
    )
    (fake / "kill").write_text(f'#!/bin/sh\necho "$*" >>"{kills}"\n', encoding="utf-8")
    for tool in ("pidof", "kill"):
        (fake / tool).chmod(0o755)
    # `kill` is a shell builtin: the script's own `kill` is checked by calling it through env.
    text = script.read_text(encoding="utf-8").replace("kill -HUP", "env kill -HUP")
    script.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [require_tool("dash"), str(script), "configure"],
        env={"PATH": f"{fake}:/usr/bin:/bin", "IPKG_INSTROOT": instroot},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert (kills.read_text().splitlines() if kills.exists() else []) == signalled


def test_package_scripts_pass_shellcheck(tmp_path: Path) -> None:
    for kind in ("postinst", "postrm"):
        path = tmp_path / kind
        path.write_text(package_script(kind), encoding="utf-8")
        done = subprocess.run(
            [require_tool("shellcheck"), "-s", "sh", "-e", "SC2086", str(path)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout
