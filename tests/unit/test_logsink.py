"""logline.py (formatting and parsing) and logsink.py (levels and the sinks; sockets:
loopback/test_syslog)."""

from __future__ import annotations

import io
import os
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, strategies as st

from natkeepalive import events as ev
from natkeepalive.config.model import LogConfig
from natkeepalive.logline import escape_text, format_event, format_float, format_value, parse_line
from natkeepalive.runtime.logsink import (
    ListSink,
    StderrSink,
    SyslogSink,
    level_severity,
    make_sink,
    parse_syslog_address,
    write_fatal,
)

# One instance of every event class with fixed values, and its exact line.
EXPECTED = [
    (
        ev.Started(
            "0.1.0",
            2,
            "/etc/nat-keepalive/config.yaml",
            "/run/nat-keepalive/status.json",
            "syslog /dev/log",
        ),
        "event=started version=0.1.0 bindings=2 config=/etc/nat-keepalive/config.yaml "
        'status_file=/run/nat-keepalive/status.json log="syslog /dev/log"',
    ),
    (ev.Stopped("SIGTERM"), "event=stopped reason=SIGTERM"),
    (ev.Reloaded(1, 0, 2), "event=reloaded added=1 changed=0 removed=2"),
    (
        ev.ConfigRejected(
            "/etc/nat-keepalive/config.yaml", "line 3: bindings[0].port: unknown key"
        ),
        "event=config-rejected file=/etc/nat-keepalive/config.yaml "
        'error="line 3: bindings[0].port: unknown key" '
        'outcome="the previous configuration keeps running"',
    ),
    (
        ev.SignalReceived("SIGUSR1", "write the status file now"),
        'event=signal-received signal=SIGUSR1 action="write the status file now"',
    ),
    (
        ev.StatusWriteFailed("/run/x/status.json", "Permission denied"),
        'event=status-write-failed file=/run/x/status.json error="Permission denied"',
    ),
    (
        ev.StatusWriteRecovered("/run/x/status.json"),
        "event=status-write-recovered file=/run/x/status.json",
    ),
    (
        ev.MetricsWriteFailed("/var/lib/x.prom", "Permission denied"),
        'event=metrics-write-failed file=/var/lib/x.prom error="Permission denied"',
    ),
    (
        ev.MetricsWriteRecovered("/var/lib/x.prom"),
        "event=metrics-write-recovered file=/var/lib/x.prom",
    ),
    (
        ev.MetricsRemoveFailed("/var/lib/x.prom", "Permission denied"),
        'event=metrics-remove-failed file=/var/lib/x.prom error="Permission denied"',
    ),
    (
        ev.HookFailed("/etc/nat-keepalive/hook", "reachable: exit status 3"),
        'event=hook-failed command=/etc/nat-keepalive/hook error="reachable: exit status 3"',
    ),
    (
        ev.SyslogUnavailable("/dev/log", "[Errno 111] Connection refused"),
        'event=syslog-unavailable address=/dev/log error="[Errno 111] Connection refused"',
    ),
    (ev.SyslogRecovered("/dev/log"), "event=syslog-recovered address=/dev/log"),
    (ev.DatagramsDropped(12, 60.0), "event=datagrams-dropped count=12 period_s=60"),
    (
        ev.NoLocalAddress("p", "interface wan9 does not exist"),
        'event=no-local-address binding=p reason="interface wan9 does not exist"',
    ),
    (
        ev.LifetimeDiscoveryFailed("p", "the server ignores rport", 25.0),
        'event=lifetime-discovery-failed binding=p error="the server ignores rport" interval_s=25',
    ),
    (
        ev.BindingLearned(
            "provider", "203.0.113.10:5060", "192.168.77.2:5062", "203.0.113.1:33785"
        ),
        "event=binding-learned binding=provider server=203.0.113.10:5060 local=192.168.77.2:5062 "
        "public=203.0.113.1:33785",
    ),
    (
        ev.BindingChanged("provider", "203.0.113.1:33785", "203.0.113.1:40000", "port-remapped"),
        "event=binding-changed binding=provider old=203.0.113.1:33785 new=203.0.113.1:40000 "
        "cause=port-remapped",
    ),
    (
        ev.BindingExpired("provider", "203.0.113.1:33785", 31.0, "inbound-check"),
        "event=binding-expired binding=provider public=203.0.113.1:33785 idle_s=31 "
        "detected=inbound-check",
    ),
    (
        ev.BindingFlapping("p", "203.0.113.1:1", "203.0.113.2:2"),
        "event=binding-flapping binding=p public=203.0.113.1:1 alternate=203.0.113.2:2",
    ),
    (
        ev.RportUnsupported("p", "[2001:db8::1]:5060"),
        "event=rport-unsupported binding=p server=[2001:db8::1]:5060",
    ),
    (
        ev.InboundCheckUnsupported(
            "p",
            "sip.example.net:5060",
            "server forces rport",
            "a server that answers to the sent-by port",
        ),
        "event=inbound-check-unsupported binding=p server=sip.example.net:5060 "
        'reason="server forces rport" remedy="a server that answers to the sent-by port"',
    ),
    (ev.Reachable("p", 0.41), "event=reachable binding=p rtt_ms=0.41"),
    (ev.Lagged("p", 2500.12345, 2000), "event=lagged binding=p rtt_ms=2500.123 threshold_ms=2000"),
    (ev.Unreachable("p", 2), 'event=unreachable binding=p failures=2 reason="no answer"'),
    (
        ev.Unreachable("p", 1, "answered 403, not 2xx (require_2xx)"),
        'event=unreachable binding=p failures=1 reason="answered 403, not 2xx (require_2xx)"',
    ),
    (
        ev.LocalAddressChanged("p", "192.168.77.2", "192.168.77.3"),
        "event=local-address-changed binding=p old=192.168.77.2 new=192.168.77.3",
    ),
    (
        ev.ResolveFailed("p", "sip.example.net", "Name or service not known"),
        'event=resolve-failed binding=p host=sip.example.net error="Name or service not known"',
    ),
    (
        ev.ResolveRecovered("p", "sip.example.net", "203.0.113.10:5060"),
        "event=resolve-recovered binding=p host=sip.example.net address=203.0.113.10:5060",
    ),
    (
        ev.SendFailed("p", "[Errno 101] Network is unreachable"),
        'event=send-failed binding=p error="[Errno 101] Network is unreachable"',
    ),
    (
        ev.ServerChanged("p", "203.0.113.10:5060", "203.0.113.11:5060"),
        "event=server-changed binding=p old=203.0.113.10:5060 new=203.0.113.11:5060",
    ),
    (
        ev.LifetimeDiscovered("p", 30.0, 25.5, 32.25),
        "event=lifetime-discovered binding=p lifetime_s=30 lo_s=25.5 hi_s=32.25",
    ),
    (
        ev.IntervalAdjusted("p", 25.0, 20.0, "lifetime"),
        "event=interval-adjusted binding=p old_s=25 new_s=20 reason=lifetime",
    ),
    (
        ev.ProbeSent("p", 7, 1, "keepalive"),
        "event=probe-sent binding=p cseq=7 transmission=1 kind=keepalive",
    ),
    (
        ev.ProbeAnswered("p", 7, 200, 0.5, "203.0.113.1:33785"),
        "event=probe-answered binding=p cseq=7 status=200 rtt_ms=0.5 public=203.0.113.1:33785",
    ),
    (ev.ProbeTimedOut("p", 7, 7), "event=probe-timeout binding=p cseq=7 transmissions=7"),
    (
        ev.DatagramDropped("p", "198.51.100.7:5060", "unknown-branch"),
        "event=datagram-dropped binding=p source=198.51.100.7:5060 reason=unknown-branch",
    ),
]


