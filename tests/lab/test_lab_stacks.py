"""The agent against real SIP stacks as shipped, behind a real Linux NAT, with three faults.

One timed run per (stack, NAT mode), each in its own lab (tests/lab/stacks.py starts the
stacks), all runs at once in threads: the faults come one after the other in every run.

    learn     the agent starts; its first keepalive is answered (and the 3-s promotion one)
    reboot    `conntrack -F` on the router (a NAT reboot)
    timeout   the router's UDP timeouts shrink to NAT_SHORT (4 s) under a 6-s interval, then
              grow back once the agent has reported the expiry (or after OBSERVE seconds)
    outage    the server is stopped until the agent reports `unreachable`, then started again

The agent runs with the default configuration except the timings (interval 6 s, jitter 0,
timeout 1 s, retry_interval 1 s): in particular its default inbound-check cadence and
`check: auto`. A cell `STACK+stun` runs coturn beside the stack, with two listening addresses
and RFC 5780 on (tests/lab/stun_lab.py), and gives the agent `stun_server`; `STACK+responder`
does the same with the project's own `nat-keepalive responder` (one address). `kamailio-relay`
is Debian's stock kamailio.cfg with the relay recipe of docs/servers.md (tests/lab/relay_lab.py).

EXPECTED says per cell what the agent must log in each fault, and what it must say in its status
when it cannot prove an expiry. What no cell may ever show: a public address other than the
router's, an `unreachable` while the server is up, a public port other than the NAT's mapping.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

from tests.lab import netlab, stacks
from tests.lab.netlab import Lab
from tests.lab.relay_lab import start_kamailio_recipe
from tests.lab.stun_lab import start_coturn, start_responder
from tests.support.agentproc import Agent
from tests.support.tools import find_tool, require_root, require_tool, unavailable

pytestmark = pytest.mark.lab

SOURCE_PORT = 5062
INTERVAL = 6
SETTINGS = {
    "interval": INTERVAL,
    "jitter": 0,
    "timeout": 1.0,
    "retry_interval": 1,
    "fail_threshold": 2,
}
NAT_LONG = (20, 20)  # well above the interval: kept alive
NAT_SHORT = (4, 4)  # below it: every idle cycle expires
# How long a fault is watched when nothing is to be reported: two full cycles and some slack.
OBSERVE = 2 * INTERVAL + 3
# When something is to be reported: within two cycles (one to notice, one for a check's answer).
REPORT_WITHIN = 2 * INTERVAL + 4
WORKERS = int(os.environ.get("NK_STACK_WORKERS", "11"))  # 25 cells and coturn: three waves

Fields = dict[str, Optional[str]]

# --- what each cell must show ---------------------------------------------------------------------
# reboot / timeout: the event that must follow the fault ("binding-changed", "binding-expired"),
# or None when the agent cannot prove it with this server: then `detection` is the status's
# expiry_detection value that says why. `public` is False where the server sends no `received`.
# `core`: expected-after-core: the events this cell asserts for the reboot and the timeout (a
# reported expiry, or silence with a public address that is not invented) come only with the
# agent's fixes for expiry on real servers (default check cadence, bare rport, no public address
# without `received`). The `expiry_detection` field is from the same fixes, for every cell.


@dataclass(frozen=True)
class Expect:
    reboot: str | None
    timeout: str | None
    detection: str | None = None
    public: bool = True
    core: bool = False
    detected: str | None = None  # binding-expired's `detected` in the reboot and timeout


CHANGED, EXPIRED = "binding-changed", "binding-expired"
PROVEN = "inbound-check"
STUN_PROVEN = "stun-check"
RELAY_PROVEN = "relay-check"
# check: auto tried the relayed check too, and had no stun_server to go on with
FORCED = "remap-only: server forces rport; server does not relay the check; no stun_server"
NO_RECEIVED = "unsupported: server sends no received and no rport value"
ALG = (
    f"unsupported: answers name the agent's own address {netlab.LAN_IP}"
    " (a SIP ALG on the router rewrites them); the public address is unknown"
)
EXPECTED: dict[tuple[str, str], Expect] = {
    ("kamailio-stock", "preserve"): Expect(None, None, FORCED, core=True),
    ("kamailio-stock", "random"): Expect(CHANGED, CHANGED, FORCED),
    ("kamailio-sentby", "preserve"): Expect(EXPIRED, EXPIRED, PROVEN, core=True),
    ("kamailio-sentby", "random"): Expect(CHANGED, CHANGED, PROVEN),
    ("ejabberd", "preserve"): Expect(None, None, FORCED, core=True),
    ("ejabberd", "random"): Expect(CHANGED, CHANGED, FORCED),
    ("baresip", "preserve"): Expect(EXPIRED, EXPIRED, PROVEN, core=True),
    ("baresip", "random"): Expect(CHANGED, CHANGED, PROVEN),
    ("linphone", "preserve"): Expect(EXPIRED, EXPIRED, PROVEN, core=True),
    ("linphone", "random"): Expect(CHANGED, CHANGED, PROVEN),
    ("sipp", "preserve"): Expect(None, None, NO_RECEIVED, public=False, core=True),
    ("sipp", "random"): Expect(None, None, NO_RECEIVED, public=False, core=True),
    ("node-sip", "preserve"): Expect(None, None, FORCED, core=True),
    ("node-sip", "random"): Expect(CHANGED, CHANGED, FORCED),
    ("perl-net-sip", "preserve"): Expect(None, None, FORCED, core=True),
    ("perl-net-sip", "random"): Expect(CHANGED, CHANGED, FORCED),
    # Debian's Kamailio forces rport and does not relay: an RFC 5780 STUN server proves it
    ("kamailio-stock+stun", "preserve"): Expect(
        EXPIRED, EXPIRED, STUN_PROVEN, core=True, detected=STUN_PROVEN
    ),
    ("kamailio-stock+stun", "random"): Expect(CHANGED, CHANGED, STUN_PROVEN, detected=STUN_PROVEN),
    ("kamailio-stock+responder", "preserve"): Expect(
        EXPIRED, EXPIRED, STUN_PROVEN, core=True, detected=STUN_PROVEN
    ),
    # forces rport too, but relays an OPTIONS for the sender's own public address
    ("kamailio-relay", "preserve"): Expect(
        EXPIRED, EXPIRED, RELAY_PROVEN, core=True, detected=RELAY_PROVEN
    ),
    ("kamailio-relay", "random"): Expect(CHANGED, CHANGED, RELAY_PROVEN, detected=RELAY_PROVEN),
    # the router's SIP ALG rewrites `received`/`rport` of every answer back to the lan address,
    # and forwards the check's answer to the sent-by port itself: nothing can be proven
    ("kamailio-stock+alg", "preserve"): Expect(None, None, ALG, public=False),
    ("kamailio-stock+alg", "random"): Expect(None, None, ALG, public=False),
    ("kamailio-sentby+alg", "preserve"): Expect(None, None, ALG, public=False),
    ("kamailio-sentby+alg", "random"): Expect(None, None, ALG, public=False),
}
CELLS = sorted(EXPECTED)
# A check the server would relay from its own address: an OPTIONS sent to the server from another
# local port, its Request-URI the binding's public address:port. As shipped, no stack relays it
# (it would reach the binding from the server's address, through any NAT): each answers it
# itself, to the sender, with this status.
RELAY: dict[str, str] = {
    "kamailio-stock": "403 to the sender",  # 403 Not relaying
    "kamailio-sentby": "200 to the sender",
    "ejabberd": "403 to the sender",
    "baresip": "404 to the sender",
    "linphone": "200 to the sender",
    "sipp": "200 to the sender",
    "node-sip": "200 to the sender",
    "perl-net-sip": "200 to the sender",
    "kamailio-relay": "relayed",  # the recipe: relayed to the sender's own address
}


# --- one timed run ------------------------------------------------------------------------------


class LabAgent(Agent):
    def __init__(self, lab: Lab, config: Path) -> None:
        ip = find_tool("ip") or "/usr/sbin/ip"
        super().__init__(
            config, Path(lab.tmpdir) / "status.json", prefix=(ip, "netns", "exec", lab.ns["lan"])
        )

    def after(self, since: float, name: str | None = None) -> list[tuple[float, str, Fields]]:
        return [
            (t, n, f)
            for _, t, n, f in self.timeline()
            if t >= since and (name is None or n == name)
        ]

    def wait_after(self, since: float, name: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.after(since, name):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.1)
        return False

    def read_status(self) -> dict[str, Any]:
        entry: dict[str, Any] = json.loads(self.status.read_text())["bindings"][0]
        return entry


@dataclass
class CellRun:
    stack: str
    nat: str
    marks: dict[str, float] = field(default_factory=dict)
    events: list[tuple[float, str, Fields]] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    mapping: tuple[str, int] | None = None
    relay: str | None = None
    error: str | None = None
    log: str = ""

    def during(self, phase: str, name: str | None = None) -> list[Fields]:
        order = ["learn", "reboot", "timeout", "outage", "end"]
        start = self.marks.get(phase, float("inf"))
        following = order[order.index(phase) + 1 :]
        end = min([self.marks[p] for p in following if p in self.marks] or [float("inf")])
        return [f for t, n, f in self.events if start <= t < end and (name is None or n == name)]

    def latency(self, phase: str, name: str) -> float | None:
        """Seconds from the fault to the first `name` after it, if any came within the phase."""
        start = self.marks[phase]
        found = [t for t, n, _ in self.events if n == name and t >= start]
        following = [
            self.marks[p]
            for p in ("reboot", "timeout", "outage", "end")
            if p in self.marks and self.marks[p] > start
        ]
        if found and (not following or found[0] < min(following)):
            return found[0] - start
        return None

    def names(self, phase: str) -> list[str]:
        order = ["learn", "reboot", "timeout", "outage", "end"]
        start = self.marks.get(phase, float("inf"))
        following = order[order.index(phase) + 1 :]
        end = min([self.marks[p] for p in following if p in self.marks] or [float("inf")])
        return [n for t, n, _ in self.events if start <= t < end and n != "probe-sent"]


def nat_mapping(lab: Lab, dport: int) -> tuple[str, int] | None:
    """The public address:port of the flow lan:SOURCE_PORT -> server:dport (conntrack's reply
    tuple)."""
    for line in lab.udp_entries():
        values: dict[str, list[str]] = {}
        for item in line.split():
            key, _, value = item.partition("=")
            values.setdefault(key, []).append(value)
        if (
            values.get("src", [""])[0] == lab.lan_ip
            and values.get("sport", [""])[0] == str(SOURCE_PORT)
            and values.get("dport", [""])[0] == str(dport)
        ):
            return values["dst"][1], int(values["dport"][1])
    return None


def relay_probe(lab: Lab, port: int) -> str:
    """Where the answer to a request for the binding's public address goes (see RELAY): sent
    before the agent starts, from a shell that holds the binding's port meanwhile."""
    shell = lab.udp_shell()
    try:
        shell.open("binding", port=SOURCE_PORT)
        shell.open("other")
        shell.exchange(
            "binding",
            netlab.options_request(via_host=lab.lan_ip, via_port=SOURCE_PORT, server_port=port),
        )
        public = nat_mapping(lab, port)
        if public is None:
            return "no binding"
        shell.send(
            "other",
            netlab.options_request(
                via_host=lab.lan_ip,
                via_port=SOURCE_PORT + 1,
                server=public[0],
                server_port=public[1],
            ),
            port=port,
        )
        got = shell.recv(2.0, wait_all=True)
        if any(sock == "binding" for sock, _, _ in got):
            return "relayed"
        codes = [netlab.status_code(data) for sock, data, _ in got if sock == "other"]
        return f"{codes[0]} to the sender" if codes else "nothing"
    finally:
        shell.close_socket("binding")
        shell.close_socket("other")


