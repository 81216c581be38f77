"""Command line: `nat-keepalive run|probe|check|status|discover|collectd` (cli/main.py sends `run`
through cli/run.py, which calls prepare_run here in a child). Exit 0 success, 1 the checked thing
failed (unreachable target, no status), 2 usage or configuration error with a one-line message."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from natkeepalive import __version__
from natkeepalive.errors import ConfigError, TargetError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from natkeepalive.config.model import Config

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nat-keepalive",
                     description="Keeps NAT UDP bindings alive with SIP OPTIONS.")
    parser.add_argument("--version", action="version", version=f"nat-keepalive {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    run = sub.add_parser("run", help="run the agent in the foreground")
    run.add_argument("-c", "--config", metavar="FILE")
    run.add_argument("--log", choices=("syslog", "stderr"))
    run.add_argument("--status-file", metavar="PATH")

    probe = sub.add_parser("probe", help="send one OPTIONS and report the answer")
    probe.add_argument("target", metavar="TARGET")
    probe.add_argument("--source-port", type=_port, default=0, metavar="N")
    where = probe.add_mutually_exclusive_group()
    where.add_argument("--bind", metavar="ADDR")
    where.add_argument("--interface", metavar="IFACE")
    probe.add_argument("--timeout", type=_positive, default=3.0, metavar="S")
    probe.add_argument("--max-forwards", type=_max_forwards, default=70, metavar="N")
    probe.add_argument("--inbound-check", action="store_true")
    probe.add_argument("--json", action="store_true")

    disc = sub.add_parser("discover", help="measure how long the NAT keeps an idle binding")
    disc.add_argument("target", metavar="TARGET")
    disc.add_argument("--source-port", type=_port, default=0, metavar="N",
                      help="first local port; trial k uses N+k (default: ephemeral ports)")
    disc.add_argument("--bind", metavar="ADDR")
    disc.add_argument("--max-idle", type=_positive, default=600.0, metavar="S")
    disc.add_argument("--resolution", type=_positive, default=0.1, metavar="R",
                      help="bracket width: a fraction (<1) of the lifetime, at least 1 s, "
                           "or seconds (>=1); default 0.1")
    disc.add_argument("--start", type=_positive, default=5.0, metavar="S",
                      help="first idle time tried (default 5 s)")
    disc.add_argument("--timeout", type=_positive, default=3.0, metavar="S")
    disc.add_argument("--json", action="store_true")

    check = sub.add_parser("check", help="validate a configuration file")
    check.add_argument("-c", "--config", metavar="FILE")

    status = sub.add_parser("status", help="show the running agent's status")
    status.add_argument("--status-file", metavar="PATH")
    status.add_argument("--json", action="store_true")

    collectd = sub.add_parser("collectd", help="print PUTVAL lines for collectd's exec plugin")
    collectd.add_argument("--status-file", metavar="PATH")
    collectd.add_argument("--once", action="store_true", help="one set of values, then exit")
    return parser


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
    from natkeepalive.cli.run import start_daemon
    from natkeepalive.config import config_path, load_config

    config = load_config(config_path(args.config, os.environ))
    return start_daemon(config, args.log, args.status_file)


def cmd_check(args: argparse.Namespace) -> int:
    from natkeepalive.config import config_path, load_config

    path = config_path(args.config, os.environ)
    config = load_config(path)
    names = ", ".join(b.name for b in config.bindings)
    sys.stdout.write(f"{path}: OK, {len(config.bindings)} binding(s): {names}\n")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from natkeepalive.config.model import DEFAULT_STATUS_FILE
    from natkeepalive.runtime.status import read_status, render_table

    path = args.status_file or _configured_status_file() or DEFAULT_STATUS_FILE
    try:
        data = read_status(path)
    except FileNotFoundError:
        return _fail(f"no status file at {path} (is the agent running?)", EXIT_FAILED)
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read status file {path}: {exc}", EXIT_FAILED)
    if args.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(render_table(data) + "\n")
    return EXIT_OK


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


COMMANDS = {"run": cmd_run, "check": cmd_check, "status": cmd_status, "probe": cmd_probe,
            "discover": cmd_discover, "collectd": cmd_collectd}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except TargetError as exc:
        return _fail(f"bad target: {exc}", EXIT_USAGE)
    except KeyboardInterrupt:
        return 130

