"""Command line: `nat-keepalive run|probe|check|status|discover|collectd|responder` (cli/main.py
sends `run` through cli/run.py, which calls prepare_run here in a child).

Exit codes, the same for every subcommand: 0 success; 1 the checked thing failed (unreachable
target, no status file, a local port already in use, the agent stopped on an error); 2 usage or
configuration error (bad option, bad file, bad target); 3 `status`: the agent is not running
(the status file is left from a process that is gone); 130 interrupted (Ctrl-C). Every error is
one line on stderr, `nat-keepalive: ...` (argparse's own: `nat-keepalive ...: error: ...`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from natkeepalive import __version__
from natkeepalive.cli import EXIT_FAILED, EXIT_NOT_RUNNING, EXIT_OK, EXIT_USAGE
from natkeepalive.errors import ConfigError, PortInUseError, SocketSetupError, TargetError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from natkeepalive.config.model import Config

EXIT_CODES = (
    "exit codes: 0 success; 1 the checked thing failed (unreachable target, no status file, a "
    "local port already in use); 2 usage or configuration error; 3 (status) the agent is not "
    "running; 130 interrupted"
)
CONFIG_HELP = (
    "configuration file (default: $NAT_KEEPALIVE_CONFIG, else /etc/nat-keepalive/config.yaml)"
)
TARGET_HELP = "SIP server: host[:port], [v6addr]:port or sip:host[:port] (UDP, port 5060)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("epilog", EXIT_CODES)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(
            EXIT_USAGE,
            f"{self.prog}: error: {message}\nTry '{self.prog} --help' for more information.\n",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nat-keepalive",
        description="Keeps NAT UDP bindings alive with SIP OPTIONS and reports when "
        "they change or expire.",
    )
    parser.add_argument("--version", action="version", version=f"nat-keepalive {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    run = sub.add_parser(
        "run",
        help="run the agent in the foreground",
        description="Run the agent in the foreground until SIGTERM or SIGINT; "
        "SIGHUP reloads the file, SIGUSR1 writes the status file, "
        "SIGUSR2 probes every binding now.",
    )
    run.add_argument("-c", "--config", metavar="FILE", help=CONFIG_HELP)
    run.add_argument(
        "--log",
        choices=("syslog", "stderr"),
        help="where log lines go (default: the file's log.target, else syslog)",
    )
    run.add_argument(
        "--status-file",
        metavar="PATH",
        help="status file to write (default: the file's status_file, else "
        "/run/nat-keepalive/status.json)",
    )

    probe = sub.add_parser(
        "probe",
        help="send one OPTIONS and report the answer",
        description="Send one OPTIONS to TARGET and report the answer and "
        "the public address the server saw.",
    )
    probe.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    probe.add_argument(
        "--source-port",
        type=_port,
        default=0,
        metavar="N",
        help="local UDP port to send from (default: 0, an ephemeral port)",
    )
    where = probe.add_mutually_exclusive_group()
    where.add_argument(
        "--bind", metavar="ADDR", help="local address to send from (default: the system's choice)"
    )
    where.add_argument(
        "--interface",
        metavar="IFACE",
        help="send from this interface's address (default: the system's choice)",
    )
    probe.add_argument(
        "--timeout",
        type=_positive,
        default=3.0,
        metavar="S",
        help="seconds to wait for a final answer (default: 3)",
    )
    probe.add_argument(
        "--max-forwards",
        type=_max_forwards,
        default=70,
        metavar="N",
        help="Max-Forwards header, 0-255 (default: 70)",
    )
    probe.add_argument(
        "--inbound-check",
        action="store_true",
        help="also check that the NAT lets the server's requests in, and which "
        "check methods (sent-by, relay, stun) this server supports",
    )
    probe.add_argument(
        "--stun-server",
        metavar="HOST[:PORT]",
        help="with --inbound-check: an RFC 5780 STUN server to try the stun "
        "method with (port 3478 if omitted)",
    )
    probe.add_argument("--json", action="store_true", help="print the result as one JSON object")

    disc = sub.add_parser(
        "discover",
        help="measure how long the NAT keeps an idle binding",
        description="Measure how long the NAT keeps an idle UDP binding, and "
        "recommend an interval. Progress goes to stderr, the "
        "result to stdout.",
    )
    disc.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    disc.add_argument(
        "--source-port",
        type=_port,
        default=0,
        metavar="N",
        help="first local port; trial k uses N+k (default: ephemeral ports)",
    )
    disc.add_argument(
        "--bind", metavar="ADDR", help="local address to send from (default: the system's choice)"
    )
    disc.add_argument(
        "--stun-server",
        metavar="HOST[:PORT]",
        help="an RFC 5780 STUN server (or `nat-keepalive responder`): measures "
        "behind a port-preserving NAT when the server forces rport (port "
        "3478 if omitted)",
    )
    disc.add_argument(
        "--max-idle",
        type=_positive,
        default=600.0,
        metavar="S",
        help="longest idle time tried, seconds (default: 600)",
    )
    disc.add_argument(
        "--resolution",
        type=_positive,
        default=0.1,
        metavar="R",
        help="bracket width: a fraction (<1) of the lifetime, at least 1 s, "
        "or seconds (>=1) (default: 0.1)",
    )
    disc.add_argument(
        "--start",
        type=_positive,
        default=5.0,
        metavar="S",
        help="first idle time tried, seconds (default: 5)",
    )
    disc.add_argument(
        "--timeout",
        type=_positive,
        default=3.0,
        metavar="S",
        help="seconds to wait for each answer (default: 3)",
    )
    disc.add_argument("--json", action="store_true", help="print the result as one JSON object")

    check = sub.add_parser(
        "check",
        help="validate a configuration file",
        description="Validate a configuration file, including what `run` "
        "needs from this host (the user, the hook command).",
    )
    check.add_argument("-c", "--config", metavar="FILE", help=CONFIG_HELP)
    check.add_argument(
        "--example", action="store_true", help="print the commented example configuration and exit"
    )

    status = sub.add_parser(
        "status",
        help="show the running agent's status",
        description="Show the running agent's status file as a table.",
    )
    status.add_argument(
        "--status-file",
        metavar="PATH",
        help="status file to read (default: the configuration's status_file, "
        "else /run/nat-keepalive/status.json)",
    )
    status.add_argument("--json", action="store_true", help="print the status file's JSON")

    collectd = sub.add_parser("collectd", help="print PUTVAL lines for collectd's exec plugin")
    collectd.add_argument(
        "--status-file",
        metavar="PATH",
        help="status file to read (default: the configuration's status_file, "
        "else /run/nat-keepalive/status.json)",
    )
    collectd.add_argument("--once", action="store_true", help="one set of values, then exit")

    add_responder_parser(sub)
    return parser


def add_responder_parser(sub: Any) -> None:
    responder = sub.add_parser(
        "responder",
        help="answer binding checks for agents (run on a public host)",
        description="Answer STUN Binding requests (honouring RESPONSE-PORT) and SIP OPTIONS "
        "(to the Via sent-by port when there is no rport), only ever to the "
        "request's source address, rate-limited per source. See docs/responder.md.",
    )
    responder.add_argument(
        "--listen",
        action="append",
        required=True,
        type=_listen,
        metavar="ADDR[:PORT]",
        help="address and UDP port to answer on (default port 3478); repeat for more",
    )
    responder.add_argument(
        "--rate",
        type=_positive,
        default=5.0,
        metavar="N",
        help="answers per second per source address (default: 5)",
    )
    responder.add_argument(
        "--burst",
        type=_positive,
        default=10.0,
        metavar="N",
        help="answers a source may get at once (default: 10)",
    )
    responder.add_argument(
        "--total-rate",
        type=_positive,
        default=500.0,
        metavar="N",
        help="answers per second for all sources together (default: 500)",
    )
    responder.add_argument(
        "--max-sources",
        type=int,
        default=4096,
        metavar="N",
        help="source addresses remembered for the rate limit (default: 4096)",
    )
    responder.add_argument(
        "--stats-interval",
        type=_positive,
        default=3600.0,
        metavar="S",
        help="seconds between statistics lines on stderr (default: 3600)",
    )


def _listen(text: str) -> tuple[str, int]:
    from natkeepalive.responder.loop import parse_listen

    try:
        return parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
    return int(text)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0: {text!r}")
    return value


def _max_forwards(text: str) -> int:
    if not text.isdigit() or int(text) > 255:
        raise argparse.ArgumentTypeError(f"must be 0-255: {text!r}")
    return int(text)


def _fail(message: str, code: int) -> int:
    from natkeepalive.runtime.logsink import write_fatal

    write_fatal(message)
    return code


def prepare_run(argv: Sequence[str]) -> tuple[str | None, str | None, Config]:
    """`run`'s options and its configuration, checked; exits like main() when they are bad."""
    from natkeepalive.config import config_path, load_config

    args = build_parser().parse_args(list(argv))
    try:
        config = load_config(config_path(args.config, os.environ))
    except ConfigError as exc:
        raise SystemExit(_fail(str(exc), EXIT_USAGE)) from None
    return args.log, args.status_file, config


