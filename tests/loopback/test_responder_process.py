"""`nat-keepalive responder` as a real process on 127.0.0.1: answers, signals, errors."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from natkeepalive import stun
from natkeepalive.sip import OptionsRequest, build_options, parse_response
from tests.support.agentproc import agent_env, run_cli

LOCAL = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


class Process:
    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "natkeepalive",
                "responder",
                "--listen",
                f"{LOCAL}:{self.port}",
                *args,
            ],
            env=agent_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.wait_line("listening on")

    def wait_line(self, text: str, timeout: float = 10.0) -> str:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stderr], [], [], 0.2)
            if ready:
                line = self.proc.stderr.readline()
                if not line:
                    break
                self.lines.append(line.rstrip("\n"))
                if text in line:
                    return line
        raise AssertionError(f"no line with {text!r}: {self.lines}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def responder() -> Iterator[Process]:
    process = Process("--stats-interval", "3600")
    yield process
    process.close()


def sockets(count: int) -> list[socket.socket]:
    made = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOCAL, 0))
        sock.settimeout(3)
        made.append(sock)
    return made


def nothing_on(sock: socket.socket, wait: float = 0.3) -> bool:
    ready, _, _ = select.select([sock], [], [], wait)
    return not ready


def test_stun_response_port_answer_reaches_the_other_socket(responder: Process) -> None:
    binding, other = sockets(2)
    try:
        txid = os.urandom(12)
        other.sendto(
            stun.build_binding_request(txid, response_port=binding.getsockname()[1]),
            (LOCAL, responder.port),
        )
        data, source = binding.recvfrom(2048)
        assert source == (LOCAL, responder.port)  # from the port the request went to
        answer = stun.parse_binding_response(data)
        assert answer.transaction_id == txid and answer.mapped == other.getsockname()
        assert nothing_on(other)
    finally:
        binding.close()
        other.close()


def test_sip_check_without_rport_goes_to_the_sent_by_port(responder: Process) -> None:
    binding, other = sockets(2)
    try:
        request = build_options(
            OptionsRequest(
                LOCAL,
                responder.port,
                LOCAL,
                binding.getsockname()[1],
                "z9hG4bKloop1",
                "c1",
                "t1",
                1,
                rport=False,
            )
        )
        other.sendto(request, (LOCAL, responder.port))
        data, source = binding.recvfrom(2048)
        assert source == (LOCAL, responder.port)
        response = parse_response(data)
        assert response.status == 200 and response.top_via.branch == "z9hG4bKloop1"
        assert nothing_on(other)
    finally:
        binding.close()
        other.close()


def test_signals_statistics_and_clean_exit(responder: Process) -> None:
    [client] = sockets(1)
    try:
        client.sendto(b"garbage", (LOCAL, responder.port))
        client.sendto(stun.build_binding_request(os.urandom(12)), (LOCAL, responder.port))
        client.recvfrom(2048)
        responder.proc.send_signal(signal.SIGUSR1)
        line = responder.wait_line("received=")
        assert "received=2 stun=1" in line and "malformed=1" in line, line
        responder.proc.send_signal(signal.SIGTERM)
        assert responder.proc.wait(5) == 0
    finally:
        client.close()


def test_rate_limit_in_the_process() -> None:
    process = Process("--rate", "1", "--burst", "2")
    [client] = sockets(1)
    try:
        for _ in range(5):
            client.sendto(stun.build_binding_request(os.urandom(12)), (LOCAL, process.port))
        answers = 0
        while not nothing_on(client, 0.5):
            client.recvfrom(2048)
            answers += 1
        assert answers == 2
    finally:
        client.close()
        process.close()


def test_usage_errors() -> None:
    done = run_cli("responder")
    assert done.returncode == 2 and "--listen" in done.stderr
    done = run_cli("responder", "--listen", "nowhere:1")
    assert done.returncode == 2 and "not an IP address" in done.stderr
    done = run_cli("responder", "--listen", "127.0.0.1:70000")
    assert done.returncode == 2 and "1-65535" in done.stderr
    # an address this host does not have: exit 2, one line
    done = run_cli("responder", "--listen", "192.0.2.1:3478")
    assert done.returncode == 2 and "cannot listen" in done.stderr


def test_port_in_use_exits_1() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind((LOCAL, 0))
        done = run_cli("responder", "--listen", f"{LOCAL}:{busy.getsockname()[1]}")
    assert done.returncode == 1 and "cannot listen" in done.stderr
