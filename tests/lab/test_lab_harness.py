"""The lab proves itself: a hand-written UDP client in `lan` against real NAT and real SIP servers.

Conntrack facts these tests rely on (Linux nf_conntrack_proto_udp): a UDP flow gets the initial
timeout (nf_conntrack_udp_timeout) while it is unreplied and also after its first reply; a packet
that passes more than 2 s after the flow's first packet, once a reply has been seen, moves it to
the stream timeout and marks it ASSURED. Packets in either direction refresh the timeout.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable

import pytest

from tests.lab import netlab
from tests.lab.netlab import Lab, UdpShell
from tests.support.tools import require_tool

pytestmark = pytest.mark.lab

INITIAL, STREAM = 3, 5
PUBLIC_2 = "203.0.113.2"
LAN_2 = "192.168.77.3"


def _options(lab: Lab, port: int, **kw: object) -> bytes:
    kw.setdefault("via_host", lab.lan_ip)
    return netlab.options_request(via_port=port, **kw)  # type: ignore[arg-type]


def _learn(
    lab: Lab, shell: UdpShell, name: str, port: int, server_port: int = 5060
) -> dict[str, str | None]:
    response = shell.exchange(name, _options(lab, port, server_port=server_port), port=server_port)
    assert response is not None, f"no answer on {name}"
    assert netlab.status_code(response) == 200
    return netlab.top_via_params(response)


def _entry(lab: Lab, sport: int, dport: int = 5060) -> str | None:
    for line in lab.udp_entries():
        if f"sport={sport} dport={dport} " in line:
            return line
    return None


def _seconds_left(entry: str) -> int:
    return int(entry.split()[2])


def _wait_expired(lab: Lab, sport: int, limit: float) -> float:
    """Seconds until the flow from `sport` is gone from the router's conntrack table."""
    start = time.monotonic()
    while _entry(lab, sport) is not None:
        assert time.monotonic() - start < limit, f"flow from {sport} still alive after {limit}s"
        time.sleep(0.1)
    return time.monotonic() - start


def _inbound_probe(lab: Lab, shell: UdpShell, via_port: int, public: str) -> bytes:
    """From socket `b`: an OPTIONS whose sent-by is the learned public mapping, without rport."""
    request = netlab.options_request(via_host=public, via_port=via_port, rport=False)
    assert shell.send("b", request) is None
    return request


def _branch(message: bytes) -> str | None:
    return netlab.top_via_params(message).get("branch")


def _host_udp_timeouts() -> list[str]:
    values = []
    for key in (netlab.UDP_TIMEOUT, netlab.UDP_TIMEOUT_STREAM):
        with open("/proc/sys/" + key.replace(".", "/")) as handle:
            values.append(handle.read().strip())
    return values


def test_topology_nat_rule_and_per_namespace_sysctls(lab: Lab) -> None:
    for role in netlab.ROLES:
        assert lab.ns[role] in netlab.list_namespaces()
    assert f"inet {netlab.LAN_IP}/24" in lab.run("lan", ["ip", "addr"]).stdout
    assert "default via 192.168.77.1" in lab.run("lan", ["ip", "route"]).stdout
    assert lab.sysctl("router", "net.ipv4.ip_forward") == "1"
    source = lab.python(
        "lan",
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.connect((sys.argv[1], 5060))\n"
        "print(s.getsockname()[0])\n",
        netlab.SERVER_IP,
    )
    assert source.returncode == 0 and source.stdout.strip() == netlab.LAN_IP
    assert 'oifname "rwan0" masquerade' in lab.nat_ruleset()
    lab.set_nat(random=True)
    assert "masquerade random" in lab.nat_ruleset()
    assert lab.nat_ruleset().count("masquerade") == 1
    firewall = lab.run("router", ["nft", "list", "table", "inet", "filter"]).stdout
    assert 'iifname "rwan0" drop' in firewall

    host_before = _host_udp_timeouts()
    lan_before = lab.sysctl("lan", netlab.UDP_TIMEOUT)
    lab.set_udp_timeouts(INITIAL, STREAM)
    assert lab.udp_timeouts() == (INITIAL, STREAM)
    assert _host_udp_timeouts() == host_before
    assert lab.sysctl("lan", netlab.UDP_TIMEOUT) == lan_before


