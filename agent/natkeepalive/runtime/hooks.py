"""Hook commands: run the operator's program on selected events, without ever blocking the loop.

Rules:
- No shell. The command gets the event name as its only argument and the event's fields in its
  environment, so a hostile value from the network stays one literal string.
- The environment is minimal (PATH plus the event), not the daemon's: nothing leaks that the
  hook was not meant to see (NOTIFY_SOCKET, credentials of the service manager).
- Each hook runs in its own session, so a timeout kills the whole process group, grandchildren too.
- One hook at a time by default, so hooks run in the order of their events (`binding-learned`
  before `reachable`); further events wait in a bounded queue, beyond it they are dropped and the
  drop is reported. A storm of events must not fork-bomb a router.
- `poll` never blocks. The daemon calls it at `next_deadline()` and whenever SIGCHLD arrives.
- `subprocess` is imported only when a command is configured (it is not free on a router).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections import deque

from natkeepalive.events import Event
from natkeepalive.logline import escape_text, format_event, format_float

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterable

    from natkeepalive.events import Value

DEFAULT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
STDERR_KEEP = 512  # bytes of a hook's stderr kept for the problem report
REAP_RETRY = 0.5  # seconds before looking again for a killed hook that has not died yet
_RESERVED = frozenset(("PATH", "EVENT", "NAT_KEEPALIVE_EVENT_LINE"))


def _env_value(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_float(value)
    text = str(value)
    try:
        if "\0" not in text:
            os.fsencode(text)
            return text
    except UnicodeEncodeError:
        pass
    return escape_text(text)  # an environment cannot carry NUL or unencodable text


def hook_environment(ev: Event, path: str | None = None) -> dict[str, str]:
    env = {
        "PATH": path or DEFAULT_PATH,
        "EVENT": ev.NAME,
        "NAT_KEEPALIVE_EVENT_LINE": format_event(ev),
    }
    for key, value in ev.items():
        name = "".join(c if c.isalnum() else "_" for c in key.upper())
        if name not in _RESERVED:
            env[name] = _env_value(value)
    return env


class _Job:
    def __init__(self, proc: subprocess.Popen[bytes], event: str, deadline: float) -> None:
        self.proc = proc
        self.event = event
        self.deadline = deadline
        self.stderr = bytearray()

    def drain(self) -> None:
        """Read what the hook wrote to stderr so far; keep the start, discard the rest."""
        pipe = self.proc.stderr
        if pipe is None or pipe.closed:
            return
        fd = pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                pipe.close()
                return
            room = STDERR_KEEP - len(self.stderr)
            if room > 0:
                self.stderr += chunk[:room]

    def close_pipe(self) -> None:
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def excerpt(self) -> str:
        text = self.stderr.decode("utf-8", "replace").strip()
        first = text.splitlines()[0] if text else ""
        return f": {escape_text(first[:200])}" if first else ""


class HookRunner:
    def __init__(
        self,
        command: str | None,
        events: Iterable[str],
        timeout: float = 10.0,
        max_running: int = 1,
        queue_limit: int = 100,
    ) -> None:
        self.command = command or None
        self.events = frozenset(events)
        self.timeout = timeout
        self.max_running = max(1, max_running)
        self.queue_limit = queue_limit
        self._running: list[_Job] = []
        self._killed: list[tuple[_Job, float]] = []  # SIGKILLed, not reaped yet; retry time
        self._queue: deque[tuple[str, dict[str, str]]] = deque()
        self._problems: list[str] = []
        self._dropped = 0
        if self.command is not None:
            import subprocess  # noqa: F401  (loaded now so the first event does not pay for it)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def wants(self, name: str) -> bool:
        return self.command is not None and name in self.events

    def fire(self, ev: Event, now: float) -> None:
        if not self.wants(ev.NAME):
            return
        env = hook_environment(ev, os.environ.get("PATH"))
        if len(self._running) < self.max_running:
            self._start(ev.NAME, env, now)
        elif len(self._queue) < self.queue_limit:
            self._queue.append((ev.NAME, env))
        else:
            self._dropped += 1

    def _start(self, event: str, env: dict[str, str], now: float) -> None:
        import subprocess

        assert self.command is not None
        try:
            proc = subprocess.Popen(
                [self.command, event],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
                cwd="/",
                close_fds=True,
                start_new_session=True,
            )
        except ValueError as exc:  # a NUL in the configured command
            self._problems.append(f"hook {self.command!r} {event}: could not start: {exc}")
            return
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if exc.errno in (errno.ENOENT, errno.EACCES, errno.ENOEXEC):
                reason = f"{reason} ({errno.errorcode.get(exc.errno or 0, exc.errno)})"
            self._problems.append(f"hook {self.command} {event}: could not start: {reason}")
            return
        if proc.stderr is not None:
            os.set_blocking(proc.stderr.fileno(), False)
        self._running.append(_Job(proc, event, now + self.timeout))

    def poll(self, now: float) -> list[str]:
        """Reap finished hooks, kill overdue ones, start queued ones; the problems seen since the
        last call, as one-line descriptions for the log."""
        still: list[_Job] = []
        for job in self._running:
            job.drain()
            code = job.proc.poll()
            if code is not None:
                job.drain()
                job.close_pipe()
                if code != 0:
                    self._problems.append(self._describe_exit(job, code))
            elif now >= job.deadline:
                self._kill(job, now)
                self._problems.append(
                    f"hook {self.command} {job.event}: killed after {format_float(self.timeout)} s "
                    f"timeout{job.excerpt()}"
                )
            else:
                still.append(job)
        self._running = still
        self._killed = [
            (job, now + REAP_RETRY) for job, _ in self._killed if job.proc.poll() is None
        ]
        while self._queue and len(self._running) < self.max_running:
            event, env = self._queue.popleft()
            self._start(event, env, now)
        if self._dropped:
            self._problems.append(
                f"hook {self.command}: dropped {self._dropped} event(s), {self.max_running} hooks "
                f"running and {self.queue_limit} waiting"
            )
            self._dropped = 0
        problems, self._problems = self._problems, []
        return problems

    def _describe_exit(self, job: _Job, code: int) -> str:
        if code < 0:
            try:
                what = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                what = f"killed by signal {-code}"
        else:
            what = f"exit status {code}"
        return f"hook {self.command} {job.event}: {what}{job.excerpt()}"

    def _kill(self, job: _Job, now: float) -> None:
        with contextlib.suppress(OSError):  # the group is gone already
            os.killpg(job.proc.pid, signal.SIGKILL)
        job.close_pipe()
        if job.proc.poll() is None:
            self._killed.append((job, now + REAP_RETRY))

    def next_deadline(self) -> float | None:
        """When `poll` must run next: the earliest hook timeout, or a retry to reap a killed one."""
        times = [job.deadline for job in self._running]
        times.extend(when for _, when in self._killed)
        return min(times) if times else None

    def close(self) -> None:
        """Kill every hook (process groups included), forget the queue, reap the children."""
        self._queue.clear()
        if not self._running and not self._killed:
            return
        import subprocess

        jobs = self._running + [job for job, _ in self._killed]
        self._running, self._killed = [], []
        for job in jobs:
            with contextlib.suppress(OSError):
                os.killpg(job.proc.pid, signal.SIGKILL)
            job.close_pipe()
        for job in jobs:
            with contextlib.suppress(subprocess.TimeoutExpired):  # stuck in the kernel: give up
                job.proc.wait(timeout=2.0)
