"""sip/memo.py: AnswerMemo.read gives what parse_response gives, as the engine reads it, for
any datagram after any others, and parses again only what fits none of the shapes it learnt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from natkeepalive.errors import SipParseError
from natkeepalive.sip import memo
from natkeepalive.sip.memo import AnswerMemo
from natkeepalive.sip.message import Response, parse_message, parse_response

DATA = Path(__file__).resolve().parent.parent / "data"
ANSWERS = [
    data
    for data in (
        path.read_bytes() for path in sorted([*DATA.glob("*.sip"), *DATA.glob("captured/*.sip")])
    )
    if data.lstrip(b"\r\n").startswith(b"SIP/2.0 ")
]
KAMAILIO = (DATA / "captured" / "kamailio_keepalive.sip").read_bytes()
CHECK = (DATA / "captured" / "kamailio_inbound_check.sip").read_bytes()

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture
def full_parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """The datagrams AnswerMemo handed to the full parser."""
    seen: list[bytes] = []

    def counted(data: bytes) -> Response:
        seen.append(data)
        return parse_response(data)

    monkeypatch.setattr(memo, "parse_response", counted)
    yield seen


def _read(answers: AnswerMemo, data: bytes) -> object:
    """What the engine reads (core/engine.py `_receive` and `_answered`), through the memo."""
    try:
        branch, cseq, call_id, facts = answers.read(data)
    except SipParseError as exc:
        return str(exc)
    return (
        branch,
        cseq,
        facts.status,
        call_id,
        facts.cseq_method,
        facts.host,
        facts.received,
        facts.rport,
        facts.flow_timer,
    )


def _expected(data: bytes) -> object:
    """The same, read from parse_response's Response."""
    try:
        response = parse_response(data)
    except SipParseError as exc:
        return str(exc)
    via = response.top_via
    return (
        via.branch or "",
        response.cseq,
        response.status,
        response.call_id,
        response.cseq_method,
        via.host,
        via.received,
        via.rport,
        response.flow_timer,
    )


def _fields(data: bytes) -> tuple[str, str, str]:
    """The branch, CSeq number and To tag of an answer, as written."""
    response = parse_response(data)
    to = response.header("to") or ""
    tag = to[to.lower().index(";tag=") + 5 :].split(";")[0] if ";tag=" in to.lower() else ""
    return response.top_via.branch or "", response.header("cseq").split()[0], tag  # type: ignore


def _next(data: bytes, branch: str, cseq: str, tag: str) -> bytes:
    """The same answer with other values of the same length."""
    old_branch, old_cseq, old_tag = _fields(data)
    assert len(branch) == len(old_branch) and len(cseq) == len(old_cseq)
    out = data.replace(old_branch.encode(), branch.encode())
    out = out.replace(f"CSeq: {old_cseq} ".encode(), f"CSeq: {cseq} ".encode())
    if old_tag:
        assert len(tag) == len(old_tag)
        out = out.replace(f"tag={old_tag}".encode(), f"tag={tag}".encode())
    return out


def test_the_next_keepalive_answer_is_read_not_parsed(full_parses: list[bytes]) -> None:
    answers = AnswerMemo()
    first = answers.read(KAMAILIO)
    branch, cseq, tag = _fields(KAMAILIO)
    again = _next(KAMAILIO, branch[:-4] + "beef", str(int(cseq) + 1)[-len(cseq) :], tag[:-2] + "zz")
    assert again != KAMAILIO
    second = answers.read(again)
    assert full_parses == [KAMAILIO]
    assert second[:2] == (branch[:-4] + "beef", int(cseq) + 1)
    assert second[3] is first[3]  # the facts noted at the full parse, not read again
    assert _read(answers, again) == _expected(again)


