"""A Debian 12 container booted by systemd-nspawn, with systemd as its PID 1 and journald.

- The root file system is made once with debootstrap from the host's Debian mirror and kept,
  untouched, under CACHE; every boot runs on an overlay of it (or a copy, where /var/tmp cannot
  hold an overlay's upper layer), so a run never changes the cache.
- The container is not registered with machined (this host's PID 1 need not be systemd); commands
  run inside it through nsenter into all of its namespaces.
- It has a network of its own with only loopback: what the test sends stays inside.
- Whatever happens, `close()` stops the container and removes the overlay; a run killed outright
  leaves a directory named after its PID, which the next run removes.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

CACHE = Path(os.environ.get("NK_SYSTEM_CACHE", "/var/cache/nat-keepalive-systemtest"))
SUITE = "bookworm"
# minbase plus what the service needs (systemd as init, dbus for systemctl) and a SIP server
# that answers OPTIONS as shipped; iproute2 for `ss`.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-yaml", "kamailio", "iproute2")
WORK = Path("/var/tmp")
WORK_PREFIX = "nk-system-"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ContainerError(Exception):
    """The container could not be made or booted; the message says why."""


def mirror() -> str:
    """The host's Debian mirror (one-line or deb822 sources), else deb.debian.org."""
    override = os.environ.get("NK_SYSTEM_MIRROR")
    if override:
        return override
    texts = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
    for text in texts:
        for match in re.finditer(
            r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+" + SUITE + r"\s", text, re.M
        ):
            return match.group(1)
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.*)$", stanza, re.M)
            if (
                uris
                and suites
                and SUITE in suites.group(1).split()
                and "security" not in uris.group(1)
            ):
                return uris.group(1)
    return "http://deb.debian.org/debian"


def pristine_rootfs() -> Path:
    """The cached root file system, made with debootstrap on first use (a few minutes)."""
    rootfs = CACHE / f"{SUITE}-rootfs"
    stamp = CACHE / f"{SUITE}-rootfs.packages"
    wanted = " ".join(PACKAGES)
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:  # two runs at once: one builds, the other waits
        fcntl.flock(lock, fcntl.LOCK_EX)
        if rootfs.is_dir() and stamp.is_file() and stamp.read_text().strip() == wanted:
            return rootfs
        debootstrap = shutil.which("debootstrap") or shutil.which("/usr/sbin/debootstrap")
        if not debootstrap:
            raise ContainerError("debootstrap is not installed (tests/run.sh installs it)")
        building = CACHE / f"{SUITE}-rootfs.building"
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(rootfs, ignore_errors=True)
        source = mirror()
        done = subprocess.run(
            [
                debootstrap,
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(building),
                source,
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if done.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise ContainerError(f"debootstrap {SUITE} from {source} failed:\n{tail}")
        building.rename(rootfs)
        stamp.write_text(wanted + "\n")
        return rootfs


def remove_leftovers() -> None:
    """Overlays of runs that were killed before they could clean up (their PID is gone)."""
    for work in WORK.glob(f"{WORK_PREFIX}*"):
        pid = work.name[len(WORK_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and Path(f"/proc/{pid}").exists():
            continue
        try:
            nspawn = int((work / "nspawn.pid").read_text())
            command = Path(f"/proc/{nspawn}/cmdline").read_bytes()
        except (OSError, ValueError):
            command = b""
        if b"systemd-nspawn" in command and str(work).encode() in command:
            os.killpg(nspawn, signal.SIGKILL)  # its own session: the container goes with it
            time.sleep(0.5)
        merged = work / "merged"
        if os.path.ismount(merged):
            subprocess.run(["umount", "-l", str(merged)], check=False)
        shutil.rmtree(work, ignore_errors=True)


class Container:
    def __init__(self, name: str) -> None:
        self.name = name
        self.work = WORK / f"{WORK_PREFIX}{os.getpid()}-{name}"
        self.root = self.work / "merged"
        self.console = self.work / "console.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0

    # ------------------------------------------------------------------ life cycle

    def boot(self, timeout: float = 90.0) -> None:
        for tool in ("systemd-nspawn", "nsenter"):
            if not shutil.which(tool):
                raise ContainerError(
                    f"{tool} is not installed (tests/run.sh installs "
                    "systemd-container and util-linux)"
                )
        remove_leftovers()
        lower = pristine_rootfs()
        for sub in ("upper", "ovl-work", "merged"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        upper, scratch = self.work / "upper", self.work / "ovl-work"
        options = f"lowerdir={lower},upperdir={upper},workdir={scratch}"
        done = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(self.root)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            # /var/tmp on an overlay itself (a container's root): a copy instead, a few seconds
            copy = subprocess.run(
                ["cp", "-a", "--reflink=auto", f"{lower}/.", str(self.root)],
                capture_output=True,
                text=True,
            )
            if copy.returncode != 0:
                raise ContainerError(
                    f"cannot mount an overlay of {lower} "
                    f"({done.stderr.strip()}) nor copy it: {copy.stderr.strip()}"
                )
        with open(self.console, "wb") as console:
            # --register=no --keep-unit: no machined and no scope of its own, which a host whose
            # PID 1 is not systemd cannot provide.
            self.proc = subprocess.Popen(
                [
                    "systemd-nspawn",
                    "--boot",
                    f"--directory={self.root}",
                    f"--machine={self.name}",
                    "--register=no",
                    "--keep-unit",
                    "--private-network",
                    "--console=pipe",
                ],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (self.work / "nspawn.pid").write_text(str(self.proc.pid))
        deadline = time.monotonic() + timeout
        while not self.leader:
            if self.proc.poll() is not None:
                raise ContainerError(
                    f"systemd-nspawn exited with {self.proc.returncode}:\n" + self.console_tail()
                )
            if time.monotonic() > deadline:
                raise ContainerError("the container's init did not appear:\n" + self.console_tail())
            self.leader = self._find_init()
            time.sleep(0.1)
        while True:
            left = max(deadline - time.monotonic(), 1.0)
            state = self.run("systemctl", "is-system-running", "--wait", timeout=left, check=False)
            if state.stdout.strip() == "running":
                return
            # nothing on stdout: its manager is not listening yet, soon after the init started
            if state.stdout.strip() or time.monotonic() > deadline:
                failed = self.run("systemctl", "--failed", "--no-pager", check=False).stdout
                raise ContainerError(
                    f"the container's systemd is {state.stdout.strip() or state.stderr.strip()!r}"
                    f", not running:\n{failed}\n{self.console_tail()}"
                )
            time.sleep(0.2)

    def _find_init(self) -> int:
        assert self.proc is not None
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in children:
                try:
                    comm = Path(f"/proc/{child}/comm").read_text().strip()
                except OSError:
                    continue
                if comm == "systemd":
                    return int(child)
        return 0

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # SIGTERM: nspawn asks the container's systemd to power off
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if os.path.ismount(self.root):
            done = subprocess.run(["umount", str(self.root)], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(self.root)], check=False)
        shutil.rmtree(self.work, ignore_errors=True)

    def console_tail(self, lines: int = 30) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return "(no console output)"
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------ inside

    def run(
        self, *argv: str, timeout: float = 60.0, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Runs argv inside the container as root; check=True raises with its output."""
        done = subprocess.run(
            ["nsenter", "--all", f"--target={self.leader}", "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env={"PATH": PATH, "LANG": "C.UTF-8", "TERM": "dumb"},
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited with {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done

    def path(self, inside: str) -> Path:
        """The host's path of a file inside the container."""
        return self.root / inside.lstrip("/")
