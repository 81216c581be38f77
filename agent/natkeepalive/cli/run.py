"""`nat-keepalive run`: arguments and configuration are checked in a forked child (argparse, PyYAML
and the loader stay there, runtime/configproc.py says why), the daemon runs here."""

from __future__ import annotations

import marshal

from natkeepalive.cli.start import start_daemon
from natkeepalive.config.plain import from_plain, to_plain


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
