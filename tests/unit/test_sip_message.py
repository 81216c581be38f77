"""parse_message / parse_response on golden samples (tests/data/*.sip) and on broken input."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from natkeepalive.errors import SipParseError
from natkeepalive.sip import (
    HEADER_NAMES,
    Request,
    Response,
    Via,
    canonical_name,
    parse_message,
    parse_response,
    parse_via,
)
from natkeepalive.sip.scan import split_outside

DATA = Path(__file__).resolve().parent.parent / "data"
BRANCH = "z9hG4bK0123456789abcdef"


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


class V(NamedTuple):
    """Expected Via fields: protocol, host, port, branch, received, rport, has rport param."""

    protocol: str
    host: str
    port: int | None
    branch: str | None
    received: str | None
    rport: int | None
    has_rport: bool


OURS = V("SIP/2.0/UDP", "192.168.77.2", 5062, BRANCH, "203.0.113.1", 33785, True)

# file: (status, reason, cseq, cseq method, vias)
RESPONSES = {
    "kamailio_200.sip": (200, "OK", 1, "OPTIONS", [OURS]),
    "asterisk_200.sip": (200, "OK", 1, "OPTIONS", [OURS]),
    "freeswitch_200.sip": (200, "OK", 1, "OPTIONS", [OURS]),
    "sipp_echo_norport.sip": (200, "OK", 1, "OPTIONS", [OURS._replace(received=None, rport=None)]),
    "received_with_port.sip": (200, "OK", 1, "OPTIONS", [OURS._replace(rport=5062)]),
    "ipv6_received.sip": (
        200,
        "OK",
        7,
        "OPTIONS",
        [V("SIP/2.0/UDP", "2001:db8:77::2", 5062, BRANCH, "2001:db8:ffff::1", 40112, True)],
    ),
    "compact.sip": (200, "OK", 1, "OPTIONS", [OURS]),
    "folded.sip": (200, "OK", 1, "OPTIONS", [OURS]),
    "multi_via.sip": (
        200,
        "OK",
        1,
        "OPTIONS",
        [
            OURS,
            V("SIP/2.0/UDP", "10.0.0.5", None, "z9hG4bKp1", None, None, False),
            V("SIP/2.0/TCP", "2001:db8::5", 5070, "z9hG4bKp2", "2001:db8::99", None, False),
        ],
    ),
    "body.sip": (200, "OK", 1, "OPTIONS", [OURS]),
    "mixed_case_spaces.sip": (200, "ok", 1, "OPTIONS", [OURS]),
    "bare_lf.sip": (200, "OK", 1, "OPTIONS", [OURS]),
    "error_503.sip": (503, "Service Unavailable", 1, "OPTIONS", [OURS]),
    "flow_timer.sip": (200, "OK", 2, "REGISTER", [OURS]),
}


def test_every_sample_is_covered() -> None:
    on_disk = {path.name for path in DATA.glob("*.sip")}
    assert on_disk == set(RESPONSES) | {"kamailio_options_request.sip"}


def check_via(via: Via, expected: V) -> None:
    assert via.protocol == expected.protocol
    assert via.host == expected.host
    assert via.port == expected.port
    assert via.branch == expected.branch
    assert via.received == expected.received
    assert via.rport == expected.rport
    assert via.has_param("rport") is expected.has_rport


@pytest.mark.parametrize("name", sorted(RESPONSES))
def test_response_samples(name: str) -> None:
    status, reason, cseq, method, vias = RESPONSES[name]
    response = parse_response(sample(name))
    assert response.status == status
    assert response.reason == reason
    assert response.call_id == "0123456789abcdef"
    assert (response.cseq, response.cseq_method) == (cseq, method)
    assert len(response.vias) == len(vias)
    for via, expected in zip(response.vias, vias):
        check_via(via, expected)
    assert response.top_via == response.vias[0]
    if name not in ("ipv6_received.sip", "flow_timer.sip"):
        assert response.header("from") == "<sip:nk@192.168.77.2>;tag=89abcdef"
        assert response.header("f") == response.header("From")


def test_kamailio_headers_in_order_with_empty_values() -> None:
    response = parse_response(sample("kamailio_200.sip"))
    assert [name for name, _ in response.headers] == [
        "via",
        "to",
        "from",
        "call-id",
        "cseq",
        "accept",
        "accept-encoding",
        "accept-language",
        "supported",
        "server",
        "content-length",
    ]
    assert response.header("Accept-Encoding") == ""
    assert response.header("Server") == "kamailio (5.6.3 (x86_64/linux))"
    assert response.top_via.params == (
        ("branch", BRANCH),
        ("rport", "33785"),
        ("received", "203.0.113.1"),
    )
    assert response.body == b""
    assert response.flow_timer is None


def test_asterisk_param_order_and_double_space_length() -> None:
    response = parse_response(sample("asterisk_200.sip"))
    assert [key for key, _ in response.top_via.params] == ["rport", "received", "branch"]
    assert response.header("to") == f"<sip:sip.example.net>;tag={BRANCH}"
    assert response.header("content-length") == "0"
    assert (response.header("Allow") or "").startswith("OPTIONS, REGISTER, SUBSCRIBE")


def test_freeswitch_user_agent_and_allow_events() -> None:
    response = parse_response(sample("freeswitch_200.sip"))
    assert response.header("user-agent") == "FreeSWITCH-mod_sofia/1.10.11-release~64bit"
    assert response.header("u") == response.header("Allow-Events")
    assert response.header("m") == "<sip:203.0.113.10:5060>"


def test_sipp_echo_keeps_the_empty_rport() -> None:
    via = parse_response(sample("sipp_echo_norport.sip")).top_via
    assert via.param("rport") is None
    assert via.params[-1] == ("rport", None)
    assert via.param("received") is None


def test_received_with_port_mistake() -> None:
    via = parse_response(sample("received_with_port.sip")).top_via
    assert via.param("received") == "203.0.113.1:5062"
    assert via.received == "203.0.113.1"


def test_ipv6_sample_from_and_to() -> None:
    response = parse_response(sample("ipv6_received.sip"))
    assert response.header("to") == "<sip:[2001:db8::10]>;tag=5f1a"
    assert response.top_via.sent_by == "[2001:db8:77::2]:5062"


def test_compact_forms_are_expanded() -> None:
    response = parse_response(sample("compact.sip"))
    assert [name for name, _ in response.headers] == [
        "via",
        "from",
        "to",
        "call-id",
        "cseq",
        "supported",
        "contact",
        "content-length",
    ]
    assert response.header("Supported") == "path, outbound"
    assert response.header("K") == "path, outbound"
    assert response.header("Content-Length") == "0"


def test_folded_lines_are_unfolded() -> None:
    response = parse_response(sample("folded.sip"))
    assert response.header("via") == (
        f"SIP/2.0/UDP 192.168.77.2:5062 ;branch={BRANCH} ;rport=33785;received=203.0.113.1"
    )
    assert response.header("cseq") == "1 OPTIONS"
    assert response.header("allow") == "INVITE, ACK, CANCEL, OPTIONS, BYE"


def test_multi_via_quoted_comma_and_order() -> None:
    response = parse_response(sample("multi_via.sip"))
    assert response.vias[1].param("note") == '"a, b"'
    assert response.header("to") == '"Proxy, Edge" <sip:sip.example.net>;tag=e1'
    assert len(response.header_values("v")) == 2


def test_body_with_content_length_ignores_crlf_padding() -> None:
    data = sample("body.sip")
    response = parse_response(data)
    assert response.header("c") == "application/sdp"
    assert response.body.startswith(b"v=0\r\no=- 0 0 IN IP4 203.0.113.10\r\n")
    assert response.body.endswith(b"a=rtpmap:8 PCMA/8000\r\n")
    assert len(response.body) == int(response.header("content-length") or "-1")
    assert data.endswith(response.body + b"\r\n\r\n")


def test_mixed_case_and_spaces() -> None:
    response = parse_response(sample("mixed_case_spaces.sip"))
    via = response.top_via
    assert via.params == (("branch", BRANCH), ("rport", "33785"), ("received", "203.0.113.1"))
    assert response.header("Call-ID") == "0123456789abcdef"


def test_flow_timer_and_keep() -> None:
    response = parse_response(sample("flow_timer.sip"))
    assert response.flow_timer == 25
    assert response.top_via.param("keep") == "25"
    assert response.header("contact") == (
        "<sip:nk@192.168.77.2:5062>;expires=600;reg-id=1;"
        '+sip.instance="<urn:uuid:00000000-0000-1000-8000-000000000001>"'
    )


def test_request_sample() -> None:
    data = sample("kamailio_options_request.sip")
    request = parse_message(data)
    assert isinstance(request, Request)
    assert request.method == "OPTIONS"
    assert request.uri == "sip:nk@203.0.113.1:33785"
    assert request.call_id == "4f0b2a2c6b1d0a3e-31842@203.0.113.10"
    assert (request.cseq, request.cseq_method) == (10, "OPTIONS")
    check_via(
        request.top_via,
        V(
            "SIP/2.0/UDP",
            "203.0.113.10",
            5060,
            "z9hG4bK2c9a.7e1f0ee4000000000000000000000000.0",
            None,
            None,
            False,
        ),
    )
    assert request.header("max-forwards") == "70"
    with pytest.raises(SipParseError) as info:
        parse_response(data)
    assert str(info.value) == "expected a response, got a 'OPTIONS' request"


# --- inline cases ----------------------------------------------------------------------------

HEAD = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.168.77.2:5062;branch=z9hG4bKx;rport=1;received=203.0.113.1\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
)


def response(extra: bytes = b"", body: bytes = b"") -> Response:
    return parse_response(HEAD + extra + b"\r\n" + body)


def test_leading_and_trailing_crlf_keepalives_are_ignored() -> None:
    data = HEAD + b"Content-Length: 0\r\n\r\n"
    parsed = parse_response(b"\r\n\r\n" + data + b"\r\n\r\n")
    assert parsed.body == b""
    assert parsed == parse_response(data)


def test_missing_content_length_takes_the_rest() -> None:
    assert response(body=b"hello\r\n").body == b"hello\r\n"


def test_compact_content_length() -> None:
    assert response(b"l: 3\r\n", b"abcdef").body == b"abc"


def test_no_empty_line_is_tolerated() -> None:
    parsed = parse_response(HEAD.rstrip(b"\r\n"))
    assert parsed.cseq == 1
    assert parsed.body == b""


def test_blank_continuation_adds_nothing() -> None:
    assert response(b"Server: a\r\n   \r\n\tb\r\n").header("server") == "a b"


def test_lf_then_crlf_ends_the_headers() -> None:
    parsed = parse_response(HEAD.replace(b"\r\n", b"\n") + b"\r\nbody")
    assert parsed.body == b"body"


def test_non_utf8_bytes_are_replaced_not_fatal() -> None:
    parsed = response(b"Server: \xff\xfe caf\xc3\xa9\r\n")
    assert parsed.header("server") == "\ufffd\ufffd café"


def test_reason_may_be_empty_or_have_spaces() -> None:
    assert parse_response(HEAD.replace(b"200 OK", b"200") + b"\r\n").reason == ""
    assert (
        parse_response(HEAD.replace(b"200 OK", b"486  Busy  Here ") + b"\r\n").reason
        == "Busy  Here"
    )


def test_header_lookup_by_any_name_form() -> None:
    parsed = response(b"i: second\r\nX-Custom: 1\r\nx-custom: 2\r\n")
    assert parsed.call_id == "c1"  # the first Call-ID wins
    assert parsed.header("I") == "c1"
    assert parsed.header_values("call-id") == ("c1", "second")
    assert parsed.header("X-CUSTOM") == "1"
    assert parsed.header_values("x-custom") == ("1", "2")
    assert parsed.header("absent") is None
    assert parsed.header_values("absent") == ()


def test_header_table_is_consistent() -> None:
    longs = [long for long, _ in HEADER_NAMES]
    shorts = [short for _, short in HEADER_NAMES if short]
    assert len(set(longs)) == len(longs)
    assert len(set(shorts)) == len(shorts)
    assert all(long == long.lower() and len(long) > 1 for long in longs)
    for long, short in HEADER_NAMES:
        if short:
            assert canonical_name(short.upper()) == long
        assert canonical_name(long.upper()) == long


@pytest.mark.parametrize(
    ("via", "received"),
    [
        ("received=203.0.113.1", "203.0.113.1"),
        ("received=203.0.113.1:5062", "203.0.113.1"),
        ("received=2001:db8::1", "2001:db8::1"),
        ("received=[2001:db8::1]", "2001:db8::1"),
        ("received=[2001:db8::1]:5062", "2001:db8::1"),
        ("received = 203.0.113.1 ", "203.0.113.1"),
        ("received=", None),
        ("received", None),
        ("received=host.example", None),
        ("received=300.1.1.1", None),
        ("received=1.2.3", None),
        ("received=2001:::1", None),
        ("other=1", None),
    ],
)
def test_received_property(via: str, received: str | None) -> None:
    assert parse_via(f"SIP/2.0/UDP 10.0.0.1:5060;{via}").received == received


@pytest.mark.parametrize(
    ("via", "rport", "has"),
    [
        ("rport=33785", 33785, True),
        ("rport = 1", 1, True),
        ("rport=65535", 65535, True),
        ("rport", None, True),
        ("rport=", None, True),
        ("rport=0", None, True),
        ("rport=65536", None, True),
        ("rport=12ab", None, True),
        ("rport=\u0661\u0662", None, True),  # Arabic-Indic digits: isdigit() but not a port
        ("RPort=5", 5, True),
        ("branch=z9hG4bKx", None, False),
    ],
)
def test_rport_property(via: str, rport: int | None, has: bool) -> None:
    parsed = parse_via(f"SIP/2.0/UDP 10.0.0.1:5060;{via}")
    assert parsed.rport == rport
    assert parsed.has_param("rport") is has


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("SIP/2.0/UDP host.example", "host.example", None),
        ("SIP/2.0/UDP host.example:5060", "host.example", 5060),
        ("SIP/2.0/UDP host.example : 5060", "host.example", 5060),
        ("sip/2.0/udp  10.0.0.1:1", "10.0.0.1", 1),
        ("SIP / 2.0 / UDP [::1]:5060", "::1", 5060),
        ("SIP/2.0/UDP [2001:db8::1] : 7", "2001:db8::1", 7),
        ("SIP/2.0/UDP [2001:db8::1]", "2001:db8::1", None),
        ("SIP/2.0/UDP 2001:db8::1", "2001:db8::1", None),
        ("SIP/2.0/UDP\t10.0.0.1;branch=z9hG4bK1", "10.0.0.1", None),
    ],
)
def test_via_sent_by(text: str, host: str, port: int | None) -> None:
    via = parse_via(text)
    assert (via.protocol, via.host, via.port) == ("SIP/2.0/UDP", host, port)


def test_via_str_round_trips() -> None:
    via = parse_via('SIP/2.0/UDP [2001:db8::1]:5062 ; branch=z9hG4bK1 ; rport ; x="a;b"')
    assert via.params == (("branch", "z9hG4bK1"), ("rport", None), ("x", '"a;b"'))
    assert str(via) == 'SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bK1;rport;x="a;b"'
    assert parse_via(str(via)) == via


def test_stray_semicolons_are_skipped() -> None:
    assert parse_via("SIP/2.0/UDP h;;branch=z9hG4bK1;").params == (("branch", "z9hG4bK1"),)


def test_split_outside_quotes_escapes_and_angles() -> None:
    assert split_outside('a,"b,\\",c",<d,e>,f', ",") == ["a", '"b,\\",c"', "<d,e>", "f"]
    assert split_outside('<"a>,b', ",") == ['<"a>', "b"]  # a quote inside <> starts nothing
    assert split_outside('x,"unterminated, <', ",") == ["x", '"unterminated, <']
    assert split_outside("", ",") == [""]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty datagram"),
        (b"\r\n\r\n", "only CR/LF (a keepalive), no SIP message"),
        (b"SIP/2.0\r\n", "bad status line 'SIP/2.0'"),
        (b"SIP/3.0 200 OK\r\n", "unsupported SIP version 'SIP/3.0'"),
        (b"SIP/2.0 2OO OK\r\n", "bad status code '2OO'"),
        (b"SIP/2.0 2000 OK\r\n", "bad status code '2000'"),
        (b"SIP/2.0 099 Odd\r\n", "status code 99 out of range 100-699"),
        (b"SIP/2.0 700 Odd\r\n", "status code 700 out of range 100-699"),
        (b"HTTP/1.1 200 OK\r\n", "bad request line 'HTTP/1.1 200 OK'"),
        (b"OPTIONS sip:x SIP/2.1\r\n", "unsupported SIP version 'SIP/2.1'"),
        (b"GET /\r\n", "bad request line 'GET /'"),
        (b"\x00\xff\x10", "bad request line '\\x00\ufffd\\x10'"),
        (b"SIP/2.0 200 OK\r\n ;folded\r\n", "line 2: continuation line without a header"),
        (
            b"SIP/2.0 200 OK\r\nVia SIP/2.0/UDP h\r\n",
            "line 2: header line without ':': 'Via SIP/2.0/UDP h'",
        ),
        (b"SIP/2.0 200 OK\r\nCall ID: x\r\n", "line 2: bad header name 'Call ID'"),
        (b"SIP/2.0 200 OK\r\n: x\r\n", "line 2: bad header name ''"),
        (b"SIP/2.0 200 OK\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n", "missing Via header"),
        (b"SIP/2.0 200 OK\r\n\r\n", "missing Via header"),
        (b"SIP/2.0 200 OK", "missing Via header"),
        (b"OPTIONS sip:x SIP/2.0\n", "missing Via header"),
        (
            b"SIP/2.0 200 OK\r\nVia: ,\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n",
            "missing Via header",
        ),
        (
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCSeq: 1 OPTIONS\r\n\r\n",
            "missing Call-ID header",
        ),
        (
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCall-ID:\r\nCSeq: 1 OPTIONS\r\n\r\n",
            "bad Call-ID ''",
        ),
        (
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCall-ID: a b\r\nCSeq: 1 OPTIONS\r\n\r\n",
            "bad Call-ID 'a b'",
        ),
        (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCall-ID: x\r\n\r\n", "missing CSeq header"),
        (
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCall-ID: x\r\nCSeq: OPTIONS\r\n\r\n",
            "bad CSeq 'OPTIONS': expected 'number method'",
        ),
        (
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCall-ID: x\r\nCSeq: -1 OPTIONS\r\n\r\n",
            "bad CSeq '-1 OPTIONS': expected 'number method'",
        ),
        (
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCall-ID: x\r\nCSeq: 1 OPTIONS x\r\n\r\n",
            "bad CSeq '1 OPTIONS x': expected 'number method'",
        ),
        (
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP "
            b"h\r\nCall-ID: x\r\nCSeq: 4294967296 OPTIONS\r\n\r\n",
            "bad CSeq '4294967296 OPTIONS': number above 2**32-1",
        ),
        (
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCall-ID: x\r\nCSeq: \xd9\xa1 OPTIONS\r\n\r\n",
            "bad CSeq '\u0661 OPTIONS': expected 'number method'",
        ),
        (HEAD + b"Content-Length: x\r\n\r\n", "bad Content-Length 'x'"),
        (HEAD + b"Content-Length: -1\r\n\r\n", "bad Content-Length '-1'"),
        (HEAD + b"Content-Length: 999999\r\n\r\n", "bad Content-Length '999999'"),
        (
            HEAD + b"Content-Length: 10\r\n\r\nabc",
            "Content-Length 10 exceeds the 3 body bytes received",
        ),
    ],
)
def test_errors_have_exact_messages(data: bytes, message: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("via", "message"),
    [
        ("SIP/2.0 h", "bad Via 'SIP/2.0 h': no sent-protocol"),
        ("SIP/2.0/UDP", "bad Via 'SIP/2.0/UDP': no sent-by"),
        ("SIP/2.0/ h", "bad Via 'SIP/2.0/ h': no sent-by"),
        ("SIP//UDP h", "bad Via 'SIP//UDP h': bad sent-protocol"),
        ("SIP/2.0/UDP h:0", "bad Via 'SIP/2.0/UDP h:0': bad port"),
        ("SIP/2.0/UDP h:x", "bad Via 'SIP/2.0/UDP h:x': bad port"),
        ("SIP/2.0/UDP h:", "bad Via 'SIP/2.0/UDP h:': bad port"),
        ("SIP/2.0/UDP h x", "bad Via 'SIP/2.0/UDP h x': bad sent-by host"),
        ("SIP/2.0/UDP :5060", "bad Via 'SIP/2.0/UDP :5060': bad sent-by host"),
        ("SIP/2.0/UDP [::1", "bad Via 'SIP/2.0/UDP [::1': missing ']'"),
        ("SIP/2.0/UDP [::1]5060", "bad Via 'SIP/2.0/UDP [::1]5060': unexpected text after ']'"),
        ("SIP/2.0/UDP [10.0.0.1]", "bad Via 'SIP/2.0/UDP [10.0.0.1]': bad IPv6 address"),
        ("SIP/2.0/UDP fe80::1%eth0", "bad Via 'SIP/2.0/UDP fe80::1%eth0': bad IPv6 address"),
        ("SIP/2.0/UDP h;a b=1", "bad Via 'SIP/2.0/UDP h;a b=1': bad parameter name 'a b'"),
    ],
)
def test_bad_via_messages(via: str, message: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(
            b"SIP/2.0 200 OK\r\nVia: " + via.encode() + b"\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n"
        )
    assert str(info.value) == message


def test_long_input_is_shown_bounded_in_errors() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(b"X" * 5000)
    assert str(info.value) == f"bad request line {'X' * 60 + '...'!r}"


def test_size_cap() -> None:
    data = HEAD + b"\r\n" + b"x" * (65535 - len(HEAD) - 2)
    assert len(parse_response(data).body) == 65535 - len(HEAD) - 2
    with pytest.raises(SipParseError) as info:
        parse_message(data + b"x")
    assert str(info.value) == "message too large: 65536 bytes (limit 65535)"


def test_header_line_cap() -> None:
    filler = b"X-A: 1\r\n"
    parse_response(HEAD + filler * (200 - 3) + b"\r\n")  # 200 header lines pass
    with pytest.raises(SipParseError) as info:
        parse_response(HEAD + filler * (200 - 2) + b"\r\n")
    assert str(info.value) == "too many header lines (limit 200)"


def test_via_count_cap() -> None:
    one = b"SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1"
    head = HEAD.replace(b"Via: ", b"X-Via: ")  # only the Via values below count
    ok = b"Via: " + b", ".join([one] * 32) + b"\r\nv: " + b",".join([one] * 32) + b"\r\n"
    assert len(parse_response(head + ok + b"\r\n").vias) == 64
    with pytest.raises(SipParseError) as info:
        parse_response(head + ok + b"Via: " + one + b"\r\n\r\n")
    assert str(info.value) == "too many Via values (limit 64)"
    with pytest.raises(SipParseError) as info:  # stray commas count too: no real Via has 64
        parse_response(head + b"Via: " + b"," * 64 + one + b"\r\n\r\n")
    assert str(info.value) == "too many Via values (limit 64)"
    assert len(parse_response(head + b"Via: " + b"," * 63 + one + b"\r\n\r\n").vias) == 1


def test_via_parameter_cap() -> None:
    assert len(parse_via("SIP/2.0/UDP h" + ";a" * 32).params) == 32
    with pytest.raises(SipParseError) as info:
        parse_via("SIP/2.0/UDP h" + ";a" * 33)
    shown = "SIP/2.0/UDP h" + ";a" * 23 + ";..."  # the first 60 characters
    assert str(info.value) == f"bad Via '{shown}': more than 32 parameters"


def test_quoted_section_cap() -> None:
    assert split_outside('"",' * 32 + "<>" * 32, ",")[-1] == "<>" * 32
    with pytest.raises(SipParseError) as info:
        split_outside('"",' * 32 + "<>" * 33, ",")
    assert str(info.value) == (
        "more than 64 quoted strings or <...> in " + repr('"",' * 20 + "...")
    )


def test_non_bytes_input() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message("SIP/2.0 200 OK")  # type: ignore[arg-type]
    assert str(info.value) == "expected bytes, got str"
    assert parse_message(bytearray(HEAD + b"\r\n")) == parse_message(memoryview(HEAD + b"\r\n"))


def test_flow_timer_rejects_junk() -> None:
    assert response(b"Flow-Timer: 25x\r\n").flow_timer is None
    assert response(b"Flow-Timer: \r\n").flow_timer is None
    assert response(b"flow-timer: 120\r\n").flow_timer == 120


def test_many_new_names_hosts_and_lines_parse_as_the_first_did() -> None:
    """A stream of new header names, Via parameters, sent-by hosts and `received` values: each
    parses on its own merits (the codec keeps nothing between messages), a bad name or host is
    refused every time."""
    for i in range(512):
        via = parse_via(
            f"SIP/2.0/UDP h{i}.example:5060;branch={BRANCH};X-P{i}=1;"
            f"received=192.0.2.{i % 256}{'x' if i % 2 else ''}"
        )
        assert via.received == (None if i % 2 else f"192.0.2.{i % 256}")
        assert via.host == f"h{i}.example" and via.param(f"x-p{i}") == "1"
        line = f"X-Line-{i % 7}: value {i}\r\n".encode()
        first = response(line)
        assert first == response(line)
        assert first.header(f"x-line-{i % 7}") == f"value {i}"
    for _ in range(2):
        with pytest.raises(SipParseError, match="bad header name"):
            response(b"Bad Name: x\r\n")
        with pytest.raises(SipParseError, match="bad sent-by host"):
            parse_via("SIP/2.0/UDP bad!host;branch=z9hG4bK1")
