"""Parsing SIP messages received over UDP (RFC 3261 §7, §20.42; RFC 3581).

Rules:
- Any bytes give a Request, a Response or SipParseError with a message precise enough to log;
  no other exception escapes. Input is capped (bytes, header lines, Via values, parameters,
  quoted sections) so what a hostile packet costs here is bounded.
- Lenient where real servers differ from the grammar (case, compact names, folded lines,
  whitespace around separators, bare LF, a missing Content-Length, `ip:port` in `received`);
  strict where the agent's decisions depend on it (status line, Via, Call-ID, CSeq).
- Plain string scans only: no regular expressions, so no backtracking on crafted input.
"""

from __future__ import annotations

from natkeepalive.errors import SipParseError
from natkeepalive.sip.scan import (
    _show,
    split_outside as split_outside,  # part of the codec's API
)
from natkeepalive.sip.target import bracket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from natkeepalive.record import dataclass

MAX_MESSAGE_BYTES = 65535
MAX_HEADER_LINES = 200
MAX_VIAS = 64  # far above any real path; bounds the work a hostile packet can cause
MAX_VIA_PARAMS = 32  # real Via values carry about five
CSEQ_MAX = 2**32 - 1  # RFC 3261 §8.1.1.5: a 32-bit unsigned integer

# One table of header names: (canonical long name, compact form or "").
# Compact forms: RFC 3261 §7.3.3 and the IANA SIP parameters registry.
HEADER_NAMES: tuple[tuple[str, str], ...] = (
    ("accept-contact", "a"),
    ("allow-events", "u"),
    ("call-id", "i"),
    ("contact", "m"),
    ("content-encoding", "e"),
    ("content-length", "l"),
    ("content-type", "c"),
    ("cseq", ""),
    ("event", "o"),
    ("flow-timer", ""),
    ("from", "f"),
    ("identity", "y"),
    ("identity-info", "n"),
    ("refer-to", "r"),
    ("referred-by", "b"),
    ("reject-contact", "j"),
    ("request-disposition", "d"),
    ("session-expires", "x"),
    ("subject", "s"),
    ("supported", "k"),
    ("to", "t"),
    ("via", "v"),
)
_COMPACT: dict[str, str] = {short: long for long, short in HEADER_NAMES if short}

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_HOSTNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")
_V6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_WHITESPACE = " \t"

if TYPE_CHECKING:  # aliases for annotations only, so 3.9 never evaluates them
    Params = tuple[tuple[str, str | None], ...]


def canonical_name(name: str) -> str:
    """The lower-case long form of a header name (compact forms expanded)."""
    lowered = name.strip().lower()
    return _COMPACT.get(lowered, lowered)


def _is_token(text: str) -> bool:
    if text.isascii() and text.isalnum():  # the usual case, decided without building a set
        return True
    return bool(text) and set(text) <= _TOKEN_CHARS


_SIP_PROTOCOLS = {
    (n, v, t): f"{n}/{v}/{t}"
    for n, v, t in (("SIP", "2.0", "UDP"), ("SIP", "2.0", "TCP"), ("SIP", "2.0", "TLS"))
}


def _header_name(raw: str, number: int) -> str:
    name = raw.rstrip(_WHITESPACE)
    if not _is_token(name):
        raise SipParseError(f"line {number}: bad header name {_show(name)}")
    return canonical_name(name)


def _param_name(raw: str, value: str) -> str:
    key = raw.strip().lower()
    if key and not _is_token(key):
        raise SipParseError(f"bad Via {_show(value)}: bad parameter name {_show(key)}")
    return key


def _port_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if not text.isdigit() or not text.isascii() or len(text) > 5:
        return None
    value = int(text)
    return value if 1 <= value <= 65535 else None


