"""Properties of the codec: any bytes parse or raise SipParseError; build -> parse round trips."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from natkeepalive.errors import SipParseError
from natkeepalive.sip import OptionsRequest, Request, Response, build_options, parse_message
from natkeepalive.sip.scan import split_outside

DATA = Path(__file__).resolve().parent.parent / "data"
SAMPLES = [path.read_bytes() for path in sorted(DATA.glob("*.sip"))]

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parses_or_raises_parse_error(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError as exc:
        assert str(exc)  # always a message worth logging
        return
    assert isinstance(message, (Request, Response))
    assert message.vias and message.call_id
    assert 0 <= message.cseq <= 2**32 - 1


@SETTINGS
@given(st.binary(max_size=2000))
def test_any_bytes(data: bytes) -> None:
    parses_or_raises_parse_error(data)


SIP_ALPHABET = st.sampled_from(
    [
        b"SIP/2.0 ",
        b"200 OK",
        b"OPTIONS sip:x SIP/2.0",
        b"\r\n",
        b"\n",
        b"\r",
        b" ",
        b"\t",
        b":",
        b";",
        b"=",
        b",",
        b"/",
        b"[",
        b"]",
        b"<",
        b">",
        b'"',
        b"\\",
        b"Via",
        b"v",
        b"i",
        b"Call-ID",
        b"CSeq",
        b"l",
        b"Content-Length",
        b"SIP/2.0/UDP",
        b"::1",
        b"10.0.0.1",
        b"5060",
        b"rport",
        b"received",
        b"branch",
        b"z9hG4bK",
        b"1 OPTIONS",
        b"0",
        b"99999",
        b"\xff",
        b"\xc3\xa9",
        b"\x00",
    ]
)


@SETTINGS
@given(st.lists(SIP_ALPHABET, max_size=80).map(b"".join))
def test_sip_shaped_noise(data: bytes) -> None:
    parses_or_raises_parse_error(data)


@st.composite
def mutated_sample(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        where = draw(st.integers(0, len(data)))
        if kind == "truncate":
            del data[where:]
        elif kind == "flip" and where < len(data):
            data[where] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[where:where] = draw(
                st.sampled_from(
                    [b"\r", b"\n", b"\r\n", b" ", b",", b";", b":", b"\r\n ", b"=", b"\xff"]
                )
            )
        elif where < len(data):
            del data[where]
    return bytes(data)


@SETTINGS
@given(mutated_sample())
def test_mutated_samples(data: bytes) -> None:
    parses_or_raises_parse_error(data)


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
HOSTNAME = st.lists(LABEL, min_size=1, max_size=4).map(".".join)
IPV4 = st.ip_addresses(v=4).map(str)
IPV6 = st.ip_addresses(v=6).map(str)
HOST = st.one_of(HOSTNAME, IPV4, IPV6)
TOKEN = st.text("abcdefABCDEF0123456789-.!%*_+`'~", min_size=1, max_size=24)
PORT = st.integers(1, 65535)


@st.composite
def options_requests(draw: st.DrawFn) -> OptionsRequest:
    return OptionsRequest(
        uri_host=draw(HOST),
        uri_port=draw(st.none() | PORT),
        via_host=draw(st.one_of(IPV4, IPV6, HOSTNAME)),
        via_port=draw(PORT),
        branch="z9hG4bK" + draw(TOKEN),
        call_id=draw(TOKEN) + draw(st.sampled_from(["", "@host", "@[::1]"])),
        from_tag=draw(TOKEN),
        cseq=draw(st.integers(0, 2**32 - 1)),
        rport=draw(st.booleans()),
        max_forwards=draw(st.integers(0, 255)),
        user_agent=draw(
            st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30).map(str.strip)
        ),
    )


@SETTINGS
@given(options_requests())
def test_build_parse_round_trip(req: OptionsRequest) -> None:
    data = build_options(req)
    assert data.endswith(b"\r\nContent-Length: 0\r\n\r\n")
    message = parse_message(data)
    assert isinstance(message, Request)
    assert message.method == "OPTIONS"
    uri_host = f"[{req.uri_host}]" if ":" in req.uri_host else req.uri_host
    expected_uri = f"sip:{uri_host}" + (f":{req.uri_port}" if req.uri_port is not None else "")
    assert message.uri == expected_uri
    via = message.top_via
    assert (via.protocol, via.host, via.port) == ("SIP/2.0/UDP", req.via_host, req.via_port)
    assert via.branch == req.branch
    assert via.has_param("rport") is req.rport
    assert via.rport is None
    assert len(message.vias) == 1
    assert message.call_id == req.call_id
    assert (message.cseq, message.cseq_method) == (req.cseq, "OPTIONS")
    assert message.header("max-forwards") == str(req.max_forwards)
    assert message.header("user-agent") == (req.user_agent or None)
    assert message.header("to") == f"<{expected_uri}>"
    assert message.body == b""


def reference_split(text: str, sep: str) -> list[str]:
    """The obvious character-by-character version split_outside must agree with."""
    parts, start, quoted, angle, escaped = [], 0, False, False, False
    for i, ch in enumerate(text):
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif angle:  # <...> is opaque: a quote inside it starts nothing
            angle = ch != ">"
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle = True
        elif ch == sep:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


@settings(max_examples=2000, deadline=None)
@given(
    st.text(st.sampled_from(list('ab,;"\\<> ')), max_size=40),
    st.sampled_from([",", ";"]),
    st.integers(-1, 5),
)
def test_split_outside_matches_the_reference(text: str, sep: str, max_splits: int) -> None:
    expected = reference_split(text, sep)
    if 0 <= max_splits < len(expected) - 1:  # str.split semantics: the rest stays joined
        expected = [*expected[:max_splits], sep.join(expected[max_splits:])]
    assert split_outside(text, sep, max_splits) == expected


def _outcome(data: bytes) -> object:
    try:
        message = parse_message(data)
    except SipParseError as exc:
        return str(exc)
    via = message.top_via
    return message, via.branch, via.received, via.rport, message.flow_timer


@SETTINGS
@given(st.one_of(mutated_sample(), st.lists(SIP_ALPHABET, max_size=80).map(b"".join)))
def test_the_codec_keeps_no_state_between_messages(data: bytes) -> None:
    """The codec is pure: parsing a message leaves every module-level table of sip.message as it
    was, and a second parse of the same bytes gives the same outcome (message or error text)."""
    from natkeepalive.sip import message as m

    tables = {
        name: (type(value), repr(value))
        for name, value in vars(m).items()
        if isinstance(value, (dict, list, set))
    }
    first = _outcome(data)
    assert _outcome(data) == first
    assert tables == {
        name: (type(value), repr(value))
        for name, value in vars(m).items()
        if isinstance(value, (dict, list, set))
    }
