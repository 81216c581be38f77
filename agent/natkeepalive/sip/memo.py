"""A binding's next answer, parsed from its previous one (issue 7: parsing was a third of the
agent's CPU per keepalive).

A server answers a binding's keepalives with the same bytes each time except the branch it
echoes in the top Via, the CSeq number and usually the To tag. After a full parse the memo
notes where those three values lie in the datagram; a later datagram of the same length whose
other bytes are all the same, and whose three values are made of token characters (the CSeq of
digits), is the same message but for those values. `parse` then builds its Response from the
previous one instead of parsing it; `repeat`, the engine's way in, builds none and gives just
the two values the engine matches on (branch and CSeq), the rest being `last`'s.

Rules:
- The result is always the Response (or the SipParseError) that parse_response gives for the
  same bytes; tests/unit/test_sip_memo.py holds it to that on arbitrary datagrams.
- Token characters cannot move a line, a header, a Via or a parameter boundary, and the parser
  reads nothing inside a To value; a CSeq number of the same length only needs its range
  checked. Anything else (a new rport, a folded line, a longer CSeq) goes to the full parse,
  which is learnt from again.
- Only ASCII answers without CR/LF before the status line and without continuation lines are
  learnt (byte offsets are then string offsets and each line is one header), up to
  LEARN_MAX_BYTES.
- One shape is kept, learnt from the first answer and again from the second of two answers in a
  row that do not fit it: the inbound check's answer, every 10th, leaves the keepalives' shape.
"""

from __future__ import annotations

from natkeepalive.sip.message import (
    _TOKEN_CHARS,
    CSEQ_MAX,
    Response,
    Via,
    _split_head,
    parse_response,
)

_TOKEN = "".join(sorted(_TOKEN_CHARS)).encode("ascii")  # for bytes.strip and lstrip
_BRANCH, _CSEQ, _TAG = 0, 1, 2
# A binding keeps what it learnt for life: only an answer that fits one unfragmented datagram
# is learnt (real ones are 300-900 bytes), so a flood of large answers forged with the server's
# address cannot make each binding hold 64 KB.
LEARN_MAX_BYTES = 1400

TYPE_CHECKING = False  # typing costs 1.6 MB at run time; mypy treats this name as True
if TYPE_CHECKING:
    # (start, length, kind, header index, offset in that header's value, the bytes after it up
    # to the next span): no end offset and no separate list of segments, since a binding keeps
    # its memo for life (every int above 256 and every tuple is one more object per binding)
    Span = tuple[int, int, int, int, int, bytes]