def test_kamailio_adds_received_and_rport(kamailio_lab: Lab) -> None:
    lab = kamailio_lab
    shell = lab.udp_shell()
    port = shell.open("a")
    params = _learn(lab, shell, "a", port)
    assert params["received"] == netlab.ROUTER_WAN_IP
    assert params["rport"] is not None and params["rport"].isdigit()
    entry = _entry(lab, port)
    assert entry is not None
    assert f"dst={netlab.ROUTER_WAN_IP} sport=5060 dport={params['rport']} " in entry
    print(f"local port {port} -> public {params['received']}:{params['rport']}")


def test_stream_timeout_needs_a_packet_more_than_2s_after_the_first(kamailio_lab: Lab) -> None:
    lab = kamailio_lab
    lab.set_udp_timeouts(INITIAL, STREAM)
    shell = lab.udp_shell()
    port = shell.open("a")
    _learn(lab, shell, "a", port)
    _learn(lab, shell, "a", port)  # replied, but within 2 s: still the initial timeout
    entry = _entry(lab, port)
    assert entry is not None and "ASSURED" not in entry and _seconds_left(entry) <= INITIAL
    time.sleep(2.2)
    _learn(lab, shell, "a", port)
    entry = _entry(lab, port)
    assert entry is not None and "ASSURED" in entry
    assert INITIAL < _seconds_left(entry) <= STREAM


def test_port_preserving_nat_hides_expiry_random_nat_shows_it(
    lab: Lab, make_lab: Callable[[], Lab]
) -> None:
    kamailio = require_tool("kamailio")
    random_lab = make_lab()  # a second lab at the same time: names must not collide
    assert set(lab.ns.values()).isdisjoint(random_lab.ns.values())
    random_lab.set_nat(random=True)
    shells, ports, first = {}, {}, {}
    for each in (lab, random_lab):
        each.set_udp_timeouts(INITIAL, STREAM)
        each.start_kamailio(binary=kamailio)
        shells[each.id] = each.udp_shell()
        ports[each.id] = shells[each.id].open("a")
        first[each.id] = _learn(each, shells[each.id], "a", ports[each.id])
    idle_start = time.monotonic()
    for each in (lab, random_lab):
        _wait_expired(each, ports[each.id], INITIAL + 2)
    idle = time.monotonic() - idle_start
    second = {
        each.id: _learn(each, shells[each.id], "a", ports[each.id]) for each in (lab, random_lab)
    }

    assert first[lab.id]["rport"] == second[lab.id]["rport"] == str(ports[lab.id])
    assert first[random_lab.id]["rport"] != second[random_lab.id]["rport"]
    print(
        f"both flows gone after {idle:.1f} s idle; "
        f"preserving: {ports[lab.id]} -> {first[lab.id]['rport']} -> {second[lab.id]['rport']}; "
        f"random: {ports[random_lab.id]} -> {first[random_lab.id]['rport']} -> "
        f"{second[random_lab.id]['rport']}"
    )


