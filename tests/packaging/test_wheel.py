"""sdist and wheel with `python -m build` (isolated, as a user or OpenWrt's pypi.mk would build),
then the wheel installed in a fresh venv with PyYAML from the package index, and run."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from natkeepalive import __version__
from tests.support.tools import unavailable

ROOT = Path(__file__).resolve().parents[2]
NAME = "nat_keepalive"  # the normalized distribution name in file names


def require_build() -> None:
    if importlib.util.find_spec("build") is None:
        message = "the `build` package is not installed (pip install build)"
        unavailable(message)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build from a copy of the tree, so setuptools' egg-info never lands in the checkout."""
    require_build()
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "agent",
        src / "agent",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"),
    )
    out = base / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_sdist_is_what_the_openwrt_makefile_downloads(dist: Path) -> None:
    sdist = dist / f"{NAME}-{__version__}.tar.gz"
    assert sdist.exists(), sorted(p.name for p in dist.iterdir())
    makefile = (ROOT / "openwrt" / "nat-keepalive" / "Makefile").read_text(encoding="utf-8")
    assert re.search(rf"^PYPI_SOURCE_NAME:={NAME}$", makefile, re.M)
    licenses = re.search(r"^PKG_LICENSE_FILES:=(.+)$", makefile, re.M)
    assert licenses is not None  # the feed's license check reads them from the sdist
    with tarfile.open(sdist) as tar:
        names = set(tar.getnames())
    prefix = f"{NAME}-{__version__}"
    assert {
        f"{prefix}/pyproject.toml",
        f"{prefix}/README.md",
        f"{prefix}/LICENSE",
        f"{prefix}/CHANGELOG.md",
        f"{prefix}/agent/natkeepalive/cli/main.py",
    } <= names
    assert {f"{prefix}/{name}" for name in licenses.group(1).split()} <= names
    with tarfile.open(sdist) as tar:
        member = tar.extractfile(f"{prefix}/LICENSE")
        assert member is not None
        assert member.read() == (ROOT / "LICENSE").read_bytes()


def test_wheel_metadata_and_contents(dist: Path) -> None:
    wheel = dist / f"{NAME}-{__version__}-py3-none-any.whl"
    assert wheel.exists()
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"{NAME}-{__version__}.dist-info"
        metadata = zf.read(f"{info}/METADATA").decode()
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        licenses = [
            n for n in names if n.startswith(f"{info}/") and n.rsplit("/", 1)[-1] == "LICENSE"
        ]
        assert len(licenses) == 1, sorted(names)
        assert zf.read(licenses[0]) == (ROOT / "LICENSE").read_bytes()
    agent = ROOT / "agent"
    sources = {
        str(p.relative_to(agent))
        for p in (agent / "natkeepalive").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert sources <= names
    assert "natkeepalive/py.typed" in names
    assert not [n for n in names if n.startswith(("tests/", "openwrt/", "packaging/"))]
    assert "Requires-Python: >=3.9" in metadata
    assert re.search(r"^Requires-Dist: PyYAML", metadata, re.M)
    assert re.search(r"^nat-keepalive = natkeepalive\.cli\.main:main$", entry_points, re.M)
    # the long description is the short README, not a manual
    body = metadata.split("\n\n", 1)[1]
    assert body.strip() == (ROOT / "README.md").read_text(encoding="utf-8").strip()
    assert len(body.splitlines()) <= 300


def test_wheel_installs_in_a_fresh_venv_and_runs(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    wheel = dist / f"{NAME}-{__version__}-py3-none-any.whl"
    pip = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    command = venv / "bin" / "nat-keepalive"
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    version = subprocess.run(
        [str(command), "--version"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"nat-keepalive {__version__}"
    check = subprocess.run(
        [str(command), "check", "-c", str(ROOT / "packaging" / "config.example.yaml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # a pip user gets the commented example from the command itself
    example = subprocess.run(
        [str(command), "check", "--example"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert example.returncode == 0, example.stderr
    assert example.stdout == (ROOT / "agent/natkeepalive/config/example.yaml").read_text()
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import natkeepalive, yaml; print(natkeepalive.__file__)",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert where.stdout.startswith(str(venv)), "the venv ran the checkout, not the wheel"
