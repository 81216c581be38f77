"""A sans-I/O STUN codec for Binding transactions (RFC 8489, which obsoletes RFC 5389; RFC 5780).

What the agent and its responder need, and no more:
- build a Binding request, with RESPONSE-PORT (RFC 5780 §7.5: answer to this port of the request's
  source address) and CHANGE-REQUEST (§7.2) when asked; the transaction id comes from the caller,
  as this module has no randomness;
- parse a Binding success or error response: XOR-MAPPED-ADDRESS (MAPPED-ADDRESS when a server sends
  only that), RESPONSE-ORIGIN, OTHER-ADDRESS, ERROR-CODE, IPv4 and IPv6; other attributes are
  skipped, and a FINGERPRINT, when present, must match;
- parse a Binding request and build its success or error response (the responder's side).

Any bytes give a message or StunParseError: lengths are checked before every read, so a hostile
datagram costs a few microseconds and nothing else escapes. No sockets, clocks or randomness here.
"""

from __future__ import annotations

from binascii import crc32

from natkeepalive.errors import StunParseError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from natkeepalive.record import dataclass

MAGIC_COOKIE = 0x2112A442
_COOKIE = MAGIC_COOKIE.to_bytes(4, "big")
HEADER_BYTES = 20
TXID_BYTES = 12
# Far above a Binding message (a response with every attribute here is under 200 bytes) and below
# any UDP datagram the agent reads.
MAX_MESSAGE_BYTES = 1500

BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
BINDING_ERROR = 0x0111

# Attribute types (RFC 8489 §18.3, RFC 5780 §7).
MAPPED_ADDRESS = 0x0001
CHANGE_REQUEST = 0x0003
ERROR_CODE = 0x0009
UNKNOWN_ATTRIBUTES = 0x000A
XOR_MAPPED_ADDRESS = 0x0020
PADDING = 0x0026
RESPONSE_PORT = 0x0027
SOFTWARE = 0x8022
FINGERPRINT = 0x8028
RESPONSE_ORIGIN = 0x802B
OTHER_ADDRESS = 0x802C

CHANGE_IP = 0x04
CHANGE_PORT = 0x02
_FINGERPRINT_XOR = 0x5354554E
_FAMILY_V4, _FAMILY_V6 = 0x01, 0x02
_ADDRESS_TYPES = (MAPPED_ADDRESS, XOR_MAPPED_ADDRESS, RESPONSE_ORIGIN, OTHER_ADDRESS)


@dataclass(frozen=True)
class StunMessage:
    """A STUN message's header and attributes in their order, values without padding."""

    message_type: int
    transaction_id: bytes
    attributes: tuple[tuple[int, bytes], ...]

    def first(self, kind: int) -> bytes | None:
        """The value of the first attribute of this type (RFC 8489 §14: later ones are ignored)."""
        for attr, value in self.attributes:
            if attr == kind:
                return value
        return None


@dataclass(frozen=True)
class BindingResponse:
    """A Binding success or error response, reduced to what a client uses.

    `mapped` is the reflexive transport address (host, port); `xor_mapped` says whether it came
    from XOR-MAPPED-ADDRESS. `error` is (code, reason) on an error response, else None."""

    transaction_id: bytes
    success: bool
    mapped: tuple[str, int] | None
    xor_mapped: bool
    response_origin: tuple[str, int] | None
    other_address: tuple[str, int] | None
    error: tuple[int, str] | None


@dataclass(frozen=True)
class BindingRequest:
    """A Binding request as a server sees it. `unknown_required` lists comprehension-required
    attributes (type below 0x8000) this codec does not know: RFC 8489 §6.3.1 wants a 420 answer
    naming them."""

    transaction_id: bytes
    response_port: int | None
    change_ip: bool
    change_port: bool
    padding: bool
    unknown_required: tuple[int, ...]


# --- building -------------------------------------------------------------------------------------


def _attribute(kind: int, value: bytes) -> bytes:
    pad = b"\0" * (-len(value) % 4)
    return kind.to_bytes(2, "big") + len(value).to_bytes(2, "big") + value + pad


def _message(
    message_type: int, transaction_id: bytes, attributes: bytes, fingerprint: bool = False
) -> bytes:
    if len(transaction_id) != TXID_BYTES:
        raise ValueError(f"a STUN transaction id has {TXID_BYTES} bytes, not {len(transaction_id)}")
    length = len(attributes) + (8 if fingerprint else 0)
    data = (
        message_type.to_bytes(2, "big")
        + length.to_bytes(2, "big")
        + _COOKIE
        + transaction_id
        + attributes
    )
    if fingerprint:
        crc = (crc32(data) ^ _FINGERPRINT_XOR) & 0xFFFFFFFF
        data += _attribute(FINGERPRINT, crc.to_bytes(4, "big"))
    return data