def test_a_new_call_id_per_request_is_read_not_parsed(full_parses: list[bytes]) -> None:
    """Every request has a Call-ID of its own: the answer echoing it still fits the shape, and
    the Call-ID read is the datagram's, not the one noted at the full parse."""
    answers = AnswerMemo()
    old = parse_response(KAMAILIO).call_id
    answers.read(KAMAILIO)
    new_id = "f" * len(old)
    again = KAMAILIO.replace(f"Call-ID: {old}".encode(), f"Call-ID: {new_id}".encode())
    assert again != KAMAILIO
    assert answers.read(again)[2] == new_id
    assert _read(answers, again) == _expected(again)
    assert full_parses == [KAMAILIO]
    # a Call-ID that grows a character is another length: parsed in full, then learnt
    longer = KAMAILIO.replace(f"Call-ID: {old}".encode(), f"Call-ID: {old}-12".encode())
    assert _read(answers, longer) == _expected(longer)
    bad = again.replace(
        f"Call-ID: {new_id}".encode(), f"Call-ID: {new_id[:-2]}\r\n".encode()
    )  # a line break inside it
    assert _read(answers, bad) == _expected(bad)


def test_the_inbound_checks_answers_keep_a_shape_of_their_own(full_parses: list[bytes]) -> None:
    """The check's answer (every 10th) differs in the top Via: with the keepalives' it is one
    of the two shapes kept, so neither is parsed again."""
    answers = AnswerMemo()
    branch, cseq, tag = _fields(KAMAILIO)
    check_branch, check_cseq, check_tag = _fields(CHECK)
    keepalives = [_next(KAMAILIO, branch[:-1] + str(n), cseq, tag) for n in range(4)]
    checks = [_next(CHECK, check_branch[:-1] + str(n), check_cseq, check_tag) for n in range(4)]
    for keepalive, check in zip(keepalives, checks):
        assert _read(answers, keepalive) == _expected(keepalive)
        assert _read(answers, check) == _expected(check)
    assert full_parses == [keepalives[0], checks[0]]
    moved = [k.replace(b"rport=", b"rport=1") for k in keepalives]  # a new public port
    for keepalive, check in zip(moved, checks):
        assert _read(answers, keepalive) == _expected(keepalive)
        assert _read(answers, check) == _expected(check)
    # the new port's first answer took the place of the least recently used shape: the old
    # port's, not the check's
    assert full_parses[2:] == [moved[0]]


def test_at_most_SHAPES_are_kept_the_least_recently_used_goes(full_parses: list[bytes]) -> None:
    samples = [KAMAILIO, CHECK, (DATA / "asterisk_200.sip").read_bytes()]
    assert memo.SHAPES == 2
    answers = AnswerMemo()
    for data in samples:
        answers.read(data)
    answers.read(samples[1])  # a hit: now the most recently used
    answers.read(samples[0])  # pushed out by the third; back in place of the third
    answers.read(samples[1])
    assert full_parses == [*samples, samples[0]]
    assert len(answers._shapes) == memo.SHAPES


@pytest.mark.parametrize(
    "name", ["captured/kamailio_keepalive.sip", "captured/sipp_multi_via.sip", "asterisk_200.sip"]
)
def test_every_byte_is_compared(name: str) -> None:
    """Each byte of the learnt answer changed in turn, alone: the outcome is the full parse's."""
    base = (DATA / name).read_bytes()
    answers = AnswerMemo()
    answers.read(base)
    assert answers._shapes
    for where in range(len(base)):
        for byte in (b"x", b";", b"\n"):
            data = base[:where] + byte + base[where + 1 :]
            if data != base:
                assert _read(answers, data) == _expected(data), where
                assert _read(answers, base) == _expected(base), where


HIGH = (DATA / "captured" / "kamailio_keepalive_cseq_high.sip").read_bytes()


@pytest.mark.parametrize(
    ("base", "branch", "cseq", "tag"),
    [
        (KAMAILIO, None, "a", None),  # a token, not a number: "bad CSeq"
        (HIGH, None, "9999999999", None),  # ten digits, above 2**32-1
        (HIGH, None, "0000000007", None),  # leading zeros: the same number as 7
        (KAMAILIO, "z9hG4bK;received=192.0.2.9", None, None),  # a parameter more
        (KAMAILIO, "z9hG4bK,SIP/2.0/UDP h", None, None),  # a Via more
        (KAMAILIO, None, None, "x\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z"),  # a header more
        (KAMAILIO, None, None, " " * 10),  # trailing blanks, stripped from the value
    ],
)
def test_values_that_change_the_parse_are_parsed_in_full(
    base: bytes, branch: str | None, cseq: str | None, tag: str | None
) -> None:
    old_branch, old_cseq, old_tag = _fields(base)

    def sized(new: str | None, old: str) -> str:
        return (
            old
            if new is None
            else (new + old)[: len(old)]
            if len(new) < len(old)
            else new[: len(old)]
        )

    data = _next(base, sized(branch, old_branch), sized(cseq, old_cseq), sized(tag, old_tag))
    assert data != base
    answers = AnswerMemo()
    answers.read(base)
    assert _read(answers, data) == _expected(data)


