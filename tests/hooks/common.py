"""What the hook example tests share: copying an example with its settings file beside it, and
running it the way the agent does (event name as the argument, the event in the environment)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.tools import require_tool

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hooks"
DEFAULT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

# values an event may carry from the network or a configuration: quotes, backslashes, command
# substitutions, newlines, control characters, non-ASCII
HOSTILE = {
    "BINDING": "pro\"vider\\ $(touch PWNED) `touch PWNED` 'quoted'",
    "OLD": "203.0.113.1:5060\nevent=fake key=value",
    "NEW": "tab\there\rcr \x01\x1f end",
    "CAUSE": "ünïcødé €",
}


def install(folder: Path, name: str, settings: str | None) -> Path:
    """The example copied to `folder`, with `settings` as its NAME.conf (none when None)."""
    hook = folder / name
    shutil.copy(EXAMPLES / name, hook)
    hook.chmod(0o755)
    if settings is not None:
        (folder / f"{name}.conf").write_text(settings)
    return hook


def run_hook(
    hook: Path,
    event: str,
    env: dict[str, str],
    shell: str | None = None,
    path: str = DEFAULT_PATH,
    timeout: float = 30.0,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    argv = [str(hook), event]
    if shell == "busybox":
        argv = [require_tool("busybox"), "ash", *argv]
    elif shell is not None:
        argv = [require_tool(shell), *argv]
    full = {"PATH": path, **env, **(extra_env or {})}
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=full, cwd=hook.parent
    )
