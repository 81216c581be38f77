"""tests/support/responder.SipResponder, mode by mode, driven by a plain UDP socket client."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import pytest

from natkeepalive.sip import OptionsRequest, Response, build_options, parse_response
from tests.support.responder import SipResponder
from tests.support.tools import unavailable

LOCAL = "127.0.0.1"


@pytest.fixture
def server() -> Iterator[SipResponder]:
    with SipResponder() as responder:
        yield responder
        assert responder.errors == []


@pytest.fixture
def client() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOCAL, 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def options(
    via_host: str,
    via_port: int,
    *,
    rport: bool = True,
    branch: str = "z9hG4bKt1",
    call_id: str = "call-1",
    cseq: int = 1,
) -> bytes:
    return build_options(
        OptionsRequest(
            uri_host=LOCAL,
            uri_port=None,
            via_host=via_host,
            via_port=via_port,
            branch=branch,
            call_id=call_id,
            from_tag="ft1",
            cseq=cseq,
            rport=rport,
        )
    )


def port_of(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


def receive(sock: socket.socket) -> tuple[Response, tuple[str, int]]:
    data, source = sock.recvfrom(65535)
    return parse_response(data), source


def nothing_arrives(sock: socket.socket, wait: float = 0.3) -> bool:
    readable, _, _ = select.select([sock], [], [], wait)
    return not readable


def test_rport_same_address(server: SipResponder, client: socket.socket) -> None:
    client.sendto(options(LOCAL, port_of(client)), server.address)
    response, source = receive(client)
    assert source == server.address
    assert (response.status, response.reason) == (200, "OK")
    via = response.top_via
    assert (via.host, via.port, via.branch) == (LOCAL, port_of(client), "z9hG4bKt1")
    assert via.rport == port_of(client)
    assert not via.has_param("received")  # Kamailio: only when the source differs
    assert response.call_id == "call-1"
    assert (response.cseq, response.cseq_method) == (1, "OPTIONS")
    assert response.header("from") == f"<sip:nk@{LOCAL}>;tag=ft1"
    assert response.header("to") == f"<sip:{LOCAL}>;tag=resp1"
    assert response.header("content-length") == "0"
    assert len(server.requests) == 1
    source_addr, request, at = server.requests[0]
    assert source_addr == (LOCAL, port_of(client))
    assert request.method == "OPTIONS"
    assert at <= time.monotonic()


def test_rport_behind_nat_adds_received(server: SipResponder, client: socket.socket) -> None:
    # The sent-by is a private address the "NAT" rewrote: received and rport show the public side.
    client.sendto(options("192.168.77.2", 5062), server.address)
    response, _ = receive(client)
    via = response.top_via
    assert (via.host, via.port) == ("192.168.77.2", 5062)
    assert via.params == (
        ("branch", "z9hG4bKt1"),
        ("rport", str(port_of(client))),
        ("received", LOCAL),
    )
    assert via.received == LOCAL


def test_no_rport_answers_to_the_sent_by_port(server: SipResponder, client: socket.socket) -> None:
    # The inbound liveness check: sent from `client`, answered into the binding's socket.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as binding:
        binding.bind((LOCAL, 0))
        binding.settimeout(5)
        client.sendto(options(LOCAL, port_of(binding), rport=False), server.address)
        response, source = receive(binding)
        assert source == server.address
        assert not response.top_via.has_param("rport")
        assert response.top_via.port == port_of(binding)
        assert nothing_arrives(client)


def test_force_rport_answers_to_the_source(server: SipResponder, client: socket.socket) -> None:
    server.force_rport = True
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as binding:
        binding.bind((LOCAL, 0))
        client.sendto(options(LOCAL, port_of(binding), rport=False), server.address)
        response, _ = receive(client)
        assert response.top_via.rport == port_of(client)
        assert nothing_arrives(binding, 0.1)


def test_ignore_rport_echoes_the_via(server: SipResponder, client: socket.socket) -> None:
    server.ignore_rport = True
    client.sendto(options("192.168.77.2", 5062), server.address)
    response, _ = receive(client)
    assert str(response.top_via) == "SIP/2.0/UDP 192.168.77.2:5062;branch=z9hG4bKt1;rport"
    assert response.top_via.rport is None
    assert response.top_via.received is None


def test_overrides_simulate_a_rebinding(server: SipResponder, client: socket.socket) -> None:
    server.configure(received="203.0.113.7", rport=40000)
    client.sendto(options(LOCAL, port_of(client)), server.address)
    response, _ = receive(client)  # still sent to the real source
    assert response.top_via.received == "203.0.113.7"
    assert response.top_via.rport == 40000
    server.configure(received=None, rport=None)
    client.sendto(options(LOCAL, port_of(client), cseq=2), server.address)
    response, _ = receive(client)
    assert response.top_via.received is None
    assert response.top_via.rport == port_of(client)


def test_silent(server: SipResponder, client: socket.socket) -> None:
    server.silent = True
    client.sendto(options(LOCAL, port_of(client)), server.address)
    assert server.wait_for_requests(1, timeout=5)
    assert nothing_arrives(client)
    assert server.sent == []


def test_delay_does_not_block_other_requests(server: SipResponder, client: socket.socket) -> None:
    server.delay = 0.5
    started = time.monotonic()
    client.sendto(options(LOCAL, port_of(client), call_id="slow"), server.address)
    assert server.wait_for_requests(1)
    server.delay = 0.0
    client.sendto(options(LOCAL, port_of(client), call_id="fast"), server.address)
    first, _ = receive(client)
    second, _ = receive(client)
    assert (first.call_id, second.call_id) == ("fast", "slow")
    assert time.monotonic() - started >= 0.5


def test_status_and_reason(server: SipResponder, client: socket.socket) -> None:
    server.configure(status=404, reason="Not Found")
    client.sendto(options(LOCAL, port_of(client)), server.address)
    response, _ = receive(client)
    assert (response.status, response.reason) == (404, "Not Found")


def test_reply_from_other_port(server: SipResponder, client: socket.socket) -> None:
    server.reply_from_other_port = True
    client.sendto(options(LOCAL, port_of(client)), server.address)
    response, source = receive(client)
    assert source == server.other_address != server.address
    assert response.status == 200
    assert server.wait_for_sent(1)  # recorded just after sendto: the client may be faster
    assert server.sent[0][2] == server.other_address[1]


def test_wrong_branch_and_call_id(server: SipResponder, client: socket.socket) -> None:
    server.configure(wrong_branch=True, wrong_call_id=True)
    client.sendto(options(LOCAL, port_of(client)), server.address)
    response, _ = receive(client)
    assert response.top_via.branch == "z9hG4bKt1-wrong"
    assert response.call_id == "wrong-call-1"
    assert response.top_via.rport == port_of(client)


def test_provisional_first(server: SipResponder, client: socket.socket) -> None:
    server.configure(provisional_first=True, delay=0.2)
    client.sendto(options(LOCAL, port_of(client)), server.address)
    trying, _ = receive(client)
    final, _ = receive(client)
    assert (trying.status, trying.reason) == (100, "Trying")
    assert trying.header("to") == f"<sip:{LOCAL}>"
    assert final.status == 200
    assert trying.top_via == final.top_via


def test_extra_headers(client: socket.socket) -> None:
    with SipResponder(extra_headers=["Flow-Timer: 25", "Server: test"]) as server:
        client.sendto(options(LOCAL, port_of(client)), server.address)
        response, _ = receive(client)
    assert response.flow_timer == 25
    assert response.header("server") == "test"


def test_other_methods_and_ack(server: SipResponder, client: socket.socket) -> None:
    request = options(LOCAL, port_of(client)).replace(b"OPTIONS", b"INFO")
    client.sendto(request, server.address)
    response, _ = receive(client)
    assert (response.status, response.cseq_method) == (501, "INFO")
    client.sendto(request.replace(b"INFO", b"ACK"), server.address)
    assert server.wait_for_requests(2)
    assert nothing_arrives(client)


def test_garbage_is_recorded_and_survived(server: SipResponder, client: socket.socket) -> None:
    client.sendto(b"\x00garbage", server.address)
    client.sendto(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n",
        server.address,
    )
    client.sendto(options(LOCAL, port_of(client)), server.address)
    response, _ = receive(client)
    assert response.status == 200
    assert [reason for _, _, reason in server.garbage] == [
        "bad request line '\\x00garbage'",
        "a response, not a request",
    ]


def test_wait_for_requests_times_out(server: SipResponder) -> None:
    started = time.monotonic()
    assert not server.wait_for_requests(1, timeout=0.1)
    assert time.monotonic() - started < 2


def test_configure_refuses_unknown_names(server: SipResponder) -> None:
    with pytest.raises(AttributeError):
        server.configure(silnet=True)


def test_stops_promptly_and_closes_sockets(client: socket.socket) -> None:
    server = SipResponder().start()
    server.delay = 30.0
    client.sendto(options(LOCAL, port_of(client)), server.address)
    assert server.wait_for_requests(1)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0
    assert server.closed
    assert server.sent == []  # the delayed answer was dropped, not sent late


def test_ipv6() -> None:
    try:
        server = SipResponder("::1")
    except OSError:
        unavailable("no IPv6 loopback here")
    with server, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.bind(("::1", 0))
        sock.settimeout(5)
        sock.sendto(options("2001:db8::2", 5062), server.address)
        response, source = receive(sock)
        assert source[:2] == server.address
        via = response.top_via
        assert (via.host, via.received, via.rport) == ("2001:db8::2", "::1", port_of(sock))
        assert server.errors == []
