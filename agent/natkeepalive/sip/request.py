"""Building the keepalive OPTIONS request (RFC 3261 §8.1.1, RFC 3581 §3).

Every byte is sent on every interval, often over metered links, so the request carries only
what RFC 3261 requires plus an optional User-Agent. Inputs are checked here because a CR, LF
or space in a value would let it forge headers; that is a caller bug, hence LocalProtocolError.
"""

from __future__ import annotations

from natkeepalive.errors import LocalProtocolError
from natkeepalive.sip.message import _HOSTNAME_CHARS, _TOKEN_CHARS, _V6_CHARS, CSEQ_MAX
from natkeepalive.sip.target import bracket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from natkeepalive.record import dataclass

BRANCH_COOKIE = "z9hG4bK"
BRANCH_PLACEHOLDER = BRANCH_COOKIE + "-"  # a template's own request, never sent
FROM_USER = "nk"  # short: sent every interval; User-Agent names the product

# RFC 3261 §25.1 `word` (Call-ID) characters: the token characters and a few more.
_WORD_CHARS = _TOKEN_CHARS | frozenset('()<>:\\"/[]?{}')


@dataclass(frozen=True)
class OptionsRequest:
    """What varies between keepalives; `build_options` turns it into bytes."""

    uri_host: str  # host or address as configured (IPv6 without brackets)
    uri_port: int | None  # None: omitted from the Request-URI (use None for 5060)
    via_host: str  # local address, or the learned public one for the inbound check
    via_port: int
    branch: str  # full value including the z9hG4bK magic cookie
    call_id: str
    from_tag: str
    cseq: int
    rport: bool = True  # False for the inbound check: no rport parameter at all
    max_forwards: int = 70
    user_agent: str = "nat-keepalive"  # "" omits the header


def _host(value: str, what: str) -> str:
    """The host as it goes into a URI or Via: IPv6 in brackets."""
    if not value:
        raise LocalProtocolError(f"{what} is empty")
    if ":" in value:
        if not set(value) <= _V6_CHARS or value.count(":") < 2:
            raise LocalProtocolError(f"{what} {value!r} is not an IPv6 address")
        return bracket(value)
    if not set(value) <= _HOSTNAME_CHARS or len(value) > 253:
        raise LocalProtocolError(f"{what} {value!r} is not a host name or address")
    return value


