"""sip/memo.py: AnswerMemo.parse gives what parse_response gives, for any datagram after any
other, and parses again only what does not fit the answer it learnt; the engine's way in,
repeat() and else parse_full(), reads the same values."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from natkeepalive.errors import SipParseError
from natkeepalive.sip import memo
from natkeepalive.sip.memo import AnswerMemo
from natkeepalive.sip.message import Response, parse_message, parse_response

DATA = Path(__file__).resolve().parent.parent / "data"
ANSWERS = [data for data in (path.read_bytes() for path in sorted(
    [*DATA.glob("*.sip"), *DATA.glob("captured/*.sip")]))
    if data.lstrip(b"\r\n").startswith(b"SIP/2.0 ")]
KAMAILIO = (DATA / "captured" / "kamailio_keepalive.sip").read_bytes()

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture
def full_parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """The datagrams AnswerMemo handed to the full parser."""
    seen: list[bytes] = []

    def counted(data: bytes) -> Response:
        seen.append(data)
        return parse_response(data)

    monkeypatch.setattr(memo, "parse_response", counted)
    yield seen


def _outcome(parse: object, data: bytes) -> object:
    try:
        response = parse(data)  # type: ignore[operator]
    except SipParseError as exc:
        return str(exc)
    assert isinstance(response, Response)
    via = response.top_via
    return response, via.branch, via.received, via.rport, response.flow_timer


def _view(response: Response, branch: str, cseq: int) -> tuple[object, ...]:
    """What the engine reads of an answer (core/engine.py `_receive` and `_answered`)."""
    via = response.top_via
    return (branch, cseq, response.status, response.call_id, response.cseq_method, via.host,
            via.received, via.rport, response.flow_timer)


def _read(answers: AnswerMemo, data: bytes) -> object:
    """The engine's reading: repeat() (the other fields are `last`'s), else parse_full()."""
    try:
        hit = answers.repeat(data)
        if hit is not None:
            assert answers.last is not None
            return _view(answers.last, *hit)
        response = answers.parse_full(data)
    except SipParseError as exc:
        return str(exc)
    return _view(response, response.top_via.branch or "", response.cseq)


def _expected(data: bytes) -> object:
    try:
        response = parse_response(data)
    except SipParseError as exc:
        return str(exc)
    return _view(response, response.top_via.branch or "", response.cseq)


def _fields(data: bytes) -> tuple[str, str, str]:
    """The branch, CSeq number and To tag of an answer, as written."""
    response = parse_response(data)
    to = response.header("to") or ""
    tag = to[to.lower().index(";tag=") + 5:].split(";")[0] if ";tag=" in to.lower() else ""
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


def test_the_next_keepalive_answer_is_built_not_parsed(full_parses: list[bytes]) -> None:
    answers = AnswerMemo()
    first = answers.parse(KAMAILIO)
    branch, cseq, tag = _fields(KAMAILIO)
    again = _next(KAMAILIO, branch[:-4] + "beef", str(int(cseq) + 1)[-len(cseq):],
                  tag[:-2] + "zz")
    assert again != KAMAILIO
    second = answers.parse(again)
    assert full_parses == [KAMAILIO]
    assert second == parse_response(again) and second != first
    assert second.top_via.branch == branch[:-4] + "beef"
    assert second.header("to") == parse_response(again).header("to")


def test_one_odd_answer_keeps_the_shape_two_in_a_row_replace_it(full_parses: list[bytes]) -> None:
    """The inbound check's answer (every 10th) does not make the next keepalive's miss."""
    check = (DATA / "captured" / "kamailio_inbound_check.sip").read_bytes()
    answers = AnswerMemo()
    branch, cseq, tag = _fields(KAMAILIO)
    keepalives = [_next(KAMAILIO, branch[:-1] + str(n), cseq, tag) for n in range(4)]
    answers.parse(keepalives[0])
    answers.parse(check)
    answers.parse(keepalives[1])
    assert full_parses == [keepalives[0], check]  # the keepalive after the check fit
    moved = [k.replace(b"rport=", b"rport=1") for k in keepalives]  # a new public port
    for each in moved:
        assert answers.parse(each) == parse_response(each)
    assert full_parses[2:] == moved[:2]  # the second miss in a row is learnt from


@pytest.mark.parametrize("name", ["captured/kamailio_keepalive.sip", "captured/sipp_multi_via.sip",
                                  "asterisk_200.sip"])
def test_every_byte_is_compared(name: str) -> None:
    """Each byte of the learnt answer changed in turn, alone: the outcome is the full parse's."""
    base = (DATA / name).read_bytes()
    answers, reader = AnswerMemo(), AnswerMemo()
    answers.parse(base)
    reader.parse_full(base)
    assert answers._last is not None and reader.last is not None
    for where in range(len(base)):
        for byte in (b"x", b";", b"\n"):
            data = base[:where] + byte + base[where + 1:]
            if data != base:
                assert _outcome(answers.parse, data) == _outcome(parse_response, data), where
                assert _read(reader, data) == _expected(data), where
                answers.parse(base)  # two misses in a row would teach it the changed one
                assert reader.repeat(base) is not None


