"""The STUN codec (natkeepalive.stun): known bytes, edge cases, and properties over any input."""

from __future__ import annotations

import contextlib
import ipaddress
import struct
from binascii import crc32

import pytest
from hypothesis import given, settings, strategies as st

from natkeepalive import stun
from natkeepalive.errors import NatKeepaliveError, StunParseError

TXID = bytes(range(1, 13))

# RFC 5769 §2.2: a sample IPv4 response (its MESSAGE-INTEGRITY is skipped by this codec; its
# FINGERPRINT is checked).
RFC5769_V4 = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000080001a147e112a643"
    "00080014 2b91f599fd9e90c38c7489f92af9ba53f06be7d7".replace(" ", "")
    + "80280004c07d4c96"
)
# RFC 5769 §2.3: the same for IPv6.
RFC5769_V6 = bytes.fromhex(
    "010100482112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9"
    "00080014a382954e4be67bf11784c97c8292c275bfe3ed41"
    "80280004c8fb0b4c"
)


def test_rfc5769_ipv4_response() -> None:
    answer = stun.parse_binding_response(RFC5769_V4)
    assert answer.success and answer.xor_mapped
    assert answer.mapped == ("192.0.2.1", 32853)
    assert answer.transaction_id == bytes.fromhex("b7e7a701bc34d686fa87dfae")


def test_rfc5769_ipv6_response() -> None:
    answer = stun.parse_binding_response(RFC5769_V6)
    assert answer.mapped == ("2001:db8:1234:5678:11:2233:4455:6677", 32853)


def test_fingerprint_mismatch_is_refused() -> None:
    broken = RFC5769_V4[:-1] + bytes([RFC5769_V4[-1] ^ 1])
    with pytest.raises(StunParseError, match="FINGERPRINT"):
        stun.parse_binding_response(broken)


def test_binding_request_bytes() -> None:
    data = stun.build_binding_request(TXID)
    assert data == b"\x00\x01\x00\x00\x21\x12\xa4\x42" + TXID
    assert stun.is_stun(data)
    assert stun.parse_binding_request(data) == stun.BindingRequest(
        TXID, None, False, False, False, ()
    )


def test_response_port_is_padded_inside_the_attribute() -> None:
    data = stun.build_binding_request(TXID, response_port=5062)
    # type 0x0027, length 4: the port, then two bytes of padding (RFC 5780 §7.5, as coturn)
    assert data[20:] == b"\x00\x27\x00\x04\x13\xc6\x00\x00"
    assert data[2:4] == b"\x00\x08"
    assert stun.parse_binding_request(data).response_port == 5062


def test_response_port_of_two_bytes_is_read() -> None:
    data = b"\x00\x01\x00\x08" + stun._COOKIE + TXID + b"\x00\x27\x00\x02\x13\xc6\x00\x00"
    assert stun.parse_binding_request(data).response_port == 5062


@pytest.mark.parametrize(
    "flags,ip,port",
    [((True, False), True, False), ((False, True), False, True), ((True, True), True, True)],
)
def test_change_request(flags: tuple[bool, bool], ip: bool, port: bool) -> None:
    data = stun.build_binding_request(TXID, change_ip=flags[0], change_port=flags[1])
    request = stun.parse_binding_request(data)
    assert (request.change_ip, request.change_port) == (ip, port)


def test_change_request_without_flags() -> None:
    data = stun.build_binding_request(TXID, change_request=True)
    assert data[20:] == b"\x00\x03\x00\x04\x00\x00\x00\x00"
    request = stun.parse_binding_request(data)
    assert not request.change_ip and not request.change_port


def test_fingerprint_on_a_request() -> None:
    data = stun.build_binding_request(TXID, response_port=7, fingerprint=True)
    crc = (crc32(data[:-8]) ^ 0x5354554E) & 0xFFFFFFFF
    assert data[-8:] == b"\x80\x28\x00\x04" + crc.to_bytes(4, "big")
    assert stun.parse_binding_request(data).response_port == 7


def test_success_round_trip_ipv4() -> None:
    data = stun.build_binding_success(
        TXID,
        ("203.0.113.1", 5062),
        response_origin=("203.0.113.10", 3478),
        other_address=("203.0.113.11", 3479),
        software="x",
    )
    answer = stun.parse_binding_response(data)
    assert answer == stun.BindingResponse(
        TXID,
        True,
        ("203.0.113.1", 5062),
        True,
        ("203.0.113.10", 3478),
        ("203.0.113.11", 3479),
        None,
    )


def test_success_round_trip_ipv6() -> None:
    data = stun.build_binding_success(
        TXID, ("2001:db8::1", 5062), response_origin=("[2001:db8::a]", 3478)
    )
    answer = stun.parse_binding_response(data)
    assert answer.mapped == ("2001:db8::1", 5062)
    assert answer.response_origin == ("2001:db8::a", 3478)


