"""The real agent in a subprocess (`python -m natkeepalive run --log stderr`), with its log lines
collected by a thread so tests can wait for an event with a deadline instead of sleeping."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from natkeepalive.logline import parse_line

ROOT = Path(__file__).resolve().parents[2]


def agent_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "agent") + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NOTIFY_SOCKET", None)
    env.pop("JOURNAL_STREAM", None)
    env.update(extra or {})
    return env


def run_cli(
    *args: str,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "natkeepalive", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=agent_env(env),
    )


def severity(line: str) -> str:
    """The severity word of a `--log stderr` line: `[TIME ]SEVERITY: event=...`."""
    return line.partition(": ")[0].rpartition(" ")[2]


class Agent:
    """`with Agent(config_path, status_path) as agent: agent.wait_for("binding-learned")`."""

    def __init__(
        self,
        config: Path,
        status: Path,
        *extra: str,
        prefix: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        argv = [
            *prefix,
            sys.executable,
            "-m",
            "natkeepalive",
            "run",
            "-c",
            str(config),
            "--log",
            "stderr",
            "--status-file",
            str(status),
            *extra,
        ]
        self.status = status
        self.lines: list[str] = []
        self.stamps: list[float] = []  # time.monotonic() when each line was read
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=agent_env(env),
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self.stamps.append(time.monotonic())
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def events(self, name: str | None = None) -> list[tuple[str, dict[str, str | None]]]:
        out = []
        with self._cond:
            lines = list(self.lines)
        for line in lines:
            if "event=" not in line:
                continue
            event, fields = parse_line(line)
            if name is None or event == name:
                out.append((event, fields))
        return out

    def timeline(self) -> list[tuple[int, float, str, dict[str, str | None]]]:
        """(line index, time.monotonic() it was read, event, fields) of every event so far."""
        with self._cond:
            lines, stamps = list(self.lines), list(self.stamps)
        return [
            (i, stamp, *parse_line(line))
            for i, (line, stamp) in enumerate(zip(lines, stamps))
            if "event=" in line
        ]

    def names(self, include_debug: bool = False) -> list[str]:
        with self._cond:
            lines = list(self.lines)
        return [
            parse_line(line)[0]
            for line in lines
            if "event=" in line and (include_debug or severity(line) != "debug")
        ]

    def wait_for(
        self, name: str, timeout: float = 15.0, count: int = 1, **fields: Any
    ) -> dict[str, str | None]:
        """The count-th event `name` whose fields match; AssertionError with the log if none."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matches = [
                    f
                    for n, f in self.events(name)
                    if all(f.get(k) == str(v) for k, v in fields.items())
                ]
                if len(matches) >= count:
                    return matches[count - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no {count}x {name} {fields} within {timeout}s; "
                        "log:\n" + "\n".join(self.lines)
                    )
                self._cond.wait(min(remaining, 0.5))

    def wait_line(self, text: str, timeout: float = 10.0, after: int = 0) -> str:
        """The first log line from index `after` on that contains `text`; AssertionError with
        the log when none came within `timeout` seconds or the agent exited without one."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[after:]:
                    if text in line:
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no line with {text!r} within {timeout}s; log:\n" + "\n".join(self.lines)
                    )
                self._cond.wait(min(remaining, 0.5))

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self._reader.join(5)
        if self.proc.stderr is not None and not self._reader.is_alive():
            self.proc.stderr.close()
