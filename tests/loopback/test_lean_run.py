"""What the running daemon holds: none of the modules it leaves out (each one costs the
long-running process memory on a router; tests/bench/bench_memory.py measures them).

The daemon runs for real (`nat-keepalive run` through packaging/nat-keepalive.launcher, what the
packages install; a binding to a real UDP responder; a SIGHUP reload that adds one by name, which
a worker thread resolves) in an interpreter without site (-I -S: this environment's .pth hooks
import typing themselves); a SIGALRM handler lists the forbidden modules it finds loaded and who
imported them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import yaml

import natkeepalive
from tests.support.helpers import free_port
from tests.support.responder import SipResponder

FORBIDDEN = (
    "typing",
    "dataclasses",
    "inspect",
    "ast",
    "dis",
    "tokenize",  # type hints, dataclasses
    "yaml",
    "argparse",
    "natkeepalive.config.loader",
    "natkeepalive.config.nodes",
    "natkeepalive.config.rules",  # only in the config child
    "json",
    "re",
    "enum",
    "socket",
    "signal",
    "contextlib",  # stdlib wrappers the daemon avoids
    "selectors",
    "collections",
    "heapq",
    "threading",  # epoll, _heapq, _thread instead
    "encodings.idna",
    "stringprep",
    "unicodedata",  # getaddrinfo() with a str host
    "subprocess",
    "natkeepalive.runtime.hooks",  # no hook command configured
    "natkeepalive.core.discovery",
    "natkeepalive.core.lifetime",
    "natkeepalive.runtime.auto",  # no interval: auto
    "natkeepalive.runtime.metrics",  # no metrics_file configured
    "natkeepalive.oneshot",
    "natkeepalive.cli.commands",  # the one-shot commands' code
    "runpy",
    "importlib.util",  # `python3 -m natkeepalive`, which the packages never run
    "resource",  # only when the open-file limit must be raised
)

PROBE = """
import os, sys, _signal
sys.path[:0] = {path!r}
FORBIDDEN = {forbidden!r}
culprits = {{}}

class Watch:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name in FORBIDDEN and name not in culprits:
            frame, agent = sys._getframe(1), "?"
            while frame is not None:
                module = frame.f_globals.get("__name__", "")
                if module.startswith("natkeepalive"):
                    agent = "%s:%d" % (module, frame.f_lineno)
                    break
                frame = frame.f_back
            culprits[name] = agent
        return None

sys.meta_path.insert(0, Watch)

fired = []

def alarm(signum, frame):
    if not fired:  # first: a reload (the daemon's own SIGHUP handler is in place by now)
        fired.append(1)
        with open({config!r}, "a") as config:
            config.write({added!r})
        os.kill(os.getpid(), _signal.SIGHUP)
        _signal.setitimer(_signal.ITIMER_REAL, {seconds!r})
        return
    loaded = {{name: culprits.get(name, "?") for name in FORBIDDEN if name in sys.modules}}
    sys.stdout.write("LOADED " + repr(loaded) + "\\n")
    sys.stdout.flush()
    os._exit(0)

_signal.signal(_signal.SIGALRM, alarm)
_signal.setitimer(_signal.ITIMER_REAL, {seconds!r})
sys.argv = ["nat-keepalive", "run", "-c", {config!r}, "--status-file", {status!r}]
with open({launcher!r}) as launcher:  # what the packages install as /usr/bin/nat-keepalive
    exec(compile(launcher.read(), {launcher!r}, "exec"), {{"__name__": "__main__"}})
"""
LAUNCHER = Path(__file__).resolve().parents[2] / "packaging" / "nat-keepalive.launcher"


def test_the_running_daemon_holds_none_of_the_avoided_modules(tmp_path: Path) -> None:
    with SipResponder() as responder:
        config = tmp_path / "c.yaml"
        config.write_text(
            "log: {target: stderr, level: info}\n"
            "defaults: {interval: 0.5, jitter: 0, inbound_check: 2}\n"
            "bindings:\n"
            "  - name: a\n"
            f"    server: {responder.address[0]}:{responder.address[1]}\n"
            f"    source_port: {free_port()}\n"
        )
        added = (
            "  - name: by-name\n"  # added by the reload: resolved by a worker thread
            f"    server: localhost:{responder.address[1]}\n"
            "    bind: 127.0.0.1\n"
            f"    source_port: {free_port()}\n"
        )
        agent = str(Path(natkeepalive.__file__).resolve().parent.parent)
        site = str(Path(yaml.__file__).resolve().parent.parent)  # for the config child
        code = PROBE.format(
            path=[agent, site],
            forbidden=FORBIDDEN,
            seconds=2.5,
            config=str(config),
            status=str(tmp_path / "status.json"),
            added=added,
            launcher=str(LAUNCHER),
        )
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        answered = len(responder.requests)
    lines = [line for line in out.splitlines() if line.startswith("LOADED ")]
    assert lines, f"no report; stderr:\n{err}"
    assert "event=started" in err and "event=reachable" in err, err
    assert "event=reloaded" in err, err
    assert "binding=by-name" in err, err  # the binding resolved by name is running
    assert answered >= 4, "the daemon did not run its keepalives and checks"
    loaded = ast.literal_eval(lines[0][len("LOADED ") :])
    assert loaded == {}, "\n".join(f"{name}: imported at {where}" for name, where in loaded.items())
