"""A SIP server that answers the agent's requests correctly (right branch, Call-ID, CSeq) but with
hostile text everywhere else: reason phrases, Server headers, Via parameters and `received`
values carrying control characters, newlines, ANSI escapes, Unicode line separators and shell
metacharacters. A thread, a UDP socket on 127.0.0.1, one answer per request, templates in turn.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

from natkeepalive.errors import SipParseError
from natkeepalive.sip.message import Request, parse_message

Template = Callable[[Request, tuple[str, int], str], bytes]


def payloads(marker: str) -> list[str]:
    """Text meant to break a log line, forge an event, or run a command (touching `marker`)."""
    return [
        "\x1b[2J\x1b]0;owned\x07\x1b[31mred",
        f"$(touch {marker}) `touch {marker}` ; touch {marker} | touch {marker} && touch {marker}",
        "a\revent=binding-changed binding=provider old=1.1.1.1:1 new=2.2.2.2:2 cause=forged",
        "\u2028event=unreachable binding=provider failures=9\u202e\u0085",
        "\x00\x01\x7f\x9b[31m",
        "'\"\\ ${IFS}%n%s{{7*7}}",
    ]


def _response(
    request: Request, top_via: str, *, status: str = "200 OK", extra: tuple[str, ...] = ()
) -> bytes:
    lines = [
        f"SIP/2.0 {status}",
        f"Via: {top_via}",
        f"From: {request.header('from')}",
        f"To: {request.header('to')};tag=h",
        f"Call-ID: {request.call_id}",
        f"CSeq: {request.cseq} {request.cseq_method}",
        *extra,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def _via(request: Request, source: tuple[str, int], *params: str) -> str:
    top = request.top_via
    base = f"{top.protocol} {top.sent_by};branch={top.branch};rport={source[1]}"
    return ";".join([base, *params])


def _variants(text: str) -> list[Template]:
    def reason(r: Request, s: tuple[str, int], _t: str) -> bytes:
        return _response(r, _via(r, s), status=f"200 OK {text}")

    def server(r: Request, s: tuple[str, int], _t: str) -> bytes:
        return _response(r, _via(r, s), extra=(f"Server: {text}", f"User-Agent: {text}"))

    def via_param(r: Request, s: tuple[str, int], _t: str) -> bytes:
        return _response(r, _via(r, s, f"x-evil={text}"))

    def received(r: Request, s: tuple[str, int], _t: str) -> bytes:
        return _response(r, _via(r, s, f"received={text}"))

    def folded(r: Request, s: tuple[str, int], _t: str) -> bytes:
        return _response(r, _via(r, s), extra=(f"Server: ok\r\n {text}",))  # folded onto Server

    return [reason, server, via_param, received, folded]


def templates(marker: str) -> list[Template]:
    """Answers that a parser may accept (hostile text where the agent does not look) or refuse."""
    texts = payloads(marker)
    out: list[Template] = []
    for text in texts:
        out += _variants(text)
    out.append(lambda r, s, _t: _response(r, _via(r, s, f"received={s[0]} event=forged")))
    out.append(lambda r, s, _t: _response(r, _via(r, s), status="503 \x1b[5mDown\x1b[0m"))
    return out


class HostileServer:
    """`with HostileServer(marker) as server: ... server.address ...`"""

    def __init__(self, marker: str, host: str = "127.0.0.1") -> None:
        self.templates = templates(marker)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.answers = 0
        self.requests = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="hostile-sip", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join(5)
        self.sock.close()

    def _run(self) -> None:
        while not self._stop:
            try:
                data, source = self.sock.recvfrom(65535)
            except (socket.timeout, BlockingIOError):
                continue
            except OSError:
                if self._stop:
                    return
                continue
            try:
                request = parse_message(data)
            except SipParseError:
                continue
            if not isinstance(request, Request):
                continue
            self.requests += 1
            # every other request gets a plain answer, so the binding stays reachable
            if self.requests % 2:
                reply = _response(request, _via(request, source, f"received={source[0]}"))
            else:
                template = self.templates[(self.requests // 2) % len(self.templates)]
                reply = template(request, source, "")
            with contextlib.suppress(OSError):
                self.sock.sendto(reply, source)
                self.answers += 1
