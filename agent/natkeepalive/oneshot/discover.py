"""`discover` over real sockets: each trial on a fresh local port, one trial at a time."""

from __future__ import annotations

import selectors
import time
from contextlib import closing
from typing import Callable

from natkeepalive.core.discovery import TRIAL, Discovery, Trial
from natkeepalive.core.engine import AUX, Address
from natkeepalive.core.lifetime import SearchResult
from natkeepalive.cstdlib import socket  # the class of runtime/sockets.py's open_udp()
from natkeepalive.netinfo import source_address_for
from natkeepalive.runtime.sockets import family_of, open_udp, send_datagram, wildcard

Progress = Callable[[Trial, float], None]


def _local(sock: socket.socket, server: Address) -> Address:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = source_address_for(server[0], server[1], family_of(server[0])) or host
    return str(host), int(port)


def run_trial(
    trial: Trial,
    sock: socket.socket,
    aux: socket.socket,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Drive one trial to its end (bounded: every phase has a deadline)."""
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ, TRIAL)
        selector.register(aux, selectors.EVENT_READ, AUX)
        while trial.result is None:
            for datagram in trial.datagrams_to_send():
                # an error is like a lost datagram: the transaction times out
                send_datagram(
                    aux if datagram.channel == AUX else sock, datagram.payload, datagram.destination
                )
            deadline = trial.next_deadline()
            if deadline is None:
                break
            for key, _ in selector.select(max(0.0, deadline - clock())):
                reader: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data, source = reader.recvfrom(65535)
                except OSError:
                    continue
                trial.receive_datagram(data, (source[0], source[1]), clock(), str(key.data))
            trial.handle_timer(clock())


def discover(
    discovery: Discovery,
    source_port: int = 0,
    bind: str | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SearchResult:
    """Run the whole search. With source_port N, trial k uses port N+k (each a fresh binding)."""
    family = family_of(discovery.server[0])
    with closing(open_udp(wildcard(family), 0, "discover")) as aux:
        index = 0
        while True:
            port = 0 if source_port == 0 else source_port + index
            with closing(open_udp(bind or wildcard(family), port, "discover")) as sock:
                started = clock()
                trial = discovery.start_trial(_local(sock, discovery.server), started)
                if trial is None:
                    break
                run_trial(trial, sock, aux, clock)
                discovery.trial_done(trial)
                if progress is not None:
                    progress(trial, clock() - started)
            index += 1
    return discovery.result()
