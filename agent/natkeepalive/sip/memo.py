"""What the engine reads of a binding's answers, parsed once per shape of answer: a full parse
of every answer would be the largest part of the agent's work per keepalive.

A server answers a binding's keepalives with the same bytes each time except the branch it
echoes in the top Via, the Call-ID (new for every request), the CSeq number and usually the To
tag. After a full parse the memo notes where those four values lie in the datagram; a later
datagram of the same length whose other bytes are all the same, and whose four values are made
of token characters (the CSeq of digits), is the same message but for those values: `read`
then gives the new branch, CSeq number and Call-ID with the facts (AnswerFacts) noted at the
full parse, and parses nothing.

Rules:
- `read(data)` gives what parse_response gives for the same bytes, as the engine reads it (or the
  same SipParseError); tests/unit/test_sip_memo.py holds it to that on arbitrary datagrams. The
  Call-ID comes back on its own: the facts keep the one of the answer they were read from.
- Token characters cannot move a line, a header, a Via or a parameter boundary, and the parser
  reads nothing inside a To value; a CSeq number of the same length only needs its range
  checked. Anything else (a new rport, a folded line, a longer CSeq) goes to the full parse,
  which is learnt from.
- Only ASCII answers without CR/LF before the status line and without continuation lines are
  learnt (byte offsets are then string offsets and each line is one header), up to
  LEARN_MAX_BYTES.
- SHAPES shapes are kept, the most recently used first, and a new one takes the place of the
  least recently used: the keepalives' answers and the inbound check's (every 10th), which
  differ in the top Via. The facts are all a shape keeps of its answer, not the Response: a
  binding keeps its shapes for life.
"""

from __future__ import annotations

from natkeepalive.sip.message import _TOKEN_CHARS, CSEQ_MAX, Response, _split_head, parse_response

_TOKEN = "".join(sorted(_TOKEN_CHARS)).encode("ascii")  # for bytes.strip and lstrip
_BRANCH, _CSEQ, _TAG, _CALL_ID = 0, 1, 2, 3
# A binding keeps what it learnt for life: only an answer that fits one unfragmented datagram
# is learnt (real ones are a few hundred bytes), so a flood of large answers forged with the
# server's address cannot make each binding hold a maximal datagram.
LEARN_MAX_BYTES = 1400
SHAPES = 2
# A shape's missing span (no To tag, or a Call-ID that is not a token): at the start, empty,
# followed by nothing (adds no byte to a join)
_NO_SPAN: tuple[int, int, bytes] = (0, 0, b"")

TYPE_CHECKING = False
if TYPE_CHECKING:
    # Spans: (start, length, the bytes after it up to the next span) of each of four spans
    # (branch, CSeq, To tag, Call-ID; an empty one for a missing tag or Call-ID) in one flat
    # tuple: no end offsets and no tuple per span, since a binding keeps its shapes for life
    # (every int above 256 and every tuple is one more object per binding). A shape: (length,
    # the bytes before the first span, spans, the branch's index among the spans, the CSeq's,
    # the Call-ID's (-1: not a span, the facts' own), facts).
    Spans = tuple[int, int, bytes, int, int, bytes, int, int, bytes, int, int, bytes]
    Shape = tuple[int, bytes, Spans, int, int, int, "AnswerFacts"]


class AnswerFacts:
    """What the engine reads of an answer besides its top Via's branch and its CSeq number
    (core/engine.py `_receive` and `_answered`), read once per shape."""

    __slots__ = (
        "call_id",
        "cseq_method",
        "flow_timer",
        "host",
        "received",
        "rport",
        "rport_bare",
        "status",
    )

    def __init__(self, response: Response) -> None:
        via = response.top_via
        self.status = response.status
        self.call_id = response.call_id
        self.cseq_method = response.cseq_method
        self.host = via.host
        self.received = via.received
        self.rport = via.rport
        # `rport` without a value: a server that ignores RFC 3581, or one that leaves it bare
        # when the port did not change (linphone)
        self.rport_bare = (
            self.rport is None and via.has_param("rport") and via.param("rport") is None
        )
        self.flow_timer = response.flow_timer


