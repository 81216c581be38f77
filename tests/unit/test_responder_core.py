"""The responder's sans-I/O core and the SIP answer builder it shares with the agent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from natkeepalive import stun
from natkeepalive.errors import SipParseError
from natkeepalive.responder.core import MAX_REQUEST_BYTES, ResponderCore
from natkeepalive.sip.answer import (
    answer_destination,
    build_answer,
    is_relayed_check,
    parse_request,
)
from natkeepalive.sip.message import parse_response
from natkeepalive.sip.request import OptionsRequest, build_options

TXID = bytes(range(12))
SOURCE = ("198.51.100.7", 40001)  # the second socket's public address
PUBLIC_PORT = 5062  # the binding's public port


def options(
    *,
    via_host: str = "198.51.100.7",
    via_port: int | None = PUBLIC_PORT,
    rport: bool = False,
    cseq: int = 3,
) -> bytes:
    data = build_options(
        OptionsRequest(
            "203.0.113.10",
            None,
            via_host,
            via_port or 5060,
            "z9hG4bKcheck1",
            "cid-1",
            "tag1",
            cseq,
            rport=rport,
        )
    )
    if via_port is None:
        data = data.replace(b"198.51.100.7:5060;", b"198.51.100.7;")
    return data


# --- STUN ----------------------------------------------------------------------------------------


def test_stun_with_response_port_goes_to_the_source_address_and_that_port() -> None:
    core = ResponderCore()
    [(answer, destination)] = core.handle(
        stun.build_binding_request(TXID, response_port=PUBLIC_PORT), SOURCE, 0.0
    )
    assert destination == (SOURCE[0], PUBLIC_PORT)
    parsed = stun.parse_binding_response(answer)
    assert parsed.transaction_id == TXID and parsed.mapped == SOURCE
    # no bigger than needed: header and one XOR-MAPPED-ADDRESS
    assert len(answer) == 32
    assert core.counters["stun"] == 1


def test_stun_without_response_port_goes_to_the_source() -> None:
    [(_, destination)] = ResponderCore().handle(stun.build_binding_request(TXID), SOURCE, 0.0)
    assert destination == SOURCE


def test_stun_ipv6_source() -> None:
    source = ("2001:db8::7", 40001)
    [(answer, destination)] = ResponderCore().handle(
        stun.build_binding_request(TXID, response_port=5062), source, 0.0
    )
    assert destination == ("2001:db8::7", 5062)
    assert stun.parse_binding_response(answer).mapped == source


@pytest.mark.parametrize("flags", [(True, False), (False, True)])
def test_change_request_is_refused_with_420(flags: tuple[bool, bool]) -> None:
    core = ResponderCore()
    [(answer, destination)] = core.handle(
        stun.build_binding_request(
            TXID, change_ip=flags[0], change_port=flags[1], response_port=PUBLIC_PORT
        ),
        SOURCE,
        0.0,
    )
    assert destination == SOURCE  # an error goes to the sender, never into the binding
    parsed = stun.parse_binding_response(answer)
    assert parsed.error == (420, "Unknown Attribute")
    assert stun.parse_message(answer).first(stun.UNKNOWN_ATTRIBUTES) == b"\x00\x03"
    assert core.counters["stun_error"] == 1


def test_stun_responses_and_indications_are_ignored() -> None:
    core = ResponderCore()
    assert core.handle(stun.build_binding_success(TXID, SOURCE), SOURCE, 0.0) == []
    indication = b"\x00\x11\x00\x00" + stun.MAGIC_COOKIE.to_bytes(4, "big") + TXID
    assert core.handle(indication, SOURCE, 0.0) == []
    assert core.counters["ignored"] == 2 and core.counters["malformed"] == 0


# --- SIP -----------------------------------------------------------------------------------------


def test_options_without_rport_goes_to_the_sent_by_port_of_the_source_address() -> None:
    core = ResponderCore()
    [(answer, destination)] = core.handle(options(), SOURCE, 0.0)
    assert destination == (SOURCE[0], PUBLIC_PORT)
    response = parse_response(answer)
    assert response.status == 200 and response.call_id == "cid-1" and response.cseq == 3
    assert response.top_via.branch == "z9hG4bKcheck1"
    assert response.top_via.received is None  # the sent-by host is the source address
    assert "tag=nkr" in (response.header("to") or "")
    assert core.counters["sip"] == 1


def test_options_sent_by_another_host_still_goes_only_to_the_source_address() -> None:
    [(answer, destination)] = ResponderCore().handle(options(via_host="192.0.2.99"), SOURCE, 0.0)
    assert destination == (SOURCE[0], PUBLIC_PORT)
    assert parse_response(answer).top_via.received == SOURCE[0]


def test_options_without_a_sent_by_port_goes_to_5060() -> None:
    [(_, destination)] = ResponderCore().handle(options(via_port=None), SOURCE, 0.0)
    assert destination == (SOURCE[0], 5060)


def test_options_with_rport_goes_to_the_source_with_rport_and_received() -> None:
    [(answer, destination)] = ResponderCore().handle(
        options(via_host="192.168.77.2", rport=True), SOURCE, 0.0
    )
    assert destination == SOURCE
    via = parse_response(answer).top_via
    assert via.rport == SOURCE[1] and via.received == SOURCE[0]


def test_the_answer_is_no_bigger_than_needed() -> None:
    request = options(via_host="192.168.77.2", rport=True)
    [(answer, _)] = ResponderCore().handle(request, SOURCE, 0.0)
    # the request's own headers, minus Max-Forwards and User-Agent, plus a tag, received, rport
    assert len(answer) <= len(request) + 48


@pytest.mark.parametrize(
    "data",
    [
        b"INVITE sip:x@203.0.113.10 SIP/2.0\r\nVia: "
        b"SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKa\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKa\r\nFrom: <sip:a@b>;t"
        b"ag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
        b"\r\n\r\n",
    ],
)
def test_not_a_check_is_ignored(data: bytes) -> None:
    core = ResponderCore()
    assert core.handle(data, SOURCE, 0.0) == []
    assert core.counters["ignored"] == 1


@pytest.mark.parametrize(
    "data",
    [
        b"hello",
        b"OPTIONS sip:x SIP/2.0\r\n\r\n",
        options().replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"),
        options().replace(b"CSeq: 3 OPTIONS", b"CSeq: 3 INVITE"),
        options().replace(b"From:", b"X-From:"),
        b"\x00\x01\x00\x04\x21\x12\xa4\x42" + TXID,  # STUN with a bad length
        b"x" * (MAX_REQUEST_BYTES + 1),
    ],
)
def test_malformed_is_dropped_and_counted(data: bytes) -> None:
    core = ResponderCore()
    assert core.handle(data, SOURCE, 0.0) == []
    assert core.counters["malformed"] == 1


def test_a_source_port_of_zero_is_dropped() -> None:
    core = ResponderCore()
    assert core.handle(stun.build_binding_request(TXID), ("198.51.100.7", 0), 0.0) == []
    assert core.counters["malformed"] == 1


# --- limits --------------------------------------------------------------------------------------


def test_rate_limit_per_source() -> None:
    core = ResponderCore(rate=2.0, burst=3.0)
    request = stun.build_binding_request(TXID)
    answered = [bool(core.handle(request, SOURCE, 0.0)) for _ in range(5)]
    assert answered == [True, True, True, False, False]
    assert core.counters["rate_limited"] == 2
    # another source has its own bucket
    assert core.handle(request, ("198.51.100.8", 1), 0.0)
    # half a second later one token is back (2 per second)
    assert core.handle(request, SOURCE, 0.5)
    assert not core.handle(request, SOURCE, 0.5)


def test_rate_limit_for_all_sources_together() -> None:
    core = ResponderCore(rate=100.0, burst=100.0, total_rate=10.0)
    request = stun.build_binding_request(TXID)
    answered = sum(bool(core.handle(request, (f"198.51.100.{n}", 1), 0.0)) for n in range(50))
    assert answered == 10
    assert sum(bool(core.handle(request, (f"198.51.100.{n}", 1), 1.0)) for n in range(50)) == 10


def test_state_is_bounded() -> None:
    core = ResponderCore(max_sources=8, total_rate=1e9)
    request = stun.build_binding_request(TXID)
    for n in range(1000):
        core.handle(request, (f"10.0.{n // 256}.{n % 256}", 1), n * 0.001)
    assert core.sources() == 8


@settings(max_examples=300)
@given(st.binary(max_size=600), st.integers(0, 70000))
def test_any_bytes_never_raise(data: bytes, port: int) -> None:
    core = ResponderCore()
    for answer, destination in core.handle(data, ("192.0.2.1", port), 0.0):
        assert destination[0] == "192.0.2.1"
        assert len(answer) <= len(data) + 64


@settings(max_examples=300)
@given(
    st.sampled_from(
        [options(), options(rport=True), stun.build_binding_request(TXID, response_port=9)]
    ),
    st.integers(0, 400),
    st.binary(min_size=1, max_size=4),
)
def test_mutated_checks_never_raise_or_leave_the_source(base: bytes, at: int, junk: bytes) -> None:
    data = base[:at] + junk + base[at + len(junk) :]
    for _, destination in ResponderCore().handle(data, ("192.0.2.1", 7), 0.0):
        assert destination[0] == "192.0.2.1"


# --- sip/answer ----------------------------------------------------------------------------------


def test_parse_request_refuses_a_response() -> None:
    with pytest.raises(SipParseError, match="expected a request"):
        parse_request(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bKa\r\nCall-ID: c\r\n"
            b"CSeq: 1 OPTIONS\r\n\r\n"
        )


def test_answer_keeps_every_via_in_order() -> None:
    data = options().replace(
        b"Max-Forwards",
        b"Via: SIP/2.0/UDP 192.0.2.5:5070;branch=z9hG4bKp1, "
        b"SIP/2.0/UDP 192.0.2.6;branch=z9hG4bKp2\r\nMax-Forwards",
    )
    request = parse_request(data)
    answer = parse_response(build_answer(request, SOURCE, to_tag="t"))
    assert [v.branch for v in answer.vias] == ["z9hG4bKcheck1", "z9hG4bKp1", "z9hG4bKp2"]


def test_answer_keeps_an_existing_to_tag() -> None:
    data = options().replace(b"To: <sip:203.0.113.10>", b"To: <sip:203.0.113.10>;tag=abc")
    answer = parse_response(build_answer(parse_request(data), SOURCE, to_tag="new"))
    assert answer.header("to") == "<sip:203.0.113.10>;tag=abc"


def test_answer_with_multiple_vias_in_the_top_header() -> None:
    data = options().replace(
        b";branch=z9hG4bKcheck1", b";branch=z9hG4bKcheck1, SIP/2.0/UDP 192.0.2.6;branch=z9hG4bKp2"
    )
    request = parse_request(data)
    answer = parse_response(build_answer(request, SOURCE))
    assert [v.branch for v in answer.vias] == ["z9hG4bKcheck1", "z9hG4bKp2"]
    assert answer_destination(request, SOURCE) == (SOURCE[0], PUBLIC_PORT)


def test_build_answer_refuses_bad_arguments() -> None:
    request = parse_request(options())
    with pytest.raises(ValueError):
        build_answer(request, SOURCE, 100, "Trying")
    with pytest.raises(ValueError):
        build_answer(request, SOURCE, 200, "OK\r\nX: y")
    with pytest.raises(ValueError):
        build_answer(request, SOURCE, to_tag="a b")


def test_is_relayed_check() -> None:
    request = parse_request(options(cseq=7))
    assert is_relayed_check(request, "cid-1", 7)
    assert not is_relayed_check(request, "cid-1", 8)
    assert not is_relayed_check(request, "cid-2", 7)
