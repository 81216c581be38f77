"""examples/hooks/webhook against a real HTTP server on loopback (Python's http.server): under
dash and busybox ash, with curl and with wget, with hostile field values, a failing endpoint, and
run by the real agent's hook handling."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.agentproc import Agent
from tests.support.helpers import LOOPBACK_TIMERS, free_port, write_config
from tests.support.responder import SipResponder
from tests.support.tools import require_tool

from .common import HOSTILE, install, run_hook


class Recorder(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 204
        self.arrived = threading.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/nat"


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.arrived:
            self.server.requests.append((self.path, dict(self.headers.items()), body))
            self.server.arrived.notify_all()
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Recorder]:
    recorder = Recorder()
    thread = threading.Thread(target=recorder.serve_forever, daemon=True)
    thread.start()
    yield recorder
    recorder.shutdown()
    recorder.server_close()


@pytest.mark.parametrize("shell", ["dash", "busybox"])
@pytest.mark.parametrize("client", ["curl", "wget"])
def test_posts_every_field_as_json(
    tmp_path: Path, server: Recorder, shell: str, client: str
) -> None:
    require_tool(shell)
    require_tool(client)
    hook = install(tmp_path, "webhook", f"WEBHOOK_URL={server.url}\nWEBHOOK_AUTH='Bearer t0k'\n")
    # the client under test alone on PATH, with the tools the script needs
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in (client, "awk", "cat", "hostname"):
        found = shutil.which(name)
        if found:
            (tools / name).symlink_to(found)
    env = dict(HOSTILE, EVENT="binding-changed", NAT_KEEPALIVE_EVENT_LINE="event=binding-changed x")
    result = run_hook(hook, "binding-changed", env, shell=shell, path=str(tools))
    assert result.returncode == 0, result.stderr
    path, headers, body = server.requests[-1]
    assert path == "/hooks/nat"
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Bearer t0k"
    sent = json.loads(body)
    assert sent["event"] == "binding-changed"
    assert sent["line"] == "event=binding-changed x"
    assert sent["host"]
    for key, value in HOSTILE.items():
        assert sent[key.lower()] == value, key
    assert not (tmp_path / "PWNED").exists()


def test_a_failing_endpoint_fails_the_hook(tmp_path: Path, server: Recorder) -> None:
    server.status = 500
    hook = install(tmp_path, "webhook", f"WEBHOOK_URL={server.url}\n")
    result = run_hook(hook, "unreachable", {"EVENT": "unreachable", "BINDING": "b"})
    assert result.returncode != 0
    assert "POST to" in result.stderr and "failed" in result.stderr
    assert len(server.requests) == 1


def test_without_a_url_it_says_so(tmp_path: Path) -> None:
    hook = install(tmp_path, "webhook", None)
    result = run_hook(hook, "unreachable", {"EVENT": "unreachable"})
    assert result.returncode == 2
    assert "WEBHOOK_URL is not set" in result.stderr


def test_the_agent_runs_it_and_reports_its_failure(
    tmp_path: Path, server: Recorder, responder: SipResponder
) -> None:
    hook = install(tmp_path, "webhook", f"WEBHOOK_URL={server.url}\n")
    port = free_port()
    config = write_config(
        tmp_path / "c.yaml", [("provider", responder.address, port)], LOOPBACK_TIMERS
    )
    config.write_text(
        config.read_text() + f"hooks:\n  command: {hook}\n"
        "  events: [binding-changed, binding-expired]\n"
    )
    with Agent(config, tmp_path / "status.json") as agent:
        agent.wait_for("binding-learned")
        responder.configure(rport=port + 1)
        agent.wait_for("binding-changed")
        with server.arrived:
            assert server.arrived.wait_for(lambda: len(server.requests) >= 2, timeout=15)
        events = sorted(json.loads(body)["event"] for _, _, body in server.requests)
        assert events == ["binding-changed", "binding-expired"]
        changed = next(
            json.loads(b)
            for _, _, b in server.requests
            if json.loads(b)["event"] == "binding-changed"
        )
        assert changed["new"] == f"127.0.0.1:{port + 1}"
        assert changed["cause"] == "port-remapped"
        server.status = 503
        responder.configure(rport=port + 2)
        agent.wait_for("binding-changed", count=2)
        problem = agent.wait_line(
            f'event=hook-failed command={hook} error="binding-changed: exit status 1', 15
        )
        assert "503" in problem  # curl's own complaint comes first
        agent.stop()
