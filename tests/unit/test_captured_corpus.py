"""The parser against every datagram captured from real SIP stacks (tests/data/captured/).

The files come from tests/fuzz/capture_seeds.py (Kamailio with the lab's config, SIPp) and
tests/lab/capture_stacks.py (Kamailio with Debian's config, ejabberd, baresip, linphone, npm sip,
Net::SIP); their manifests say which request each answers. Every one is parsed: those a server
got wrong (kept in malformed/, out of the samples other tests draw valid answers from) must be
refused with SipParseError, all others read with the Via facts the agent uses.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from natkeepalive.errors import SipParseError
from natkeepalive.sip.memo import AnswerMemo
from natkeepalive.sip.message import parse_message, parse_response

CAPTURED = Path(__file__).resolve().parent.parent / "data" / "captured"
FILES = sorted([*CAPTURED.glob("*.sip"), *CAPTURED.glob("malformed/*.sip")])
MANIFESTS = sorted(CAPTURED.glob("MANIFEST*.txt"))
ROUTER = "203.0.113.1"  # the lab router's public address: what `received` must say
PORT = "5062"  # the binding's port, kept by the lab's port-preserving NAT

# What real stacks got wrong, and what the parser says about it.
MALFORMED = {
    # npm sip 0.0.6 cuts an IPv6 sent-by at its first colon when it adds `received`
    "node-sip_ipv6_sent_by.sip": "missing ']'",
    "node-sip_multi_via.sip": "missing ']'",
    # linphone 5.1 echoes CSeq 2**32-1 as a signed 32-bit number (the agent's CSeq counts from 1)
    "linphone_keepalive_cseq_high.sip": "bad CSeq '-1 OPTIONS'",
}
# Not answers: what a peer sends on the flow by itself (a CRLF keepalive).
KEEPALIVES = {"linphone_crlf_keepalive_sent.sip"}
# The answer to the agent's keepalive (Via with rport) per stack: (received, rport value);
# None for a bare `rport` (linphone when the port did not change) or no `received` (SIPp).
KEEPALIVE_VIA = {
    "kamailio": (ROUTER, PORT),
    "kamailio-stock": (ROUTER, PORT),
    "ejabberd": (ROUTER, PORT),
    "baresip": (ROUTER, PORT),
    "linphone": (ROUTER, None),
    "node-sip": (ROUTER, PORT),
    "perl-net-sip": (ROUTER, PORT),
    "sipp": (None, None),
}


def test_the_corpus_is_there_and_every_file_is_in_a_manifest() -> None:
    assert len(FILES) >= 70 and MANIFESTS
    listed = set()
    for manifest in MANIFESTS:
        for line in manifest.read_text().splitlines():
            match = re.match(r"^([\w./-]+\.sip): ", line)
            if match:
                listed.add(match.group(1))
    names = {path.relative_to(CAPTURED).as_posix() for path in FILES}
    assert names == listed, (names - listed, listed - names)
    assert {f"malformed/{name}" for name in MALFORMED} | KEEPALIVES <= names
    assert {name.split("_")[0] for name in names} >= set(KEEPALIVE_VIA)
    assert {path.name for path in CAPTURED.glob("malformed/*.sip")} == set(MALFORMED)


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_every_captured_datagram_parses_or_is_refused_for_its_fault(path: Path) -> None:
    data = path.read_bytes()
    if path.name in KEEPALIVES:
        assert data.strip(b"\r\n") == b""
        with pytest.raises(SipParseError, match="keepalive"):
            parse_message(data)
        return
    if path.name in MALFORMED:
        with pytest.raises(SipParseError) as caught:
            parse_response(data)
        assert MALFORMED[path.name] in str(caught.value)
        return
    response = parse_response(data)
    assert 100 <= response.status <= 699
    assert response.call_id and response.vias
    assert response.cseq_method in ("OPTIONS", "INFO")
    # The memo (the agent's fast path) reads the same facts as the full parser.
    branch, cseq, call_id, facts = AnswerMemo().read(data)
    assert (branch, cseq, call_id) == (response.vias[0].branch, response.cseq, response.call_id)
    assert facts.status == response.status


@pytest.mark.parametrize("stack", sorted(KEEPALIVE_VIA))
def test_what_each_stack_tells_about_the_binding(stack: str) -> None:
    """The Via facts the agent learns its public address from, as each stack sends them."""
    received, rport = KEEPALIVE_VIA[stack]
    via = parse_response((CAPTURED / f"{stack}_keepalive.sip").read_bytes()).vias[0]
    assert via.param("received") == received
    assert via.has_param("rport") and via.param("rport") == rport
    # The inbound check's shape (no rport asked): only a server that forces rport adds one.
    check = parse_response((CAPTURED / f"{stack}_inbound_check.sip").read_bytes()).vias[0]
    assert check.host == ROUTER and check.port == int(PORT)
    assert check.has_param("rport") == (stack == "kamailio-stock")
