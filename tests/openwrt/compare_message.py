"""For real.sh: the service message the real procd.sh and jshn sent procd (PROCD_DEBUG's dump)
against the one tests/packaging/procd_emul.sh builds for the same UCI file and netifd state.

    python3 tests/openwrt/compare_message.py UCI_FILE NETIFD_DIR REAL_MESSAGE_JSON

Exits 1 and prints both when they differ. The rendered file's path (`-c PATH`) differs by
construction and is left out."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.packaging.initscript import run_init


def normalized(message: dict[str, Any]) -> dict[str, Any]:
    for instance in message.get("instances", {}).values():
        command = instance.get("command", [])
        if "-c" in command:
            command[command.index("-c") + 1] = "CONF"
    return message


def main() -> int:
    uci, netifd, real_file = (Path(arg) for arg in sys.argv[1:4])
    real = normalized(json.loads(real_file.read_text(encoding="utf-8")))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        shutil.copytree(netifd, tmp / "netifd")
        run = run_init("busybox", tmp, uci.read_text(encoding="utf-8"), "start", wan_device=None)
        if run.returncode != 0 or not run.messages:
            print(run.stderr)
            return 1
        emulated = normalized(run.message())
    if emulated != real:
        print("real:    ", json.dumps(real, sort_keys=True))
        print("emulated:", json.dumps(emulated, sort_keys=True))
        return 1
    print(json.dumps(real, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
