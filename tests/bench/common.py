"""Shared machinery of the benchmarks: a private network namespace, processes and their cost
(PSS, CPU, context switches), agent and Kamailio configurations, nftables counters, packet
capture, and the figures the benchmarks report.

Rules:
- Everything runs inside one network namespace created for the run (only `lo`), entered by the
  harness process itself before it starts any thread or child: every socket, agent, Kamailio and
  capture lives there, so traffic never leaves it and no port collides with the host's.
- Every process is started in its own session and killed (whole group) by `Procs.close()`;
  every wait has a deadline. A benchmark never loops without a bound.
- CPU is read from /proc/PID/task/*/schedstat (nanoseconds on a CPU, user + system), summed over
  a process and its descendants (Kamailio forks several); memory is PSS from smaps_rollup, summed
  the same way, so shared pages are counted once across the processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

from tests.lab.netlab import pid_alive
from tests.support.tools import find_tool

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(__file__).resolve().parent
LAB_KAMAILIO_CFG = ROOT / "tests" / "lab" / "kamailio.cfg"
LAUNCHER = ROOT / "packaging" / "nat-keepalive.launcher"  # /usr/bin/nat-keepalive
LAUNCHER_NAME = "nat-keepalive"
# The interpreter itself, not a wrapper (pyenv shims are shell scripts that add ~50 ms).
PYTHON = os.path.realpath(sys.executable)
# What a Raspberry Pi or Debian box runs the agent with (the .deb depends on it and python3-yaml).
SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = ("127.0.0.1", 5060)
PINGER_PORT = 5070  # Kamailio's keepalive module sends from (and listens on) this port
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
NETNS_RE = re.compile(r"^nkb([0-9a-f]+)-bench$")


# ------------------------------------------------------------------------------------------------
# tools and the machine


def tool(name: str) -> str:
    found = find_tool(name)
    if found is None:
        raise BenchError(f"{name} is not installed")
    return found


class BenchError(RuntimeError):
    pass


def machine(python: str) -> dict[str, str]:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    kamailio = ""
    path = find_tool("kamailio")
    if path:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10).stdout
            kamailio = out.splitlines()[0].replace("version:", "").strip() if out else ""
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return {
        "cpu": model,
        "cores": str(os.cpu_count() or 0),
        "python": f"Python {version.stdout.strip()} ({python})",
        "kernel": platform.release(),
        "kamailio": kamailio,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


# ------------------------------------------------------------------------------------------------
# the private network namespace


def cleanup_stale_netns() -> None:
    """Remove benchmark namespaces left by a killed run (their creator's pid is gone)."""
    if not NETNS_DIR.is_dir():
        return
    for entry in NETNS_DIR.iterdir():
        match = NETNS_RE.match(entry.name)
        if match and not pid_alive(int(match.group(1), 16)):
            subprocess.run(
                [tool("ip"), "netns", "del", entry.name],
                capture_output=True,
                timeout=10,
                check=False,
            )


class PrivateNetns:
    """`nkb<pid>-bench` with only `lo` up; `enter()` moves this process into it."""

    def __init__(self) -> None:
        self.name = f"nkb{os.getpid():x}-bench"
        self.created = False

    def enter(self) -> None:
        if threading.active_count() > 1:
            raise BenchError("enter the namespace before starting any thread")
        ip = tool("ip")
        subprocess.run([ip, "netns", "add", self.name], check=True, capture_output=True, timeout=10)
        self.created = True
        subprocess.run(
            [ip, "-n", self.name, "link", "set", "lo", "up"],
            check=True,
            capture_output=True,
            timeout=10,
        )
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fd = os.open(NETNS_DIR / self.name, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns({self.name}): {os.strerror(err)}")
        finally:
            os.close(fd)

    def delete(self) -> None:
        if self.created:
            subprocess.run(
                [tool("ip"), "netns", "del", self.name],
                capture_output=True,
                timeout=10,
                check=False,
            )
            self.created = False


# ------------------------------------------------------------------------------------------------
# processes


def choose_python(explicit: str | None) -> str:
    """`explicit`, else Debian's python3 when it has PyYAML (what a device runs: no development
    packages or .pth hooks in its site), else this interpreter."""
    if explicit:
        return os.path.realpath(explicit)
    if os.access(SYSTEM_PYTHON, os.X_OK):
        done = subprocess.run(
            [SYSTEM_PYTHON, "-c", "import yaml"], capture_output=True, timeout=30, check=False
        )
        if done.returncode == 0:
            return os.path.realpath(SYSTEM_PYTHON)
    return PYTHON


def install_agent(source: Path, target: Path, python: str) -> Path:
    """Copy the `natkeepalive` package out of `source` and byte-compile it, like an installed
    package (the tree itself is never written to), with the packages' command beside it
    (LAUNCHER_NAME). Returns the folder to put on PYTHONPATH."""
    site = target / "site"
    shutil.copytree(
        source / "natkeepalive",
        site / "natkeepalive",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    shutil.copyfile(LAUNCHER, site / LAUNCHER_NAME)
    subprocess.run(
        [python, "-m", "compileall", "-q", str(site)], check=True, timeout=120, env=child_env(None)
    )
    return site


def child_env(site: Path | None) -> dict[str, str]:
    """The environment of every child: like an installed agent's (bytecode used, output not
    forced unbuffered), with `site` (the agent's copy) first on the path when given."""
    env = dict(os.environ)
    for name in (
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "NOTIFY_SOCKET",
        "JOURNAL_STREAM",
        "NAT_KEEPALIVE_CONFIG",
        "PYTHONPROFILEIMPORTTIME",
        "PYTHONPYCACHEPREFIX",
        "PYTHONPATH",
        "PYTHONHOME",
    ):
        env.pop(name, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the copy is compiled; nothing else is written
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return env


def _nofile(soft: int | None) -> Callable[[], None] | None:
    if soft is None:
        return None

    def apply() -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        value = soft if hard == resource.RLIM_INFINITY else min(soft, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (value, hard))

    return apply


class Proc:
    """A child in its own session; stderr lines (when captured) are kept with arrival times."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log: Path | None = None,
        capture: bool = False,
        nofile_soft: int | None = None,
        name: str = "",
    ) -> None:
        self.name = name or os.path.basename(argv[0])
        self.argv = list(argv)
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._log: IO[bytes] | None = open(log, "ab") if log is not None else None  # noqa: SIM115
        stderr: Any = subprocess.PIPE if capture else (self._log or subprocess.DEVNULL)
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_nofile(nofile_soft),
            text=capture,
        )
        self.started = time.monotonic()
        self._reader: threading.Thread | None = None
        if capture:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            with self._cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(
        self, predicate: Callable[[str], bool], timeout: float, count: int = 1, after: float = 0.0
    ) -> float:
        """Arrival time of the count-th line (arriving after `after`) that matches."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = [t for t, line in self.lines if t >= after and predicate(line)]
                if len(hits) >= count:
                    return hits[count - 1]
                remaining = deadline - time.monotonic()
                dead = self.popen.poll() is not None and (
                    self._reader is None or not self._reader.is_alive()
                )
                if remaining <= 0 or dead:
                    tail = "\n".join(line for _, line in self.lines[-15:])
                    why = "exited" if dead else f"nothing within {timeout:.0f} s"
                    raise BenchError(
                        f"{self.name}: {why} (wanted {count} matching lines); last lines:\n{tail}"
                    )
                self._cond.wait(min(remaining, 0.25))

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send_signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signum)

    def stop(self, grace: float = 5.0, signum: int = signal.SIGTERM) -> int | None:
        if self.popen.poll() is None:
            self.send_signal(signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.popen.returncode


class Procs:
    """Every process a benchmark starts; `close()` stops them all, newest first."""

    def __init__(self) -> None:
        self.items: list[Proc] = []

    def start(self, argv: Sequence[str], **kw: Any) -> Proc:
        proc = Proc(argv, **kw)
        self.items.append(proc)
        return proc

    def stop(self, proc: Proc, **kw: Any) -> int | None:
        code = proc.stop(**kw)
        if proc in self.items:
            self.items.remove(proc)
        return code

    def close(self) -> None:
        while self.items:
            self.items.pop().stop(grace=2.0)

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------
# cost of a process (and its descendants)


def descendants(pid: int) -> list[int]:
    """pid and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def pss_kb(pid: int, tree: bool = True) -> int:
    total = 0
    for each in descendants(pid) if tree else [pid]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
    return total


def _tasks(pid: int) -> list[str]:
    try:
        return [f"/proc/{pid}/task/{t}" for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def _tree_tasks(pid: int, tree: bool = True) -> list[str]:
    """Every thread of the process (and, with `tree`, of its descendants): one walk of /proc."""
    return [task for each in (descendants(pid) if tree else [pid]) for task in _tasks(each)]


def _cpu_of(tasks: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for task in tasks:
        with contextlib.suppress(OSError, ValueError, IndexError):
            out[task] = int(Path(f"{task}/schedstat").read_text().split()[0])
    return out


def _switches_of(tasks: Iterable[str]) -> int:
    total = 0
    for task in tasks:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"{task}/status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


def _ticks_of(tasks: Iterable[str]) -> dict[str, tuple[int, int]]:
    """(user, system) clock ticks of each thread, from /proc's stat."""
    out: dict[str, tuple[int, int]] = {}
    for task in tasks:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"{task}/stat").read_text().rsplit(")", 1)[1].split()
            out[task] = (int(fields[11]), int(fields[12]))  # utime, stime
    return out


@dataclass
class Sample:
    at: float
    cpu: int
    switches: int
    tasks: dict[str, int]
    ticks: dict[str, tuple[int, int]] = field(default_factory=dict)

    def cpu_since(self, before: Sample) -> int:
        """CPU ns used between two samples of a process tree, thread by thread: a thread missing
        from one sample (it ended, or /proc did not list it) cannot make the figure negative,
        as a difference of the two sums did once (Kamailio, 1000 destinations: -4.4 µs/ping)."""
        return sum(
            max(0, ns - before.tasks.get(task, 0))
            for task, ns in self.tasks.items()
            if task in before.tasks
        )

    def kernel_share_since(self, before: Sample) -> float:
        """The system part of the CPU used between two samples (ticks, so only a share: the
        kernel splits a thread's exact run time by where its ticks fell)."""
        user = system = 0
        for task, (u, s) in self.ticks.items():
            if task in before.ticks:
                user += max(0, u - before.ticks[task][0])
                system += max(0, s - before.ticks[task][1])
        return system / (user + system) if user + system else 0.0


def sample(pid: int) -> Sample:
    threads = _tree_tasks(pid)  # one walk of /proc: the counters below are read close together
    cpu = _cpu_of(threads)
    return Sample(
        time.monotonic(), sum(cpu.values()), _switches_of(threads), cpu, _ticks_of(threads)
    )


# ------------------------------------------------------------------------------------------------
# the agent


def agent_config(
    path: Path,
    *,
    count: int,
    base_port: int,
    status: Path,
    server: tuple[str, int] = SERVER,
    level: str = "info",
    **defaults: object,
) -> Path:
    """A configuration with `count` bindings on consecutive source ports toward `server`."""
    lines = [f"log: {{target: stderr, level: {level}}}", f"status_file: {status}"]
    if defaults:
        lines.append("defaults:")
        lines += [f"  {key}: {json.dumps(value)}" for key, value in defaults.items()]
    lines.append("bindings:")
    host, port = server
    lines += [
        f"  - {{name: b{i}, server: '{host}:{port}', source_port: {base_port + i}}}"
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_args(config: Path, status: Path) -> list[str]:
    """The `run` command line every benchmark gives the agent."""
    return ["run", "-c", str(config), "--log", "stderr", "--status-file", str(status)]


def agent_argv(python: str, site: Path, config: Path, status: Path) -> list[str]:
    """The agent as the packages start it: their /usr/bin/nat-keepalive (not `python3 -m
    natkeepalive`, whose runpy brings importlib.util, collections, functools and contextlib: +0.6
    MB PSS and start-up time the installed agent never pays)."""
    return [python, str(site / LAUNCHER_NAME), *run_args(config, status)]


def is_event(name: str, **fields: str) -> Callable[[str], bool]:
    needles = [f"event={name} "] + [f" {k}={v}" for k, v in fields.items()]

    def match(line: str) -> bool:
        text = line + " "
        return all(n in text for n in needles)

    return match


# ------------------------------------------------------------------------------------------------
# Kamailio: a stateless server (the lab's configuration) and the keepalive module as a pinger

KAMAILIO_COMMON = """#!KAMAILIO
debug=0
log_stderror=yes
children={children}
disable_tcp=yes
disable_sctp=yes
auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=no
listen=udp:{address}:{port}
"""


def kamailio_server_config(workdir: Path, address: str, port: int) -> Path:
    text = LAB_KAMAILIO_CFG.read_text()
    text = text.replace("%%ADDRESS%%", address).replace("%%PORT%%", str(port))
    path = workdir / f"kamailio-server-{port}.cfg"
    path.write_text(text)
    return path


def kamailio_pinger_config(
    workdir: Path,
    destinations: Iterable[str],
    interval: int,
    port: int = PINGER_PORT,
    children: int = 1,
) -> Path:
    """Kamailio with tm + keepalive: OPTIONS to every destination every `interval` seconds.
    children=1 is the leanest Kamailio; its own default is 8 UDP workers."""
    lines = [
        KAMAILIO_COMMON.format(address="127.0.0.1", port=port, children=children),
        'loadmodule "tm.so"',
        'loadmodule "keepalive.so"',
        f'modparam("keepalive", "ping_interval", {interval})',
        'modparam("keepalive", "delete_counter", 0)',
    ]
    lines += [f'modparam("keepalive", "destination", "{uri}")' for uri in destinations]
    lines += ["request_route {", "    drop;", "}", ""]
    path = workdir / f"kamailio-pinger-{port}-{children}.cfg"
    path.write_text("\n".join(lines))
    return path


# The Kamailio pingers the agent is compared with: the leanest (one UDP worker, tm + keepalive),
# that with Kamailio's default 8 workers, and Debian's shipped /etc/kamailio/kamailio.cfg with the
# keepalive module added (what a user who installs the package and adds the module runs; it
# listens on loopback only here). Each sends from its own port: PINGER_PORT + its index.
PINGERS = ("lean", "default", "stock")
PINGER_NOTES = {
    "lean": "children=1, tm + keepalive: the leanest",
    "default": "children=8 (Kamailio's default), tm + keepalive",
    "stock": "Debian's /etc/kamailio/kamailio.cfg + keepalive",
}
STOCK_KAMAILIO_CFG = Path("/etc/kamailio/kamailio.cfg")


def pinger_port(kind: str) -> int:
    return PINGER_PORT + PINGERS.index(kind)


def kamailio_pinger(workdir: Path, kind: str, destinations: Sequence[str], interval: int) -> Path:
    """The configuration of pinger `kind` (see PINGERS)."""
    port = pinger_port(kind)
    if kind != "stock":
        return kamailio_pinger_config(
            workdir, destinations, interval, port=port, children=1 if kind == "lean" else 8
        )
    text = STOCK_KAMAILIO_CFG.read_text()
    listen = "# listen=udp:10.0.0.10:5060"
    anchor = 'loadmodule "counters.so"\n'
    if listen not in text or anchor not in text:
        raise BenchError(f"{STOCK_KAMAILIO_CFG} is not the shape this benchmark knows")
    text = text.replace(listen, f"listen=udp:127.0.0.1:{port}\nlisten=tcp:127.0.0.1:{port}", 1)
    added = [
        'loadmodule "keepalive.so"',
        f'modparam("keepalive", "ping_interval", {interval})',
        'modparam("keepalive", "delete_counter", 0)',
    ]
    added += [f'modparam("keepalive", "destination", "{uri}")' for uri in destinations]
    text = text.replace(anchor, anchor + "\n".join(added) + "\n", 1)
    path = workdir / f"kamailio-pinger-{port}-stock.cfg"
    path.write_text(text)
    return path


def kamailio_argv(config: Path, rundir: Path, memory: Sequence[str] = ()) -> list[str]:
    rundir.mkdir(parents=True, exist_ok=True)
    return [
        tool("kamailio"),
        "-f",
        str(config),
        "-DD",
        "-E",
        *memory,
        "-Y",
        str(rundir),
        "-P",
        str(rundir / "kamailio.pid"),
        "-w",
        str(rundir),
    ]


def pinger_destinations(count: int, server: tuple[str, int] = SERVER) -> list[str]:
    """Distinct URIs on the same server (the module keeps one entry per URI)."""
    host, port = server
    if count == 1:
        return [f"sip:{host}:{port}"]
    return [f"sip:k{i}@{host}:{port}" for i in range(count)]


def options_request(local_port: int, server: tuple[str, int] = SERVER) -> bytes:
    host, port = server
    branch = "z9hG4bK" + os.urandom(8).hex()
    return (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:bench@127.0.0.1>;tag={os.urandom(4).hex()}\r\n"
        f"To: <sip:{host}:{port}>\r\n"
        f"Call-ID: {os.urandom(8).hex()}\r\n"
        "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def wait_sip(server: tuple[str, int], timeout: float, proc: Proc | None = None) -> None:
    """Return once `server` answers an OPTIONS; BenchError after `timeout` or if `proc` died."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.1)
        while time.monotonic() < deadline:
            if proc is not None and not proc.alive():
                break
            with contextlib.suppress(OSError):
                sock.sendto(options_request(sock.getsockname()[1], server), server)
                if sock.recv(65535).startswith(b"SIP/2.0 "):
                    return
    raise BenchError(f"no SIP answer from {server[0]}:{server[1]}")


# ------------------------------------------------------------------------------------------------
# nftables counters (packets counted by the kernel: no cost to the processes measured)


class Counters:
    """Named counters in a table of our own; `rules` maps a name to an nft match expression."""

    TABLE = "nkbench"

    def __init__(self, rules: dict[str, str]) -> None:
        self.names = list(rules)
        body = [f"table inet {self.TABLE} {{"]
        body += [f"  counter {name} {{ }}" for name in rules]
        body += ["  chain out {", "    type filter hook output priority 0; policy accept;"]
        body += [f'    {expr} counter name "{name}"' for name, expr in rules.items()]
        body += ["  }", "}"]
        script = (
            f"table inet {self.TABLE} {{}}\ndelete table inet {self.TABLE}\n"
            + "\n".join(body)
            + "\n"
        )
        subprocess.run(
            [tool("nft"), "-f", "-"],
            input=script,
            text=True,
            check=True,
            capture_output=True,
            timeout=10,
        )

    def read(self) -> dict[str, int]:
        out = subprocess.run(
            [tool("nft"), "-j", "list", "counters", "table", "inet", self.TABLE],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
        packets: dict[str, int] = {}
        for item in json.loads(out).get("nftables", []):
            counter = item.get("counter")
            if counter:
                packets[counter["name"]] = int(counter["packets"])
        return packets

    def close(self) -> None:
        subprocess.run(
            [tool("nft"), "delete", "table", "inet", self.TABLE],
            capture_output=True,
            timeout=10,
            check=False,
        )


# ------------------------------------------------------------------------------------------------
# packet capture (dumpcap on lo, classic pcap) and a reader for it


@dataclass(frozen=True)
class Packet:
    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


class Capture:
    """dumpcap on `lo` with a capture filter; `stop()` flushes the file and returns packets."""

    def __init__(self, path: Path, bpf: str, procs: Procs) -> None:
        self.path = path
        self.procs = procs
        self.proc = procs.start(
            [tool("dumpcap"), "-i", "lo", "-f", bpf, "-w", str(path), "-P", "-B", "64", "-q"],
            capture=True,
            name="dumpcap",
        )
        # dumpcap says so on stderr once the filter is installed and packets are being kept
        self.proc.wait_line(lambda line: "Capturing on" in line, timeout=15)

    def stop(self) -> list[Packet]:
        time.sleep(0.2)  # the last datagrams reach the ring buffer
        self.procs.stop(self.proc, signum=signal.SIGINT, grace=10)
        return read_pcap(self.path)


def read_pcap(path: Path) -> list[Packet]:
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise BenchError(f"{path}: not a classic pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    link_len = {1: 14, 113: 16, 276: 20, 0: 4}.get(linktype)
    if link_len is None:
        raise BenchError(f"{path}: link type {linktype} not handled")
    packets, offset = [], 24
    while offset + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[offset : offset + 16])
        frame = data[offset + 16 : offset + 16 + incl]
        offset += 16 + incl
        ip = frame[link_len:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        udp = ip[ihl:]
        sport, dport, length = struct.unpack("!HHH", udp[:6])
        packets.append(
            Packet(
                sec + frac / (1e9 if nano else 1e6),
                socket.inet_ntoa(ip[12:16]),
                sport,
                socket.inet_ntoa(ip[16:20]),
                dport,
                udp[8:length],
            )
        )
    return packets


def sip_header(payload: bytes, name: str) -> str | None:
    for line in payload.split(b"\r\n"):
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name.lower().encode():
            return value.strip().decode("latin-1")
    return None


# ------------------------------------------------------------------------------------------------
# figures and results


@dataclass
class Figure:
    name: str
    values: list[float]
    unit: str
    note: str = ""
    digits: int = 1

    def fmt(self, value: float) -> str:
        return f"{value:,.{self.digits}f}"

    def spread(self) -> tuple[float, float, float]:
        return min(self.values), statistics.median(self.values), max(self.values)


@dataclass
class Section:
    name: str
    title: str
    setup: str = ""
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


class PortPool:
    """Consecutive local port ranges for bindings; below the ephemeral range (32768+)."""

    def __init__(self, low: int = 20000, high: int = 32000) -> None:
        self.low, self.high, self.next = low, high, low

    def take(self, count: int) -> int:
        if self.next + count > self.high:
            self.next = self.low  # earlier users are gone by now: benchmarks run one by one
        base = self.next
        self.next += count
        return base


@dataclass
class Context:
    """What a benchmark gets: its mode, where to write, and where to put its figures."""

    quick: bool
    runs: int
    workdir: Path
    python: str
    site: Path  # the agent's byte-compiled copy
    procs: Procs
    profile: bool = True  # the CPU benchmark's cProfile run
    ports: PortPool = field(default_factory=PortPool)
    sections: list[Section] = field(default_factory=list)
    echo: Callable[[str], None] = print

    def env(self) -> dict[str, str]:
        return child_env(self.site)

    def agent_argv(self, config: Path, status: Path) -> list[str]:
        return agent_argv(self.python, self.site, config, status)

    def section(self, name: str, title: str, setup: str = "") -> Section:
        section = Section(name, title, setup)
        self.sections.append(section)
        return section

    def figure(
        self,
        section: Section,
        name: str,
        values: Sequence[float],
        unit: str,
        note: str = "",
        digits: int = 1,
    ) -> Figure:
        figure = Figure(name, [float(v) for v in values], unit, note, digits)
        section.figures.append(figure)
        lo, mid, hi = figure.spread()
        runs = (
            f" (min {figure.fmt(lo)}, max {figure.fmt(hi)}, n={len(figure.values)})"
            if len(figure.values) > 1
            else ""
        )
        self.echo(f"  {name}: {figure.fmt(mid)} {unit}{runs}" + (f"  [{note}]" if note else ""))
        return figure

    def note(self, section: Section, text: str) -> None:
        section.notes.append(text)
        for line in text.splitlines():
            self.echo(f"  | {line}")

    def subdir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path