def cmd_run(args: argparse.Namespace) -> int:
    """In-process `run`, for when fork() is impossible (cli/run.py)."""
    from natkeepalive.cli.start import start_daemon
    from natkeepalive.config import config_path, load_config

    config = load_config(config_path(args.config, os.environ))
    return start_daemon(config, args.log, args.status_file)


def example_config() -> str:
    """The commented example configuration shipped inside the package."""
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config")
    with open(os.path.join(folder, "example.yaml"), encoding="utf-8") as handle:
        return handle.read()


def cmd_check(args: argparse.Namespace) -> int:
    from natkeepalive.config import config_path, load_config

    if args.example:
        if args.config is not None:
            return _fail("check: --example and -c cannot be used together", EXIT_USAGE)
        try:
            sys.stdout.write(example_config())
        except OSError as exc:
            return _fail(f"cannot read the example configuration: {exc}", EXIT_FAILED)
        return EXIT_OK
    path = config_path(args.config, os.environ)
    config = load_config(path)
    names = ", ".join(b.name for b in config.bindings)
    sys.stdout.write(f"{path}: OK, {len(config.bindings)} binding(s): {names}\n")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from natkeepalive.config.model import DEFAULT_STATUS_FILE
    from natkeepalive.oneshot.status import read_status, render_table

    path = args.status_file or _configured_status_file() or DEFAULT_STATUS_FILE
    try:
        data = read_status(path)
    except FileNotFoundError:
        return _fail(f"no status file at {path} (is the agent running?)", EXIT_FAILED)
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read status file {path}: {exc}", EXIT_FAILED)
    gone = _not_running(data)
    if gone is not None:
        if args.json:
            sys.stdout.write(json.dumps({**data, "running": False}, indent=2) + "\n")
        return _fail(
            f"the agent is not running ({gone}; {path} is left from it, last "
            f"updated {data.get('updated_at') or 'at an unknown time'})",
            EXIT_NOT_RUNNING,
        )
    if args.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(render_table(data) + "\n")
    return EXIT_OK