def build_binding_request(
    transaction_id: bytes,
    *,
    response_port: int | None = None,
    change_ip: bool = False,
    change_port: bool = False,
    change_request: bool = False,
    fingerprint: bool = False,
) -> bytes:
    """A Binding request. RESPONSE-PORT's value is the port followed by two bytes of padding
    inside the attribute (length 4, RFC 5780 §7.5), as coturn sends and expects it.
    CHANGE-REQUEST goes out when a flag is set or `change_request` asks for it with no flags."""
    attrs = b""
    if change_ip or change_port or change_request:
        flags = (CHANGE_IP if change_ip else 0) | (CHANGE_PORT if change_port else 0)
        attrs += _attribute(CHANGE_REQUEST, flags.to_bytes(4, "big"))
    if response_port is not None:
        if not 0 < response_port < 65536:
            raise ValueError(f"RESPONSE-PORT {response_port} is not a port")
        attrs += _attribute(RESPONSE_PORT, response_port.to_bytes(2, "big") + b"\0\0")
    return _message(BINDING_REQUEST, transaction_id, attrs, fingerprint)


def build_binding_success(
    transaction_id: bytes,
    mapped: tuple[str, int],
    *,
    response_origin: tuple[str, int] | None = None,
    other_address: tuple[str, int] | None = None,
    software: str = "",
    fingerprint: bool = False,
) -> bytes:
    """A Binding success response carrying XOR-MAPPED-ADDRESS and, when given, RESPONSE-ORIGIN,
    OTHER-ADDRESS and SOFTWARE."""
    attrs = _attribute(XOR_MAPPED_ADDRESS, _encode_address(mapped, transaction_id, True))
    if response_origin is not None:
        attrs += _attribute(RESPONSE_ORIGIN, _encode_address(response_origin, transaction_id))
    if other_address is not None:
        attrs += _attribute(OTHER_ADDRESS, _encode_address(other_address, transaction_id))
    if software:
        attrs += _attribute(SOFTWARE, software[:127].encode("utf-8"))
    return _message(BINDING_SUCCESS, transaction_id, attrs, fingerprint)