def _port(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise LocalProtocolError(f"{what} {value!r} is not a port in 1-65535")
    return value


def _token(value: str, what: str, chars: frozenset[str] = _TOKEN_CHARS) -> str:
    # ASCII letters and digits are in every allowed set; two C calls decide for the usual
    # value (a branch of hex digits, per keepalive) before a set of its characters is built.
    if value.isascii() and value.isalnum():
        return value
    if not value or not set(value) <= chars:
        raise LocalProtocolError(f"{what} {value!r} is empty or has characters not allowed")
    return value


def _check_int(value: int, what: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise LocalProtocolError(f"{what} {value!r} is not an integer in 0-{high}")
    return value


def _user_agent(value: str) -> str:
    # Printable ASCII only: a control character or non-ASCII byte gains nothing on the wire.
    if value != value.strip() or any(not " " <= ch <= "~" for ch in value):
        raise LocalProtocolError(
            f"user_agent {value!r} must be printable ASCII without leading or trailing spaces"
        )
    return value


def _branch(value: str) -> str:
    branch = _token(value, "branch")
    if not branch.startswith(BRANCH_COOKIE) or len(branch) == len(BRANCH_COOKIE):
        raise LocalProtocolError(f"branch {branch!r} must be {BRANCH_COOKIE} plus a unique suffix")
    return branch


class OptionsTemplate:
    """An OPTIONS request with everything checked and rendered once except the two fields that
    change on every probe (branch and CSeq): a binding sends the same bytes around them for as
    long as its flow lasts, so they are checked once, not per request."""

    __slots__ = ("_after_branch", "_after_cseq", "_after_number", "_before_branch")

    def __init__(self, req: OptionsRequest, numbered_call_id: bool = False) -> None:
        """With `numbered_call_id` every request's Call-ID is `req.call_id` plus "-" and its
        CSeq number: RFC 3261 §8.1.1.4 wants a new Call-ID for every request outside a dialog,
        and a server that keys its state on the Call-ID (SIPp does) must not tie a binding to
        the source address of its first request. A random prefix per binding and a number that
        never repeats within it keep each Call-ID unique at no cost per request."""
        uri_host = _host(req.uri_host, "uri_host")
        uri = f"sip:{uri_host}"
        if req.uri_port is not None:
            uri += f":{_port(req.uri_port, 'uri_port')}"
        via_host = _host(req.via_host, "via_host")
        via_port = _port(req.via_port, "via_port")
        call_id = _token(req.call_id, "call_id", _WORD_CHARS | {"@"})
        if call_id.count("@") > 1 or call_id.startswith("@") or call_id.endswith("@"):
            raise LocalProtocolError(f"call_id {call_id!r} must be word[@word]")
        tag = _token(req.from_tag, "from_tag")
        max_forwards = _check_int(req.max_forwards, "max_forwards", 255)
        user_agent = _user_agent(req.user_agent)
        self._before_branch = (
            f"OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {via_host}:{via_port};branch="
        )
        self._after_branch = (
            (";rport" if req.rport else "") + f"\r\nMax-Forwards: {max_forwards}\r\nTo: <{uri}>\r\n"
            f"From: <sip:{FROM_USER}@{via_host}>;tag={tag}\r\nCall-ID: {call_id}"
        )
        agent_line = f"User-Agent: {user_agent}\r\n" if user_agent else ""
        self._after_cseq = f" OPTIONS\r\n{agent_line}Content-Length: 0\r\n\r\n"
        if numbered_call_id:
            self._after_number = "\r\nCSeq: "
        else:
            self._after_branch += "\r\nCSeq: "
            self._after_number = ""

    def render(self, branch: str, cseq: int) -> bytes:
        # RFC 3261 §8.1.1.5: a CSeq is a 32-bit unsigned integer (below 2**31 when it starts).
        # The engine's own values pass the first two tests; anything else gets the full checks
        # (and their errors), which would otherwise run for every request.
        if type(cseq) is not int or not 0 <= cseq <= CSEQ_MAX:
            _check_int(cseq, "cseq", CSEQ_MAX)
        if not (branch.isascii() and branch.isalnum() and branch.startswith(BRANCH_COOKIE)) or len(
            branch
        ) == len(BRANCH_COOKIE):
            _branch(branch)
        if self._after_number:
            return (
                f"{self._before_branch}{branch}{self._after_branch}-{cseq}"
                f"{self._after_number}{cseq}{self._after_cseq}"
            ).encode("ascii")
        return (
            f"{self._before_branch}{branch}{self._after_branch}{cseq}{self._after_cseq}"
        ).encode("ascii")


def options_template(
    *,
    uri_host: str,
    uri_port: int,
    via_host: str,
    via_port: int,
    call_id: str,
    from_tag: str,
    rport: bool,
    max_forwards: int = 70,
    user_agent: str = "nat-keepalive",
) -> OptionsTemplate:
    """The agent's one way to make its OPTIONS (the engine's keepalives and checks, discovery's
    trials, the one-shot probe): the Request-URI without the default port 5060, and a Call-ID
    of `call_id`, "-" and the CSeq number; `render(branch, cseq)` gives each request."""
    return OptionsTemplate(
        OptionsRequest(
            uri_host=uri_host,
            uri_port=None if uri_port == 5060 else uri_port,
            via_host=via_host,
            via_port=via_port,
            branch=BRANCH_PLACEHOLDER,
            call_id=call_id,
            from_tag=from_tag,
            cseq=0,
            rport=rport,
            max_forwards=max_forwards,
            user_agent=user_agent,
        ),
        numbered_call_id=True,
    )


def build_options(req: OptionsRequest) -> bytes:
    """The OPTIONS datagram for `req`, CRLF line ends, no body."""
    return OptionsTemplate(req).render(req.branch, req.cseq)