class AnswerMemo:
    """`memo.read(data)`: (branch, CSeq number, Call-ID, facts) of an answer, as parse_response
    reads it."""

    __slots__ = ("_shapes",)

    def __init__(self) -> None:
        self._shapes: list[Shape] = []

    def read(self, data: bytes) -> tuple[str, int, str, AnswerFacts]:
        """Raises SipParseError as parse_response does."""
        shapes = self._shapes
        for shape in shapes:
            length, head, spans, branch, cseq, call_id, facts = shape
            if len(data) != length or type(data) is not bytes or not data.startswith(head):
                continue
            # The datagram's own values put between the learnt fixed bytes must give the
            # datagram back, and the values must be token characters: two C calls for all the
            # fixed bytes and one for the values: this runs for nearly every answer.
            (
                start1,
                size1,
                after1,
                start2,
                size2,
                after2,
                start3,
                size3,
                after3,
                start4,
                size4,
                after4,
            ) = spans
            values = (
                data[start1 : start1 + size1],
                data[start2 : start2 + size2],
                data[start3 : start3 + size3],
                data[start4 : start4 + size4],
            )
            if b"".join(
                (head, values[0], after1, values[1], after2, values[2], after3, values[3], after4)
            ) != data or b"".join(values).strip(_TOKEN):
                continue
            raw = values[cseq]
            number = int(raw) if raw.isdigit() else CSEQ_MAX + 1
            if number <= CSEQ_MAX:
                if shape is not shapes[0]:
                    shapes.remove(shape)
                    shapes.insert(0, shape)
                return (
                    values[branch].decode("ascii"),
                    number,
                    facts.call_id if call_id < 0 else values[call_id].decode("ascii"),
                    facts,
                )
        response = parse_response(data)
        facts = AnswerFacts(response)
        self._learn(data, response, facts)
        return response.top_via.branch or "", response.cseq, response.call_id, facts

    def _learn(self, data: bytes, response: Response, facts: AnswerFacts) -> None:
        if (
            type(data) is not bytes
            or len(data) > LEARN_MAX_BYTES
            or data[:1] in (b"\r", b"\n")
            or not data.isascii()
        ):
            return
        lines = _split_head(data)[0].decode("ascii").split("\n")  # as the parser splits it
        if len(lines) != len(response.headers) + 1:
            return  # a continuation line: header i is not line i + 1
        starts = [0]
        for line in lines:
            starts.append(starts[-1] + len(line) + 1)
        headers = response.headers
        names = [name for name, _ in headers]
        at = names.index("via")  # the first Via line holds the top Via
        branch = _span(lines, starts, at, headers[at][1], response.top_via.branch or "", _BRANCH)
        at = names.index("cseq")  # the parser reads the first CSeq
        cseq = _span(lines, starts, at, headers[at][1], headers[at][1].split()[0], _CSEQ)
        if branch is None or cseq is None:
            return
        found = [branch, cseq]
        if "to" in names:
            at = names.index("to")
            tag = _span(lines, starts, at, headers[at][1], _tag(headers[at][1]), _TAG)
            if tag is not None:
                found.append(tag)
        # the parser reads the first Call-ID, whole: a span only when it is all token characters
        # (then it cannot hide a line or a header); otherwise the shape holds it fixed
        at = names.index("call-id")
        call_id = _span(lines, starts, at, headers[at][1], headers[at][1], _CALL_ID)
        if call_id is not None:
            found.append(call_id)
        found.sort()
        ends = [start for start, *_ in found[1:]] + [len(data)]
        pieces = [
            (start, length, data[start + length : end])
            for (start, length, _kind), end in zip(found, ends)
        ]
        while len(pieces) < 4:  # empty spans at the end keep read() to one form
            pieces.append(_NO_SPAN)
        (
            (start1, size1, after1),
            (start2, size2, after2),
            (start3, size3, after3),
            (start4, size4, after4),
        ) = pieces
        spans: Spans = (
            start1,
            size1,
            after1,
            start2,
            size2,
            after2,
            start3,
            size3,
            after3,
            start4,
            size4,
            after4,
        )
        kinds = [kind for _start, _length, kind in found]
        self._shapes.insert(
            0,
            (
                len(data),
                data[: found[0][0]],
                spans,
                kinds.index(_BRANCH),
                kinds.index(_CSEQ),
                kinds.index(_CALL_ID) if _CALL_ID in kinds else -1,
                facts,
            ),
        )
        del self._shapes[SHAPES:]


def _tag(value: str) -> str:
    """The To tag's text as written (empty when there is none)."""
    at = value.lower().find(";tag=")
    if at < 0:
        return ""
    tag = value[at + 5 :]
    rest = tag.encode().lstrip(_TOKEN)  # from the first character that is not a token's
    return tag[: len(tag) - len(rest)]


def _span(
    lines: list[str], starts: list[int], index: int, value: str, text: str, kind: int
) -> tuple[int, int, int] | None:
    """Where `text`, found once in header `index`'s value, lies in the datagram."""
    if not text or value.count(text) != 1 or text.encode().strip(_TOKEN):
        return None
    line = lines[index + 1].rstrip("\r")
    colon = line.find(":")
    raw = line[colon + 1 :]
    at = colon + 1 + len(raw) - len(raw.lstrip())
    if line[at : at + len(value)] != value:
        return None
    start = starts[index + 1] + at + value.find(text)
    return (start, len(text), kind)