def build_binding_error(
    transaction_id: bytes, code: int, reason: str, *, unknown: tuple[int, ...] = ()
) -> bytes:
    """A Binding error response (RFC 8489 §14.8), with UNKNOWN-ATTRIBUTES for a 420."""
    if not 300 <= code <= 699:
        raise ValueError(f"STUN error code {code} is not in 300-699")
    # RFC 8489 §14.8: fewer than 128 characters (up to 763 bytes), never cut inside one
    value = bytes((0, 0, code // 100, code % 100)) + reason[:127].encode("utf-8")
    attrs = _attribute(ERROR_CODE, value)
    if unknown:
        attrs += _attribute(UNKNOWN_ATTRIBUTES, b"".join(k.to_bytes(2, "big") for k in unknown))
    return _message(BINDING_ERROR, transaction_id, attrs)


# --- parsing --------------------------------------------------------------------------------------


def is_stun(data: bytes) -> bool:
    """Whether a datagram looks like STUN (RFC 7983: first two bits zero, the magic cookie), a
    cheap test for a socket that also receives SIP."""
    return len(data) >= HEADER_BYTES and data[0] < 4 and data[4:8] == _COOKIE


def parse_message(data: bytes) -> StunMessage:
    """The header and attributes of one STUN message, or StunParseError."""
    size = len(data)
    if size < HEADER_BYTES:
        raise StunParseError(f"{size} bytes: shorter than a STUN header")
    if size > MAX_MESSAGE_BYTES:
        raise StunParseError(f"{size} bytes: longer than a Binding message can be")
    if data[0] & 0xC0:
        raise StunParseError("the first two bits are not zero: not STUN")
    if data[4:8] != _COOKIE:
        raise StunParseError("no magic cookie (a classic RFC 3489 message or not STUN)")
    length = int.from_bytes(data[2:4], "big")
    if length % 4:
        raise StunParseError(f"message length {length} is not a multiple of 4")
    if HEADER_BYTES + length != size:
        raise StunParseError(
            f"message length {length} but {size - HEADER_BYTES} bytes follow the header"
        )
    attributes: list[tuple[int, bytes]] = []
    offset = HEADER_BYTES
    while offset < size:
        if offset + 4 > size:
            raise StunParseError(f"a truncated attribute header at byte {offset}")
        kind = int.from_bytes(data[offset : offset + 2], "big")
        value_length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        end = offset + 4 + value_length
        if end > size:
            raise StunParseError(
                f"attribute 0x{kind:04x} of {value_length} bytes overruns the message"
            )
        if kind == FINGERPRINT:
            # RFC 8489 §14.7: the last attribute, a CRC-32 of everything before it.
            if value_length != 4 or end != size:
                raise StunParseError("FINGERPRINT is not a last attribute of 4 bytes")
            expected = (crc32(data[:offset]) ^ _FINGERPRINT_XOR) & 0xFFFFFFFF
            if int.from_bytes(data[offset + 4 : end], "big") != expected:
                raise StunParseError("FINGERPRINT does not match")
        attributes.append((kind, data[offset + 4 : end]))
        offset = end + (-value_length % 4)
    message_type = int.from_bytes(data[0:2], "big")
    return StunMessage(message_type, data[8:HEADER_BYTES], tuple(attributes))


def parse_binding_response(data: bytes) -> BindingResponse:
    """A Binding success or error response, or StunParseError (also for other messages, a
    success without an address, or an error without ERROR-CODE)."""
    message = parse_message(data)
    txid = message.transaction_id
    if message.message_type == BINDING_ERROR:
        value = message.first(ERROR_CODE)
        if value is None:
            raise StunParseError("a Binding error response without ERROR-CODE")
        return BindingResponse(
            txid,
            False,
            None,
            False,
            _optional(message, RESPONSE_ORIGIN),
            _optional(message, OTHER_ADDRESS),
            _decode_error(value),
        )
    if message.message_type != BINDING_SUCCESS:
        raise StunParseError(f"message type 0x{message.message_type:04x} is not a Binding response")
    xor = message.first(XOR_MAPPED_ADDRESS)
    if xor is not None:
        mapped, is_xor = _decode_address(xor, txid, True), True
    else:
        plain = message.first(MAPPED_ADDRESS)
        if plain is None:
            raise StunParseError("a Binding success response without a mapped address")
        mapped, is_xor = _decode_address(plain, txid, False), False
    return BindingResponse(
        txid,
        True,
        mapped,
        is_xor,
        _optional(message, RESPONSE_ORIGIN),
        _optional(message, OTHER_ADDRESS),
        None,
    )


def parse_binding_request(data: bytes) -> BindingRequest:
    """A Binding request, or StunParseError (also for any other message)."""
    message = parse_message(data)
    if message.message_type != BINDING_REQUEST:
        raise StunParseError(f"message type 0x{message.message_type:04x} is not a Binding request")
    response_port = None
    change_ip = change_port = padding = False
    unknown: list[int] = []
    seen: set[int] = set()
    for kind, value in message.attributes:
        if kind in seen:
            continue
        seen.add(kind)
        if kind == RESPONSE_PORT:
            # Two bytes of port; coturn and this codec add two bytes of padding inside.
            if len(value) not in (2, 4):
                raise StunParseError(f"RESPONSE-PORT of {len(value)} bytes")
            response_port = int.from_bytes(value[:2], "big")
            if response_port == 0:
                raise StunParseError("RESPONSE-PORT 0")
        elif kind == CHANGE_REQUEST:
            if len(value) != 4:
                raise StunParseError(f"CHANGE-REQUEST of {len(value)} bytes")
            change_ip = bool(value[3] & CHANGE_IP)
            change_port = bool(value[3] & CHANGE_PORT)
        elif kind == PADDING:
            padding = True
        elif kind < 0x8000 and kind not in _KNOWN_REQUIRED:
            unknown.append(kind)
    return BindingRequest(
        message.transaction_id, response_port, change_ip, change_port, padding, tuple(unknown)
    )


# Comprehension-required attributes a server may meet in a Binding request and accept.
_KNOWN_REQUIRED = frozenset(
    {
        CHANGE_REQUEST,
        RESPONSE_PORT,
        PADDING,
        MAPPED_ADDRESS,
        XOR_MAPPED_ADDRESS,
        ERROR_CODE,
        UNKNOWN_ATTRIBUTES,
    }
)


def _optional(message: StunMessage, kind: int) -> tuple[str, int] | None:
    value = message.first(kind)
    return None if value is None else _decode_address(value, message.transaction_id, False)


def _decode_error(value: bytes) -> tuple[int, str]:
    if len(value) < 4:
        raise StunParseError(f"ERROR-CODE of {len(value)} bytes")
    code = (value[2] & 0x07) * 100 + value[3]
    if not 300 <= code <= 699 or value[3] > 99:
        raise StunParseError(f"ERROR-CODE class {value[2] & 0x07} number {value[3]}")
    # coturn pads the reason with NULs inside the attribute's length.
    return code, value[4:].decode("utf-8", "replace").rstrip("\0")


def _decode_address(value: bytes, txid: bytes, xor: bool) -> tuple[str, int]:
    if len(value) < 4:
        raise StunParseError(f"an address attribute of {len(value)} bytes")
    family = value[1]
    port = int.from_bytes(value[2:4], "big")
    raw = value[4:]
    if family == _FAMILY_V4:
        if len(raw) != 4:
            raise StunParseError(f"an IPv4 address of {len(raw)} bytes")
    elif family == _FAMILY_V6:
        if len(raw) != 16:
            raise StunParseError(f"an IPv6 address of {len(raw)} bytes")
    else:
        raise StunParseError(f"address family 0x{family:02x}")
    if xor:
        port ^= MAGIC_COOKIE >> 16
        raw = bytes(a ^ b for a, b in zip(raw, _COOKIE + txid))
    return format_ip(raw), port


def _encode_address(address: tuple[str, int], txid: bytes, xor: bool = False) -> bytes:
    host, port = address
    if not 0 <= port < 65536:
        raise ValueError(f"{port} is not a port")
    raw = pack_ip(host)
    family = _FAMILY_V4 if len(raw) == 4 else _FAMILY_V6
    if xor:
        port ^= MAGIC_COOKIE >> 16
        raw = bytes(a ^ b for a, b in zip(raw, _COOKIE + txid))
    return bytes((0, family)) + port.to_bytes(2, "big") + raw


# --- addresses without the socket or ipaddress modules -------------------------------------------


def format_ip(raw: bytes) -> str:
    """4 or 16 bytes as text: dotted quad, or IPv6 in RFC 5952's form (lower case, the longest
    run of two or more zero groups as ::)."""
    if len(raw) == 4:
        return ".".join(str(b) for b in raw)
    groups = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, 16, 2)]
    best_start, best_len, start = -1, 1, -1
    for index, group in enumerate([*groups, 1]):
        if group == 0 and start < 0:
            start = index
        elif group != 0 and start >= 0:
            if index - start > best_len:
                best_start, best_len = start, index - start
            start = -1
    text = [f"{g:x}" for g in groups]
    if best_start < 0:
        return ":".join(text)
    return ":".join(text[:best_start]) + "::" + ":".join(text[best_start + best_len :])