def write_config(lab: Lab, port: int, stun_server: str | None = None) -> Path:
    lines = ["log: {target: stderr, level: debug}", "defaults:"]
    lines += [f"  {key}: {json.dumps(value)}" for key, value in SETTINGS.items()]
    if stun_server is not None:
        lines.append(f"  stun_server: {stun_server}")
    lines += [
        "bindings:",
        "  - name: provider",
        f"    server: {netlab.SERVER_IP}:{port}",
        f"    source_port: {SOURCE_PORT}",
    ]
    path = Path(lab.tmpdir) / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cell(stack: str, nat: str) -> CellRun:
    run = CellRun(stack, nat)
    try:
        _run_cell(run)
    except Exception as exc:  # a lab that could not be built: the cell's test reports it
        run.error = f"{type(exc).__name__}: {exc}"
    return run


def _run_cell(run: CellRun) -> None:
    expect = EXPECTED[(run.stack, run.nat)]
    stack, extra = run.stack.partition("+")[::2]
    nat = run.nat
    captures: list[Any] = []
    with Lab() as lab:
        agent: LabAgent | None = None
        try:
            lab.set_nat(random=nat == "random")
            lab.set_udp_timeouts(*NAT_LONG)
            if stack == "kamailio-relay":
                server: stacks.StackServer = start_kamailio_recipe(lab, relay=True)
            else:
                server = stacks.start_stack(lab, stack)
            stun_server = None
            if extra == "stun":
                coturn = start_coturn(lab)  # two addresses, RFC 5780 on
                stun_server = f"{lab.server_ip}:{coturn.port}"
            elif extra == "responder":
                responder = start_responder(lab)
                stun_server = f"{lab.server_ip}:{responder.port}"
            if extra == "alg":
                lab.set_sip_alg()
                pcap_dir = os.environ.get("NK_ALG_PCAP")  # what the ALG rewrites, for the docs
                if pcap_dir:
                    name = f"{run.stack}-{nat}".replace("+", "-")
                    for side in (netlab.ROUTER_LAN_IF, netlab.ROUTER_WAN_IF):
                        captures.append(
                            lab.popen(
                                "router",
                                [
                                    "tshark",
                                    "-q",
                                    "-i",
                                    side,
                                    "-f",
                                    "udp",
                                    "-w",
                                    f"{pcap_dir}/{name}-{side}.pcap",
                                ],
                            )
                        )
                    time.sleep(2)  # tshark is listening
            if nat == "preserve":
                run.relay = relay_probe(lab, server.port)
            agent = LabAgent(lab, write_config(lab, server.port, stun_server))
            run.marks["learn"] = time.monotonic()
            if not agent.wait_after(0, "probe-answered", 10):
                raise AssertionError("the first keepalive was not answered")
            time.sleep(4)  # the promotion keepalive 3 s after the first one

            run.marks["reboot"] = time.monotonic()
            lab.flush_conntrack()
            if expect.reboot:
                agent.wait_after(run.marks["reboot"], expect.reboot, REPORT_WITHIN)
            else:
                time.sleep(OBSERVE)
            agent.wait_after(time.monotonic(), "probe-answered", INTERVAL + 3)

            run.marks["timeout"] = time.monotonic()
            lab.set_udp_timeouts(*NAT_SHORT)
            if expect.timeout:
                agent.wait_after(run.marks["timeout"], expect.timeout, REPORT_WITHIN + INTERVAL)
            else:
                time.sleep(OBSERVE + INTERVAL)
            lab.set_udp_timeouts(*NAT_LONG)
            agent.wait_after(time.monotonic(), "probe-answered", INTERVAL + 3)

            run.marks["outage"] = time.monotonic()
            server.stop()
            # A silence is answered by a check and a server-up probe before the next
            # keepalive: with fail_threshold 2 the report can take up to three cycles.
            agent.wait_after(run.marks["outage"], "unreachable", 3 * INTERVAL + 4)
            run.marks["back"] = time.monotonic()
            server.start()
            run.marks["up"] = time.monotonic()
            agent.wait_after(run.marks["back"], "reachable", INTERVAL + 4)
            agent.wait_after(time.monotonic(), "probe-answered", INTERVAL + 3)
            run.marks["end"] = time.monotonic()
            run.mapping = nat_mapping(lab, server.port)
            run.status = agent.read_status()
        except Exception as exc:  # reported by the cell's test, with the agent's log
            run.error = f"{type(exc).__name__}: {exc}"
        finally:
            for capture in captures:
                lab.stop(capture)
            if agent is not None:
                agent.kill()
                run.events = [(t, n, f) for _, t, n, f in agent.timeline()]
                run.log = "\n".join(agent.lines[-200:])