def test_every_event_class_is_covered() -> None:
    assert {type(event) for event, _ in EXPECTED} == set(ev.ALL_EVENTS.values())


@pytest.mark.parametrize(("event", "line"), EXPECTED, ids=[e.NAME for e, _ in EXPECTED])
def test_exact_format(event: ev.Event, line: str) -> None:
    assert format_event(event) == line
    name, fields = parse_line(line)
    assert name == event.NAME
    assert list(fields) == [key for key, _ in event.items()]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-3, "-3"),
        (0.41, "0.41"),
        (12.0, "12"),
        (2.5, "2.5"),
        (0.0004, "0"),
        (-0.0001, "0"),
        (1.23456, "1.235"),
        (100.10, "100.1"),
        ("", '""'),
        ("-", '"-"'),
        ("plain", "plain"),
    ],
)
def test_values(value: object, text: str) -> None:
    assert format_value(value) == text


def test_format_float_large() -> None:
    assert format_float(1e6) == "1000000"


@pytest.mark.parametrize(
    ("raw", "written"),
    [
        ("a\nb", r"a\x0ab"),
        ("a\rb", r"a\x0db"),
        ("\x1b[31mred", r"\x1b[31mred"),
        ("nul\x00", r"nul\x00"),
        ("del\x7f", r"del\x7f"),
        ("c1\x85", r"c1\x85"),
        ("line\u2028sep", r"line\u2028sep"),
        ("caf\xe9", r"caf\xe9"),
        ("\U0001f600", r"\U0001f600"),
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", r'"back\\slash"'),
        ("x event=forged", r'"x event=forged"'),
        ("k=v", r'"k=v"'),
        ("a b", r'"a b"'),
        ("ok\n event=x", r'"ok\x0a event=x"'),
    ],
)
def test_escaping(raw: str, written: str) -> None:
    line = format_event(ev.SendFailed("p", raw))
    assert line == f"event=send-failed binding=p error={written}"
    assert parse_line(line) == ("send-failed", {"binding": "p", "error": raw})