def test_a_large_answer_is_not_kept() -> None:
    """Each binding keeps what it learnt: a forged 60-KB answer must not stay in memory."""
    padded = KAMAILIO.replace(
        b"Content-Length: 0\r\n",
        b"X-Pad: " + b"p" * (memo.LEARN_MAX_BYTES - len(KAMAILIO)) + b"\r\nContent-Length: 0\r\n",
    )
    assert len(padded) > memo.LEARN_MAX_BYTES
    answers = AnswerMemo()
    assert _read(answers, padded) == _expected(padded)
    assert answers._shapes == []
    answers.read(KAMAILIO)
    assert len(answers._shapes) == 1


def test_other_buffers_and_errors_take_the_full_parse(full_parses: list[bytes]) -> None:
    answers = AnswerMemo()
    answers.read(KAMAILIO)
    assert _read(answers, bytearray(KAMAILIO)) == _expected(KAMAILIO)  # type: ignore[arg-type]
    with pytest.raises(SipParseError):
        answers.read(b"SIP/2.0 200 OK\r\n\r\n")
    assert _read(answers, KAMAILIO) == _expected(KAMAILIO)
    assert len(full_parses) == 3


TOKEN_CHARS = st.sampled_from(list("0123456789abcdefXYZ-.!%*_+`'~"))
ANY_CHARS = st.one_of(
    TOKEN_CHARS,
    st.sampled_from([";", ",", " ", "\t", "=", '"', "<", ">", ":", "\r", "\n", "\xff", "/"]),
)


def _replace(text: str, draw: st.DrawFn, digits: bool = False) -> str:
    """A value of the same length: what a server sends (token characters; digits in a CSeq)
    three times in four, anything otherwise."""
    if draw(st.integers(0, 3)):
        chars = st.sampled_from(list("0123456789")) if digits else TOKEN_CHARS
    else:
        chars = ANY_CHARS
    return "".join(draw(chars) if draw(st.booleans()) else char for char in text)


@st.composite
def answer_runs(draw: st.DrawFn) -> list[bytes]:
    """An answer and what may follow it: the same with other values where a server changes
    them, and now and then a byte changed, inserted or removed anywhere."""
    base = draw(st.sampled_from(ANSWERS))
    try:
        branch, cseq, tag = _fields(base)
    except (SipParseError, AttributeError, ValueError):
        return [base]
    run = [base]
    for _ in range(draw(st.integers(1, 4))):
        data = (
            _next(
                base, _replace(branch, draw), _replace(cseq, draw, digits=True), _replace(tag, draw)
            )
            if branch
            else base
        )
        if draw(st.integers(0, 3)) == 0:
            raw = bytearray(data)
            where = draw(st.integers(0, len(raw) - 1))
            kind = draw(st.sampled_from(["flip", "insert", "delete"]))
            if kind == "flip":
                raw[where] = draw(st.integers(0, 255))
            elif kind == "insert":
                raw[where:where] = draw(st.sampled_from([b" ", b"\r\n", b";", b"\r\n x"]))
            else:
                del raw[where]
            data = bytes(raw)
        run.append(data)
    return run


@SETTINGS
@given(answer_runs())
def test_the_memo_never_changes_an_outcome(run: list[bytes]) -> None:
    answers = AnswerMemo()
    for data in run:
        assert _read(answers, data) == _expected(data)


@SETTINGS
@given(st.lists(st.sampled_from(ANSWERS), min_size=2, max_size=6))
def test_any_sequence_of_real_answers(run: list[bytes]) -> None:
    answers = AnswerMemo()
    for data in run:
        assert _read(answers, data) == _expected(data)


def test_the_samples_are_answers_the_memo_learns() -> None:
    """The property tests above reach the fast path: most samples are learnt from."""
    learnt = 0
    for data in ANSWERS:
        answers = AnswerMemo()
        answers.read(data)
        learnt += len(answers._shapes)
        assert isinstance(parse_message(data), Response)
    assert learnt >= len(ANSWERS) - 3, learnt