# --- coturn: a STUN server, which the agent does not speak (yet) --------------------------------

STUN_COOKIE = 0x2112A442
XOR_MAPPED_ADDRESS, RESPONSE_PORT, ERROR_CODE = 0x0020, 0x0027, 0x0009


def stun_binding(txid: bytes, response_port: int | None = None) -> bytes:
    attrs = b""
    if response_port is not None:  # RFC 5780: answer to this port of the request's source
        attrs = (
            RESPONSE_PORT.to_bytes(2, "big")
            + (4).to_bytes(2, "big")
            + response_port.to_bytes(2, "big")
            + b"\x00\x00"
        )
    header = b"\x00\x01" + len(attrs).to_bytes(2, "big") + STUN_COOKIE.to_bytes(4, "big")
    return header + txid + attrs


def stun_attributes(message: bytes) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    offset = 20
    while offset + 4 <= len(message):
        kind = int.from_bytes(message[offset : offset + 2], "big")
        size = int.from_bytes(message[offset + 2 : offset + 4], "big")
        attrs.setdefault(kind, message[offset + 4 : offset + 4 + size])
        offset += 4 + size + (-size % 4)
    return attrs


def xor_mapped(value: bytes) -> tuple[str, int]:
    port = int.from_bytes(value[2:4], "big") ^ (STUN_COOKIE >> 16)
    address = int.from_bytes(value[4:8], "big") ^ STUN_COOKIE
    return ".".join(str((address >> s) & 255) for s in (24, 16, 8, 0)), port


