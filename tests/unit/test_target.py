"""TARGET syntax (`probe`, `discover`, a binding's `server`): what is a host and port, and what is
another kind of URI, refused by name rather than misread as a host and a bad port."""

from __future__ import annotations

import pytest

from natkeepalive.config.model import Target
from natkeepalive.errors import TargetError
from natkeepalive.sip.target import parse_target


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip.example.net", Target("sip.example.net", 5060)),
        ("sip.example.net:5080", Target("sip.example.net", 5080)),
        ("sip:sip.example.net", Target("sip.example.net", 5060)),
        ("sip:alice@192.0.2.1:5062;transport=udp", Target("192.0.2.1", 5062)),
        ("[2001:db8::1]:5080", Target("2001:db8::1", 5080)),
        ("2001:db8::1", Target("2001:db8::1", 5060)),
        ("tel.example.net:5060", Target("tel.example.net", 5060)),
    ],
)
def test_targets(text: str, expected: Target) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "tel:+123",
            "unsupported scheme 'tel:' in target 'tel:+123': use host[:port], "
            "[v6addr]:port or sip:host[:port]",
        ),
        (
            "TEL:+4930123",
            "unsupported scheme 'tel:' in target 'TEL:+4930123': use host[:port], "
            "[v6addr]:port or sip:host[:port]",
        ),
        (
            "http://sip.example.net",
            "unsupported scheme 'http:' in target 'http://sip.example.net': "
            "use host[:port], [v6addr]:port or sip:host[:port]",
        ),
        ("sips:sip.example.net", "sips: (TLS) is not supported, UDP only: 'sips:sip.example.net'"),
        ("sip:h;transport=tcp", "only UDP is supported, not transport=tcp: 'sip:h;transport=tcp'"),
        ("localhost:abc", "bad port 'abc' in target 'localhost:abc'"),
        ("h:0", "port 0 out of range 1-65535 in target 'h:0'"),
        ("", "empty target"),
    ],
)
def test_refused(text: str, message: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_target(text)
    assert str(info.value) == message
