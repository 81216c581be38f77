"""Real SIP stacks, as Debian (or npm) ships them, run as the server host of a NAT lab.

Every stack listens on SERVER_IP:PORT in the lab's `wan` namespace and is started and stopped
through the Lab, so close() kills it. Files a package expects at a fixed path (Kamailio's control
sockets under /run/kamailio, ejabberd's spool and logs) are bind-mounted from the lab's temp folder
in the private mount namespace that `ip netns exec` gives each process: labs running in parallel
never share them, and the host's copies are never touched.

    server = start_stack(lab, "kamailio-stock")
    server.stop(); server.start()         # an outage
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from tests.lab.netlab import Lab, LabError

HERE = os.path.dirname(os.path.abspath(__file__))
STACKS_DIR = os.path.join(HERE, "stacks")
PORT = 5060
STUN_PORT = 3478
# npm's `sip`, pinned: tests/run.sh installs it into NODE_PREFIX.
NODE_SIP_VERSION = "0.0.6"
NODE_PREFIX = os.environ.get("NK_NODE_PREFIX", "/var/cache/nat-keepalive-lab/node")

# name -> (what it is, tools it needs)
STACKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "kamailio-stock": ("Kamailio 5.6, Debian's /etc/kamailio/kamailio.cfg", ("kamailio",)),
    "kamailio-sentby": (
        "Kamailio 5.6, the lab's config answering to the Via sent-by",
        ("kamailio",),
    ),
    "ejabberd": (
        "ejabberd 23.01, Debian's ejabberd.yml plus the SIP listener and mod_sip",
        ("ejabberdctl",),
    ),
    "baresip": ("baresip 1.0 with the configuration it writes on its first start", ("baresip",)),
    "linphone": ("linphonec 5.1 with its default configuration", ("linphonec",)),
    "sipp": ("SIPp 3.6 UAS answering OPTIONS (the lab's scenario)", ("sipp",)),
    "node-sip": (f"Node.js with npm sip {NODE_SIP_VERSION}, the README's server loop", ("node",)),
    "perl-net-sip": ("Perl Net::SIP::Simple listening as a user agent", ("perl",)),
    "coturn": (
        "coturn 4.6 with Debian's /etc/turnserver.conf (a STUN server, not SIP)",
        ("turnserver",),
    ),
}


def missing(name: str) -> str | None:
    """What the stack needs beyond its tools and is not installed (tests/run.sh installs it)."""
    if name == "ejabberd" and not glob.glob("/usr/lib/erlang/lib/p1_sip-*"):
        return "erlang-p1-sip (ejabberd's SIP library)"
    if name == "node-sip":
        manifest = os.path.join(NODE_PREFIX, "node_modules", "sip", "package.json")
        try:
            with open(manifest) as handle:
                version = json.load(handle).get("version")
        except (OSError, ValueError):
            version = None
        if version != NODE_SIP_VERSION:
            return f"npm sip@{NODE_SIP_VERSION} in {NODE_PREFIX}"
    if name == "perl-net-sip":
        done = subprocess.run(["perl", "-MNet::SIP", "-e", "1"], capture_output=True, check=False)
        if done.returncode != 0:
            return "libnet-sip-perl"
    return None


def _private_mounts(mounts: Sequence[tuple[str, str]], argv: Sequence[str]) -> list[str]:
    """argv run after bind-mounting each (source, target): the mounts live only in the process's
    own mount namespace."""
    script = []
    args: list[str] = []
    for index, (source, target) in enumerate(mounts):
        s, t = f'"${{{2 * index + 1}}}"', f'"${{{2 * index + 2}}}"'
        script.append(f"mkdir -p {t} && mount --bind {s} {t} &&")
        args += [source, target]
    count = len(args)
    script.append(f'shift {count} && exec "$@"')
    return ["sh", "-c", " ".join(script), "sh", *args, *argv]


class StackServer:
    """One stack on SERVER_IP:port in a lab: start() returns once it answers, stop() kills it."""

    ready_by_sip = True

    def __init__(self, lab: Lab, name: str, port: int = PORT) -> None:
        self.lab = lab
        self.name = name
        self.port = port
        self.proc: subprocess.Popen[Any] | None = None
        self.workdir = os.path.join(lab.tmpdir, name)
        os.makedirs(self.workdir, exist_ok=True)
        self.log_name = f"{name}.log"
        self.prepare()

    def prepare(self) -> None:
        """Write configuration files into workdir (once per lab)."""

    def argv(self) -> list[str]:
        raise NotImplementedError

    def popen_kw(self) -> dict[str, Any]:
        return {"stdin": subprocess.DEVNULL}

    def start(self, timeout: float = 30.0) -> None:
        if self.proc is not None:
            raise LabError(f"{self.name} already running")
        with open(os.path.join(self.lab.tmpdir, self.log_name), "ab") as log:
            self.proc = self.lab.popen(
                "wan",
                self.argv(),
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                **self.popen_kw(),
            )
        if not self.wait_ready(timeout):
            tail = self.lab.log_tail(self.log_name, 30)
            self.stop()
            raise LabError(f"{self.name} did not answer on port {self.port}:\n{tail}")

    def wait_ready(self, timeout: float) -> bool:
        return self.lab.wait_sip("wan", self.lab.server_ip, self.port, timeout, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.lab.stop(self.proc)
            self.proc = None


class KamailioStock(StackServer):
    config = "/etc/kamailio/kamailio.cfg"  # a subclass may point at a changed copy

    def prepare(self) -> None:
        os.makedirs(os.path.join(self.workdir, "run"), exist_ok=True)

    def argv(self) -> list[str]:
        run = os.path.join(self.workdir, "run")
        return _private_mounts(
            [(run, "/run/kamailio")],
            [
                "/usr/sbin/kamailio",
                "-f",
                self.config,
                "-DD",
                "-E",
                "-m",
                "16",
                "-M",
                "4",
                "-n",
                "2",
                "-Y",
                run,
                "-P",
                os.path.join(run, "pid"),
                "-w",
                run,
            ],
        )


class KamailioSentBy(StackServer):
    """netlab's own Kamailio (tests/lab/kamailio.cfg)."""

    def start(self, timeout: float = 30.0) -> None:
        self.proc = self.lab.start_kamailio(self.port, timeout)

    def stop(self) -> None:
        self.lab.stop_kamailio()
        self.proc = None