@dataclass
class CoturnRun:
    mapped: tuple[str, int] | None = None
    mapping: tuple[str, int] | None = None
    response_port: str = ""
    events: list[tuple[float, str, Fields]] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    log: str = ""


def run_coturn() -> CoturnRun:
    run = CoturnRun()
    try:
        _run_coturn(run)
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"
    return run


def _run_coturn(run: CoturnRun) -> None:
    with Lab() as lab:
        agent: LabAgent | None = None
        try:
            server = stacks.start_stack(lab, "coturn")
            shell = lab.udp_shell()
            shell.open("binding", port=SOURCE_PORT)
            shell.open("other", port=SOURCE_PORT + 1)
            answer = shell.exchange("binding", stun_binding(os.urandom(12)), port=server.port)
            if answer is None:
                raise AssertionError("coturn did not answer a Binding request")
            run.mapped = xor_mapped(stun_attributes(answer)[XOR_MAPPED_ADDRESS])
            run.mapping = nat_mapping(lab, server.port)
            # The RFC 5780 proof the agent might use one day: ask for the answer on the
            # binding's port. With one listening address coturn has RFC 5780 off.
            shell.send("other", stun_binding(os.urandom(12), SOURCE_PORT), port=server.port)
            got = shell.recv(2.0, wait_all=True)
            run.response_port = (
                ", ".join(
                    f"{sock}:{'error' if ERROR_CODE in stun_attributes(data) else 'success'}"
                    for sock, data, _ in got
                )
                or "no answer"
            )
            shell.close_socket("binding")
            shell.close_socket("other")
            agent = LabAgent(lab, write_config(lab, server.port))
            agent.wait_after(0, "unreachable", 3 * INTERVAL)
            run.status = agent.read_status()
        except Exception as exc:
            run.error = f"{type(exc).__name__}: {exc}"
        finally:
            if agent is not None:
                agent.kill()
                run.events = [(t, n, f) for _, t, n, f in agent.timeline()]
                run.log = "\n".join(agent.lines[-100:])


