"""`nat-keepalive run`: arguments and configuration are checked in a forked child (argparse, PyYAML
and the loader stay there, runtime/configproc.py says why), the daemon runs here."""

from __future__ import annotations

import marshal

from natkeepalive.config.plain import from_plain, to_plain
from natkeepalive.errors import BindPermissionError, NatKeepaliveError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from natkeepalive.config.model import Config

EXIT_FAILED, EXIT_CONFIG = 1, 2


def _prepare(argv: list[str]) -> bytes:
    from natkeepalive.cli.commands import prepare_run

    log, status_file, config = prepare_run(argv)
    return marshal.dumps((log, status_file, to_plain(config)))


def main_run(argv: list[str]) -> int:
    from natkeepalive.runtime.configproc import run_in_child

    try:
        code, data = run_in_child(lambda: _prepare(argv), None)
    except OSError:  # no fork: do it all here and pay for the imports
        from natkeepalive.cli.commands import main

        return main(argv)
    except KeyboardInterrupt:  # Ctrl-C while the file is read: the child is gone already
        return 130
    if code != 0 or not data:  # the child printed why (or the help text, with 0)
        return code
    log, status_file, plain = marshal.loads(data)
    config = from_plain(plain)
    del data, plain  # this frame lasts as long as the daemon: keep only the model
    return start_daemon(config, log, status_file)


def start_daemon(config: Config, log: str | None, status_file: str | None) -> int:
    from natkeepalive.runtime.daemon import Daemon
    from natkeepalive.runtime.logsink import make_sink, write_fatal

    sink = make_sink(config.log, log)
    daemon = Daemon(config, sink, status_file)
    try:
        return daemon.run()
    except NatKeepaliveError as exc:
        sink.close()
        write_fatal(str(exc))
        # a port the service may not bind is fixed in its configuration, not by restarting it
        return EXIT_CONFIG if isinstance(exc, BindPermissionError) else EXIT_FAILED
    except KeyboardInterrupt:
        return 130