def _not_running(data: dict[str, Any]) -> str | None:
    """Why the status file's writer is known to be gone, or None while it may run."""
    if data.get("stopped_at"):
        reason = data.get("stop_reason")
        return f"it stopped at {data['stopped_at']}" + (f" ({reason})" if reason else "")
    pid = data.get("pid")
    if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"process {pid} is gone"
        except OSError:  # EPERM: it exists, under another user
            return None
    return None


def _configured_status_file() -> str | None:
    from natkeepalive.config import config_path, load_config

    try:
        return load_config(config_path(None, os.environ)).status_file
    except ConfigError:
        return None


def cmd_probe(args: argparse.Namespace) -> int:
    from natkeepalive.cli.probe import run_probe

    return run_probe(args)


def cmd_discover(args: argparse.Namespace) -> int:
    from natkeepalive.cli.discover import run_discover

    return run_discover(args)


def cmd_collectd(args: argparse.Namespace) -> int:
    from natkeepalive.cli.collectd import run_collectd
    from natkeepalive.config.model import DEFAULT_STATUS_FILE

    args.status_file = args.status_file or _configured_status_file() or DEFAULT_STATUS_FILE
    return run_collectd(args)


def cmd_responder(args: argparse.Namespace) -> int:
    from natkeepalive.responder.core import ResponderCore
    from natkeepalive.responder.loop import run

    if args.burst < 1 or args.max_sources < 1:
        return _fail(
            "nat-keepalive responder: --burst and --max-sources must be at least 1", EXIT_USAGE
        )
    core = ResponderCore(
        rate=args.rate, burst=args.burst, total_rate=args.total_rate, max_sources=args.max_sources
    )
    return run(args.listen, core, args.stats_interval)


COMMANDS = {
    "run": cmd_run,
    "check": cmd_check,
    "status": cmd_status,
    "probe": cmd_probe,
    "discover": cmd_discover,
    "collectd": cmd_collectd,
    "responder": cmd_responder,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments:  # nothing asked: say what can be
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(arguments)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except TargetError as exc:
        return _fail(f"bad target: {exc}", EXIT_USAGE)
    except SocketSetupError as exc:
        return _fail(str(exc), socket_exit_code(exc))
    except KeyboardInterrupt:
        return 130


def socket_exit_code(exc: SocketSetupError) -> int:
    """A local port in use is exit 1 from every subcommand (as from `run`: it may be free
    later); any other address that cannot be bound is the caller's mistake, 2."""
    return EXIT_FAILED if isinstance(exc, PortInUseError) else EXIT_USAGE