def test_mapped_address_fallback() -> None:
    value = b"\x00\x01" + (5062).to_bytes(2, "big") + bytes([203, 0, 113, 1])
    data = b"\x01\x01\x00\x0c" + stun._COOKIE + TXID + b"\x00\x01\x00\x08" + value
    answer = stun.parse_binding_response(data)
    assert answer.mapped == ("203.0.113.1", 5062) and not answer.xor_mapped


def test_xor_mapped_wins_over_mapped() -> None:
    plain = b"\x00\x01\x00\x08\x00\x01" + (1).to_bytes(2, "big") + bytes(4)
    good = stun.build_binding_success(TXID, ("198.51.100.7", 40000))
    body = good[20:] + plain
    data = good[:2] + len(body).to_bytes(2, "big") + good[4:20] + body
    assert stun.parse_binding_response(data).mapped == ("198.51.100.7", 40000)


def test_error_response() -> None:
    data = stun.build_binding_error(TXID, 420, "Unknown Attribute", unknown=(0x0042,))
    answer = stun.parse_binding_response(data)
    assert not answer.success and answer.mapped is None
    assert answer.error == (420, "Unknown Attribute")
    assert stun.parse_message(data).first(stun.UNKNOWN_ATTRIBUTES) == b"\x00\x42"


def test_unknown_attributes_are_skipped() -> None:
    good = stun.build_binding_success(TXID, ("198.51.100.7", 40000))
    extra = b"\x80\x99\x00\x03abc\x00" + b"\x00\x77\x00\x00"
    body = extra + good[20:]
    data = good[:2] + len(body).to_bytes(2, "big") + good[4:20] + body
    assert stun.parse_binding_response(data).mapped == ("198.51.100.7", 40000)


def test_unknown_required_attribute_in_a_request_is_named() -> None:
    body = b"\x00\x77\x00\x00" + b"\x80\x99\x00\x00"
    data = b"\x00\x01" + len(body).to_bytes(2, "big") + stun._COOKIE + TXID + body
    assert stun.parse_binding_request(data).unknown_required == (0x0077,)


@pytest.mark.parametrize(
    "data,match",
    [
        (b"", "shorter"),
        (b"\x00\x01\x00\x00\x21\x12\xa4\x43" + TXID, "magic cookie"),
        (b"\xc0\x01\x00\x00\x21\x12\xa4\x42" + TXID, "first two bits"),
        (b"\x00\x01\x00\x04\x21\x12\xa4\x42" + TXID, "bytes follow"),
        (b"\x00\x01\x00\x02\x21\x12\xa4\x42" + TXID + b"\x00\x00", "multiple of 4"),
        (b"\x00\x01\x00\x04\x21\x12\xa4\x42" + TXID + b"\x00\x27\x00\x08", "overruns"),
        (
            b"\x00\x01\x00\x08\x21\x12\xa4\x42" + TXID + b"\x00\x27\x00\x04\x00\x00\x00\x00",
            "RESPONSE-PORT 0",
        ),
        (
            b"\x00\x01\x00\x08\x21\x12\xa4\x42" + TXID + b"\x00\x27\x00\x03\x00\x00\x00\x00",
            "RESPONSE-PORT of 3",
        ),
    ],
)
def test_bad_requests(data: bytes, match: str) -> None:
    with pytest.raises(StunParseError, match=match):
        stun.parse_binding_request(data)


@pytest.mark.parametrize(
    "body,match",
    [
        (b"", "without a mapped address"),
        (b"\x00\x20\x00\x08\x00\x03\x00\x00\x00\x00\x00\x00", "family"),
        (b"\x00\x20\x00\x04\x00\x01\x00\x00", "IPv4 address of 0"),
        (b"\x00\x20\x00\x08\x00\x02\x00\x00\x00\x00\x00\x00", "IPv6 address of 4"),
        (b"\x00\x20\x00\x00", "address attribute of 0"),
    ],
)
def test_bad_success_responses(body: bytes, match: str) -> None:
    data = b"\x01\x01" + len(body).to_bytes(2, "big") + stun._COOKIE + TXID + body
    with pytest.raises(StunParseError, match=match):
        stun.parse_binding_response(data)


def test_error_response_without_error_code() -> None:
    data = b"\x01\x11\x00\x00" + stun._COOKIE + TXID
    with pytest.raises(StunParseError, match="without ERROR-CODE"):
        stun.parse_binding_response(data)


def test_a_request_is_not_a_response() -> None:
    with pytest.raises(StunParseError, match="not a Binding response"):
        stun.parse_binding_response(stun.build_binding_request(TXID))
    with pytest.raises(StunParseError, match="not a Binding request"):
        stun.parse_binding_request(stun.build_binding_success(TXID, ("192.0.2.1", 1)))


def test_builders_refuse_bad_arguments() -> None:
    with pytest.raises(ValueError):
        stun.build_binding_request(b"short")
    with pytest.raises(ValueError):
        stun.build_binding_request(TXID, response_port=0)
    with pytest.raises(ValueError):
        stun.build_binding_success(TXID, ("nonsense", 1))
    with pytest.raises(ValueError):
        stun.build_binding_error(TXID, 200, "OK")