class Sipp(StackServer):
    def start(self, timeout: float = 30.0) -> None:
        self.proc = self.lab.start_sipp_norport(self.port, timeout)

    def stop(self) -> None:
        self.lab.stop_sipp()
        self.proc = None


class Ejabberd(StackServer):
    """Debian's ejabberd.yml as shipped, plus what the ejabberd docs add for SIP: a UDP listener
    with module ejabberd_sip and mod_sip. Spool and logs are per lab (owned by the ejabberd
    user, as ejabberdctl drops to it)."""

    def prepare(self) -> None:
        with open("/etc/ejabberd/ejabberd.yml") as handle:
            config = yaml.safe_load(handle)
        config["listen"].append(
            {
                "port": self.port,
                "ip": self.lab.server_ip,
                "transport": "udp",
                "module": "ejabberd_sip",
            }
        )
        config["modules"]["mod_sip"] = {}
        user = pwd.getpwnam("ejabberd")
        for sub in ("spool", "logs", "etc"):
            path = os.path.join(self.workdir, sub)
            os.makedirs(path, exist_ok=True)
            os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(self.workdir, 0o755)
        os.chmod(self.lab.tmpdir, 0o755)
        etc = os.path.join(self.workdir, "etc")
        for name in os.listdir("/etc/ejabberd"):
            source = os.path.join("/etc/ejabberd", name)
            if os.path.isfile(source):
                shutil.copy2(source, etc)
                os.chown(os.path.join(etc, name), user.pw_uid, user.pw_gid)
        with open(os.path.join(etc, "ejabberd.yml"), "w") as handle:
            yaml.safe_dump(config, handle)
        # The Erlang cookie lives in the ejabberd user's home, the spool.
        cookie = os.path.join(self.workdir, "spool", ".erlang.cookie")
        with open(cookie, "w") as handle:
            handle.write(os.urandom(10).hex().upper())
        os.chmod(cookie, 0o400)
        os.chown(cookie, user.pw_uid, user.pw_gid)

    def argv(self) -> list[str]:
        spool, logs = os.path.join(self.workdir, "spool"), os.path.join(self.workdir, "logs")
        etc = os.path.join(self.workdir, "etc")
        return _private_mounts(
            [(spool, "/var/lib/ejabberd"), (logs, "/var/log/ejabberd"), (etc, "/etc/ejabberd")],
            ["/usr/sbin/ejabberdctl", "foreground"],
        )

    def stop(self) -> None:
        super().stop()
        # ejabberdctl runs the Erlang VM through su as the ejabberd user, in a session of its
        # own that the process-group kill misses: its processes in this lab's server namespace
        # are killed by pid (epmd too; the next start brings its own).
        uid = pwd.getpwnam("ejabberd").pw_uid
        for _ in range(50):
            pids = [pid for pid in self.lab.namespace_pids("wan") if _owner(pid) == uid]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        raise LabError("ejabberd's processes survive SIGKILL")