# --- the runs, all at once, then one test per cell ----------------------------------------------


@pytest.fixture(scope="module")
def matrix(request: pytest.FixtureRequest) -> Iterator[dict[Any, Any]]:
    require_root()
    for tool in ("ip", "nft", "conntrack"):
        require_tool(tool)
    # Only the cells this session runs (e.g. with -k), all at once.
    wanted: list[tuple[str, str]] = []
    for item in request.session.items:
        if (
            isinstance(item, pytest.Function)
            and item.module is sys.modules[__name__]
            and hasattr(item, "callspec")
            and "cell" in item.callspec.params
        ):
            stack, nat = str(item.callspec.params["cell"]).split("/")
            wanted.append((stack, nat))
    wanted = sorted(set(wanted))
    with_coturn = any(
        isinstance(item, pytest.Function) and item.name == "test_coturn_stun_server"
        for item in request.session.items
    )
    needed = {
        "kamailio-stock" if part == "kamailio-relay" else part
        for stack, _ in wanted
        for part in stack.split("+")
        if part not in ("stun", "responder", "alg")
    }
    if any(stack.endswith("+stun") for stack, _ in wanted):
        needed.add("coturn")
    for stack in sorted(needed | ({"coturn"} if with_coturn else set())):
        for tool in stacks.STACKS[stack][1]:
            require_tool(tool)
        lacking = stacks.missing(stack)
        if lacking:
            message = f"{stack} needs {lacking} (tests/run.sh installs it)"
            unavailable(message)
    netlab.cleanup_stale()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        coturn = pool.submit(run_coturn) if with_coturn else None
        futures = {cell: pool.submit(run_cell, cell[0], cell[1]) for cell in wanted}
        results: dict[Any, Any] = {cell: future.result() for cell, future in futures.items()}
        if coturn is not None:
            results["coturn"] = coturn.result()
    out = os.environ.get("NK_STACK_RESULTS")
    if out:
        Path(out).write_text(
            json.dumps(
                {
                    "/".join(key) if isinstance(key, tuple) else key: vars(run)
                    for key, run in results.items()
                },
                indent=1,
                default=str,
            )
        )
    yield results


