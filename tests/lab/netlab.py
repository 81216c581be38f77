"""The NAT lab: three network namespaces (lan, router, wan), a Linux NAT between them, SIP servers.

    lan   192.168.77.2/24  lan0 --- rlan0  192.168.77.1/24   router
    router 203.0.113.1/24  rwan0 --- wan0  203.0.113.10/24   wan (Kamailio :5060, SIPp :5070)

The router masquerades with nftables; its conntrack UDP timeouts are per-namespace sysctls, so a
test can shrink them to seconds without touching the host. Everything a Lab starts (namespaces,
processes, files) is removed by close(); `cleanup_stale()` removes what a killed run left behind.

Run as a script it provides the helpers that the lab runs inside namespaces:
    python netlab.py udp-shell                 line-delimited JSON UDP client (see UdpShell)
    python netlab.py sip-ping HOST PORT SECS   exit 0 once HOST:PORT answers an OPTIONS
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import IO, Any

HERE = os.path.dirname(os.path.abspath(__file__))
KAMAILIO_TEMPLATE = os.path.join(HERE, "kamailio.cfg")
SIPP_SCENARIO = os.path.join(HERE, "sipp_norport_uas.xml")

PREFIX = "nk"
ROLES = ("lan", "router", "wan")
# nk<pid hex><4 hex>-<role>: the pid lets cleanup_stale() tell a live run's namespaces from a
# dead one's.
_NAME = re.compile(r"^" + PREFIX + r"([0-9a-f]+)([0-9a-f]{4})-(lan|router|wan)$")
_TMPDIR = re.compile(r"^" + PREFIX + r"([0-9a-f]+)([0-9a-f]{4})-[a-z0-9_]{8}$")

LAN_IP = "192.168.77.2"
ROUTER_LAN_IP = "192.168.77.1"
ROUTER_WAN_IP = "203.0.113.1"
SERVER_IP = "203.0.113.10"
PREFIXLEN = 24

# Interfaces are created directly inside their namespaces: these names never meet the host's.
LAN_IF = "lan0"
ROUTER_LAN_IF = "rlan0"
ROUTER_WAN_IF = "rwan0"
WAN_IF = "wan0"

UDP_TIMEOUT = "net.netfilter.nf_conntrack_udp_timeout"
UDP_TIMEOUT_STREAM = "net.netfilter.nf_conntrack_udp_timeout_stream"

COMMAND_TIMEOUT = 10.0
REBOOT_TABLE = "nklabreboot"  # the router's table that stops traffic in flush_conntrack
STOP_GRACE = 2.0


class LabError(RuntimeError):
    pass


def _ip() -> str:
    return shutil.which("ip") or "/usr/sbin/ip"


def _host_run(
    argv: Sequence[str],
    *,
    timeout: float = COMMAND_TIMEOUT,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {' '.join(argv)}") from exc
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done


def list_namespaces() -> list[str]:
    done = _host_run([_ip(), "netns", "list"], check=False)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def pid_alive(pid: int) -> bool:
    """Whether a process exists: stale namespaces and folders are named after their creator."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_namespace_pids(name: str) -> None:
    done = _host_run([_ip(), "netns", "pids", name], check=False)
    for word in done.stdout.split():
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.kill(int(word), signal.SIGKILL)


def _delete_namespace(name: str) -> None:
    _kill_namespace_pids(name)
    _host_run([_ip(), "netns", "del", name], check=False)


def cleanup_stale() -> list[str]:
    """Delete lab namespaces whose creating process is gone (a run killed before close()).

    Returns the names removed."""
    removed = []
    for name in list_namespaces():
        match = _NAME.match(name)
        if match and not pid_alive(int(match.group(1), 16)):
            _delete_namespace(name)
            removed.append(name)
    tmp = tempfile.gettempdir()
    for entry in os.listdir(tmp):
        match = _TMPDIR.match(entry)
        if match and not pid_alive(int(match.group(1), 16)):
            shutil.rmtree(os.path.join(tmp, entry), ignore_errors=True)
    return removed


