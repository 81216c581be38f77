"""The command line. Exit codes are the same for every subcommand (cli/commands.py says what
each means)."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3
