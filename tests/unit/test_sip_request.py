"""build_options: exact bytes, size budget, IPv6, the inbound-check variant, input checks."""

from __future__ import annotations

from typing import Any, cast

import pytest
from hypothesis import given, strategies as st

from natkeepalive.errors import LocalProtocolError
from natkeepalive.record import replace
from natkeepalive.sip import OptionsRequest, Request, build_options, options_template, parse_message

TYPICAL = OptionsRequest(
    uri_host="sip.example.net",
    uri_port=None,
    via_host="192.168.77.2",
    via_port=5062,
    branch="z9hG4bK0123456789abcdef",
    call_id="0123456789abcdef",
    from_tag="89abcdef",
    cseq=1,
)

GOLDEN = (
    b"OPTIONS sip:sip.example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.168.77.2:5062;branch=z9hG4bK0123456789abcdef;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:sip.example.net>\r\n"
    b"From: <sip:nk@192.168.77.2>;tag=89abcdef\r\n"
    b"Call-ID: 0123456789abcdef\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"User-Agent: nat-keepalive\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def test_golden_bytes() -> None:
    assert build_options(TYPICAL) == GOLDEN


def test_typical_size_fits_the_budget() -> None:
    # 16-hex branch suffix, 16-hex Call-ID, 8-hex tag, a host name server: measured 289 bytes.
    assert len(build_options(TYPICAL)) == 289
    longer = replace(TYPICAL, cseq=99999, via_host="192.168.177.254")
    assert len(build_options(longer)) <= 300


def test_port_in_uri_and_to() -> None:
    data = build_options(replace(TYPICAL, uri_port=5080))
    assert data.startswith(b"OPTIONS sip:sip.example.net:5080 SIP/2.0\r\n")
    assert b"\r\nTo: <sip:sip.example.net:5080>\r\n" in data


def test_ipv6_everywhere_in_brackets() -> None:
    req = replace(TYPICAL, uri_host="2001:db8::10", uri_port=5070, via_host="2001:db8:77::2")
    data = build_options(req)
    assert data.startswith(b"OPTIONS sip:[2001:db8::10]:5070 SIP/2.0\r\n")
    assert (
        b"\r\nVia: SIP/2.0/UDP [2001:db8:77::2]:5062;branch=z9hG4bK0123456789abcdef;rport\r\n"
        in data
    )
    assert b"\r\nTo: <sip:[2001:db8::10]:5070>\r\n" in data
    assert b"\r\nFrom: <sip:nk@[2001:db8:77::2]>;tag=89abcdef\r\n" in data
    message = parse_message(data)
    assert message.top_via.host == "2001:db8:77::2"
    assert message.top_via.port == 5062


def test_inbound_check_has_no_rport_at_all() -> None:
    req = replace(TYPICAL, via_host="203.0.113.1", via_port=33785, rport=False)
    data = build_options(req)
    assert b"\r\nVia: SIP/2.0/UDP 203.0.113.1:33785;branch=z9hG4bK0123456789abcdef\r\n" in data
    assert b"rport" not in data
    assert not parse_message(data).top_via.has_param("rport")


def test_empty_user_agent_omits_the_header() -> None:
    data = build_options(replace(TYPICAL, user_agent=""))
    assert b"User-Agent" not in data
    assert data == GOLDEN.replace(b"User-Agent: nat-keepalive\r\n", b"")


def test_max_forwards_and_user_agent_are_used() -> None:
    data = build_options(replace(TYPICAL, max_forwards=0, user_agent="acme/1.0 (x)"))
    assert b"\r\nMax-Forwards: 0\r\n" in data
    assert b"\r\nUser-Agent: acme/1.0 (x)\r\n" in data


def test_round_trip_through_the_parser() -> None:
    message = parse_message(build_options(replace(TYPICAL, cseq=4294967295)))
    assert isinstance(message, Request)
    assert message.method == "OPTIONS"
    assert message.uri == "sip:sip.example.net"
    assert message.call_id == "0123456789abcdef"
    assert (message.cseq, message.cseq_method) == (4294967295, "OPTIONS")
    via = message.top_via
    assert (via.protocol, via.host, via.port) == ("SIP/2.0/UDP", "192.168.77.2", 5062)
    assert via.branch == "z9hG4bK0123456789abcdef"
    assert via.has_param("rport") and via.rport is None
    assert message.header("From") == "<sip:nk@192.168.77.2>;tag=89abcdef"
    assert message.header("max-forwards") == "70"
    assert message.header("l") == "0"
    assert message.body == b""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"uri_host": ""}, "uri_host is empty"),
        ({"uri_host": "example.net\r\nX-y"}, "uri_host 'example.net\\r\\nX-y' is not a host name"),
        ({"uri_host": "example.net\r\nX: y"}, "uri_host 'example.net\\r\\nX: y' is not an IPv6"),
        ({"uri_host": "a b"}, "uri_host 'a b' is not a host name or address"),
        ({"uri_host": "[::1]"}, "uri_host '[::1]' is not an IPv6 address"),
        ({"via_host": "fe80::1%eth0"}, "via_host 'fe80::1%eth0' is not an IPv6 address"),
        ({"uri_port": 0}, "uri_port 0 is not a port in 1-65535"),
        ({"uri_port": 65536}, "uri_port 65536 is not a port in 1-65535"),
        ({"via_port": True}, "via_port True is not a port in 1-65535"),
        ({"branch": "abc123"}, "branch 'abc123' must be z9hG4bK plus a unique suffix"),
        ({"branch": "z9hG4bK"}, "branch 'z9hG4bK' must be z9hG4bK plus a unique suffix"),
        ({"branch": "z9hG4bK1;rport"}, "branch 'z9hG4bK1;rport' is empty or has characters"),
        ({"call_id": "a b"}, "call_id 'a b' is empty or has characters not allowed"),
        ({"call_id": "a@b@c"}, "call_id 'a@b@c' must be word[@word]"),
        ({"call_id": ""}, "call_id '' is empty"),
        ({"from_tag": "x\n"}, "from_tag 'x\\n' is empty or has characters not allowed"),
        ({"cseq": -1}, "cseq -1 is not an integer in 0-4294967295"),
        ({"cseq": 2**32}, "cseq 4294967296 is not an integer in 0-4294967295"),
        ({"cseq": True}, "cseq True is not an integer in 0-4294967295"),
        ({"branch": "z9hG4bK\u00e9"}, "branch 'z9hG4bK\u00e9' is empty or has characters"),
        ({"max_forwards": 256}, "max_forwards 256 is not an integer in 0-255"),
        ({"user_agent": "x\r\nVia: evil"}, "user_agent 'x\\r\\nVia: evil' must be printable ASCII"),
        ({"user_agent": " x"}, "user_agent ' x' must be printable ASCII"),
        ({"user_agent": "caf\u00e9"}, "user_agent 'café' must be printable ASCII"),
    ],
)
def test_misuse_is_refused(change: dict[str, object], message: str) -> None:
    req = replace(TYPICAL, **cast("dict[str, Any]", change))
    with pytest.raises(LocalProtocolError) as info:
        build_options(req)
    assert str(info.value).startswith(message)