def _stop_process(proc: subprocess.Popen[Any], grace: float = STOP_GRACE) -> None:
    """SIGTERM the process group (every process runs in its own session), SIGKILL after `grace`."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    # Children of a dead leader can outlive it in the same group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


# ------------------------------------------------------------------------------------------------
# SIP bytes for tests of the lab itself (the agent has its own builder and parser).


def options_request(
    *,
    via_host: str,
    via_port: int,
    rport: bool = True,
    server: str = SERVER_IP,
    server_port: int = 5060,
    call_id: str | None = None,
    branch: str | None = None,
    cseq: int = 1,
) -> bytes:
    branch = branch or "z9hG4bK" + os.urandom(8).hex()
    call_id = call_id or os.urandom(8).hex() + "@lab"
    via = f"SIP/2.0/UDP {via_host}:{via_port};branch={branch}" + (";rport" if rport else "")
    lines = [
        f"OPTIONS sip:{server}:{server_port} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        f"From: <sip:lab@{via_host}>;tag={os.urandom(4).hex()}",
        f"To: <sip:{server}:{server_port}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} OPTIONS",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("ascii")


_STATUS = re.compile(rb"^SIP/2\.0 (\d{3}) ")
_VIA = re.compile(rb"^(?:via|v)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)


def status_code(response: bytes) -> int | None:
    match = _STATUS.match(response)
    return int(match.group(1)) if match else None


def top_via_params(response: bytes) -> dict[str, str | None]:
    """Parameters of the first Via value, e.g. {'branch': ..., 'rport': '5062', 'received': ...};
    a parameter without a value (a bare `rport`) maps to None."""
    match = _VIA.search(response)
    if not match:
        return {}
    value = match.group(1).decode("latin-1").split(",")[0]
    params: dict[str, str | None] = {}
    for part in value.split(";")[1:]:
        key, sep, val = part.partition("=")
        params[key.strip().lower()] = val.strip() if sep else None
    return params


def top_via_sent_by(response: bytes) -> str | None:
    match = _VIA.search(response)
    if not match:
        return None
    value = match.group(1).decode("latin-1").split(",")[0].split(";")[0]
    return value.split()[-1] if value.split() else None


# ------------------------------------------------------------------------------------------------


class UdpShell:
    """A UDP client living in a namespace, driven over pipes so its sockets outlive each test step.

    Sockets are named by the caller; every call is bounded in time. Data is bytes on this side.
    """

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self._buffer = b""

    def _call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(request).encode() + b"\n")
        self._proc.stdin.flush()
        deadline = time.monotonic() + timeout + 5.0
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LabError(f"udp-shell did not answer {request.get('op')} in time")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise LabError(f"udp-shell exited (rc={self._proc.poll()})")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def open(self, name: str, host: str = "0.0.0.0", port: int = 0) -> int:
        """Bind a UDP socket; returns its local port."""
        reply = self._call({"op": "open", "name": name, "host": host, "port": port}, 1.0)
        if not reply["ok"]:
            raise LabError(f"open {name}: {reply['error']}")
        return int(reply["port"])

    def send(self, name: str, data: bytes, host: str = SERVER_IP, port: int = 5060) -> str | None:
        """Send one datagram; returns None, or the OS error text (a send may fail legitimately)."""
        reply = self._call(
            {
                "op": "send",
                "name": name,
                "host": host,
                "port": port,
                "data": base64.b64encode(data).decode(),
            },
            1.0,
        )
        return None if reply["ok"] else str(reply["error"])

    def recv(
        self, timeout: float, *, wait_all: bool = False
    ) -> list[tuple[str, bytes, tuple[str, int]]]:
        """Datagrams as (socket name, data, source). Returns at the first arrival (plus whatever is
        already queued) unless wait_all, which listens for the whole timeout."""
        reply = self._call({"op": "recv", "timeout": timeout, "wait_all": wait_all}, timeout)
        return [
            (p["sock"], base64.b64decode(p["data"]), (p["src"][0], int(p["src"][1])))
            for p in reply["packets"]
        ]

    def close_socket(self, name: str) -> None:
        self._call({"op": "close", "name": name}, 1.0)

    def exchange(
        self, name: str, data: bytes, host: str = SERVER_IP, port: int = 5060, timeout: float = 2.0
    ) -> bytes | None:
        """Send and return the first datagram that arrives on the same socket, or None."""
        error = self.send(name, data, host, port)
        if error:
            raise LabError(f"send on {name}: {error}")
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            for sock, payload, _src in self.recv(remaining):
                if sock == name:
                    return payload


def _udp_shell_main() -> int:
    sockets: dict[str, socket.socket] = {}

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def drain(packets: list[dict[str, Any]], wait: float) -> None:
        by_fd = {s.fileno(): n for n, s in sockets.items()}
        ready, _, _ = select.select(list(by_fd), [], [], max(wait, 0.0)) if by_fd else ([], [], [])
        for fd in ready:
            name = by_fd[fd]
            try:
                data, src = sockets[name].recvfrom(65535)
            except OSError as exc:  # ICMP errors surface here on connected or unconnected sockets
                packets.append(
                    {
                        "sock": name,
                        "src": ["icmp", 0],
                        "data": base64.b64encode(str(exc).encode()).decode(),
                    }
                )
                continue
            packets.append(
                {"sock": name, "src": [src[0], src[1]], "data": base64.b64encode(data).decode()}
            )

    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        try:
            if op == "open":
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((request["host"], request["port"]))
                sockets[request["name"]] = sock
                reply({"ok": True, "port": sock.getsockname()[1]})
            elif op == "send":
                sockets[request["name"]].sendto(
                    base64.b64decode(request["data"]), (request["host"], request["port"])
                )
                reply({"ok": True})
            elif op == "recv":
                packets: list[dict[str, Any]] = []
                deadline = time.monotonic() + float(request["timeout"])
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    drain(packets, remaining)
                    if packets and not request["wait_all"]:
                        drain(packets, 0.0)
                        break
                reply({"ok": True, "packets": packets})
            elif op == "close":
                sockets.pop(request["name"]).close()
                reply({"ok": True})
            elif op == "exit":
                reply({"ok": True})
                return 0
            else:
                reply({"ok": False, "error": f"unknown op {op}"})
        except (OSError, KeyError) as exc:
            reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    return 0


def _sip_ping_main(host: str, port: int, seconds: float) -> int:
    """Readiness: send OPTIONS every 100 ms until any SIP response arrives or time runs out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    local = sock.getsockname()[1]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            sock.sendto(
                options_request(via_host=host, via_port=local, server=host, server_port=port),
                (host, port),
            )
        ready, _, _ = select.select([sock], [], [], 0.1)
        if ready:
            with contextlib.suppress(OSError):
                data = sock.recv(65535)
                if status_code(data) is not None:
                    return 0
    return 1


