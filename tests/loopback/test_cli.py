"""The one-shot commands through a subprocess, as scripts and monitoring use them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from natkeepalive import __version__
from tests.support.agentproc import run_cli
from tests.support.helpers import free_port
from tests.support.responder import SipResponder


def target(r: SipResponder) -> str:
    return f"{r.address[0]}:{r.address[1]}"


def test_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"nat-keepalive {__version__}"


def test_usage_error_exits_2() -> None:
    done = run_cli("probe")
    assert done.returncode == 2 and "TARGET" in done.stderr
    assert run_cli("probe", "h", "--timeout", "-1").returncode == 2
    assert run_cli("frobnicate").returncode == 2


def test_probe_json_reachable(responder: SipResponder) -> None:
    port = free_port()
    done = run_cli("probe", target(responder), "--source-port", str(port), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["reachable"] is True and out["status"] == 200 and out["reason"] == "OK"
    assert out["server"] == {"address": "127.0.0.1", "port": responder.address[1]}
    assert out["local"] == {"address": "127.0.0.1", "port": port}
    assert out["public"] == {"address": "127.0.0.1", "port": port}
    assert out["rport_supported"] is True and out["inbound_check"] is None
    assert out["transmissions"] == 1 and 0 < out["rtt_ms"] < 1000
    assert out["target"] == target(responder)
    requests = responder.requests
    assert len(requests) == 1 and requests[0][0] == ("127.0.0.1", port)


def test_probe_unreachable_exits_1_after_retransmissions(responder: SipResponder) -> None:
    responder.configure(silent=True)
    done = run_cli("probe", target(responder), "--timeout", "1.6", "--json")
    assert done.returncode == 1
    out = json.loads(done.stdout)
    assert out["reachable"] is False and out["public"] is None and out["status"] is None
    assert out["transmissions"] == 3  # at 0, 0.5 and 1.5 s
    assert len(responder.requests) == 3


def test_probe_server_without_rport(responder: SipResponder) -> None:
    responder.configure(ignore_rport=True)
    out = json.loads(run_cli("probe", target(responder), "--json").stdout)
    assert out["rport_supported"] is False
    assert out["public"]["port"] is None


def test_probe_changed_mapping_and_error_status(responder: SipResponder) -> None:
    responder.configure(received="203.0.113.1", rport=33785, status=404, reason="Not Here")
    out = json.loads(run_cli("probe", f"sip:{target(responder)}", "--json").stdout)
    assert out["public"] == {"address": "203.0.113.1", "port": 33785}
    assert (out["status"], out["reason"], out["reachable"]) == (404, "Not Here", True)


def test_probe_ignores_answers_from_another_port(responder: SipResponder) -> None:
    responder.configure(reply_from_other_port=True)
    done = run_cli("probe", target(responder), "--timeout", "0.8", "--json")
    assert done.returncode == 1 and json.loads(done.stdout)["reachable"] is False


@pytest.mark.parametrize(
    "mode, expected",
    [
        ({}, "alive"),
        ({"force_rport": True}, "unsupported: server forces rport"),
        # SIPp: the Via echoed (a bare rport, no received): the sent-by host is only what we wrote
        ({"ignore_rport": True}, "unsupported: no received in the answer (public address unknown)"),
        # linphone on a port-preserving NAT: received and a bare rport; the check proves the port
        ({"bare_rport": True, "received": "127.0.0.1"}, "alive"),
    ],
)
def test_probe_inbound_check(
    responder: SipResponder, mode: dict[str, object], expected: str
) -> None:
    responder.configure(**mode)
    done = run_cli("probe", target(responder), "--inbound-check", "--json")
    assert done.returncode == 0
    result = json.loads(done.stdout)
    assert result["inbound_check"] == expected
    if "ignore_rport" in mode:
        assert result["public"] == {"address": None, "port": None} and result["rport"] == "bare"
    if "bare_rport" in mode:  # the port the check proved: the local one
        assert result["public"]["port"] == result["local"]["port"] and result["rport"] == "bare"


def test_probe_inbound_check_expired(responder: SipResponder) -> None:
    # the server answers into a "public" port where nothing listens: the binding is gone
    responder.configure(received="127.0.0.1", rport=free_port())
    done = run_cli("probe", target(responder), "--inbound-check", "--timeout", "1", "--json")
    assert json.loads(done.stdout)["inbound_check"] == "expired"
    assert done.returncode == 1


def test_probe_human_output(responder: SipResponder) -> None:
    done = run_cli("probe", target(responder))
    assert done.returncode == 0
    assert "reachable  yes: 200 OK" in done.stdout and "public     127.0.0.1:" in done.stdout


def test_probe_bad_target_exits_2() -> None:
    done = run_cli("probe", "sips:example.net")
    assert done.returncode == 2 and "TLS" in done.stderr


def test_check_good_and_bad(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("bindings:\n  - {name: a, server: 192.0.2.1, source_port: 5062}\n")
    done = run_cli("check", "-c", str(good))
    assert done.returncode == 0 and "OK, 1 binding(s): a" in done.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("bindings:\n  - name: a\n    server: 192.0.2.1\n    source_port: 70000\n")
    done = run_cli("check", "-c", str(bad))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"nat-keepalive: {bad}:4: bindings[0].source_port: must be between 1 and 65535, not 70000"
    )
    done = run_cli("check", env={"NAT_KEEPALIVE_CONFIG": str(tmp_path / "missing.yaml")})
    assert done.returncode == 2 and "missing.yaml" in done.stderr


def test_status_table_json_and_missing(tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    assert run_cli("status", "--status-file", str(status)).returncode == 1
    data = {
        "version": "0.1.0",
        "pid": 1,
        "started_at": "2026-11-27T00:00:00Z",
        "updated_at": "2026-11-27T00:01:00Z",
        "bindings": [
            {
                "name": "provider",
                "server": "203.0.113.10:5060",
                "local": "192.168.77.2:5062",
                "state": "reachable",
                "public": "203.0.113.1:33785",
                "rtt_ms": 0.5,
                "interval_s": 25,
                "last_response_at": "2026-11-27T00:01:00Z",
                "last_change_at": None,
                "changes": 0,
                "expiries": 0,
                "probes_sent": 10,
                "responses": 10,
                "timeouts": 0,
                "lifetime_s": None,
            }
        ],
    }
    status.write_text(json.dumps(data))
    done = run_cli("status", "--status-file", str(status), "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == data
    table = run_cli("status", "--status-file", str(status)).stdout
    assert "provider" in table and "reachable" in table and "203.0.113.1:33785" in table


def test_discover_without_a_nat_says_so(responder: SipResponder) -> None:
    """On loopback the server sees the trial's own address and port: there is no NAT, and
    discover says so after the first trial instead of reporting a lifetime."""
    done = run_cli("discover", target(responder), "--start", "1", "--max-idle", "2", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["nat"] is False and out["public"].startswith("127.0.0.1:")
    assert (out["lifetime_s"], out["trials"], out["error"]) == (None, 1, None)
    assert done.stderr.count("trial: idle") == 1
    text = run_cli("discover", target(responder), "--start", "1", "--max-idle", "2")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("no NAT seen: the server saw this host's own address 127.0.0.1:")
    assert "lifetime" not in text.stdout


def test_discover_refuses_a_configured_bindings_port(
    tmp_path: Path, responder: SipResponder
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("bindings:\n  - {name: provider, server: 192.0.2.1, source_port: 5070}\n")
    done = run_cli(
        "discover",
        target(responder),
        "--source-port",
        "5062",
        env={"NAT_KEEPALIVE_CONFIG": str(config)},
    )
    assert done.returncode == 2 and "provider" in done.stderr


def test_discover_with_forced_rport_and_no_nat_says_no_nat(responder: SipResponder) -> None:
    responder.configure(force_rport=True)
    done = run_cli("discover", target(responder), "--start", "1", "--max-idle", "2", "--json")
    out = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert out["nat"] is False and out["error"] is None


# --- `run` parses its arguments and file in a child (cli/run.py): same answers as before ---------


def test_run_help_and_usage_errors() -> None:
    done = run_cli("run", "--help")
    assert done.returncode == 0 and "usage: nat-keepalive run" in done.stdout
    done = run_cli("run", "--bogus")
    assert done.returncode == 2 and "unrecognized arguments: --bogus" in done.stderr


def test_run_with_a_bad_file_exits_2_naming_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("bindings:\n  - name: a\n    server: 127.0.0.1\n    source_port: 70000\n")
    done = run_cli("run", "-c", str(path))
    assert done.returncode == 2
    assert done.stderr.startswith(f"nat-keepalive: {path}:4: bindings[0].source_port: ")
    done = run_cli("run", "-c", str(tmp_path / "none.yaml"))
    assert done.returncode == 2 and "file not found" in done.stderr