HIGH = (DATA / "captured" / "kamailio_keepalive_cseq_high.sip").read_bytes()


@pytest.mark.parametrize(("base", "branch", "cseq", "tag"), [
    (KAMAILIO, None, "a", None),  # a token, not a number: "bad CSeq"
    (HIGH, None, "9999999999", None),  # ten digits, above 2**32-1
    (HIGH, None, "0000000007", None),  # leading zeros: the same number as 7
    (KAMAILIO, "z9hG4bK;received=192.0.2.9", None, None),  # a parameter more
    (KAMAILIO, "z9hG4bK,SIP/2.0/UDP h", None, None),  # a Via more
    (KAMAILIO, None, None, "x\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z"),  # a header more
    (KAMAILIO, None, None, " " * 10),  # trailing blanks, stripped from the value
])
def test_values_that_change_the_parse_are_parsed_in_full(
        base: bytes, branch: str | None, cseq: str | None, tag: str | None) -> None:
    old_branch, old_cseq, old_tag = _fields(base)

    def sized(new: str | None, old: str) -> str:
        return old if new is None else (new + old)[:len(old)] if len(new) < len(old) \
            else new[:len(old)]

    data = _next(base, sized(branch, old_branch), sized(cseq, old_cseq), sized(tag, old_tag))
    assert data != base
    answers = AnswerMemo()
    answers.parse(base)
    assert _outcome(answers.parse, data) == _outcome(parse_response, data)


def test_a_large_answer_is_not_kept() -> None:
    """Each binding keeps what it learnt: a forged 60-KB answer must not stay in memory."""
    padded = KAMAILIO.replace(b"Content-Length: 0\r\n",
                              b"X-Pad: " + b"p" * (memo.LEARN_MAX_BYTES - len(KAMAILIO))
                              + b"\r\nContent-Length: 0\r\n")
    assert len(padded) > memo.LEARN_MAX_BYTES
    answers = AnswerMemo()
    assert answers.parse(padded) == parse_response(padded)
    assert answers._last is None
    answers.parse(KAMAILIO)
    assert answers._last is not None


def test_other_buffers_and_errors_take_the_full_parse(full_parses: list[bytes]) -> None:
    answers = AnswerMemo()
    answers.parse(KAMAILIO)
    assert answers.parse(bytearray(KAMAILIO)) == parse_response(KAMAILIO)  # type: ignore[arg-type]
    with pytest.raises(SipParseError):
        answers.parse(b"SIP/2.0 200 OK\r\n\r\n")
    assert answers.parse(KAMAILIO) == parse_response(KAMAILIO)
    assert len(full_parses) == 3


TOKEN_CHARS = st.sampled_from(list("0123456789abcdefXYZ-.!%*_+`'~"))
ANY_CHARS = st.one_of(TOKEN_CHARS, st.sampled_from(
    [";", ",", " ", "\t", "=", '"', "<", ">", ":", "\r", "\n", "\xff", "/"]))


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
        data = _next(base, _replace(branch, draw), _replace(cseq, draw, digits=True),
                     _replace(tag, draw)) if branch else base
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
    answers, reader = AnswerMemo(), AnswerMemo()
    for data in run:
        assert _outcome(answers.parse, data) == _outcome(parse_response, data)
        assert _read(reader, data) == _expected(data)


@SETTINGS
@given(st.lists(st.sampled_from(ANSWERS), min_size=2, max_size=6))
def test_any_sequence_of_real_answers(run: list[bytes]) -> None:
    answers, reader = AnswerMemo(), AnswerMemo()
    for data in run:
        assert _outcome(answers.parse, data) == _outcome(parse_response, data)
        assert _read(reader, data) == _expected(data)


def test_the_samples_are_answers_the_memo_learns() -> None:
    """The property tests above reach the fast path: most samples are learnt from."""
    learnt = 0
    for data in ANSWERS:
        answers = AnswerMemo()
        answers.parse(data)
        learnt += answers._last is not None
        assert isinstance(parse_message(data), Response)
    assert learnt >= len(ANSWERS) - 3, learnt


def test_a_repeat_is_read_without_a_parse(full_parses: list[bytes]) -> None:
    """The engine's way in: the next keepalive's answer gives its branch and CSeq, and `last`
    gives the rest; the answer that does not fit goes to parse_full."""
    answers = AnswerMemo()
    assert answers.repeat(KAMAILIO) is None and answers.last is None
    first = answers.parse_full(KAMAILIO)
    branch, cseq, tag = _fields(KAMAILIO)
    again = _next(KAMAILIO, branch[:-4] + "beef", str(int(cseq) + 1)[-len(cseq):],
                  tag[:-2] + "zz")
    assert answers.repeat(again) == (branch[:-4] + "beef", int(cseq) + 1)
    assert answers.last is first
    assert full_parses == [KAMAILIO]
    moved = again.replace(b"rport=", b"rport=1")
    assert answers.repeat(moved) is None
