"""SyslogSink against real sockets: small servers written here, and a real rsyslogd.

rsyslogd runs as a child process with a configuration written into tmp_path: a private imuxsock
socket, imudp on 127.0.0.1, and a template that writes `facility severity tag msg` per line.
"""

from __future__ import annotations

import _socket
import io
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from natkeepalive import events as ev
from natkeepalive.logline import format_event, parse_line
from natkeepalive.runtime.logsink import SyslogSink
from tests.support.helpers import free_port, wait_until
from tests.support.tools import require_tool

DEADLINE = 10.0  # seconds to wait for an external process; polls are short


def _dgram_server(path: str) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2.0)
    return server


# --- small servers written here ------------------------------------------------------------------


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC for the test, whatever the machine's zone; restored after."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# RFC 3164 pads a day below 10 with a space: both forms, on fixed clocks, not on today's date
@pytest.mark.usefixtures("utc")
@pytest.mark.parametrize(
    ("epoch", "stamp"),
    [
        (1_796_605_323.5, "Dec  7 01:02:03"),  # 2026-12-07T01:02:03Z
        (1_797_469_323.0, "Dec 17 01:02:03"),
    ],
)
def test_unix_datagram_delivery_and_framing(tmp_path: Path, epoch: float, stamp: str) -> None:
    path = str(tmp_path / "log")
    with _dgram_server(path) as server:
        sink = SyslogSink(path, "local3", "info", fallback=io.StringIO(), clock=lambda: epoch)
        sink.emit(ev.Unreachable("p", 2))
        data = server.recv(4096).decode()
        sink.close()
    # local3 (19) * 8 + err (3); no hostname on the local form: <PRI>Mmm dd hh:mm:ss tag: msg
    assert data == (
        f"<155>{stamp} nat-keepalive[{os.getpid()}]: "
        'event=unreachable binding=p failures=2 reason="no answer"'
    )