def pack_ip(host: str) -> bytes:
    """An IPv4 or IPv6 literal (brackets allowed) as 4 or 16 bytes; ValueError otherwise."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" not in text:
        parts = text.split(".")
        if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts):
            raise ValueError(f"{host!r} is not an IPv4 address")
        return bytes(int(p) for p in parts)
    if "%" in text:
        text = text.split("%", 1)[0]
    tail = b""
    if "." in text:  # an embedded IPv4 address in the last 32 bits
        text, _, v4 = text.rpartition(":")
        tail = pack_ip(v4)
        text += ":0:0"
    head, sep, rest = text.partition("::")
    if "::" in rest:
        raise ValueError(f"{host!r}: more than one '::'")
    left = [g for g in head.split(":") if g] if head else []
    right = [g for g in rest.split(":") if g] if rest else []
    if (head and "" in head.split(":")) or (rest and "" in rest.split(":")):
        raise ValueError(f"{host!r} is not an IPv6 address")
    missing = 8 - len(left) - len(right)
    if (sep and missing < 1) or (not sep and missing != 0):
        raise ValueError(f"{host!r} is not an IPv6 address")
    groups = left + ["0"] * missing + right
    try:
        values = [int(g, 16) for g in groups if len(g) <= 4 and g.isascii() and g.isalnum()]
    except ValueError:
        raise ValueError(f"{host!r} is not an IPv6 address") from None
    if len(values) != 8:
        raise ValueError(f"{host!r} is not an IPv6 address")
    raw = b"".join(v.to_bytes(2, "big") for v in values)
    return raw[:12] + tail if tail else raw