def test_sip_is_not_stun() -> None:
    assert not stun.is_stun(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1\r\n\r\n")
    assert not stun.is_stun(b"\r\n\r\n")


@pytest.mark.parametrize(
    "text",
    [
        "::",
        "::1",
        "1::",
        "2001:db8::",
        "fe80::1:0:0:1",
        "2001:db8:0:0:1:0:0:1",
        "1:2:3:4:5:6:7:8",
        "::ffff:192.0.2.1",
        "64:ff9b::198.51.100.1",
    ],
)
def test_ipv6_text_as_ipaddress_writes_it(text: str) -> None:
    expected = ipaddress.IPv6Address(text)
    raw = stun.pack_ip(text)
    assert raw == expected.packed
    if "." not in text:
        assert stun.format_ip(raw) == expected.compressed


@pytest.mark.parametrize(
    "text",
    [
        "1.2.3",
        "1.2.3.256",
        "1::2::3",
        ":::",
        "1:2:3:4:5:6:7:8:9",
        "1:2:3:4:5:6:7",
        "12345::",
        "g::",
        "1:2",
        "",
        "١::",
    ],
)
def test_bad_ip_text(text: str) -> None:
    with pytest.raises(ValueError):
        stun.pack_ip(text)


# --- properties -----------------------------------------------------------------------------------

txids = st.binary(min_size=12, max_size=12)
ports = st.integers(min_value=1, max_value=65535)
v4 = st.builds(lambda n: str(ipaddress.IPv4Address(n)), st.integers(0, 2**32 - 1))
v6 = st.builds(lambda n: ipaddress.IPv6Address(n).compressed, st.integers(0, 2**128 - 1))
addresses = st.tuples(st.one_of(v4, v6), ports)


@given(txids, st.none() | ports, st.booleans(), st.booleans(), st.booleans())
def test_request_round_trip(
    txid: bytes, port: int | None, ip: bool, change_port: bool, fingerprint: bool
) -> None:
    data = stun.build_binding_request(
        txid, response_port=port, change_ip=ip, change_port=change_port, fingerprint=fingerprint
    )
    request = stun.parse_binding_request(data)
    assert request.transaction_id == txid and request.response_port == port
    assert (request.change_ip, request.change_port) == (ip, change_port)
    assert len(data) % 4 == 0


@given(txids, addresses, st.none() | addresses, st.none() | addresses, st.booleans())
def test_success_round_trip(
    txid: bytes,
    mapped: tuple[str, int],
    origin: tuple[str, int] | None,
    other: tuple[str, int] | None,
    fingerprint: bool,
) -> None:
    data = stun.build_binding_success(
        txid, mapped, response_origin=origin, other_address=other, fingerprint=fingerprint
    )
    assert stun.parse_binding_response(data) == stun.BindingResponse(
        txid, True, mapped, True, origin, other, None
    )


@given(
    txids,
    st.integers(300, 699),
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=200),
)
def test_error_round_trip(txid: bytes, code: int, reason: str) -> None:
    answer = stun.parse_binding_response(stun.build_binding_error(txid, code, reason))
    assert answer.error == (code, reason[:127])


PARSERS = (stun.parse_message, stun.parse_binding_response, stun.parse_binding_request)


def _check_any(data: bytes) -> None:
    for parse in PARSERS:
        with contextlib.suppress(StunParseError):
            parse(data)


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_any_bytes_never_raise_anything_else(data: bytes) -> None:
    _check_any(data)


@st.composite
def near_stun(draw: st.DrawFn) -> bytes:
    """A valid header with attributes of any type and size: deeper than random bytes get."""
    message_type = draw(
        st.sampled_from([0x0001, 0x0101, 0x0111, 0x0011, draw(st.integers(0, 0x3FFF))])
    )
    body = b""
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(
            st.sampled_from(
                [
                    0x0001,
                    0x0003,
                    0x0009,
                    0x0020,
                    0x0027,
                    0x802B,
                    0x802C,
                    0x8028,
                    draw(st.integers(0, 0xFFFF)),
                ]
            )
        )
        value = draw(st.binary(max_size=24))
        length = draw(st.sampled_from([len(value), draw(st.integers(0, 40))]))
        body += struct.pack("!HH", kind, length) + value + b"\0" * (-len(value) % 4)
    declared = draw(st.sampled_from([len(body), draw(st.integers(0, 80))]))
    return struct.pack("!HH", message_type, declared) + stun._COOKIE + draw(txids) + body


@settings(max_examples=1000)
@given(near_stun())
def test_near_stun_never_raises_anything_else(data: bytes) -> None:
    _check_any(data)


def test_the_error_has_the_package_root() -> None:
    assert issubclass(StunParseError, NatKeepaliveError)
    assert issubclass(StunParseError, ValueError)