def test_call_id_with_host_part_is_allowed() -> None:
    data = build_options(replace(TYPICAL, call_id="abc@192.168.77.2"))
    assert b"\r\nCall-ID: abc@192.168.77.2\r\n" in data


TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"


@given(
    st.one_of(
        st.just("z9hG4bK"), st.text(alphabet=TOKEN + ";, \r\n\u00e9\u0661", max_size=4)
    ).flatmap(
        lambda head: st.text(alphabet=TOKEN + ";\u00e9\u0661", max_size=12).map(
            lambda tail: head + tail
        )
    ),
    st.one_of(st.integers(-2, 2**32 + 2), st.booleans()),
)
def test_branch_and_cseq_are_checked_on_every_render(branch: str, cseq: int) -> None:
    """render refuses exactly the branches and CSeqs the rules refuse (the token check's quick
    path for ASCII letters and digits lets nothing else through), and changes nothing it lets
    through."""
    allowed = (
        branch.startswith("z9hG4bK")
        and len(branch) > 7
        and set(branch) <= set(TOKEN)
        and type(cseq) is int
        and 0 <= cseq <= 2**32 - 1
    )
    try:
        data = build_options(replace(TYPICAL, branch=branch, cseq=cseq))
    except LocalProtocolError:
        assert not allowed
        return
    assert allowed
    assert data == GOLDEN.replace(b"z9hG4bK0123456789abcdef", branch.encode()).replace(
        b"CSeq: 1 ", f"CSeq: {cseq} ".encode()
    )


@pytest.mark.parametrize("uri_port", [5060, 5080])
@pytest.mark.parametrize("rport", [True, False])
def test_the_factory_numbers_the_call_id_and_omits_the_default_port(
    uri_port: int, rport: bool
) -> None:
    """The engine, discovery and the probe make their requests with options_template: the
    same bytes as build_options with the Call-ID "<prefix>-<CSeq>" and no port 5060 in the URI."""
    template = options_template(
        uri_host="sip.example.net",
        uri_port=uri_port,
        via_host="192.168.77.2",
        via_port=5062,
        call_id="0123456789abcdef",
        from_tag="89abcdef",
        rport=rport,
    )
    for cseq in (1, 42):
        expected = build_options(
            replace(
                TYPICAL,
                uri_port=None if uri_port == 5060 else uri_port,
                cseq=cseq,
                rport=rport,
                call_id=f"0123456789abcdef-{cseq}",
            )
        )
        assert template.render(TYPICAL.branch, cseq) == expected
    assert (b":5080" in expected) == (uri_port == 5080)
