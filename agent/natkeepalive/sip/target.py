"""Targets, in one leaf module: the Target record, TARGET syntax (`host[:port]`,
`[v6addr]:port`, a bare IPv6 address, or `sip:host[:port]`), and the one way the agent writes a
host with a port (`format_hostport`) or in a URI (`bracket`). It imports nothing of the package
but errors and record, so the codec, the configuration and the engine all import it and it
imports none of them.

UDP only: `sips:` and `transport=` other than udp are refused rather than silently ignored.
"""

from __future__ import annotations

from natkeepalive.errors import TargetError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from dataclasses import dataclass
else:
    from natkeepalive.record import dataclass

DEFAULT_PORT = 5060
STUN_PORT = 3478  # RFC 8489 §9
_OTHER_SCHEMES = frozenset(
    (
        "tel",
        "http",
        "https",
        "mailto",
        "urn",
        "im",
        "pres",
        "xmpp",
        "h323",
        "fax",
        "modem",
        "ws",
        "wss",
        "udp",
        "tcp",
        "tls",
    )
)
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})"
_patterns: tuple[re.Pattern[str], re.Pattern[str]] | None = None


def _regexes() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(host name, IPv6) patterns, compiled on first use: the daemon only formats targets and
    never imports `re` (docs/performance.md)."""
    global _patterns
    if _patterns is None:
        import re

        _patterns = (
            re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$"),
            re.compile(r"^[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?$"),
        )
    return _patterns


def bracket(host: str) -> str:
    """The host as a URI, a Via or `host:port` writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def format_hostport(host: str, port: int) -> str:
    """`host:port`, with brackets around an IPv6 address."""
    return f"{bracket(host)}:{port}"


@dataclass(frozen=True)
class Target:
    """Where OPTIONS go: a host name or address and a UDP port."""

    host: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        return format_hostport(self.host, self.port)


def _port(text: str, original: str) -> int:
    if not text.isdigit():
        raise TargetError(f"bad port {text!r} in target {original!r}")
    port = int(text)
    if not 1 <= port <= 65535:
        raise TargetError(f"port {port} out of range 1-65535 in target {original!r}")
    return port


def parse_target(text: str) -> Target:
    original = text
    text = text.strip()
    if not text:
        raise TargetError("empty target")
    lowered = text.lower()
    if lowered.startswith("sips:"):
        raise TargetError(f"sips: (TLS) is not supported, UDP only: {original!r}")
    if lowered.startswith("sip:"):
        text = text[4:]
        text, _, params = text.partition(";")
        for param in params.split(";") if params else ():
            name, _, value = param.partition("=")
            if name.strip().lower() == "transport" and value.strip().lower() != "udp":
                raise TargetError(f"only UDP is supported, not transport={value}: {original!r}")
        if "@" in text:
            text = text.rpartition("@")[2]
    else:
        scheme, colon, rest = lowered.partition(":")
        # `tel:+123` or `http://x` is a URI of another kind, not a host and a bad port
        if (
            colon
            and scheme.isalpha()
            and text.count(":") == 1
            and (scheme in _OTHER_SCHEMES or rest.startswith(("+", "/")))
        ):
            raise TargetError(
                f"unsupported scheme {scheme + ':'!r} in target {original!r}: "
                "use host[:port], [v6addr]:port or sip:host[:port]"
            )
    port = DEFAULT_PORT
    hostname, v6 = _regexes()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise TargetError(f"missing ']' in target {original!r}")
        if rest:
            if not rest.startswith(":"):
                raise TargetError(f"unexpected {rest!r} after ']' in target {original!r}")
            port = _port(rest[1:], original)
        if ":" not in host or not v6.match(host):
            raise TargetError(f"bad IPv6 address {host!r} in target {original!r}")
        return Target(host, port)
    if text.count(":") > 1:  # a bare IPv6 address: no port possible without brackets
        if not v6.match(text):
            raise TargetError(f"bad IPv6 address in target {original!r}")
        return Target(text, port)
    host, sep, port_text = text.partition(":")
    if sep:
        port = _port(port_text, original)
    if not hostname.match(host):
        raise TargetError(f"bad host name {host!r} in target {original!r}")
    return Target(host.rstrip(".") or host, port)


def parse_stun_server(text: str) -> Target:
    """stun_server's host[:port], [v6addr]:port or stun:host[:port] (RFC 7064); port 3478 when
    omitted (RFC 8489 §9). Raises TargetError."""
    text = text.strip()
    if text.lower().startswith("stun:"):
        text = text[5:]
    if text.lower().startswith(("sip:", "sips:")):
        raise TargetError(f"a STUN server is host[:port], not a SIP URI: {text!r}")
    target = parse_target(text)
    # parse_target's default port is SIP's: an explicit one is the text's last ":N"
    explicit = text.endswith(f":{target.port}") and (text.count(":") == 1 or text.startswith("["))
    return target if explicit else Target(target.host, STUN_PORT)
