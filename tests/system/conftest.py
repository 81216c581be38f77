"""The system test's container: booted once per module, with the .deb built from this checkout
installed by apt-get. Needs root; under CI=true anything missing is a failure, never a skip."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.tools import unavailable
from tests.system.container import Container, ContainerError

ROOT = Path(__file__).resolve().parents[2]


def build_deb(out: Path, revision: str) -> Path:
    done = subprocess.run(
        ["sh", str(ROOT / "packaging" / "deb" / "build-deb.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DEB_REVISION": revision},
    )
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_deb(tmp_path_factory.mktemp("deb"), "1")


@pytest.fixture(scope="module")
def deb_upgrade(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same code as a later Debian revision: an upgrade."""
    return build_deb(tmp_path_factory.mktemp("deb-upgrade"), "2")


@pytest.fixture(scope="module")
def machine() -> Iterator[Container]:
    if os.geteuid() != 0:
        unavailable("the system test needs root (systemd-nspawn, mount)")
    box = Container(f"nk-sys-{os.getpid()}")
    try:
        try:
            box.boot()
        except ContainerError as exc:
            pytest.fail(f"cannot boot the Debian 12 container with systemd-nspawn: {exc}")
        yield box
    finally:
        box.close()