def test_forged_event_key_is_not_seen_by_a_space_splitter() -> None:
    line = format_event(ev.SendFailed("p", "x event=unreachable binding=q"))
    unquoted_tokens = []
    in_quotes = False
    token = ""
    for i, char in enumerate(line):
        if char == '"' and (i == 0 or line[i - 1] != "\\"):
            in_quotes = not in_quotes
        if char == " " and not in_quotes:
            unquoted_tokens.append(token)
            token = ""
        else:
            token += char
    unquoted_tokens.append(token)
    assert [t for t in unquoted_tokens if t.startswith("event=")] == ["event=send-failed"]


def test_surrogates_from_undecodable_bytes_are_escaped() -> None:
    text = b"bad\xff".decode("utf-8", "surrogateescape")
    line = format_event(ev.SendFailed("p", text))
    assert line.endswith(r"error=bad\udcff")
    line.encode("ascii")  # always encodable
    assert parse_line(line)[1]["error"] == text


@given(st.text(), st.text(), st.text(), st.text())
def test_round_trip_any_text(binding: str, old: str, new: str, cause: str) -> None:
    line = format_event(ev.BindingChanged(binding, old, new, cause))
    assert parse_line(line) == (
        "binding-changed",
        {"binding": binding, "old": old, "new": new, "cause": cause},
    )


@given(st.text())
def test_output_is_printable_ascii(text: str) -> None:
    line = format_event(ev.ConfigRejected(text, text))
    assert all(" " <= char <= "~" for char in line)
    assert escape_text(text).isascii()


def test_none_and_dash_differ() -> None:
    assert parse_line('event=x a=- b="-"') == ("x", {"a": None, "b": "-"})


def test_parse_skips_a_prefix() -> None:
    line = "local3 notice nat-keepalive[12]: event=started version=0.1.0 bindings=1"
    assert parse_line(line) == ("started", {"version": "0.1.0", "bindings": "1"})
    assert parse_line("<5>event=stopped reason=x\n") == ("stopped", {"reason": "x"})


@pytest.mark.parametrize(
    "bad",
    [
        "no event here",
        'event=x a="open',
        'event=x a=b"c',
        r"event=x a=\q",
        r"event=x a=\x4",
        "event=x a=1 a=2",
        "event=x =1",
        'event=x a="b"c',
        "event=",
        r"event=x a=\U00110000",
    ],
)
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_line(bad)


# --- levels and the stderr sink ----------------------------------------------------------------


def test_levels() -> None:
    names = ("debug", "info", "notice", "warning", "err")
    assert [level_severity(n) for n in names] == [7, 6, 5, 4, 3]
    assert level_severity("ERROR") == 3
    with pytest.raises(ValueError, match="unknown log level"):
        level_severity("verbose")


@pytest.fixture
def no_journal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fixed time zone (UTC+1, no summer time), whatever the machine's, restored after."""
    monkeypatch.setenv("TZ", "XXX-1")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("no_journal", "zone")
def test_stderr_sink_severity_prefix_and_level() -> None:
    out = io.StringIO()
    sink = StderrSink(out, level="notice", clock=lambda: 1_780_000_000.9)
    sink.emit(ev.Started("0.1.0", 1, "/c.yaml", "/s.json", "stderr"))
    sink.emit(ev.BindingLearned("p", "s", "l", "x"))  # info: filtered
    sink.emit(ev.Unreachable("p", 3))
    sink.emit_text(ev.WARNING, "dropped 5 datagrams\nfrom 198.51.100.7")
    sink.emit_text(ev.DEBUG, "not shown")
    # 1 780 000 000 is 2026-05-28T20:26:40Z; local time here is UTC+1, stamped in whole seconds
    assert out.getvalue() == (
        "2026-05-28T21:26:40+0100 notice: event=started version=0.1.0 bindings=1 "
        "config=/c.yaml status_file=/s.json log=stderr\n"
        '2026-05-28T21:26:40+0100 err: event=unreachable binding=p failures=3 reason="no answer"\n'
        "2026-05-28T21:26:40+0100 warning: dropped 5 datagrams\\x0afrom 198.51.100.7\n"
    )
    assert sink.wants(ev.NOTICE)
    assert not sink.wants(ev.INFO)


