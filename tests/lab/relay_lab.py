"""Relayed checks in the NAT lab: which SIP servers forward an OPTIONS to the binding's public
address, and server configurations that let a self-hosted server take part.

The relayed check: the binding (local port 5062) keeps its flow to the server with ordinary
keepalives; the second socket (5063) sends an OPTIONS whose Request-URI is the binding's public
address:port (`sip:203.0.113.1:5062`), to the server. A server that proxies it sends it from its
own address and port into the binding, where it arrives only while the NAT holds the binding.
The binding answers it 200 (RFC 3261 §8.2.6, natkeepalive.sip.answer), and the server relays that
answer back to the second socket.

    result = relay_probe(lab, server_port)      # what each socket saw, see RelayProbe

Configurations started here (each `start_*` returns a StackServer on SERVER_IP:5060):
- `start_kamailio_recipe(lab, relay=True, sent_by=False)`: Debian's stock kamailio.cfg with the
  recipes of docs/servers.md added (RELAY_RECIPE, SENT_BY_RECIPE);
- `start_net_sip_proxy(lab)`: Net::SIP's stateless proxy sample as Debian ships it
  (/usr/share/doc/libnet-sip-perl/examples/bin/stateless_proxy.pl);
- `start_node_sip_proxy(lab)`: npm sip's registrar-proxy example (tests/lab/stacks/
  node_sip_proxy.js: the example with its logger removed, which calls util.debug, gone from
  Node.js since version 12).
Stacks of tests/lab/stacks.py (stock Kamailio, ejabberd...) are probed the same way.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from natkeepalive.errors import SipParseError
from natkeepalive.sip.answer import (
    answer_destination,
    build_answer,
    is_relayed_check,
    parse_request,
)
from natkeepalive.sip.message import Request, parse_message
from natkeepalive.sip.request import OptionsRequest, build_options
from tests.lab import netlab
from tests.lab.netlab import Lab, LabError
from tests.lab.stacks import NODE_PREFIX, PORT, STACKS_DIR, KamailioStock, StackServer

BINDING, OTHER = 5062, 5063
NET_SIP_SAMPLE = "/usr/share/doc/libnet-sip-perl/examples/bin/stateless_proxy.pl"
STOCK_KAMAILIO = "/etc/kamailio/kamailio.cfg"

# Added to Debian's stock kamailio.cfg right after `route(REQINIT);` in request_route, with the
# route below: relay an OPTIONS without a user whose Request-URI host is the address it came from
# (the second socket and the binding share the NAT's public address), nothing else, so the
# server does not become an open relay. t_relay() keeps the transaction: Kamailio retransmits
# the relayed request until the binding answers, and relays the answer to the sender.
RELAY_CALL = "\troute(NKRELAY);\n"
RELAY_RECIPE = """
# nat-keepalive: relay a binding check into the binding
route[NKRELAY] {
\tif (is_method("OPTIONS") && $rU == $null && $rd == $si && !(uri == myself)) {
\t\tif (!t_relay()) {
\t\t\tsl_reply_error();
\t\t}
\t\texit;
\t}
}
"""
# Replaces the stock `force_rport();` of route[REQINIT]: answer an OPTIONS to this server (the
# check) as RFC 3261 §18.2.2 says, to its Via sent-by port when it has no `rport`; every other
# request keeps the stock behaviour.
SENT_BY_RECIPE = """\t# nat-keepalive: a check without rport is answered to its Via sent-by
\tif (!(is_method("OPTIONS") && uri == myself && $rU == $null)) {
\t\tforce_rport();
\t}
"""


@dataclass
class RelayProbe:
    """What came back for one relayed check. `relayed`: the request arrived on the binding's
    socket (from `relayed_from`); `answered`: the binding's 200 came back to the second socket;
    `direct`: the status codes the second socket got that are not the binding's answer (a 403
    from a server that refuses, a 404...). Assumes the lab's port-preserving NAT when the
    server does not answer the keepalive."""

    keepalive: int | None = None  # the status answering the binding's keepalive, if any
    public: tuple[str, int] | None = None  # where the check was aimed
    relayed: bool = False
    relayed_from: tuple[str, int] | None = None
    relayed_request: str = ""
    answered: bool = False
    direct: list[int] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)


def _check(public: tuple[str, int], tag: str) -> bytes:
    """The relayed check: Request-URI = the binding's public address, Via with rport (the
    answer comes back to the second socket through the NAT)."""
    return build_options(
        OptionsRequest(
            public[0],
            public[1],
            netlab.LAN_IP,
            OTHER,
            f"z9hG4bKrelay{tag}",
            f"relay{tag}",
            "t1",
            1,
            rport=True,
        )
    )


def _keepalive(
    shell: netlab.UdpShell, server_port: int, tag: str
) -> tuple[int | None, tuple[str, int]]:
    """The binding's keepalive (Via with rport): the answer's status and the public address.
    A server that does not answer it (Net::SIP's proxy forwards an OPTIONS to itself) still has
    the binding mapped by it: the lab's port-preserving NAT keeps the port."""
    keepalive = build_options(
        OptionsRequest(
            netlab.SERVER_IP,
            server_port,
            netlab.LAN_IP,
            BINDING,
            f"z9hG4bKkeep{tag}",
            f"keep{tag}",
            "t1",
            1,
            rport=True,
        )
    )
    answer = shell.exchange("binding", keepalive, port=server_port, timeout=1.0)
    if answer is not None:
        response = parse_message(answer)
        if not isinstance(response, Request):
            return response.status, (netlab.ROUTER_WAN_IP, response.top_via.rport or BINDING)
    return None, (netlab.ROUTER_WAN_IP, BINDING)


def relay_probe(
    lab: Lab, server_port: int = PORT, *, tag: str = "a", public: tuple[str, int] | None = None
) -> RelayProbe:
    """One relayed check through the server at SERVER_IP:server_port, aimed at the binding's
    public address as the keepalive's answer gives it; with `public`, no keepalive goes first
    (after a NAT reboot: the check must not re-create the binding)."""
    result = RelayProbe()
    shell = lab.udp_shell()
    shell.open("binding", port=BINDING)
    shell.open("other", port=OTHER)
    if public is None:
        result.keepalive, public = _keepalive(shell, server_port, tag)
    result.public = public
    call_id, cseq = f"relay{tag}", 1
    shell.send("other", _check(public, tag), port=server_port)
    for _ in range(8):  # bounded: a stateful proxy retransmits until answered
        got = shell.recv(1.0, wait_all=False)
        if not got:
            break
        for sock, data, source in got:
            try:
                message = parse_message(data)
            except SipParseError as exc:
                result.stray.append(f"{sock}: unparsable: {exc}")
                continue
            if sock == "binding" and isinstance(message, Request):
                try:
                    request = parse_request(data)
                except SipParseError as exc:
                    result.stray.append(f"binding: {exc}")
                    continue
                if is_relayed_check(request, call_id, cseq):
                    result.relayed = True
                    result.relayed_from = source
                    result.relayed_request = data.decode("utf-8", "replace")
                    # where the agent sends it: the source address, the Via's port
                    host, port = answer_destination(request, source)
                    shell.send(
                        "binding", build_answer(request, source, to_tag="nk1"), host=host, port=port
                    )
                else:
                    result.stray.append(f"binding: {message.method}")
            elif sock == "other" and not isinstance(message, Request):
                if (
                    message.call_id == call_id
                    and message.status == 200
                    and result.relayed
                    and "nk1" in (message.header("to") or "")
                ):
                    result.answered = True
                elif message.call_id == call_id and message.status >= 200:
                    result.direct.append(message.status)
            else:
                result.stray.append(
                    f"{sock}: {getattr(message, 'status', '')}{getattr(message, 'method', '')}"
                )
        if result.answered or result.direct:
            break
    shell.close_socket("binding")
    shell.close_socket("other")
    return result


@dataclass
class SentByProbe:
    """The inbound check (Via sent-by = the binding's public address, no rport) sent straight
    to the server: `on` lists the sockets its 200 arrived on ("binding" proves the binding)."""

    keepalive_rport: int | None = None
    on: list[str] = field(default_factory=list)


def sent_by_probe(
    lab: Lab, server_port: int = PORT, *, tag: str = "a", public: tuple[str, int] | None = None
) -> SentByProbe:
    result = SentByProbe()
    shell = lab.udp_shell()
    shell.open("binding", port=BINDING)
    shell.open("other", port=OTHER)
    if public is None:
        _, public = _keepalive(shell, server_port, tag)
        result.keepalive_rport = public[1]
    shell.send(
        "other",
        build_options(
            OptionsRequest(
                netlab.SERVER_IP,
                None,
                public[0],
                public[1],
                f"z9hG4bKsent{tag}",
                f"sent{tag}",
                "t1",
                1,
                rport=False,
            )
        ),
        port=server_port,
    )
    for sock, data, _ in shell.recv(1.5, wait_all=True):
        try:
            message = parse_message(data)
        except SipParseError:
            continue
        if not isinstance(message, Request) and message.call_id == f"sent{tag}":
            result.on.append(f"{sock} {message.status}")
    shell.close_socket("binding")
    shell.close_socket("other")
    return result


THIRD_IP = "203.0.113.12"  # another host on the server's network, for the open-relay probe


@dataclass
class OpenRelayProbe:
    """An OPTIONS from the second socket whose Request-URI is a third host: `forwarded` when
    that host received it (from `forwarded_from`), `direct` the statuses the sender got."""

    forwarded: bool = False
    forwarded_from: tuple[str, int] | None = None
    direct: list[int] = field(default_factory=list)


def open_relay_probe(lab: Lab, server_port: int = PORT) -> OpenRelayProbe:
    """Does the server forward a request for a host that is neither itself nor the sender?"""
    from tests.lab.stun_lab import add_server_address

    result = OpenRelayProbe()
    add_server_address(lab, THIRD_IP)
    third = lab.udp_shell("wan")
    third.open("third", THIRD_IP, 5060)
    shell = lab.udp_shell()
    shell.open("other", port=OTHER)
    shell.send(
        "other",
        build_options(
            OptionsRequest(
                THIRD_IP, 5060, netlab.LAN_IP, OTHER, "z9hG4bKopen1", "open1", "t1", 1, rport=True
            )
        ),
        port=server_port,
    )
    for _, data, source in third.recv(2.0, wait_all=True):
        try:
            message = parse_message(data)
        except SipParseError:
            continue
        if isinstance(message, Request) and message.call_id == "open1":
            result.forwarded, result.forwarded_from = True, source
    for _, data, _ in shell.recv(0.5, wait_all=True):
        try:
            message = parse_message(data)
        except SipParseError:
            continue
        if (
            not isinstance(message, Request)
            and message.call_id == "open1"
            and message.status >= 200
        ):
            result.direct.append(message.status)
    shell.close_socket("other")
    third.close_socket("third")
    return result


# --- relaying configurations ------------------------------------------------------------------


def kamailio_recipe_config(relay: bool, sent_by: bool) -> str:
    """Debian's stock kamailio.cfg with the chosen recipes added; LabError when the stock file
    no longer has the lines they attach to."""
    with open(STOCK_KAMAILIO) as handle:
        config = handle.read()
    if relay:
        anchor = "\troute(REQINIT);\n"
        if config.count(anchor) != 1:
            raise LabError(f"{STOCK_KAMAILIO}: no single `route(REQINIT);` line")
        config = config.replace(anchor, anchor + RELAY_CALL) + RELAY_RECIPE
    if sent_by:
        anchor = "\tforce_rport();\n"
        if config.count(anchor) != 1:
            raise LabError(f"{STOCK_KAMAILIO}: no single `force_rport();` line")
        config = config.replace(anchor, SENT_BY_RECIPE)
    return config


class KamailioRecipe(KamailioStock):
    """Debian's Kamailio with its stock configuration plus the recipe lines, started as the stock
    one is."""

    def __init__(self, lab: Lab, relay: bool, sent_by: bool) -> None:
        self.relay, self.sent_by = relay, sent_by
        super().__init__(lab, "kamailio-recipe", PORT)

    def prepare(self) -> None:
        super().prepare()
        self.config = os.path.join(self.workdir, "kamailio.cfg")
        with open(self.config, "w") as handle:
            handle.write(kamailio_recipe_config(self.relay, self.sent_by))


def _listening(lab: Lab, port: int, proc: Any, timeout: float) -> bool:
    """Whether a UDP socket listens on SERVER_IP:port in wan: for a proxy that forwards an
    OPTIONS to itself instead of answering it, readiness by a request is no test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        listing = lab.run("wan", ["ss", "-Hlun"], check=False).stdout
        if f"{lab.server_ip}:{port} " in listing:
            return True
        time.sleep(0.1)
    return False


class NetSipProxy(StackServer):
    def argv(self) -> list[str]:
        return ["perl", NET_SIP_SAMPLE, "--leg", f"{self.lab.server_ip}:{self.port}"]

    def wait_ready(self, timeout: float) -> bool:
        return _listening(self.lab, self.port, self.proc, timeout)


class NodeSipProxy(StackServer):
    def argv(self) -> list[str]:
        return [
            "node",
            os.path.join(STACKS_DIR, "node_sip_proxy.js"),
            self.lab.server_ip,
            str(self.port),
        ]

    def popen_kw(self) -> dict[str, Any]:
        env = dict(os.environ, NODE_PATH=os.path.join(NODE_PREFIX, "node_modules"))
        return {"stdin": subprocess.DEVNULL, "env": env}

    def wait_ready(self, timeout: float) -> bool:
        # The example answers an OPTIONS to itself (no user) with 404 after its lookup: any
        # answer means it listens.
        return self.lab.wait_sip("wan", self.lab.server_ip, self.port, timeout, self.proc)


def start_kamailio_recipe(lab: Lab, *, relay: bool = True, sent_by: bool = False) -> KamailioRecipe:
    server = KamailioRecipe(lab, relay, sent_by)
    server.start()
    return server


def start_net_sip_proxy(lab: Lab) -> NetSipProxy:
    server = NetSipProxy(lab, "net-sip-proxy", PORT)
    server.start()
    return server


def start_node_sip_proxy(lab: Lab) -> NodeSipProxy:
    server = NodeSipProxy(lab, "node-sip-proxy", PORT)
    server.start()
    return server
