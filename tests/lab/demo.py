"""The nat-keepalive demo: the agent behind a real Linux NAT, talking to Kamailio, in ~1 minute.

    sudo bash tests/lab/demo.sh      # installs what is missing, then runs this file
    sudo python3 tests/lab/demo.py   # when kamailio, nftables, conntrack and iproute2 are there

It builds the NAT lab of tests/lab/netlab.py (namespaces lan / router / wan), then:
  phase 1: keepalive interval 8 s over a NAT that forgets a UDP binding after 5 s idle. The NAT
           keeps the port, so the public port never changes; the inbound check still sees every
           expiry.
  phase 2: interval 3 s over the same NAT: the binding stays, every inbound check is answered.
Each phase ends with `nat-keepalive status`; then it removes everything (also on Ctrl-C).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import IO, Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AGENT_DIR = os.path.join(ROOT, "agent")
sys.path[:0] = [ROOT, AGENT_DIR]

from natkeepalive.logline import parse_line  # noqa: E402
from tests.lab import netlab  # noqa: E402

NAT_TIMEOUT = 5
SOURCE_PORT = 5062
CHECK_TIMEOUT = 1.0
PHASES = (
    # (title, interval, jitter, seconds, what the user is watching)
    (
        "phase 1: interval 8 s, NAT timeout 5 s  (too long)",
        8,
        0.0,
        27.0,
        "The NAT forgets the binding after 5 s of silence; keepalives come every 8 s. The NAT\n"
        "  keeps the port, so every answer still says "
        "203.0.113.1:5062 (rport unchanged). Watch the\n"
        "  inbound check: sent from a second socket to "
        "the server, it asks for the answer to go to\n"
        "  the public address:port. Alive -> it arrives "
        "on the binding's socket; expired -> the NAT\n"
        "  drops it.",
    ),
    (
        "phase 2: interval 3 s, NAT timeout 5 s  (good)",
        3,
        0.2,
        17.0,
        "Keepalives every 2.4-3 s keep the binding open through more than 3 NAT timeouts: every\n"
        "  inbound check is answered into the binding and no expiry is reported.",
    ),
)
REQUIRED = ("ip", "nft", "conntrack", "kamailio")


class Stop(Exception):
    pass


class Screen:
    """Timestamped, optionally coloured lines."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.color = out.isatty() and os.environ.get("NO_COLOR") is None
        self.t0 = time.monotonic()

    def paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def say(self, text: str = "", code: str = "") -> None:
        self.out.write((self.paint(text, code) if code else text) + "\n")
        self.out.flush()

    def event(self, text: str, code: str = "") -> None:
        stamp = f"[{time.monotonic() - self.t0:6.1f}s]"
        self.say(f"  {self.paint(stamp, '2')} " + (self.paint(text, code) if code else text))


