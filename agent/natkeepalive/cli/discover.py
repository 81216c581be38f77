"""`nat-keepalive discover TARGET`: measure how long the NAT keeps an idle UDP binding."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from natkeepalive.config.model import ProbeSettings
from natkeepalive.core.discovery import Discovery, Trial
from natkeepalive.core.lifetime import recommended_interval
from natkeepalive.errors import SocketSetupError
from natkeepalive.oneshot.discover import discover
from natkeepalive.runtime.sockets import family_of, is_ip_literal, resolve
from natkeepalive.sip.target import format_hostport, parse_target

PORT_SPAN = 64  # trial k uses source_port + k; no configured binding may sit in that range


def _configured_ports() -> dict[int, str]:
    from natkeepalive.config import config_path, load_config
    from natkeepalive.errors import ConfigError

    try:
        config = load_config(config_path(None, os.environ))
    except ConfigError:
        return {}
    return {b.source_port: b.name for b in config.bindings}


class _NoNat(Exception):
    """The server saw this host's own address and port: there is no NAT to measure."""

    def __init__(self, local: tuple[str, int]) -> None:
        super().__init__(local)
        self.local = local


def _progress(trial: Trial, took: float) -> None:
    sys.stderr.write(
        f"trial: idle {trial.idle:g} s -> {trial.result} ({trial.method}, {took:.1f} s)\n"
    )
    sys.stderr.flush()
    public = trial.public
    if public is not None and tuple(public) == tuple(trial.local):
        raise _NoNat(trial.local)


def run_discover(args: argparse.Namespace) -> int:
    target = parse_target(args.target)
    if args.source_port:
        taken = _configured_ports()
        for port in range(args.source_port, args.source_port + PORT_SPAN):
            if port in taken:
                sys.stderr.write(
                    f"nat-keepalive: port {port} belongs to binding "
                    f"{taken[port]!r}; discover needs ports of its own\n"
                )
                return 2
    try:
        server = resolve(target.host, target.port)
    except OSError as exc:
        sys.stderr.write(f"nat-keepalive: cannot resolve {target.host}: {exc}\n")
        return 1
    if args.bind:
        if not is_ip_literal(args.bind):
            raise SocketSetupError(f"--bind {args.bind}: not an IPv4 or IPv6 address")
        if family_of(args.bind) != family_of(server[0]):
            raise SocketSetupError(
                f"--bind {args.bind} cannot reach server {server[0]}: "
                "they are of different address families"
            )
    stun_server = None
    if args.stun_server:
        from natkeepalive.core.checks import parse_stun_server
        from natkeepalive.errors import TargetError

        try:
            stun_target = parse_stun_server(args.stun_server)
            stun_server = resolve(stun_target.host, stun_target.port, family_of(server[0]))
        except (TargetError, OSError) as exc:
            sys.stderr.write(f"nat-keepalive: --stun-server {args.stun_server}: {exc}\n")
            return 2 if isinstance(exc, TargetError) else 1
    resolution = args.resolution
    discovery = Discovery(
        server,
        target.host,
        target.port,
        os.urandom,
        stun_server=stun_server,
        max_idle=args.max_idle,
        start=min(args.start, args.max_idle),
        resolution=resolution if resolution < 1 else 0.0,
        resolution_min=1.0 if resolution < 1 else resolution,
        timeout=args.timeout,
    )
    try:
        result = discover(discovery, args.source_port, args.bind, _progress)
    except _NoNat as no_nat:
        local = format_hostport(*no_nat.local)
        if args.json:
            sys.stdout.write(
                json.dumps(
                    {
                        "target": str(target),
                        "server": {"address": server[0], "port": server[1]},
                        "nat": False,
                        "public": local,
                        "lifetime_s": None,
                        "lo_s": None,
                        "hi_s": None,
                        "trials": 1,
                        "method": None,
                        "recommended_interval_s": None,
                        "error": None,
                    }
                )
                + "\n"
            )
        else:
            sys.stdout.write(
                f"no NAT seen: the server saw this host's own address {local}; "
                f"there is no NAT binding to measure or keep alive on this path\n"
            )
        return 0
    defaults = ProbeSettings()
    out: dict[str, Any] = {
        "target": str(target),
        "server": {"address": server[0], "port": server[1]},
        "lifetime_s": result.lifetime_s,
        "lo_s": result.lo_s,
        "hi_s": result.hi_s,
        "trials": result.trials,
        "method": result.method,
        "recommended_interval_s": None,
        "error": discovery.error,
        "nat": True,
    }
    if result.lifetime_s is not None:
        out["recommended_interval_s"] = recommended_interval(
            result.lo_s, defaults.safety, 1.0, args.max_idle
        )
    if args.json:
        sys.stdout.write(json.dumps(out) + "\n")
    elif discovery.error is not None:
        sys.stdout.write(f"cannot measure: {discovery.error}\n")
    elif result.hi_s is None:
        sys.stdout.write(
            f"the binding survived every idle time up to {result.lo_s:g} s "
            f"(--max-idle); lifetime >= {result.lo_s:g} s ({result.method}, "
            f"{result.trials} trials)\n"
        )
    else:
        sys.stdout.write(
            f"lifetime  {result.lo_s:g} s (between {result.lo_s:g} and {result.hi_s:g} s; "
            f"{result.method}, {result.trials} trials)\n"
            f"interval  {out['recommended_interval_s']:g} s recommended "
            f"({defaults.safety:g} x lifetime)\n"
        )
    return 1 if discovery.error is not None or result.lifetime_s is None else 0