def test_inbound_check_answers_into_the_binding_until_it_expires(kamailio_lab: Lab) -> None:
    lab = kamailio_lab
    lab.set_udp_timeouts(INITIAL, STREAM)
    shell = lab.udp_shell()
    port_a = shell.open("a")
    shell.open("b")
    public_port = int(_learn(lab, shell, "a", port_a)["rport"] or 0)

    time.sleep(1.2)
    before = _entry(lab, port_a)
    assert before is not None
    probe = _inbound_probe(lab, shell, public_port, netlab.ROUTER_WAN_IP)
    arrived = shell.recv(1.0)
    arrived += shell.recv(0.3, wait_all=True)
    assert [(sock, _branch(data)) for sock, data, _ in arrived] == [("a", _branch(probe))]
    answer_via = netlab.top_via_params(arrived[0][1])
    assert "received" not in answer_via and "rport" not in answer_via
    after = _entry(lab, port_a)
    assert after is not None
    # The answer passing through the NAT refreshed the binding like any packet of the flow.
    assert _seconds_left(after) > _seconds_left(before)

    expired_after = _wait_expired(lab, port_a, STREAM + 2)
    _inbound_probe(lab, shell, public_port, netlab.ROUTER_WAN_IP)
    assert shell.recv(1.0, wait_all=True) == []
    print(
        f"left before/after probe {_seconds_left(before)}/{_seconds_left(after)} s; "
        f"expired {expired_after:.1f} s after the probe"
    )


def test_sipp_answers_without_received_or_rport(sipp_lab: Lab) -> None:
    lab = sipp_lab
    shell = lab.udp_shell()
    port_a = shell.open("a")
    port_b = shell.open("b")
    params = _learn(lab, shell, "a", port_a, server_port=5070)
    assert "received" not in params
    assert "rport" in params and params["rport"] is None  # our bare rport echoed back
    # A reused Call-ID from another source is answered at that source (a call per request).
    for name, port in (("a", port_a), ("b", port_b)):
        request = _options(lab, port, server_port=5070, call_id="reused@lab")
        response = shell.exchange(name, request, port=5070)
        assert response is not None and _branch(response) == _branch(request)
    # It answers the inbound check at the request's source: the check is "unsupported" there.
    probe = netlab.options_request(
        via_host=netlab.ROUTER_WAN_IP, via_port=port_a, rport=False, server_port=5070
    )
    assert shell.send("b", probe, port=5070) is None
    arrived = shell.recv(1.0) + shell.recv(0.3, wait_all=True)
    assert [(sock, _branch(data)) for sock, data, _ in arrived] == [("b", _branch(probe))]


def test_readdress_router_changes_received(kamailio_lab: Lab) -> None:
    lab = kamailio_lab
    shell = lab.udp_shell()
    port = shell.open("a")
    assert _learn(lab, shell, "a", port)["received"] == netlab.ROUTER_WAN_IP
    lab.readdress_router(PUBLIC_2)
    assert lab.udp_entries() == []
    params = _learn(lab, shell, "a", port)
    assert params["received"] == PUBLIC_2
    assert params["rport"] == str(port)
    entry = _entry(lab, port)
    assert entry is not None and f"dst={PUBLIC_2} " in entry


def test_flush_conntrack_is_a_nat_reboot(kamailio_lab: Lab) -> None:
    lab = kamailio_lab
    shell = lab.udp_shell()
    port_a = shell.open("a")
    shell.open("b")
    public_port = int(_learn(lab, shell, "a", port_a)["rport"] or 0)
    probe = _inbound_probe(lab, shell, public_port, netlab.ROUTER_WAN_IP)
    assert [(s, _branch(d)) for s, d, _ in shell.recv(1.0)] == [("a", _branch(probe))]

    lab.flush_conntrack()
    assert lab.udp_entries() == []
    # traffic stops only while the table is flushed
    assert netlab.REBOOT_TABLE not in lab.run("router", ["nft", "list", "tables"]).stdout
    _inbound_probe(lab, shell, public_port, netlab.ROUTER_WAN_IP)
    assert shell.recv(1.0, wait_all=True) == []
    # The next keepalive gets a fresh binding on the same public port: the reboot is invisible
    # in rport and shows only through the inbound check above.
    assert _learn(lab, shell, "a", port_a)["rport"] == str(public_port)
    probe = _inbound_probe(lab, shell, public_port, netlab.ROUTER_WAN_IP)
    assert [(s, _branch(d)) for s, d, _ in shell.recv(1.0)] == [("a", _branch(probe))]


