"""Small helpers every kind of test uses: a free local port, a configuration file, a bounded wait.

One copy here; a test module that needs its own defaults passes them (`base=`), rather than
copying the function.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar, Union

T = TypeVar("T")
# A binding's server: the text as a user writes it ("host:port", a name) or (host, port)
Server = Union[str, "tuple[str, int]"]
STDERR_DEBUG = "{target: stderr, level: debug}"
# Timers short enough for a daemon test against a loopback responder to take seconds
LOOPBACK_TIMERS: Mapping[str, object] = {
    "interval": 1.5,
    "jitter": 0.1,
    "timeout": 1.0,
    "fail_threshold": 2,
    "retry_interval": 1.0,
    "inbound_check": 0,
}


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_DGRAM) -> int:
    """A port the kernel just handed out on `host` (UDP unless `kind` says otherwise). Free when
    this returns; another process could take it before the test binds it, which the kernel's
    ephemeral-port rotation makes unlikely."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def server_text(server: Server) -> str:
    if isinstance(server, str):
        return server
    host, port = server
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def write_config(
    path: Path,
    bindings: Sequence[tuple[str, Server, int]],
    base: Mapping[str, object] | None = None,
    *,
    log: str = STDERR_DEBUG,
    extra: Sequence[str] = (),
    **settings: object,
) -> Path:
    """A YAML configuration at `path`: `log`, then `defaults:` (`base` updated with `settings`),
    then one binding per (name, server, source port), then the `extra` lines as written."""
    values = {**(base or {}), **settings}
    lines = [f"log: {log}", "defaults:"]
    lines += [f"  {key}: {json.dumps(value)}" for key, value in values.items()]
    lines.append("bindings:")
    for name, server, port in bindings:
        lines += [
            f"  - name: {name}",
            f"    server: {json.dumps(server_text(server))}",
            f"    source_port: {port}",
        ]
    lines += extra
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_until(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    interval: float = 0.02,
    detail: Callable[[], str] | None = None,
) -> T:
    """Polls `probe` until it returns something true, and returns that; AssertionError naming
    `what` (and `detail()`, such as a log) after `timeout` seconds. For state another process or
    thread changes; a test of the sans-I/O core uses its fake clock instead."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not within {timeout} s: {what}" + (f"\n{detail()}" if detail else "")
            )
        time.sleep(interval)
