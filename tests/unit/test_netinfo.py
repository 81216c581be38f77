"""Interface addresses, source address and default route: netifaces and the stdlib fallback agree.

The namespace test builds its own network namespace with dummy interfaces (root needed).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from natkeepalive import netinfo
from tests.support.tools import require_root, require_tool

BOTH = pytest.mark.parametrize("use_netifaces", [True, False], ids=["netifaces", "fallback"])


@pytest.fixture(autouse=True)
def _needs_netifaces_for_true(request: pytest.FixtureRequest) -> None:
    params = getattr(request.node, "callspec", None)
    if params and params.params.get("use_netifaces"):
        _require_netifaces()


def _require_netifaces() -> None:
    """The test extra installs it (netifaces-plus): missing, it fails under CI=true."""
    if not netinfo.have_netifaces():
        if os.environ.get("CI") == "true":
            pytest.fail("netifaces is not installed (pip install -e '.[test]' installs it)")
        pytest.skip("netifaces is not installed")


def _split(addresses: list[str]) -> tuple[list[str], set[str]]:
    """(IPv4 in order, IPv6 as a set): the kernel lists IPv6 in no particular order."""
    v4 = [a for a in addresses if ":" not in a]
    assert addresses[: len(v4)] == v4, "IPv4 addresses come first"
    return v4, {a for a in addresses if ":" in a}


@BOTH
def test_loopback(use_netifaces: bool) -> None:
    v4, v6 = _split(netinfo.interface_addresses("lo", use_netifaces))
    assert v4 == ["127.0.0.1"]
    if socket.has_ipv6 and os.path.exists("/proc/net/if_inet6"):
        assert v6 == {"::1"}


def test_both_paths_agree_on_every_interface_here() -> None:
    _require_netifaces()
    names = netinfo.interface_names(False)
    assert set(names) == set(netinfo.interface_names(True))
    for name in names:
        with_module = _split(netinfo.interface_addresses(name, True))
        fallback = _split(netinfo.interface_addresses(name, False))
        assert fallback[0] == with_module[0][:1]  # the ioctl knows the primary IPv4 address only
        assert fallback[1] == with_module[1]


@BOTH
@pytest.mark.parametrize("name", ["nk-no-such-if", "", "x" * 16, "a/b", "lo\0", "lo:"])
def test_unknown_interface_is_empty(use_netifaces: bool, name: str) -> None:
    assert netinfo.interface_addresses(name, use_netifaces) == []


def test_forcing_netifaces_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netinfo, "_netifaces", lambda: None)
    with pytest.raises(ImportError):
        netinfo.interface_addresses("lo", True)
    assert netinfo.interface_addresses("lo")[:1] == ["127.0.0.1"]  # auto: the fallback
    assert "lo" in netinfo.interface_names()


def test_source_address() -> None:
    assert netinfo.source_address_for("127.0.0.1", 5060) == "127.0.0.1"
    assert netinfo.source_address_for("127.0.0.1", 5060, socket.AF_INET6) is None
    if os.path.exists("/proc/net/if_inet6"):
        assert netinfo.source_address_for("::1", 5060) == "::1"


def test_if_inet6_parsing(tmp_path: Path) -> None:
    table = tmp_path / "if_inet6"
    table.write_text(
        "00000000000000000000000000000001 01 80 10 80       lo\n"
        "fe80000000000000000000fffe000001 02 40 20 80     eth0\n"
        "20010db8000000000000000000000002 02 40 00 00     eth0\n"
        "fd000000000000000000000000000002 02 40 00 00     eth0\n"
        "garbage\n"
        "zz0000000000000000000000000000zz 02 40 00 00     eth0\n"
        "20010db8000000000000000000000002 03 40 00 00     eth00\n"
    )
    assert netinfo._ipv6_proc("eth0", str(table)) == ["2001:db8::2", "fd00::2"]
    assert netinfo._ipv6_proc("lo", str(table)) == ["::1"]
    assert netinfo._ipv6_proc("eth0", str(tmp_path / "missing")) == []


ROUTE_HEADER = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
)
V6_REJECT = (
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
)
V6_DEFAULT = (
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "fd000000000000000000000000000001 00000400 00000002 00000000 00000003     wan6\n"
)


@pytest.mark.parametrize(
    ("route", "ipv6_route", "expected"),
    [
        (
            ROUTE_HEADER + "eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
            "wwan0\t00000000\t010200C0\t0003\t0\t0\t20\t00000000\t0\t0\t0\n"
            "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
            V6_DEFAULT,
            "wwan0",
        ),
        (
            ROUTE_HEADER + "eth1\t00000000\t010200C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n"  # not up
            "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
            V6_REJECT + V6_DEFAULT,
            "wan6",
        ),
        (ROUTE_HEADER + "short line\n", V6_REJECT, None),
        (None, None, None),
    ],
)
def test_default_interface(
    tmp_path: Path, route: str | None, ipv6_route: str | None, expected: str | None
) -> None:
    route_path, v6_path = tmp_path / "route", tmp_path / "ipv6_route"
    if route is not None:
        route_path.write_text(route)
    if ipv6_route is not None:
        v6_path.write_text(ipv6_route)
    assert netinfo.default_interface(str(route_path), str(v6_path)) == expected


def test_default_interface_here() -> None:
    found = netinfo.default_interface()
    assert found is None or found in netinfo.interface_names(False)


# --- inside a network namespace this test creates ----------------------------------------------

PROBE = """
import json, socket
from natkeepalive import netinfo
out = {}
for use in (True, False) if netinfo.have_netifaces() else (False,):
    key = "netifaces" if use else "fallback"
    names = ("dum0", "dum1", "nk-long-name-15", "nope")
    out[key] = {name: netinfo.interface_addresses(name, use) for name in names}
    out[key + "_names"] = sorted(netinfo.interface_names(use))
