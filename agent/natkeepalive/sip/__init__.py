"""The SIP codec: sans-I/O building of OPTIONS and parsing of what comes back.

TARGET syntax lives in natkeepalive.sip.target and is not re-exported here: it imports the
config package, which imports it back.
"""

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

__all__ = [
    "BRANCH_COOKIE",
    "HEADER_NAMES",
    "MAX_HEADER_LINES",
    "MAX_MESSAGE_BYTES",
    "MAX_VIAS",
    "OptionsRequest",
    "Request",
    "Response",
    "Via",
    "build_options",
    "canonical_name",
    "options_template",
    "parse_message",
    "parse_response",
    "parse_via",
]