def _is_ipv4(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(
        p.isdigit() and p.isascii() and len(p) <= 3 and int(p) <= 255 for p in parts
    )


def _is_ipv6(text: str) -> bool:
    # A shape check, not full validation: the codec stays free of socket and ipaddress.
    return 2 <= text.count(":") <= 7 and set(text) <= _V6_CHARS and ":::" not in text


@dataclass(frozen=True)
class Via:
    """One Via value (RFC 3261 §20.42) with the RFC 3581 `received`/`rport` helpers."""

    protocol: str  # e.g. "SIP/2.0/UDP", upper case
    host: str  # sent-by host, IPv6 without brackets
    port: int | None
    params: Params  # names lower-cased, values as sent but trimmed (None: no '=')

    def param(self, name: str) -> str | None:
        """The value of the first parameter `name` (None when absent or valueless)."""
        return self._param(name.lower())

    def _param(self, name: str) -> str | None:  # `name` in lower case: read for every answer
        for key, value in self.params:
            if key == name:
                return value
        return None

    def has_param(self, name: str) -> bool:
        name = name.lower()
        return any(key == name for key, _ in self.params)

    @property
    def branch(self) -> str | None:
        return self._param("branch")

    @property
    def received(self) -> str | None:
        """The address in `received`, without brackets; None when absent or not an address.

        Some servers wrongly write `ip:port` or `[v6]:port` here; only the address is kept
        (use `param("received")` for the raw text).
        """
        raw = self._param("received")
        if raw is None:
            return None
        value = raw.strip()
        if value.startswith("["):
            value = value[1:].partition("]")[0]
        elif value.count(":") == 1:
            value = value.partition(":")[0]
        return value if _is_ipv4(value) or _is_ipv6(value) else None

    @property
    def rport(self) -> int | None:
        """The numeric `rport`; None when absent, valueless (as sent) or not a valid port."""
        return _port_or_none(self._param("rport"))

    @property
    def sent_by(self) -> str:
        """`host[:port]` as it would be written (IPv6 in brackets)."""
        host = bracket(self.host)
        return host if self.port is None else f"{host}:{self.port}"

    def __str__(self) -> str:
        text = f"{self.protocol} {self.sent_by}"
        for key, value in self.params:
            text += f";{key}" if value is None else f";{key}={value}"
        return text


def _parse_sent_by(text: str, original: str) -> tuple[str, int | None]:
    port_text: str | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise SipParseError(f"bad Via {_show(original)}: missing ']'")
        rest = rest.strip()
        if rest:
            if not rest.startswith(":"):
                raise SipParseError(f"bad Via {_show(original)}: unexpected text after ']'")
            port_text = rest[1:]
        if not _is_ipv6(host):
            raise SipParseError(f"bad Via {_show(original)}: bad IPv6 address")
        return host, _via_port(port_text, original)
    if text.count(":") > 1:  # an IPv6 address without brackets: wrong but unambiguous
        if not _is_ipv6(text):
            raise SipParseError(f"bad Via {_show(original)}: bad IPv6 address")
        return text, None
    host, sep, rest = text.partition(":")
    host = host.strip()
    if sep:
        port_text = rest
    if not host or not set(host) <= _HOSTNAME_CHARS:
        raise SipParseError(f"bad Via {_show(original)}: bad sent-by host")
    return host, _via_port(port_text, original)


def _via_port(text: str | None, original: str) -> int | None:
    if text is None:
        return None
    port = _port_or_none(text)
    if port is None:
        raise SipParseError(f"bad Via {_show(original)}: bad port")
    return port


def parse_via(value: str) -> Via:
    """One Via value: `SIP / 2.0 / UDP host [: port] *(; param [= value])`."""
    parts = split_outside(value, ";", MAX_VIA_PARAMS + 1)
    head = _parse_via_head(parts[0], value)
    if len(parts) > MAX_VIA_PARAMS + 1:
        raise SipParseError(f"bad Via {_show(value)}: more than {MAX_VIA_PARAMS} parameters")
    params: list[tuple[str, str | None]] = []
    for part in parts[1:]:
        key, sep, raw = part.partition("=")
        key = _param_name(key, value)
        if not key:
            continue  # a stray ';' carries nothing
        params.append((key, raw.strip() if sep else None))
    return Via(head[0], head[1], head[2], tuple(params))


def _parse_via_head(text: str, value: str) -> tuple[str, str, int | None]:
    """(protocol, host, port) from the part before the first ';'."""
    pieces = text.split("/", 2)
    if len(pieces) != 3:
        raise SipParseError(f"bad Via {_show(value)}: no sent-protocol")
    name = pieces[0].strip()
    version = pieces[1].strip()
    transport_and_host = pieces[2].lstrip(_WHITESPACE).split(None, 1)
    if len(transport_and_host) != 2:
        raise SipParseError(f"bad Via {_show(value)}: no sent-by")
    transport, sent_by = transport_and_host
    protocol = _SIP_PROTOCOLS.get((name, version, transport))
    if protocol is None:
        if not (_is_token(name) and _is_token(version) and _is_token(transport)):
            raise SipParseError(f"bad Via {_show(value)}: bad sent-protocol")
        protocol = f"{name}/{version}/{transport}".upper()
    host, port = _parse_sent_by(sent_by.strip(), value)
    return protocol, host, port


class _Headers:
    """Header helpers shared by Request and Response."""

    headers: tuple[tuple[str, str], ...]
    vias: tuple[Via, ...]

    def header(self, name: str) -> str | None:
        """The first value of header `name` (long or compact form, any case)."""
        return self._first(canonical_name(name))

    def _first(self, canonical: str) -> str | None:  # the name as stored: read for every answer
        for key, value in self.headers:
            if key == canonical:
                return value
        return None

    def header_values(self, name: str) -> tuple[str, ...]:
        """Every value of header `name`, in order (one per header line)."""
        name = canonical_name(name)
        return tuple(value for key, value in self.headers if key == name)

    @property
    def top_via(self) -> Via:
        return self.vias[0]

    @property
    def flow_timer(self) -> int | None:
        """RFC 5626 §4.4.1 Flow-Timer: seconds the server expects between keepalives."""
        value = self._first("flow-timer")
        if value is None or not value.isdigit() or not value.isascii() or len(value) > 9:
            return None
        return int(value)


@dataclass(frozen=True)
class Response(_Headers):
    status: int
    reason: str
    vias: tuple[Via, ...]
    call_id: str
    cseq: int
    cseq_method: str
    headers: tuple[tuple[str, str], ...]  # (canonical lower-case long name, unfolded value)
    body: bytes


@dataclass(frozen=True)
class Request(_Headers):
    method: str
    uri: str
    vias: tuple[Via, ...]
    call_id: str
    cseq: int
    cseq_method: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    """Header section and body: the first empty line ends the headers (CRLF or bare LF)."""
    lf_lf = data.find(b"\n\n")
    lf_crlf = data.find(b"\n\r\n")
    if lf_crlf >= 0 and (lf_lf < 0 or lf_crlf < lf_lf):
        return data[:lf_crlf], data[lf_crlf + 3 :]
    if lf_lf >= 0:
        return data[:lf_lf], data[lf_lf + 2 :]
    return data.rstrip(b"\r\n"), b""  # no empty line: tolerated, the datagram ends the message


def _header_lines(text: str) -> list[tuple[str, str]]:
    """(canonical name, value) per header, continuation lines joined; `text` starts at line 2."""
    lines = text.split("\n") if text else []
    if len(lines) > MAX_HEADER_LINES:
        raise SipParseError(f"too many header lines (limit {MAX_HEADER_LINES})")
    headers: list[tuple[str, str]] = []
    for number, raw in enumerate(lines, start=2):
        line = raw.rstrip("\r")
        if line[:1] in (" ", "\t"):
            if not headers:
                raise SipParseError(f"line {number}: continuation line without a header")
            name, value = headers[-1]
            more = line.strip()
            if more:
                headers[-1] = (name, f"{value} {more}" if value else more)
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise SipParseError(f"line {number}: header line without ':': {_show(line)}")
        headers.append((_header_name(name, number), value.strip()))
    return headers


def _parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if (
        len(parts) != 2
        or not parts[0].isdigit()
        or not parts[0].isascii()
        or len(parts[0]) > 10
        or not _is_token(parts[1])
    ):
        raise SipParseError(f"bad CSeq {_show(value)}: expected 'number method'")
    number = int(parts[0])
    if number > CSEQ_MAX:
        raise SipParseError(f"bad CSeq {_show(value)}: number above 2**32-1")
    return number, parts[1]


def _body(content_length: str | None, rest: bytes) -> bytes:
    """The body by the first Content-Length value (None: there was none)."""
    if content_length is None:
        return rest  # RFC 3261 §18.3: on UDP the body runs to the end of the datagram
    if not content_length.isdigit() or not content_length.isascii() or len(content_length) > 5:
        raise SipParseError(f"bad Content-Length {_show(content_length)}")
    length = int(content_length)
    if length > len(rest):
        raise SipParseError(f"Content-Length {length} exceeds the {len(rest)} body bytes received")
    return rest[:length]  # anything after it (e.g. CRLF padding) is not the body


def _parse_status_line(start: str) -> tuple[int, str]:
    parts = start.split(None, 2)
    if len(parts) < 2:
        raise SipParseError(f"bad status line {_show(start)}")
    if parts[0].upper() != "SIP/2.0":
        raise SipParseError(f"unsupported SIP version {_show(parts[0])}")
    code = parts[1]
    if len(code) != 3 or not code.isdigit() or not code.isascii():
        raise SipParseError(f"bad status code {_show(code)}")
    status = int(code)
    if not 100 <= status <= 699:
        raise SipParseError(f"status code {status} out of range 100-699")
    return status, parts[2].strip() if len(parts) == 3 else ""


def _parse_request_line(start: str) -> tuple[str, str]:
    parts = start.split()
    if len(parts) != 3 or not _is_token(parts[0]):
        raise SipParseError(f"bad request line {_show(start)}")
    if parts[2].upper() != "SIP/2.0":
        raise SipParseError(f"unsupported SIP version {_show(parts[2])}")
    return parts[0], parts[1]


if TYPE_CHECKING:
    _Common = tuple[tuple[Via, ...], str, int, str, tuple[tuple[str, str], ...], bytes]


def _common(headers: list[tuple[str, str]], rest: bytes) -> _Common:
    """The fields requests and responses share, with the checks both need."""
    vias: list[Via] = []
    call_id: str | None = None
    cseq: tuple[int, str] | None = None
    content_length: str | None = None  # checked last, as before: the other errors come first
    for name, value in headers:
        if name == "via":
            # loops, not comprehensions: on Python < 3.12 each builds a function per answer
            raw = split_outside(value, ",", MAX_VIAS)
            parts = []
            for part in raw:
                if part.strip():
                    parts.append(part)
            if len(raw) > MAX_VIAS or len(vias) + len(parts) > MAX_VIAS:
                raise SipParseError(f"too many Via values (limit {MAX_VIAS})")
            for part in parts:
                vias.append(parse_via(part))
        elif name == "call-id" and call_id is None:
            call_id = value
        elif name == "cseq" and cseq is None:
            cseq = _parse_cseq(value)
        elif name == "content-length" and content_length is None:
            content_length = value
    if not vias:
        raise SipParseError("missing Via header")
    if call_id is None:
        raise SipParseError("missing Call-ID header")
    if not call_id or " " in call_id or "\t" in call_id:
        raise SipParseError(f"bad Call-ID {_show(call_id)}")
    if cseq is None:
        raise SipParseError("missing CSeq header")
    return tuple(vias), call_id, cseq[0], cseq[1], tuple(headers), _body(content_length, rest)


def parse_message(data: bytes | bytearray | memoryview) -> Request | Response:
    """Parse one datagram. Raises SipParseError, and only that, for anything unusable."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SipParseError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError(f"message too large: {len(data)} bytes (limit {MAX_MESSAGE_BYTES})")
    if not data:
        raise SipParseError("empty datagram")
    # RFC 3261 §7.5: CRLFs before the start line are ignored; alone they are a keepalive.
    data = data.lstrip(b"\r\n")
    if not data:
        raise SipParseError("only CR/LF (a keepalive), no SIP message")
    head, rest = _split_head(data)
    start, _, header_text = head.decode("utf-8", errors="replace").partition("\n")
    start = start.rstrip("\r")
    if start[:4].upper() == "SIP/":
        status, reason = _parse_status_line(start)
        return Response(status, reason, *_common(_header_lines(header_text), rest))
    method, uri = _parse_request_line(start)
    return Request(method, uri, *_common(_header_lines(header_text), rest))


def parse_response(data: bytes | bytearray | memoryview) -> Response:
    """Like parse_message, but a request is an error too."""
    message = parse_message(data)
    if not isinstance(message, Response):
        raise SipParseError(f"expected a response, got a {_show(message.method, 20)} request")
    return message
