"""The SIP codec: sans-I/O building of OPTIONS and parsing of what comes back, and targets
(natkeepalive.sip.target: TARGET syntax and the host:port text)."""

from __future__ import annotations

from natkeepalive.sip.message import (
    HEADER_NAMES,
    MAX_HEADER_LINES,
    MAX_MESSAGE_BYTES,
    MAX_VIAS,
    Request,
    Response,
    Via,
    canonical_name,
    parse_message,
    parse_response,
    parse_via,
)
from natkeepalive.sip.request import BRANCH_COOKIE, OptionsRequest, build_options, options_template
from natkeepalive.sip.target import Target, bracket, format_hostport, parse_target

__all__ = [
    "BRANCH_COOKIE",
    "HEADER_NAMES",
    "MAX_HEADER_LINES",
    "MAX_MESSAGE_BYTES",
    "MAX_VIAS",
    "OptionsRequest",
    "Request",
    "Response",
    "Target",
    "Via",
    "bracket",
    "build_options",
    "canonical_name",
    "format_hostport",
    "options_template",
    "parse_message",
    "parse_response",
    "parse_target",
    "parse_via",
]