def test_stderr_sink_journal_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    out = io.StringIO()  # no file descriptor to compare: the variable is trusted
    StderrSink(out, level="debug").emit(ev.Started("0.1.0", 1, "/c.yaml", "/s.json", "stderr"))
    # journald stamps each line itself: no time of ours
    assert out.getvalue() == (
        "<5>event=started version=0.1.0 bindings=1 config=/c.yaml status_file=/s.json log=stderr\n"
    )


def test_journal_stream_must_match_the_stream(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory
) -> None:
    path = os.path.join(str(tmp_path), "err.log")
    with open(path, "w") as stream:
        info = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        assert StderrSink(stream).journal
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino + 1}")
        assert not StderrSink(stream).journal  # inherited from a parent, stderr redirected since


@pytest.mark.usefixtures("no_journal")
def test_fatal_line_on_a_terminal_has_no_prefix() -> None:
    out = io.StringIO()
    write_fatal("c.yaml:4: bindings[0].source_port: must be 1-65535", out)
    assert out.getvalue() == "nat-keepalive: c.yaml:4: bindings[0].source_port: must be 1-65535\n"


def test_fatal_line_in_the_journal_is_err_on_every_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory
) -> None:
    path = os.path.join(str(tmp_path), "err.log")
    with open(path, "w") as stream:
        info = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        write_fatal("first\nsecond", stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino + 1}")
        write_fatal("redirected since", stream)
    with open(path) as stream:
        assert stream.read() == (
            "<3>nat-keepalive: first\n<3>second\nnat-keepalive: redirected since\n"
        )


class _Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.usefixtures("no_journal")
def test_stderr_sink_never_raises() -> None:
    StderrSink(_Broken()).emit(ev.Started("0.1.0", 1))


def test_list_sink() -> None:
    sink = ListSink(level="warning")
    sink.emit(ev.Reachable("p", 1.0))
    sink.emit(ev.Lagged("p", 2500.0, 2000))
    assert sink.records == [(ev.WARNING, "event=lagged binding=p rtt_ms=2500 threshold_ms=2000")]


# --- syslog framing (delivery is tested against real sockets in tests/loopback) --------------


@pytest.fixture
def utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.mark.usefixtures("utc")
def test_rfc3164_frame_local_and_remote() -> None:
    stamp = 1_795_756_200.0 + 8 * 86400  # 2026-12-05 05:10:00 UTC: a one-digit day is padded
    local = SyslogSink("/dev/null-socket", "local3", "debug", clock=lambda: stamp)
    pid = os.getpid()
    expected = f"<157>Dec  5 05:10:00 nat-keepalive[{pid}]: event=x".encode()
    assert local.frame(ev.NOTICE, "event=x") == expected
    remote = SyslogSink("127.0.0.1:5514", "daemon", "info", clock=lambda: 1_795_756_200.0)
    host = socket.gethostname().split(".")[0]
    expected = f"<27>Nov 27 05:10:00 {host} nat-keepalive[{pid}]: m".encode()
    assert remote.frame(ev.ERR, "m") == expected


def test_syslog_rejects_unknown_facility() -> None:
    with pytest.raises(ValueError, match="facility"):
        SyslogSink("/dev/log", "local9", "info")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:5514", ("127.0.0.1", 5514)),
        ("logs.example.net", ("logs.example.net", 514)),
        ("[::1]:5514", ("::1", 5514)),
        ("[::1]", ("::1", 514)),
        ("2001:db8::5", ("2001:db8::5", 514)),
    ],
)
def test_parse_syslog_address(text: str, parsed: tuple[str, int]) -> None:
    assert parse_syslog_address(text) == parsed


@pytest.mark.parametrize(
    "bad", ["host:0", "host:99999", "host:x", "[::1", "[::1]x", ":514", "[]:1"]
)
def test_parse_syslog_address_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_syslog_address(bad)


@pytest.mark.usefixtures("no_journal")
def test_make_sink() -> None:
    sink = make_sink(LogConfig(target="syslog", facility="local3", address="/dev/log", level="err"))
    assert isinstance(sink, SyslogSink)
    assert (sink.facility, sink.max_severity) == (19, 3)
    sink.close()
    override = make_sink(LogConfig(level="debug"), "stderr")
    assert isinstance(override, StderrSink)
    assert override.max_severity == 7
    with pytest.raises(ValueError):
        make_sink(LogConfig(target="journal"))