def find(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    return None


def agent_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = AGENT_DIR + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NOTIFY_SOCKET", None)
    return env


def write_config(path: str, interval: float, jitter: float) -> None:
    with open(path, "w") as handle:
        handle.write(
            "log: {target: stderr, level: debug}\n"
            "defaults:\n"
            f"  interval: {interval}\n"
            f"  jitter: {jitter}\n"
            f"  timeout: {CHECK_TIMEOUT}\n"
            "  inbound_check: 1        # an inbound check before every keepalive\n"
            "  retry_interval: 2\n"
            "bindings:\n"
            "  - name: provider\n"
            f"    server: {netlab.SERVER_IP}:5060\n"
            f"    source_port: {SOURCE_PORT}\n"
        )


class Narrator:
    """Turns the agent's log lines into sentences; tracks what the inbound check found."""

    def __init__(self, screen: Screen) -> None:
        self.screen = screen
        self.check_sent_at: float | None = None
        self.expiries = 0
        self.checks = {"alive": 0, "silent": 0}

    def line(self, raw: str) -> None:
        if "event=" not in raw:
            if raw.strip():
                self.screen.event(f"agent: {raw.strip()}", "2")
            return
        try:
            name, f = parse_line(raw)
        except ValueError:
            self.screen.event(f"agent: {raw.strip()}", "2")
            return
        now = time.monotonic()
        say = self.screen.event
        if name == "probe-sent" and f["kind"] == "inbound":
            self.check_sent_at = now
            say("inbound check sent from a second socket (Via = public address, no rport)", "2")
        elif name == "probe-sent":
            if self.check_sent_at is not None:
                waited = now - self.check_sent_at
                if waited < CHECK_TIMEOUT / 2:
                    self.checks["alive"] += 1
                    say("  -> answered on the binding's own socket: the binding is ALIVE", "32")
                else:
                    self.checks["silent"] += 1
                    say(
                        f"  -> no answer after {waited:.1f} s: the NAT dropped it; the keepalive "
                        "decides (answered = expired, silent = server down)",
                        "33",
                    )
                self.check_sent_at = None
            kind = "keepalive" if f["kind"] == "keepalive" else "confirmation probe"
            say(f"{kind} #{f['cseq']} sent from {SOURCE_PORT}", "2")
        elif name == "probe-answered":
            say(
                f"  answered {f['status']} in {f['rtt_ms']} ms; server saw us at {f['public']}", "2"
            )
        elif name == "probe-timeout":
            say(f"  probe #{f['cseq']} unanswered", "33")
        elif name == "started":
            say(f"agent started (version {f['version']})", "1")
        elif name == "stopped":
            say(f"agent stopped ({f['reason']})", "1")
        elif name == "binding-learned":
            say(f"LEARNED public mapping {f['public']} for local {f['local']}", "1;36")
        elif name == "reachable":
            say(f"server reachable (rtt {f['rtt_ms']} ms)", "1;32")
        elif name == "binding-expired":
            self.expiries += 1
            say(
                f"BINDING EXPIRED: {f['public']} was idle {f['idle_s']} s "
                f"(detected by {f['detected']}); the keepalive opened a new one",
                "1;31",
            )
        elif name == "binding-changed":
            say(f"BINDING CHANGED {f['old']} -> {f['new']} ({f['cause']})", "1;31")
        else:
            fields = " ".join(f"{k}={v}" for k, v in f.items())
            say(f"{name} {fields}", "1;33")


def show_status(screen: Screen, index: int, status: str) -> None:
    screen.say()
    screen.say(f"nat-keepalive status --status-file ...  (end of phase {index + 1})", "1")
    table = subprocess.run(
        [sys.executable, "-m", "natkeepalive", "status", "--status-file", status],
        capture_output=True,
        text=True,
        env=agent_env(),
        check=False,
    )
    screen.say(table.stdout.rstrip() or table.stderr.rstrip())
    screen.say()


def run_phase(lab: netlab.Lab, screen: Screen, index: int, status: str) -> Narrator:
    title, interval, jitter, seconds, explanation = PHASES[index]
    screen.say()
    screen.say(title, "1;4")
    screen.say("  " + explanation)
    screen.say()
    config = os.path.join(lab.tmpdir, f"phase{index + 1}.yaml")
    write_config(config, interval, jitter)
    narrator = Narrator(screen)
    agent = lab.popen(
        "lan",
        [
            sys.executable,
            "-m",
            "natkeepalive",
            "run",
            "-c",
            config,
            "--log",
            "stderr",
            "--status-file",
            status,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=agent_env(),
    )
    assert agent.stderr is not None
    fd = agent.stderr.fileno()
    buffer = b""
    deadline = time.monotonic() + seconds
    stopping = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 and not stopping:
            # Fresh counters in the status file, the table while the agent runs (a stopped
            # agent's file is reported as stale), then a clean stop (`stopped` is the last line).
            agent.send_signal(signal.SIGUSR1)
            time.sleep(0.2)
            show_status(screen, index, status)
            agent.send_signal(signal.SIGTERM)
            stopping = True
        ready, _, _ = select.select([fd], [], [], max(remaining, 0.1) if not stopping else 2.0)
        if not ready:
            if stopping:
                break
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n" in buffer:
            raw, _, buffer = buffer.partition(b"\n")
            narrator.line(raw.decode("utf-8", "replace"))
    lab.stop(agent)
    screen.say()
    screen.say(
        f"{title.split(':')[0]}: {narrator.expiries} expiries reported; inbound checks "
        f"answered {narrator.checks['alive']}, unanswered {narrator.checks['silent']}",
        "1",
    )
    return narrator


def main() -> int:
    screen = Screen(sys.stdout)
    if os.geteuid() != 0:
        screen.say(
            "The demo builds network namespaces: run it as root (sudo bash tests/lab/demo.sh)."
        )
        return 2
    missing = [tool for tool in REQUIRED if find(tool) is None]
    if missing:
        screen.say(
            f"Missing: {', '.join(missing)}. Run `sudo bash tests/lab/demo.sh`, which "
            "installs them with apt-get first."
        )
        return 2

    def on_term(signum: int, frame: FrameType | None) -> Any:
        raise Stop()

    signal.signal(signal.SIGTERM, on_term)
    # Started in the background by a script, SIGINT arrives ignored: Ctrl-C must still clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    netlab.cleanup_stale()
    try:
        with netlab.Lab() as lab:
            screen.say("nat-keepalive demo: a real Linux NAT in network namespaces", "1")
            screen.say(f"""
  lan     {netlab.LAN_IP}  the agent, local port {SOURCE_PORT}
    |
  router  {netlab.ROUTER_LAN_IP} / {netlab.ROUTER_WAN_IP}  nftables masquerade (keeps ports),
    |       UDP bindings forgotten after {NAT_TIMEOUT} s idle, unsolicited input dropped
  wan     {netlab.SERVER_IP}  Kamailio answering OPTIONS (adds received/rport)""")
            lab.set_udp_timeouts(NAT_TIMEOUT, NAT_TIMEOUT)
            lab.start_kamailio(binary=find("kamailio") or "kamailio")
            for index in range(len(PHASES)):
                status = os.path.join(lab.tmpdir, f"status{index + 1}.json")
                run_phase(lab, screen, index, status)
            screen.say()
            screen.say(
                "What you saw: with the too-long interval the NAT forgot the binding in "
                "every cycle,\nalthough rport never changed; only the inbound check "
                "noticed. With the good interval\nthe binding stayed and every check was "
                "answered into it."
            )
            screen.say("cleaning up: agent, Kamailio, namespaces ...")
    except (KeyboardInterrupt, Stop):
        screen.say("\ninterrupted: everything the demo started has been removed")
        return 130
    except netlab.LabError as exc:
        screen.say(f"the lab failed: {exc}")
        return 1
    screen.say(f"done in {time.monotonic() - started:.0f} s; nothing is left behind.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
