"""The .deb for Debian 12+ / Raspberry Pi OS: built by packaging/deb/build-deb.sh into a temporary
folder, then read back with dpkg-deb, judged by lintian (no errors), and run from its extracted
tree with Debian's own /usr/bin/python3. Installing it with apt is packaging/deb/ci-install-check.sh
(CI, as root)."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import pytest

from natkeepalive import __version__
from tests.support.tools import require_tool, unavailable

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "packaging" / "deb" / "build-deb.sh"
EPOCH = "1767225600"  # 2026-01-01: any fixed time makes two builds comparable
VERSION = f"{__version__}-1"
SITE = "usr/lib/python3/dist-packages"


def build(outdir: Path, epoch: str = EPOCH) -> Path:
    require_tool("dpkg-deb")
    env = {**os.environ, "SOURCE_DATE_EPOCH": epoch}
    done = subprocess.run(
        [str(BUILD), str(outdir)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    deb = Path(done.stdout.strip().splitlines()[-1])
    assert deb == outdir / f"nat-keepalive_{VERSION}_all.deb"
    return deb


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("deb"))


def contents(deb: Path) -> dict[str, tuple[str, str]]:
    """path -> (mode string, owner/group)"""
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for line in listing.splitlines():
        mode, owner, _size, _date, _time, path = line.split(None, 5)
        found[path.removeprefix("./").rstrip("/")] = (mode, owner)
    return found


def field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_control_fields(deb: Path) -> None:
    assert field(deb, "Package") == "nat-keepalive"
    assert field(deb, "Version") == VERSION
    assert field(deb, "Architecture") == "all"
    assert field(deb, "Depends") == "python3 (>= 3.9), python3-yaml"
    assert field(deb, "Recommends") == "python3-netifaces"
    assert int(field(deb, "Installed-Size")) > 0


def test_contents(deb: Path) -> None:
    files = contents(deb)
    agent = ROOT / "agent"
    sources = {
        f"{SITE}/{p.relative_to(agent)}"
        for p in (agent / "natkeepalive").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".typed", ".yaml")
    }
    packaged = {
        p for p in files if p.startswith(f"{SITE}/natkeepalive/") and files[p][0].startswith("-")
    }
    assert packaged == sources
    for path in (
        "usr/bin/nat-keepalive",
        "lib/systemd/system/nat-keepalive.service",
        "lib/systemd/system/nat-keepalive-responder.service",
        "usr/share/nat-keepalive/examples/systemd/privileged-port.conf",
        "etc/nat-keepalive/config.yaml",
        "usr/share/doc/nat-keepalive/copyright",
        "usr/share/doc/nat-keepalive/changelog.Debian.gz",
        "usr/share/doc/nat-keepalive/changelog.gz",
        "usr/share/man/man8/nat-keepalive.8.gz",
        "usr/share/man/man5/nat-keepalive.yaml.5.gz",
    ):
        assert path in files, path
    assert files["usr/bin/nat-keepalive"][0] == "-rwxr-xr-x"
    assert not [p for p in files if "__pycache__" in p or p.endswith(".pyc")]
    assert {owner for _, owner in files.values()} == {"root/root"}
    assert not [p for p, (mode, _) in files.items() if mode[8] == "w"], "world-writable"


def test_conffiles_and_maintainer_scripts(deb: Path, tmp_path: Path) -> None:
    control = tmp_path / "DEBIAN"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True)
    assert (control / "conffiles").read_text().split() == ["/etc/nat-keepalive/config.yaml"]
    scripts = [control / name for name in ("postinst", "prerm", "postrm")]
    for script in scripts:
        assert os.access(script, os.X_OK)
    shellcheck = require_tool("shellcheck")
    done = subprocess.run(
        [shellcheck, "-s", "sh", *map(str, scripts)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout
    postinst = (control / "postinst").read_text()
    assert "deb-systemd-helper enable" not in postinst, "first install must not start the agent"
    assert "nat-keepalive-responder.service" in postinst  # registered, never enabled
    assert "py3compile -p nat-keepalive" in postinst
    assert "py3clean -p nat-keepalive" in (control / "prerm").read_text()


def test_packaged_files_are_the_repositorys(deb: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
    assert (tree / "etc/nat-keepalive/config.yaml").read_bytes() == (
        ROOT / "packaging/config.example.yaml"
    ).read_bytes()
    assert (tree / "lib/systemd/system/nat-keepalive.service").read_bytes() == (
        ROOT / "packaging/systemd/nat-keepalive.service"
    ).read_bytes()
    for page in ("man8/nat-keepalive.8", "man5/nat-keepalive.yaml.5"):
        packed = gzip.decompress((tree / f"usr/share/man/{page}.gz").read_bytes())
        assert packed == (ROOT / "packaging/man" / page.split("/")[1]).read_bytes(), page
    assert (
        gzip.decompress((tree / "usr/share/doc/nat-keepalive/changelog.gz").read_bytes())
        == (ROOT / "CHANGELOG.md").read_bytes()
    )
    wrapper = (tree / "usr/bin/nat-keepalive").read_text()
    assert wrapper.startswith("#!/usr/bin/python3 -I\n")
    assert "from natkeepalive.cli.main import main" in wrapper
    assert wrapper == (ROOT / "packaging/nat-keepalive.launcher").read_text()


def missing(what: str) -> None:
    """Like require_tool: a failure under CI, a skip elsewhere."""
    message = f"{what} is not installed (.ci/run installs it)"
    unavailable(message)


def debian_python() -> str:
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK):
        missing("Debian's /usr/bin/python3")
    if subprocess.run([python, "-c", "import yaml"], capture_output=True).returncode != 0:
        missing("python3-yaml (for /usr/bin/python3)")
    return python


def test_runs_with_debians_python_from_the_package_tree(deb: Path, tmp_path: Path) -> None:
    python = debian_python()
    tree = tmp_path / "tree"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
    # The wrapper, with the packaged module first on the path instead of the installed location.
    code = (
        f"import sys; sys.path.insert(0, {str(tree / SITE)!r}); sys.argv[0] = 'nat-keepalive'; "
        + (tree / "usr/bin/nat-keepalive").read_text().split("\n", 1)[1]
    )
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    version = subprocess.run(
        [python, "-I", "-c", code, "--version"], capture_output=True, text=True, env=env, timeout=60
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"nat-keepalive {__version__}"
    check = subprocess.run(
        [python, "-I", "-c", code, "check", "-c", str(tree / "etc/nat-keepalive/config.yaml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    imported = subprocess.run(
        [
            python,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(tree / SITE)!r}); "
            "import natkeepalive; print(natkeepalive.__file__)",
        ],
        capture_output=True,
        text=True,
    )
    assert imported.stdout.startswith(str(tree)), "ran the repository's copy, not the package's"


def test_lintian_reports_no_errors(deb: Path) -> None:
    lintian = require_tool("lintian")
    done = subprocess.run(
        [lintian, "--no-tag-display-limit", str(deb)], capture_output=True, text=True, timeout=300
    )
    tags = [line for line in done.stdout.splitlines() if line[:2] in ("E:", "W:", "I:")]
    print("lintian:", *tags or ["(nothing)"], sep="\n  ")
    errors = [line for line in tags if line.startswith("E:")]
    assert not errors, "\n".join(errors)
    assert done.returncode == 0, done.stdout + done.stderr


def test_build_is_reproducible(deb: Path, tmp_path: Path) -> None:
    again = build(tmp_path)
    assert again.read_bytes() == deb.read_bytes()