# ------------------------------------------------------------------------------------------------


class Lab:
    """Context manager: `with Lab() as lab:` builds the namespaces, `close()` removes everything."""

    def __init__(self) -> None:
        self.id = f"{PREFIX}{os.getpid():x}{os.urandom(2).hex()}"
        self.ns: dict[str, str] = {role: f"{self.id}-{role}" for role in ROLES}
        self.lan_ip = LAN_IP
        self.router_wan_ip = ROUTER_WAN_IP
        self.server_ip = SERVER_IP
        self.nat_random = False
        self.wan_firewall = "drop"
        self.tmpdir = tempfile.mkdtemp(prefix=f"{self.id}-")
        self._procs: list[subprocess.Popen[Any]] = []
        self._kamailio: subprocess.Popen[Any] | None = None
        self._sipp: subprocess.Popen[Any] | None = None
        self._created: list[str] = []
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build(self) -> None:
        ip = _ip()
        for role in ROLES:
            _host_run([ip, "netns", "add", self.ns[role]])
            self._created.append(self.ns[role])
        lan, router, wan = self.ns["lan"], self.ns["router"], self.ns["wan"]
        _host_run(
            [
                ip,
                "-n",
                lan,
                "link",
                "add",
                LAN_IF,
                "type",
                "veth",
                "peer",
                "name",
                ROUTER_LAN_IF,
                "netns",
                router,
            ]
        )
        _host_run(
            [
                ip,
                "-n",
                wan,
                "link",
                "add",
                WAN_IF,
                "type",
                "veth",
                "peer",
                "name",
                ROUTER_WAN_IF,
                "netns",
                router,
            ]
        )
        batch = {
            "lan": [
                f"addr add {LAN_IP}/{PREFIXLEN} dev {LAN_IF}",
                "link set lo up",
                f"link set {LAN_IF} up",
                f"route add default via {ROUTER_LAN_IP}",
            ],
            "router": [
                f"addr add {ROUTER_LAN_IP}/{PREFIXLEN} dev {ROUTER_LAN_IF}",
                f"addr add {ROUTER_WAN_IP}/{PREFIXLEN} dev {ROUTER_WAN_IF}",
                "link set lo up",
                f"link set {ROUTER_LAN_IF} up",
                f"link set {ROUTER_WAN_IF} up",
            ],
            "wan": [
                f"addr add {SERVER_IP}/{PREFIXLEN} dev {WAN_IF}",
                "link set lo up",
                f"link set {WAN_IF} up",
            ],
        }
        for role, commands in batch.items():
            _host_run([ip, "-n", self.ns[role], "-batch", "-"], input="\n".join(commands) + "\n")
        self.sysctl("router", "net.ipv4.ip_forward", "1")
        self._ensure_conntrack()
        self.set_nat(random=False)
        self.set_wan_firewall("drop")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for proc in reversed(self._procs):
            _stop_process(proc)
        self._procs.clear()
        for name in reversed(self._created):
            _delete_namespace(name)
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    # -- commands in namespaces --------------------------------------------------------------------

    def _netns(self, ns: str) -> str:
        return self.ns.get(ns, ns)

    def popen(self, ns: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start argv in a namespace (role or full name); its process group is killed on close."""
        if self._closed:
            raise LabError("lab is closed")
        kw["start_new_session"] = True  # close() kills by process group
        proc: subprocess.Popen[Any] = subprocess.Popen(
            [_ip(), "netns", "exec", self._netns(ns), *argv], **kw
        )
        self._procs.append(proc)
        return proc

    def namespace_pids(self, ns: str) -> list[int]:
        """Every process in a namespace, also those that left their process group."""
        done = _host_run([_ip(), "netns", "pids", self._netns(ns)], check=False)
        return [int(word) for word in done.stdout.split() if word.isdigit()]

    def stop(self, proc: subprocess.Popen[Any]) -> None:
        _stop_process(proc)
        if proc in self._procs:
            self._procs.remove(proc)

    def run(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        timeout: float = COMMAND_TIMEOUT,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return _host_run(
            [_ip(), "netns", "exec", self._netns(ns), *argv],
            timeout=timeout,
            check=check,
            input=input,
        )

    def python(
        self, ns: str, code: str, *args: str, timeout: float = COMMAND_TIMEOUT, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run `code` with this interpreter inside a namespace; extra args land in sys.argv[1:]."""
        return self.run(ns, [sys.executable, "-c", code, *args], timeout=timeout, check=check)

    def sysctl(self, ns: str, key: str, value: str | None = None) -> str:
        path = "/proc/sys/" + key.replace(".", "/")
        if value is not None:
            self.run(ns, ["sh", "-c", 'echo "$1" > "$2"', "sh", value, path])
        return self.run(ns, ["cat", path]).stdout.strip()

    def udp_shell(self, ns: str = "lan") -> UdpShell:
        with self._log(f"udp-shell-{ns}.err") as err:
            proc = self.popen(
                ns,
                [sys.executable, os.path.abspath(__file__), "udp-shell"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        return UdpShell(proc)

    def wait_sip(
        self,
        ns: str,
        host: str,
        port: int,
        timeout: float = 5.0,
        server: subprocess.Popen[Any] | None = None,
    ) -> bool:
        """True once host:port answers an OPTIONS sent from `ns`; False at the timeout or as soon as
        `server` (the process expected to answer) has exited."""
        deadline = time.monotonic() + timeout
        while True:
            if server is not None and server.poll() is not None:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            attempt = min(1.0, remaining)
            argv = [
                sys.executable,
                os.path.abspath(__file__),
                "sip-ping",
                host,
                str(port),
                str(attempt),
            ]
            done = self.run(ns, argv, timeout=attempt + 5, check=False)
            if done.returncode == 0:
                return True

    # -- NAT ---------------------------------------------------------------------------------------

    def _ensure_conntrack(self) -> None:
        path = "/proc/sys/" + UDP_TIMEOUT.replace(".", "/")
        if self.run("router", ["test", "-e", path], check=False).returncode != 0:
            modprobe = shutil.which("modprobe") or "/sbin/modprobe"
            if os.path.exists(modprobe):
                _host_run([modprobe, "nf_conntrack"], check=False)
            if self.run("router", ["test", "-e", path], check=False).returncode != 0:
                raise LabError(
                    f"{UDP_TIMEOUT} does not exist in the router namespace "
                    "(nf_conntrack not available)"
                )

    def set_nat(self, random: bool = False) -> None:
        """(Re)write the router's only NAT rule. Existing conntrack entries keep their mapping."""
        rule = f'oifname "{ROUTER_WAN_IF}" masquerade' + (" random" if random else "")
        ruleset = (
            "table ip nat {}\n"
            "delete table ip nat\n"
            "table ip nat {\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority srcnat; policy accept;\n"
            f"    {rule}\n"
            "  }\n"
            "}\n"
        )
        self.run("router", ["nft", "-f", "-"], input=ruleset)
        self.nat_random = random

    def set_wan_firewall(self, mode: str = "drop") -> None:
        """What the router does with unsolicited packets to its own wan address: "drop" (the
        default, like most home gateways), "reject" (OpenWrt's wan zone) or "off" (accepted).

        It matters beyond security: with "off", a packet to a public port whose binding is gone
        (an inbound check after expiry) is accepted locally and confirmed as a conntrack entry
        `server:5060 -> wan:port`. That entry blocks the same public port for the next outbound
        flow, so masquerade picks another port: a failed check itself causes a remap. A dropped
        or rejected packet is never confirmed, and the next keepalive keeps its port.
        """
        verdicts = {"drop": "drop", "reject": "reject", "off": "accept"}
        if mode not in verdicts:
            raise ValueError(f"wan firewall mode {mode!r}: use drop, reject or off")
        ruleset = (
            "table inet filter {}\n"
            "delete table inet filter\n"
            "table inet filter {\n"
            "  chain input {\n"
            "    type filter hook input priority filter; policy accept;\n"
            f'    iifname "{ROUTER_WAN_IF}" ct state established,related accept\n'
            f'    iifname "{ROUTER_WAN_IF}" {verdicts[mode]}\n'
            "  }\n"
            "}\n"
        )
        self.run("router", ["nft", "-f", "-"], input=ruleset)
        self.wan_firewall = mode

    def set_sip_alg(self, on: bool = True) -> None:
        """The kernel's SIP ALG (nf_conntrack_sip + nf_nat_sip) on the router, as a home gateway
        runs it: UDP to port 5060 from the lan gets the "sip" helper, which rewrites the Via
        sent-by of requests to the public address and `received`/`rport` of answers back to the
        lan address, and refreshes its flows with its own (one-hour) timeout."""
        ruleset = "table inet nklabalg {}\ndelete table inet nklabalg\n"
        if on:
            ruleset += (
                "table inet nklabalg {\n"
                '  ct helper sip-5060 { type "sip" protocol udp; }\n'
                "  chain prerouting {\n"
                "    type filter hook prerouting priority filter; policy accept;\n"
                f'    iifname "{ROUTER_LAN_IF}" udp dport 5060 ct helper set "sip-5060"\n'
                "  }\n"
                "}\n"
            )
        self.run("router", ["nft", "-f", "-"], input=ruleset)

    def nat_ruleset(self) -> str:
        return self.run("router", ["nft", "list", "table", "ip", "nat"]).stdout

    def set_udp_timeouts(self, initial: int, stream: int) -> None:
        self.sysctl("router", UDP_TIMEOUT, str(initial))
        self.sysctl("router", UDP_TIMEOUT_STREAM, str(stream))

    def udp_timeouts(self) -> tuple[int, int]:
        initial = int(self.sysctl("router", UDP_TIMEOUT))
        return initial, int(self.sysctl("router", UDP_TIMEOUT_STREAM))

    def flush_conntrack(self) -> None:
        """A NAT reboot: every binding is forgotten.

        Forwarding and input stop while the table is flushed, as they do while a router
        reboots. Without that, a keepalive crossing at that moment can create its entry, with
        the old mapping, just after the flush: the "reboot" then changes nothing (seen once in
        CI: the quick detection benchmark waited for a binding-changed that could not come).
        The table is listed until it is empty, which nothing can refill meanwhile."""
        self.run(
            "router",
            ["nft", "-f", "-"],
            input=(
                f"table inet {REBOOT_TABLE} {{\n"
                "  chain forward { type filter hook forward priority -300; policy drop; }\n"
                "  chain input { type filter hook input priority -300; policy drop; }\n"
                "}\n"
            ),
        )
        try:
            for _ in range(5):
                # conntrack -F exits 1 on an empty table; what counts is the listing after it.
                self.run("router", ["conntrack", "-F"], check=False)
                listing = self.run("router", ["conntrack", "-L"], check=False)
                if listing.returncode == 0 and not listing.stdout.strip():
                    return
            raise LabError(f"conntrack entries survive a flush:\n{listing.stdout}{listing.stderr}")
        finally:
            self.run("router", ["nft", "delete", "table", "inet", REBOOT_TABLE])

    def conntrack_entries(self) -> str:
        """`conntrack -L` in the router (one line per flow; the 3rd field is the seconds left)."""
        return self.run("router", ["conntrack", "-L"], check=False).stdout

    def udp_entries(self, dport: int | None = None) -> list[str]:
        lines = [line for line in self.conntrack_entries().splitlines() if line.startswith("udp")]
        if dport is not None:
            lines = [line for line in lines if f" dport={dport} " in line + " "]
        return lines

    def readdress_router(self, new_ip: str) -> None:
        """ISP re-addressing: the router's wan address changes, masquerade follows, bindings go."""
        router = self.ns["router"]
        _host_run(
            [
                _ip(),
                "-n",
                router,
                "addr",
                "del",
                f"{self.router_wan_ip}/{PREFIXLEN}",
                "dev",
                ROUTER_WAN_IF,
            ]
        )
        _host_run(
            [_ip(), "-n", router, "addr", "add", f"{new_ip}/{PREFIXLEN}", "dev", ROUTER_WAN_IF]
        )
        self.router_wan_ip = new_ip
        self.flush_conntrack()

    def change_lan_address(self, new_ip: str) -> None:
        """The agent host's address changes; sockets bound to the old address stop working."""
        lan = self.ns["lan"]
        # Delete before adding: removing a primary address also removes its secondaries.
        _host_run([_ip(), "-n", lan, "addr", "del", f"{self.lan_ip}/{PREFIXLEN}", "dev", LAN_IF])
        _host_run([_ip(), "-n", lan, "addr", "add", f"{new_ip}/{PREFIXLEN}", "dev", LAN_IF])
        _host_run([_ip(), "-n", lan, "route", "replace", "default", "via", ROUTER_LAN_IP])
        self.lan_ip = new_ip

    # -- SIP servers -------------------------------------------------------------------------------

    def _log(self, name: str) -> IO[bytes]:
        return open(os.path.join(self.tmpdir, name), "ab")

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = os.path.join(self.tmpdir, name)
        if not os.path.exists(path):
            return ""
        with open(path, "rb") as handle:
            return b"\n".join(handle.read().splitlines()[-lines:]).decode("utf-8", "replace")

    def start_kamailio(
        self, port: int = 5060, timeout: float = 10.0, binary: str = "/usr/sbin/kamailio"
    ) -> subprocess.Popen[Any]:
        """Stateless Kamailio on SERVER_IP:port in wan; returns once it answers an OPTIONS."""
        if self._kamailio is not None:
            raise LabError("kamailio already running")
        rundir = os.path.join(self.tmpdir, f"kamailio-{port}")
        os.makedirs(rundir, exist_ok=True)
        with open(KAMAILIO_TEMPLATE) as handle:
            config = handle.read()
        config = config.replace("%%ADDRESS%%", self.server_ip).replace("%%PORT%%", str(port))
        cfg = os.path.join(rundir, "kamailio.cfg")
        with open(cfg, "w") as handle:
            handle.write(config)
        with self._log("kamailio.log") as log:
            proc = self.popen(
                "wan",
                [
                    binary,
                    "-f",
                    cfg,
                    "-DD",
                    "-E",
                    "-m",
                    "16",
                    "-M",
                    "4",
                    "-Y",
                    rundir,
                    "-P",
                    os.path.join(rundir, "kamailio.pid"),
                    "-w",
                    rundir,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._kamailio = proc
        if not self.wait_sip("wan", self.server_ip, port, timeout, proc):
            self.stop_kamailio()
            raise LabError("kamailio did not answer OPTIONS:\n" + self.log_tail("kamailio.log"))
        return proc

    def stop_kamailio(self) -> None:
        if self._kamailio is not None:
            self.stop(self._kamailio)
            self._kamailio = None

    def start_sipp_norport(
        self, port: int = 5070, timeout: float = 10.0, binary: str = "sipp"
    ) -> subprocess.Popen[Any]:
        """SIPp UAS on SERVER_IP:port in wan: answers OPTIONS echoing the Via, no received/rport."""
        if self._sipp is not None:
            raise LabError("sipp already running")
        workdir = os.path.join(self.tmpdir, f"sipp-{port}")
        os.makedirs(workdir, exist_ok=True)
        with self._log("sipp.log") as log:
            argv = [
                binary,
                "-sf",
                SIPP_SCENARIO,
                "-i",
                self.server_ip,
                "-p",
                str(port),
                "-t",
                "u1",
                "-nostdin",
                "-nd",
                "-deadcall_wait",
                "0",
                "-trace_err",
                "-error_file",
                os.path.join(workdir, "errors.log"),
            ]
            proc = self.popen(
                "wan",
                argv,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._sipp = proc
        if not self.wait_sip("wan", self.server_ip, port, timeout, proc):
            self.stop_sipp()
            raise LabError("sipp did not answer OPTIONS:\n" + self.log_tail("sipp.log"))
        return proc

    def stop_sipp(self) -> None:
        if self._sipp is not None:
            self.stop(self._sipp)
            self._sipp = None


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["udp-shell"]:
        return _udp_shell_main()
    if argv[:1] == ["sip-ping"] and len(argv) == 4:
        return _sip_ping_main(argv[1], int(argv[2]), float(argv[3]))
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
