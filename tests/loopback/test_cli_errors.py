"""A walk of the command line's error paths, as a new user meets them: every subcommand with bad
options, bad files, bad targets, ports in use and a stopped agent. Each must end with its
documented exit code and one line saying what is wrong: never a traceback, never a hang.

Exit codes (cli/commands.py): 0 success, 1 the checked thing failed (unreachable, no status file,
a local port in use), 2 usage or configuration error, 3 `status`: the agent is not running.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from natkeepalive.cli.commands import EXIT_CODES, build_parser
from tests.support.agentproc import run_cli

DOCUMENTED = {0, 1, 2, 3}
BINDING = "bindings:\n  - {name: a, server: 127.0.0.1, source_port: 5062}\n"


def _held_port() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock, int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Files and ports the cases name as {placeholders}."""
    root = tmp_path_factory.mktemp("cli-errors")
    held, port = _held_port()
    closed, closed_port = _held_port()
    closed.close()  # nothing listens there: ICMP port unreachable, on loopback only

    def write(name: str, text: str | bytes) -> str:
        path = root / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return str(path)

    fifo = root / "fifo"
    os.mkfifo(fifo)
    big = root / "big.yaml"
    with open(big, "wb") as handle:
        handle.write(BINDING.encode() + b"#" * (9 * 1024 * 1024))
    gone = subprocess.Popen(["true"])
    gone.wait()
    values = {
        "root": str(root),
        "port": str(port),
        "closed": str(closed_port),
        "missing": str(root / "missing.yaml"),
        "fifo": str(fifo),
        "big": str(big),
        "good": write("good.yaml", BINDING),
        "latin1": write("latin1.yaml", b"bindings: \xe9\n"),
        "badyaml": write("bad.yaml", "bindings: [\n"),
        "nouser": write("nouser.yaml", "user: nk-no-such-user\n" + BINDING),
        "nohook": write("nohook.yaml", f"hooks: {{command: {root}/no-hook}}\n" + BINDING),
        "family": write(
            "family.yaml",
            "bindings:\n  - {name: a, server: 192.0.2.1, source_port: 5062, bind: '::1'}\n",
        ),
        "flood": write("flood.yaml", "defaults: {interval: 0.001}\n" + BINDING),
        "tel": write(
            "tel.yaml", "bindings:\n  - {name: a, server: 'tel:+123', source_port: 5062}\n"
        ),
        "inuse": write(
            "inuse.yaml",
            "log: {target: stderr}\nbindings:\n  - {name: a, server: "
            f"127.0.0.1, source_port: {port}, bind: 127.0.0.1}}\n",
        ),
        "taken": write(
            "taken.yaml", "bindings:\n  - {name: mine, server: 192.0.2.1, source_port: 5070}\n"
        ),
        "garbage": write("garbage.json", "{not json"),
        "list": write("list.json", "[]"),
        "stopped": write(
            "stopped.json",
            json.dumps(
                {
                    "version": "x",
                    "pid": os.getpid(),
                    "started_at": "2026-01-01T00:00:00Z",
                    "updated_at": "2026-01-01T00:01:00Z",
                    "stopped_at": "2026-01-01T00:01:00Z",
                    "stop_reason": "sigterm",
                    "bindings": [],
                }
            ),
        ),
        "dead": write(
            "dead.json",
            json.dumps(
                {
                    "version": "x",
                    "pid": gone.pid,
                    "updated_at": "2026-01-01T00:01:00Z",
                    "bindings": [],
                }
            ),
        ),
    }
    yield values
    held.close()


