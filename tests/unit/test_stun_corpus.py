"""The STUN codec against real coturn 4.6.1 answers (tests/data/stun/, tests/lab/capture_stun.py).

The lab's router (203.0.113.1) kept local ports 5062 (the binding) and 5063 (the second socket);
coturn listened on 203.0.113.10:3478 and, with RFC 5780 on, 203.0.113.11:3479 as its other address.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from natkeepalive import stun

CORPUS = Path(__file__).resolve().parent.parent / "data" / "stun"
FILES = sorted(CORPUS.glob("*.stun"))
ROUTER = "203.0.113.1"
ORIGIN = ("203.0.113.10", 3478)
OTHER = ("203.0.113.11", 3479)

# file -> (mapped port or None for an error, error code or None, RFC 5780 attributes present)
EXPECTED: dict[str, tuple[int | None, int | None, bool]] = {
    "coturn-debian_binding.stun": (5062, None, False),
    "coturn-debian_fingerprint.stun": (5062, None, False),
    # Debian's config: RESPONSE-PORT ignored, the answer went to the sender
    "coturn-debian_response_port.stun": (5063, None, False),
    # ...and CHANGE-REQUEST refused
    "coturn-debian_change_port.stun": (None, 420, False),
    "coturn-debian_change_ip.stun": (None, 420, False),
    "coturn-debian_unknown_required.stun": (None, 420, False),
    "coturn-rfc5780_binding.stun": (5062, None, True),
    "coturn-rfc5780_fingerprint.stun": (5062, None, True),
    # RFC 5780 on: the second socket's mapping, delivered to the binding's port
    "coturn-rfc5780_response_port.stun": (5063, None, True),
    "coturn-rfc5780_unknown_required.stun": (None, 420, False),
}


def test_the_corpus_is_complete() -> None:
    assert sorted(f.name for f in FILES) == sorted(EXPECTED)
    manifest = (CORPUS / "MANIFEST.txt").read_text()
    for name in EXPECTED:
        assert name in manifest
    # where the RESPONSE-PORT answer arrived: the proof depends on it
    assert (
        "coturn-rfc5780_response_port.stun: from port 5063, RESPONSE-PORT 5062; sent from "
        "other, arrived on binding from 203.0.113.10:3478" in manifest
    )
    assert (
        "coturn-debian_response_port.stun: from port 5063, RESPONSE-PORT 5062; sent from "
        "other, arrived on other from 203.0.113.10:3478" in manifest
    )


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_coturn_answer(path: Path) -> None:
    port, code, rfc5780 = EXPECTED[path.name]
    data = path.read_bytes()
    assert stun.is_stun(data)
    answer = stun.parse_binding_response(data)
    if code is None:
        assert answer.success and answer.xor_mapped and answer.error is None
        assert answer.mapped == (ROUTER, port)
    else:
        assert not answer.success and answer.mapped is None
        assert answer.error is not None and answer.error[0] == code
        assert "\0" not in answer.error[1] and answer.error[1]
    if rfc5780:
        assert (answer.response_origin, answer.other_address) == (ORIGIN, OTHER)
    else:
        assert answer.response_origin is None and answer.other_address is None
    # SOFTWARE (0x8022) is an attribute the client skips
    assert any(kind == stun.SOFTWARE for kind, _ in stun.parse_message(data).attributes)