out["default"] = netinfo.default_interface()
out["source4"] = netinfo.source_address_for("10.77.0.9", 5060)
out["source6"] = netinfo.source_address_for("2001:db8:77::9", 5060, socket.AF_INET6)
out["raw6"] = open("/proc/net/if_inet6").read()
print(json.dumps(out))
"""


@pytest.fixture
def namespace() -> Iterator[str]:
    require_root()
    ip = require_tool("ip")
    name = f"nk-test-{os.getpid()}"

    def run(*args: str, check: bool = True) -> bool:
        done = subprocess.run([ip, "-n", name, *args], check=check, capture_output=True)
        return done.returncode == 0

    def add_pair(first: str, second: str) -> None:
        # dummy links need the dummy kernel module; a veth pair inside the namespace is the same
        # for this purpose and works where the module is missing
        if run("link", "add", first, "type", "dummy", check=False):
            run("link", "add", second, "type", "dummy")
        else:
            run("link", "add", first, "type", "veth", "peer", "name", second)

    subprocess.run([ip, "netns", "add", name], check=True, capture_output=True)
    try:
        run("link", "set", "lo", "up")
        add_pair("dum0", "dum1")
        add_pair("nk-long-name-15", "nkpeer")
        run("addr", "add", "10.77.0.1/24", "dev", "dum0")
        run("addr", "add", "10.77.0.2/24", "dev", "dum0")  # a secondary address
        run("addr", "add", "2001:db8:77::1/64", "dev", "dum0", "nodad")
        run("addr", "add", "fd77::1/64", "dev", "dum0", "nodad")
        run("addr", "add", "10.78.0.1/24", "dev", "nk-long-name-15")
        for link in ("dum0", "dum1", "nk-long-name-15", "nkpeer"):
            run("link", "set", link, "up")
        run("route", "add", "default", "via", "10.77.0.254", "dev", "dum0")
        yield name
    finally:
        subprocess.run([ip, "netns", "del", name], check=False, capture_output=True)


def test_namespace_both_paths(namespace: str) -> None:
    result = subprocess.run(
        [require_tool("ip"), "netns", "exec", namespace, sys.executable, "-c", PROBE],
        check=True,
        capture_output=True,
        text=True,
    )
    out = json.loads(result.stdout)
    assert "fe80" in out["raw6"]  # a link-local address existed, so the filter had work to do
    fallback = out["fallback"]
    # the ioctl sees the primary IPv4 address only; netifaces lists the secondary one after it
    assert _split(fallback["dum0"]) == (["10.77.0.1"], {"2001:db8:77::1", "fd77::1"})
    assert out["fallback_names"] == ["dum0", "dum1", "lo", "nk-long-name-15", "nkpeer"]
    paths = [fallback]
    if "netifaces" in out:
        module = out["netifaces"]
        assert _split(module["dum0"]) == (["10.77.0.1", "10.77.0.2"], {"2001:db8:77::1", "fd77::1"})
        assert out["netifaces_names"] == out["fallback_names"]
        paths.append(module)
    elif os.environ.get("CI") == "true":
        pytest.fail("netifaces is not installed: only the fallback was compared")
    for found in paths:
        assert found["dum1"] == []
        assert found["nope"] == []
        assert found["nk-long-name-15"] == ["10.78.0.1"]
    assert out["default"] == "dum0"
    assert out["source4"] == "10.77.0.1"
    assert out["source6"] == "2001:db8:77::1"  # longest matching prefix wins over fd77::1