CASES: list[tuple[list[str], int]] = [
    # the command itself
    ([], 2),
    (["frobnicate"], 2),
    (["--bogus"], 2),
    (["--version"], 0),
    (["--help"], 0),
    # check
    (["check", "-c", "{missing}"], 2),
    (["check", "-c", "{root}"], 2),
    (["check", "-c", "/dev/zero"], 2),
    (["check", "-c", "{fifo}"], 2),
    (["check", "-c", "{big}"], 2),
    (["check", "-c", "{latin1}"], 2),
    (["check", "-c", "{badyaml}"], 2),
    (["check", "-c", "{nouser}"], 2),
    (["check", "-c", "{nohook}"], 2),
    (["check", "-c", "{family}"], 2),
    (["check", "-c", "{flood}"], 2),
    (["check", "-c", "{tel}"], 2),
    (["check", "-c"], 2),
    (["check", "--example", "-c", "{good}"], 2),
    (["check", "-c", "{good}"], 0),
    (["check", "--bogus"], 2),
    # status
    (["status", "--status-file", "{missing}"], 1),
    (["status", "--status-file", "{garbage}"], 1),
    (["status", "--status-file", "{list}"], 1),
    (["status", "--status-file", "{root}"], 1),
    (["status", "--status-file", "{stopped}"], 3),
    (["status", "--status-file", "{dead}"], 3),
    (["status", "--status-file", "{dead}", "--json"], 3),
    (["status", "--status-file"], 2),
    # collectd
    (["collectd", "--once", "--status-file", "{missing}"], 1),
    (["collectd", "--bogus"], 2),
    # probe: targets, options, local addresses, ports
    (["probe"], 2),
    (["probe", "tel:+123"], 2),
    (["probe", "sips:example.net"], 2),
    (["probe", "127.0.0.1:99999"], 2),
    (["probe", ""], 2),
    (["probe", "[::1"], 2),
    (["probe", "127.0.0.1", "--timeout", "-1"], 2),
    (["probe", "127.0.0.1", "--timeout", "x"], 2),
    (["probe", "127.0.0.1", "--max-forwards", "300"], 2),
    (["probe", "127.0.0.1", "--source-port", "70000"], 2),
    (["probe", "127.0.0.1", "--interface", "nosuch0"], 2),
    (["probe", "127.0.0.1", "--bind", "::1"], 2),
    (["probe", "127.0.0.1", "--bind", "nonsense"], 2),
    (["probe", "127.0.0.1", "--bind", "192.0.2.77"], 2),
    (["probe", "127.0.0.1", "--bind", "127.0.0.1", "--interface", "lo"], 2),
    (["probe", "127.0.0.1", "--bind", "127.0.0.1", "--source-port", "{port}"], 1),
    (["probe", "127.0.0.1:{closed}", "--timeout", "0.3"], 1),
    (["probe", "192.0.2.1", "--bind", "127.0.0.1", "--timeout", "0.3"], 1),  # EINVAL: not sent
    # discover
    (["discover"], 2),
    (["discover", "tel:+123"], 2),
    (["discover", "127.0.0.1", "--max-idle", "0"], 2),
    (["discover", "127.0.0.1", "--bind", "192.0.2.77"], 2),
    (["discover", "127.0.0.1", "--bind", "::1"], 2),
    (["discover", "127.0.0.1", "--bind", "127.0.0.1", "--source-port", "{port}"], 1),
    # run: its file is read in a child, the rest in the daemon
    (["run", "-c", "{missing}"], 2),
    (["run", "-c", "/dev/zero"], 2),
    (["run", "-c", "{fifo}"], 2),
    (["run", "-c", "{nouser}"], 2),
    (["run", "-c", "{nohook}"], 2),
    (["run", "-c", "{family}"], 2),
    (["run", "--log", "bogus", "-c", "{good}"], 2),
    (["run", "--bogus"], 2),
    (["run", "-c", "{inuse}", "--status-file", "{root}/status.json"], 1),
]


def _ids(case: tuple[list[str], int]) -> str:
    return " ".join(case[0]) or "(nothing)"


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_error_path(case: tuple[list[str], int], world: dict[str, str]) -> None:
    args = [arg.format(**world) for arg in case[0]]
    expected = case[1]
    env = {"NAT_KEEPALIVE_CONFIG": world["taken"]} if args[:1] == ["discover"] else None
    done = run_cli(*args, timeout=30, env=env)
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert done.returncode in DOCUMENTED, (done.returncode, output)
    assert done.returncode == expected, (done.returncode, output)
    if expected in (0, 1) and not done.stderr:
        return
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if (
        args in ([], ["frobnicate"], ["--bogus"])
        or "--bogus" in args
        or (expected == 2 and any(": error: " in line for line in lines))
    ):
        # argparse: usage lines, then the one that names the problem
        assert [line for line in lines if ": error: " in line or line.startswith("usage:")], lines
        return
    if expected == 0:
        return
    # one line, naming the problem
    problems = [line for line in lines if line.startswith("nat-keepalive")]
    assert len(problems) == 1, lines
    assert len(lines) == 1 or args[0] in ("run", "discover"), lines


def test_help_lists_every_option_with_what_it_does() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    assert isinstance(subparsers.choices, dict)
    assert set(subparsers.choices) == {
        "run",
        "probe",
        "discover",
        "check",
        "status",
        "collectd",
        "responder",
    }
    for name, sub in subparsers.choices.items():
        text = run_cli(name, "--help").stdout
        assert EXIT_CODES.split(";")[0] in " ".join(text.split()), name
        for action in sub._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings}: no description"
            for option in action.option_strings:
                assert option in text, f"{name} --help does not list {option}"
            if action.default not in (None, False):
                assert "default" in action.help, f"{name} {action.option_strings}: no default"


def test_nothing_asked_prints_the_usage(world: dict[str, str]) -> None:
    done = run_cli()
    assert done.returncode == 2
    assert done.stderr.startswith("usage: nat-keepalive")
    for command in ("run", "probe", "discover", "check", "status"):
        assert command in done.stderr


def test_the_example_configuration_comes_with_the_command(tmp_path: Path) -> None:
    done = run_cli("check", "--example")
    assert done.returncode == 0 and done.stdout.startswith("# nat-keepalive configuration")
    path = tmp_path / "example.yaml"
    path.write_text(done.stdout)
    checked = run_cli("check", "-c", str(path))
    assert checked.returncode == 0, checked.stderr
    assert "OK, 1 binding(s): provider" in checked.stdout


def test_probe_says_a_send_failed_not_that_nobody_answered() -> None:
    done = run_cli("probe", "192.0.2.1", "--bind", "127.0.0.1", "--timeout", "0.3", "--json")
    assert done.returncode == 1
    out = json.loads(done.stdout)
    assert out["reachable"] is False and out["transmissions"] >= 1
    assert (
        out["error"].startswith("cannot send from 127.0.0.1:")
        and "Invalid argument" in out["error"]
    )


def test_status_of_a_stopped_agent(world: dict[str, str]) -> None:
    done = run_cli("status", "--status-file", world["stopped"])
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr.startswith(
        "nat-keepalive: the agent is not running (it stopped at 2026-01-01T00:01:00Z (sigterm)"
    )
    dead = run_cli("status", "--status-file", world["dead"], "--json")
    assert dead.returncode == 3 and json.loads(dead.stdout)["running"] is False
    assert "is gone" in dead.stderr
