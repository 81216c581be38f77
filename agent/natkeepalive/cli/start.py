"""Run the daemon in this process until it stops, and turn how it stopped into an exit code:
what both ways of starting `run` (cli/run.py, and cli/commands.py without fork) end in."""

from __future__ import annotations

from natkeepalive.cli import EXIT_FAILED, EXIT_USAGE
from natkeepalive.errors import BindPermissionError, ConfigError, NatKeepaliveError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from natkeepalive.config.model import Config


def start_daemon(config: Config, log: str | None, status_file: str | None) -> int:
    from natkeepalive.runtime.daemon import Daemon
    from natkeepalive.runtime.logsink import make_sink, write_fatal

    sink = make_sink(config.log, log)
    daemon = Daemon(config, sink, status_file)
    try:
        return daemon.run()
    except ConfigError as exc:  # the file names a user that is gone: fix the file, no restart
        sink.close()
        write_fatal(str(exc))
        return EXIT_USAGE
    except NatKeepaliveError as exc:
        sink.close()
        write_fatal(str(exc))
        # a port the service may not bind is fixed in its configuration, not by restarting it
        return EXIT_USAGE if isinstance(exc, BindPermissionError) else EXIT_FAILED
    except KeyboardInterrupt:
        return 130