def test_missing_socket_goes_to_stderr_then_recovers(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    fallback = io.StringIO()
    sink = SyslogSink(path, "daemon", "info", fallback=fallback)
    sink.emit(ev.Stopped("one"))
    sink.emit(ev.Stopped("two"))
    text = fallback.getvalue()
    assert text.count("unavailable") == 1  # the outage is reported once, not per line
    assert "notice: event=stopped reason=one\n" in text
    assert "notice: event=stopped reason=two\n" in text
    with _dgram_server(path) as server:
        sink.emit(ev.Stopped("three"))
        assert server.recv(4096).decode().endswith("event=stopped reason=three")
        sink.close()
    assert f"notice: event=syslog-recovered address={path}\n" in fallback.getvalue()
    # every line on stderr is an event, so a monitor keyed on event= sees the outage too
    names = [parse_line(line)[0] for line in fallback.getvalue().splitlines()]
    assert names == ["syslog-unavailable", "stopped", "stopped", "syslog-recovered"]
    assert (sink.delivered, sink.undelivered) == (1, 2)


def test_server_restart_between_lines_loses_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    fallback = io.StringIO()
    sink = SyslogSink(path, "daemon", "info", fallback=fallback)
    with _dgram_server(path) as server:
        sink.emit(ev.Stopped("before"))
        assert server.recv(4096).endswith(b"reason=before")
    os.unlink(path)
    with _dgram_server(path) as server:  # a new syslogd: the old connection is dead
        sink.emit(ev.Stopped("after"))
        assert server.recv(4096).endswith(b"reason=after")
    sink.close()
    assert fallback.getvalue() == ""


def test_full_receiver_never_blocks_nor_loses(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    fallback = io.StringIO()
    with _dgram_server(path) as server:
        sink = SyslogSink(path, "daemon", "info", fallback=fallback)
        sent = 0
        started = time.monotonic()
        while sink.undelivered < 3 and sent < 100_000:  # nobody reads: the queue fills up
            sink.emit(ev.Stopped(f"n{sent}"))
            sent += 1
        assert sink.undelivered == 3
        assert time.monotonic() - started < 5
        received = 0
        server.setblocking(False)
        try:
            while True:
                server.recv(4096)
                received += 1
        except BlockingIOError:
            pass
        assert received == sink.delivered == sent - 3
        for n in range(sent - 3, sent):
            assert f"event=stopped reason=n{n}\n" in fallback.getvalue()
        sink.emit(ev.Stopped("drained"))
        server.setblocking(True)
        assert server.recv(4096).endswith(b"reason=drained")
        sink.close()


def test_stream_socket_fallback_uses_nul_framing(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        server.settimeout(2.0)
        sink = SyslogSink(path, "daemon", "info", fallback=io.StringIO())
        sink.emit(ev.Stopped("a"))
        sink.emit(ev.Stopped("b c"))
        conn, _ = server.accept()
        with conn:
            conn.settimeout(2.0)
            data = b""
            while data.count(b"\0") < 2:
                data += conn.recv(4096)
        sink.close()
    frames = data.split(b"\0")
    assert frames[0].endswith(b"event=stopped reason=a")
    assert frames[1].endswith(b'event=stopped reason="b c"')
    assert frames[2] == b""


@pytest.mark.parametrize(
    ("family", "host", "address"),
    [
        (socket.AF_INET, "127.0.0.1", "127.0.0.1:{port}"),
        (socket.AF_INET6, "::1", "[::1]:{port}"),
    ],
)
def test_udp_collector_gets_hostname(family: int, host: str, address: str) -> None:
    with socket.socket(family, socket.SOCK_DGRAM) as server:
        server.bind((host, 0))
        server.settimeout(2.0)
        port = server.getsockname()[1]
        sink = SyslogSink(address.format(port=port), "local7", "debug", fallback=io.StringIO())
        sink.emit(ev.ProbeSent("p", 1, 1, "keepalive"))
        data = server.recv(4096).decode()
        sink.close()
    hostname = socket.gethostname().split(".")[0]
    assert data.startswith("<191>")  # local7 (23) * 8 + debug (7)
    assert f" {hostname} nat-keepalive[{os.getpid()}]: event=probe-sent " in data


def test_udp_collector_down_then_up() -> None:
    port = free_port()
    fallback = io.StringIO()
    sink = SyslogSink(f"127.0.0.1:{port}", "daemon", "info", fallback=fallback)
    for n in range(3):  # ICMP port unreachable comes back as ECONNREFUSED on a later send
        sink.emit(ev.Stopped(f"down{n}"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", port))
        server.settimeout(2.0)
        sink.emit(ev.Stopped("up"))
        assert server.recv(4096).endswith(b"reason=up")
    sink.close()


def test_unresolvable_collector_is_not_looked_up_per_line(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str | bytes] = []
    real = _socket.getaddrinfo  # what the sink calls (runtime modules use _socket)

    def failing(host: str | bytes, *args: object, **kwargs: object) -> object:
        calls.append(host)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(_socket, "getaddrinfo", failing)
    fallback = io.StringIO()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(2.0)
        sink = SyslogSink(
            f"collector.test:{server.getsockname()[1]}", "daemon", "info", fallback=fallback
        )
        for n in range(5):
            sink.emit(ev.Stopped(f"n{n}"))
        # one blocking lookup, not one per line; bytes, so the idna codec is never loaded
        assert calls == [b"collector.test"]
        assert "cannot resolve collector.test" in fallback.getvalue()
        assert fallback.getvalue().count("notice: event=stopped") == 5

        def resolving(host: str | bytes, *args: object, **kwargs: object) -> object:
            calls.append(host)
            return real("127.0.0.1", *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(_socket, "getaddrinfo", resolving)
        monkeypatch.setattr(sink, "_resolve_retry_at", 0.0)  # the retry time has come
        sink.emit(ev.Stopped("resolved"))
        sink.emit(ev.Stopped("cached"))
        assert server.recv(4096).endswith(b"reason=resolved")
        assert server.recv(4096).endswith(b"reason=cached")
        assert calls == [b"collector.test"] * 2
        sink.close()


# --- a real rsyslogd ----------------------------------------------------------------------------


class Rsyslog:
    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.socket = str(folder / "log")
        self.output = folder / "out.log"
        self.port = free_port()
        self.conf = folder / "rsyslog.conf"
        self.pidfile = folder / "rsyslogd.pid"
        self.proc: subprocess.Popen[bytes] | None = None
        (folder / "work").mkdir()
        self.conf.write_text(
            f'global(workDirectory="{folder / "work"}")\n'
            'module(load="imuxsock" SysSock.Use="off")\n'
            f'input(type="imuxsock" Socket="{self.socket}" RateLimit.Interval="0")\n'
            'module(load="imudp")\n'
            f'input(type="imudp" address="127.0.0.1" port="{self.port}")\n'
            'template(name="nk" type="string" '
            'string="%syslogfacility-text% %syslogseverity-text% %syslogtag% %msg%\\n")\n'
            f'*.* action(type="omfile" file="{self.output}" template="nk")\n'
        )

    def start(self) -> None:
        log = open(self.folder / "rsyslogd.stderr", "ab")  # noqa: SIM115  (the child owns it)
        self.proc = subprocess.Popen(
            [self.binary, "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        wait_until(
            "rsyslogd's socket", lambda: os.path.exists(self.socket) or self._exited(), DEADLINE
        )
        assert not self._exited(), (self.folder / "rsyslogd.stderr").read_text()
        # imudp may bind a moment after the socket exists: send markers until one lands
        marker = f"ready-{time.monotonic_ns()}"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:

            def seen() -> bool:
                udp.sendto(
                    f"<14>Jan  1 00:00:00 h probe: {marker}".encode(), ("127.0.0.1", self.port)
                )
                return marker in self.text()

            wait_until("rsyslogd's UDP input", seen, DEADLINE)

    def _exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def text(self) -> str:
        try:
            return self.output.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def ours(self) -> list[str]:
        return [line for line in self.text().splitlines() if " nat-keepalive[" in line]

    def wait_lines(self, count: int) -> list[str]:
        wait_until(f"{count} lines from nat-keepalive", lambda: len(self.ours()) >= count, DEADLINE)
        return self.ours()


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    server = Rsyslog(require_tool("rsyslogd"), tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


CLASSES = [
    (ev.Started("0.1.0", 1), "notice"),
    (ev.BindingLearned("p", "203.0.113.10:5060", "192.168.77.2:5062", "203.0.113.1:33785"), "info"),
    (ev.BindingChanged("p", "203.0.113.1:1", "203.0.113.1:2", "port-remapped"), "warning"),
    (ev.Unreachable("p", 2), "err"),
    (ev.ProbeSent("p", 1, 1, "keepalive"), "debug"),
]


def _split(line: str) -> tuple[str, str, str, str]:
    facility, severity, tag, message = line.split(" ", 3)
    return facility, severity, tag, message


@pytest.mark.syslog
@pytest.mark.parametrize("where", ["socket", "udp"])
def test_rsyslog_receives_every_severity(rsyslog: Rsyslog, where: str) -> None:
    address = rsyslog.socket if where == "socket" else f"127.0.0.1:{rsyslog.port}"
    fallback = io.StringIO()
    sink = SyslogSink(address, "local3", "debug", fallback=fallback)
    for event, _ in CLASSES:
        sink.emit(event)
    sink.close()
    lines = rsyslog.wait_lines(len(CLASSES))
    assert len(lines) == len(CLASSES)
    for line, (event, severity) in zip(lines, CLASSES):
        facility, got_severity, tag, message = _split(line)
        assert (facility, got_severity) == ("local3", severity)
        assert tag == f"nat-keepalive[{os.getpid()}]:"
        assert message.strip() == format_event(event)
    assert fallback.getvalue() == ""


@pytest.mark.syslog
def test_rsyslog_level_filter(rsyslog: Rsyslog) -> None:
    sink = SyslogSink(rsyslog.socket, "daemon", "warning", fallback=io.StringIO())
    for event, _ in CLASSES:
        sink.emit(event)
    sink.emit(ev.Stopped("end"))  # notice: filtered too
    sink.emit(ev.Unreachable("last", 9))
    sink.close()
    lines = rsyslog.wait_lines(3)
    time.sleep(0.2)  # an external process: give a wrongly sent line the chance to show up
    assert [_split(line)[1] for line in rsyslog.ours()] == ["warning", "err", "err"]
    assert all(_split(line)[0] == "daemon" for line in lines)


@pytest.mark.syslog
def test_rsyslog_hostile_value_stays_one_escaped_line(rsyslog: Rsyslog) -> None:
    hostile = "x\nevent=binding-expired binding=q\r\x1b[31m\x00\u2028\xe9"
    sink = SyslogSink(rsyslog.socket, "local3", "info", fallback=io.StringIO())
    sink.emit(ev.ResolveFailed("p", "sip.example.net", hostile))
    sink.emit(ev.Stopped("after"))
    sink.close()
    lines = rsyslog.wait_lines(2)
    assert len(lines) == 2
    message = _split(lines[0])[3]
    assert "#012" not in message and "\\x0a" in message  # escaped by us, not by rsyslog
    assert message.count("event=") == 2  # the forged one sits inside a quoted value
    assert parse_line(message) == (
        "resolve-failed",
        {"binding": "p", "host": "sip.example.net", "error": hostile},
    )
    assert _split(lines[1])[3].strip() == "event=stopped reason=after"


@pytest.mark.syslog
def test_rsyslog_restart_loses_nothing(rsyslog: Rsyslog) -> None:
    fallback = io.StringIO()
    sink = SyslogSink(rsyslog.socket, "local3", "info", fallback=fallback)
    for n in range(5):
        sink.emit(ev.Stopped(f"before{n}"))
    rsyslog.wait_lines(5)
    rsyslog.stop()
    for n in range(3):
        sink.emit(ev.Stopped(f"down{n}"))
    rsyslog.start()
    for n in range(5):
        sink.emit(ev.Stopped(f"after{n}"))
    sink.close()
    lines = rsyslog.wait_lines(10)
    reasons = [parse_line(_split(line)[3])[1]["reason"] for line in lines]
    assert reasons == [f"before{n}" for n in range(5)] + [f"after{n}" for n in range(5)]
    for n in range(3):  # what syslogd could not take went to stderr, not into the void
        assert f"notice: event=stopped reason=down{n}\n" in fallback.getvalue()
    assert "event=syslog-recovered" in fallback.getvalue()
    assert (sink.delivered, sink.undelivered) == (10, 3)