def test_without_wan_firewall_a_failed_inbound_check_moves_the_port(kamailio_lab: Lab) -> None:
    lab = kamailio_lab
    lab.set_wan_firewall("off")
    shell = lab.udp_shell()
    port_a = shell.open("a")
    shell.open("b")
    public_port = int(_learn(lab, shell, "a", port_a)["rport"] or 0)
    lab.flush_conntrack()
    _inbound_probe(lab, shell, public_port, netlab.ROUTER_WAN_IP)
    assert shell.recv(0.5, wait_all=True) == []
    # The unanswerable answer was accepted by the router itself and now holds the public port.
    stray = _entry(lab, 5060, public_port)
    assert stray is not None and f"src={netlab.SERVER_IP} dst={netlab.ROUTER_WAN_IP} " in stray
    assert _learn(lab, shell, "a", port_a)["rport"] != str(public_port)


def test_change_lan_address(kamailio_lab: Lab) -> None:
    lab = kamailio_lab
    shell = lab.udp_shell()
    old_port = shell.open("old", netlab.LAN_IP)
    _learn(lab, shell, "old", old_port)
    lab.change_lan_address(LAN_2)
    assert lab.lan_ip == LAN_2
    addresses = lab.run("lan", ["ip", "-4", "addr", "show", "dev", netlab.LAN_IF]).stdout
    assert f"inet {LAN_2}/24" in addresses and netlab.LAN_IP not in addresses
    assert "default via 192.168.77.1" in lab.run("lan", ["ip", "route"]).stdout
    error = shell.send("old", _options(lab, old_port))
    assert error is not None  # a socket bound to the vanished address cannot send any more
    new_port = shell.open("new", LAN_2)
    params = _learn(lab, shell, "new", new_port)
    assert params["received"] == netlab.ROUTER_WAN_IP and params["rport"] is not None
    entry = _entry(lab, new_port)
    assert entry is not None and f"src={LAN_2} " in entry
    print(f"send from the old address: {error}")


def test_close_kills_processes_and_removes_namespaces(make_lab: Callable[[], Lab]) -> None:
    require_tool("kamailio")
    lab = make_lab()
    server = lab.start_kamailio()
    shell_pid = lab.popen("lan", ["sleep", "60"]).pid
    names = list(lab.ns.values())
    tmpdir = lab.tmpdir
    lab.close()
    assert server.poll() is not None
    assert not os.path.exists(f"/proc/{shell_pid}") or _is_zombie(shell_pid)
    assert set(names).isdisjoint(netlab.list_namespaces())
    assert not os.path.exists(tmpdir)


def _is_zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_cleanup_stale_removes_only_namespaces_of_dead_runs(lab: Lab) -> None:
    with open("/proc/sys/kernel/pid_max") as handle:
        dead_pid = int(handle.read()) + 1  # no process can have it
    stale = f"{netlab.PREFIX}{dead_pid:x}beef-wan"
    stale_dir = os.path.join(tempfile.gettempdir(), f"{netlab.PREFIX}{dead_pid:x}beef-abcd1234")
    os.mkdir(stale_dir)
    netlab._host_run([netlab._ip(), "netns", "add", stale])
    try:
        removed = netlab.cleanup_stale()
        assert stale in removed
        assert stale not in netlab.list_namespaces()
        assert not os.path.exists(stale_dir)
        # the live lab (this process) is untouched
        assert set(lab.ns.values()) <= set(netlab.list_namespaces())
        assert os.path.isdir(lab.tmpdir)
    finally:
        if stale in netlab.list_namespaces():
            netlab._host_run([netlab._ip(), "netns", "del", stale], check=False)
        shutil.rmtree(stale_dir, ignore_errors=True)