def _owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


class Baresip(StackServer):
    """baresip with the config it writes on its first start in an empty folder, except the
    listening address (sip_listen), which must be the lab's server address."""

    def prepare(self) -> None:
        conf = os.path.join(self.workdir, "conf")
        os.makedirs(conf, exist_ok=True)
        # Without an account baresip has no user agent and ignores every request; one local
        # account that never registers (regint=0) is the least a user has.
        with open(os.path.join(conf, "accounts"), "w") as handle:
            handle.write(f"<sip:lab@{self.lab.server_ip}>;regint=0\n")
        # Its config template, written by baresip itself on a first short run; the one line
        # changed is the listening address (commented out in the template: a random port).
        self.lab.run("wan", ["/usr/bin/baresip", "-f", conf, "-t", "1"], timeout=20, check=False)
        path = os.path.join(conf, "config")
        with open(path) as handle:
            template = handle.read()
        if "#sip_listen" not in template:
            raise LabError("baresip's config template has no sip_listen line:\n" + template)
        with open(path, "w") as handle:
            handle.write(
                template.replace(
                    "#sip_listen", f"sip_listen\t\t{self.lab.server_ip}:{self.port} #", 1
                )
            )

    def argv(self) -> list[str]:
        return ["/usr/bin/baresip", "-f", os.path.join(self.workdir, "conf")]

    def popen_kw(self) -> dict[str, Any]:
        return {"stdin": subprocess.PIPE}  # it reads commands from stdin and quits at its end


class Linphone(StackServer):
    def prepare(self) -> None:
        self.rc = os.path.join(self.workdir, "linphonerc")
        open(self.rc, "w").close()  # linphonec fills in its defaults
        # Its message database; without the folder it runs on, logging an error.
        os.makedirs(os.path.join(self.workdir, ".local", "share", "linphone"), exist_ok=True)
        # linphone listens only while it sees a usable network, which it judges by a default
        # route: the lab's server host gets one (it leads nowhere beyond the router).
        self.lab.run("wan", ["ip", "route", "replace", "default", "via", self.lab.router_wan_ip])

    def argv(self) -> list[str]:
        return ["/usr/bin/linphonec", "-c", self.rc]

    def popen_kw(self) -> dict[str, Any]:
        env = dict(os.environ, HOME=self.workdir)
        return {"stdin": subprocess.PIPE, "env": env}


class NodeSip(StackServer):
    def argv(self) -> list[str]:
        return [
            "node",
            os.path.join(STACKS_DIR, "node_sip_uas.js"),
            self.lab.server_ip,
            str(self.port),
        ]

    def popen_kw(self) -> dict[str, Any]:
        env = dict(os.environ, NODE_PATH=os.path.join(NODE_PREFIX, "node_modules"))
        return {"stdin": subprocess.DEVNULL, "env": env}


class PerlNetSip(StackServer):
    def argv(self) -> list[str]:
        return [
            "perl",
            os.path.join(STACKS_DIR, "net_sip_uas.pl"),
            self.lab.server_ip,
            str(self.port),
        ]


def _coturn(lab: Lab, name: str, port: int) -> StackServer:
    """turnserver with Debian's config file as shipped, on one address (tests/lab/stun_lab.py
    holds the server, which can also run with RFC 5780 on and two addresses)."""
    from tests.lab.stun_lab import CoturnServer

    return CoturnServer(lab, rfc5780=False, port=port, name=name)


_CLASSES: dict[str, Callable[[Lab, str, int], StackServer]] = {
    "kamailio-stock": KamailioStock,
    "kamailio-sentby": KamailioSentBy,
    "ejabberd": Ejabberd,
    "baresip": Baresip,
    "linphone": Linphone,
    "sipp": Sipp,
    "node-sip": NodeSip,
    "perl-net-sip": PerlNetSip,
    "coturn": _coturn,
}


def start_stack(lab: Lab, name: str, port: int | None = None) -> StackServer:
    if port is None:
        port = STUN_PORT if name == "coturn" else PORT
    server = _CLASSES[name](lab, name, port)
    server.start()
    return server