@pytest.mark.parametrize("cell", [f"{s}/{n}" for s, n in CELLS])
def test_stack_cell(cell: str, matrix: dict[Any, Any]) -> None:
    stack, nat = cell.split("/")
    expect = EXPECTED[(stack, nat)]
    run = matrix[(stack, nat)]
    context = f"{cell}: log tail:\n{run.log}"
    assert run.error is None, f"{run.error}\n{context}"
    router = netlab.ROUTER_WAN_IP
    if nat == "preserve" and not stack.endswith("+alg"):
        base = stack.partition("+")[0]
        assert run.relay == RELAY[base], f"a request for the binding: {run.relay}"

    # Nothing invented: every public address the agent states is the router's.
    for _, name, fields in run.events:
        for key in ("public", "new", "old"):
            value = fields.get(key) if name.startswith("binding-") else None
            if value:
                assert value.rsplit(":", 1)[0] == router, f"{name} {key}={value}\n{context}"
    learned = [f for _, n, f in run.events if n == "binding-learned"]
    if expect.public:
        assert learned, f"no binding-learned\n{context}"
        public = run.status.get("public")
        assert run.mapping is not None and public == f"{run.mapping[0]}:{run.mapping[1]}", (
            f"status public={public}, conntrack {run.mapping}\n{context}"
        )
    else:
        assert not learned, f"a public address without `received`: {learned}\n{context}"
        assert not run.status.get("public"), f"status public={run.status.get('public')}\n{context}"

    # No false unreachable: only between the server's stop and its restart (plus one cycle).
    for when, name, _ in run.events:
        if name == "unreachable":
            assert run.marks["outage"] <= when <= run.marks["up"] + INTERVAL, (
                f"unreachable while the server was up\n{context}"
            )
    assert run.during("outage", "unreachable"), f"the outage was not reported\n{context}"
    # From the restart on: the agent may see the server answer before start() returns.
    back = [t for t, n, _ in run.events if n == "reachable" and t >= run.marks["back"]]
    assert back, f"no reachable after the server came back\n{context}"

    for phase, wanted in (("reboot", expect.reboot), ("timeout", expect.timeout)):
        found = run.names(phase)
        if wanted:
            assert wanted in found, f"{phase}: no {wanted}; saw {found}\n{context}"
            # A cut timeout bites only after the flow's entry, refreshed with the old timeout,
            # has run out: one cycle later than a reboot.
            bound = REPORT_WITHIN + (INTERVAL if phase == "timeout" else 0)
            delay = run.latency(phase, wanted)
            assert delay is not None and delay <= bound, (
                f"{phase}: {wanted} after {delay} s\n{context}"
            )
    if expect.detection:
        assert run.status.get("expiry_detection") == expect.detection, (
            f"expiry_detection={run.status.get('expiry_detection')}\n{context}"
        )
    if expect.detected:  # the method that proved each expiry is named
        for phase in ("reboot", "timeout"):
            methods = [f.get("detected") for f in run.during(phase, EXPIRED)]
            assert methods and set(methods) == {expect.detected}, (
                f"{phase}: binding-expired detected={methods}\n{context}"
            )
    # Outside the faults the binding stays put: no change or expiry while learning, and none
    # because the server was down (the NAT kept the flow: keepalives went out all along).
    for phase in ("learn", "outage"):
        assert not [n for n in run.names(phase) if n in (CHANGED, EXPIRED)], (
            f"{phase}: a change or expiry that did not happen\n{context}"
        )


def test_coturn_stun_server(matrix: dict[Any, Any]) -> None:
    """coturn with Debian's config maps the binding as the NAT does; the agent, which speaks only
    SIP, gets no answer from it and says so (unreachable), inventing nothing."""
    run: CoturnRun = matrix["coturn"]
    context = f"coturn: log tail:\n{run.log}"
    assert run.error is None, f"{run.error}\n{context}"
    assert run.mapped is not None and run.mapped == run.mapping, (run.mapped, run.mapping)
    # With one listening address coturn leaves RFC 5780 off: RESPONSE-PORT is ignored and the
    # answer goes to the sender, so it cannot prove a binding from outside here.
    assert run.response_port == "other:success", run.response_port
    names = [n for _, n, _ in run.events]
    assert "unreachable" in names, context
    assert "binding-learned" not in names and not run.status.get("public"), context