class AnswerMemo:
    """`memo.parse(data)` is `parse_response(data)`, faster for a repeat of the last answer;
    `memo.repeat(data)`, else `memo.parse_full(data)`, reads the same values cheaper still."""

    __slots__ = ("_branch_param", "_head", "_last", "_length", "_missed", "_spans")

    def __init__(self) -> None:
        self._last: Response | None = None
        self._length = -1
        self._head = b""  # the bytes before the first span
        self._spans: tuple[Span, ...] = ()
        self._branch_param = 0
        self._missed = False

    @property
    def last(self) -> Response | None:
        """The answer learnt from: after a `repeat` hit, the new answer is this one but for its
        branch, CSeq number and To tag."""
        return self._last

    def parse(self, data: bytes) -> Response:
        texts = self._texts(data)
        if texts is not None:
            return self._build(texts)
        return self.parse_full(data)

    def repeat(self, data: bytes) -> tuple[str, int] | None:
        """(branch, CSeq number) when `data` is the last answer again but for its branch, CSeq
        number and To tag: everything else `parse` would give is `last`'s. Building no Response
        saves half the memo's cost (issue 7)."""
        texts = self._texts(data)
        if texts is None:
            return None
        branch, cseq = "", 0
        for (_start, _length, kind, *_rest), text in zip(self._spans, texts):
            if kind == _BRANCH:
                branch = text
            elif kind == _CSEQ:
                cseq = int(text)
        return branch, cseq

    def parse_full(self, data: bytes) -> Response:
        """`parse_response(data)`, learnt from by the rule above; for a datagram `repeat`
        refused."""
        response = parse_response(data)
        # A single odd answer (the inbound check's, every 10th) does not replace the keepalives'
        # shape, or the keepalive after it would miss too; the second miss in a row does.
        if self._last is None or self._missed:
            self._learn(data, response)
        else:
            self._missed = True
        return response

    def _texts(self, data: bytes) -> list[str] | None:
        """The spans' values in `data` (in span order) when it fits the learnt shape."""
        if len(data) != self._length or type(data) is not bytes or not data.startswith(self._head):
            return None
        for start, length, _kind, _index, _offset, after in self._spans:
            if not data.startswith(after, start + length):
                return None
        texts = []
        for start, length, kind, _index, _offset, _after in self._spans:
            raw = data[start:start + length]
            if raw.strip(_TOKEN):
                return None  # a byte outside the token characters
            if kind == _CSEQ and (not raw.isdigit() or int(raw) > CSEQ_MAX):
                return None
            texts.append(raw.decode("ascii"))
        self._missed = False
        return texts

    def _build(self, texts: list[str]) -> Response:
        last = self._last
        assert last is not None
        headers = list(last.headers)
        cseq = last.cseq
        branch = ""
        for (_start, _length, kind, index, offset, _after), text in zip(self._spans, texts):
            name, value = headers[index]
            headers[index] = (name, value[:offset] + text + value[offset + len(text):])
            if kind == _BRANCH:
                branch = text
            elif kind == _CSEQ:
                cseq = int(text)
        via = last.vias[0]
        params = list(via.params)
        params[self._branch_param] = ("branch", branch)
        vias = (Via(via.protocol, via.host, via.port, tuple(params)), *last.vias[1:])
        return Response(last.status, last.reason, vias, last.call_id, cseq, last.cseq_method,
                        tuple(headers), last.body)

    def _learn(self, data: bytes, response: Response) -> None:
        self._last, self._length, self._missed = None, -1, False
        if (type(data) is not bytes or len(data) > LEARN_MAX_BYTES or data[:1] in (b"\r", b"\n")
                or not data.isascii()):
            return
        lines = _split_head(data)[0].decode("ascii").split("\n")  # as the parser splits it
        if len(lines) != len(response.headers) + 1:
            return  # a continuation line: header i is not line i + 1
        starts = [0]
        for line in lines:
            starts.append(starts[-1] + len(line) + 1)
        headers = response.headers
        names = [name for name, _ in headers]
        via = response.vias[0]
        at = names.index("via")  # the first Via line holds the top Via
        branch = _span(lines, starts, at, headers[at][1], via.branch or "", _BRANCH)
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
        found.sort()
        ends = [start for start, *_ in found[1:]] + [len(data)]
        self._spans = tuple((start, length, kind, index, offset, data[start + length:end])
                            for (start, length, kind, index, offset), end in zip(found, ends))
        self._head = data[:found[0][0]]
        self._branch_param = [key for key, _ in via.params].index("branch")
        self._last, self._length = response, len(data)


def _tag(value: str) -> str:
    """The To tag's text as written (empty when there is none)."""
    at = value.lower().find(";tag=")
    if at < 0:
        return ""
    tag = value[at + 5:]
    rest = tag.encode().lstrip(_TOKEN)  # from the first character that is not a token's
    return tag[:len(tag) - len(rest)]


def _span(lines: list[str], starts: list[int], index: int, value: str, text: str,
          kind: int) -> tuple[int, int, int, int, int] | None:
    """Where `text`, found once in header `index`'s value, lies in the datagram."""
    if not text or value.count(text) != 1 or text.encode().strip(_TOKEN):
        return None
    line = lines[index + 1].rstrip("\r")
    colon = line.find(":")
    raw = line[colon + 1:]
    at = colon + 1 + len(raw) - len(raw.lstrip())
    if line[at:at + len(value)] != value:
        return None
    offset = value.find(text)
    start = starts[index + 1] + at + offset
    return (start, len(text), kind, index, offset)
