"""The monitoring side of the packages: the examples (hooks, alert rules) installed by the .deb
and the OpenWrt Makefile, never enabled; UCI's metrics_file rendered and validated."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest

from tests.packaging.initscript import BINDING, PKG, SHELLS, errors, parse, render
from tests.packaging.test_deb import build, contents

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SHARE = "usr/share/nat-keepalive/examples"


def test_deb_installs_the_examples_executable_and_enables_nothing(tmp_path: Path) -> None:
    files = contents(build(tmp_path))
    for hook in (EXAMPLES / "hooks").iterdir():
        assert files[f"{SHARE}/hooks/{hook.name}"][0] == "-rwxr-xr-x", hook.name
    for folder in ("prometheus", "luci"):
        for data in (EXAMPLES / folder).iterdir():
            assert files[f"{SHARE}/{folder}/{data.name}"][0] == "-rw-r--r--", data.name
    config = (ROOT / "packaging" / "config.example.yaml").read_text()
    # the shipped configuration runs no example
    assert not re.search(r"^\s*command:.*examples", config, re.M)


def test_openwrt_makefile_installs_the_examples_from_the_sdist() -> None:
    text = (PKG / "Makefile").read_text()
    assert (
        "$(INSTALL_BIN) $(PKG_BUILD_DIR)/examples/hooks/* "
        "$(1)/usr/share/nat-keepalive/examples/hooks/" in text
    )
    assert "$(PKG_BUILD_DIR)/examples/prometheus/*" in text
    assert "$(PKG_BUILD_DIR)/examples/luci/* $(1)/usr/share/nat-keepalive/examples/luci/" in text
    manifest = (ROOT / "MANIFEST.in").read_text()
    assert "recursive-include examples *" in manifest


def test_sdist_carries_the_examples(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--sdist",
            "--no-isolation",
            "--outdir",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
        modes = {m.name.split("/", 1)[1]: m.mode for m in tar.getmembers() if "/" in m.name}
    for hook in (EXAMPLES / "hooks").iterdir():
        assert f"examples/hooks/{hook.name}" in names
        assert modes[f"examples/hooks/{hook.name}"] & 0o111
    assert "examples/prometheus/nat-keepalive-alerts.yml" in names
    assert "examples/luci/nat_keepalive.js" in names


AGENT = "config agent 'main'\n\toption metrics_file '{}'\n\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_uci_metrics_file_is_rendered(shell: str, tmp_path: Path) -> None:
    run = render(shell, tmp_path, AGENT.format("/var/prometheus/nat-keepalive.prom") + BINDING)
    assert run.returncode == 0, run.stderr
    assert parse(run).metrics_file == "/var/prometheus/nat-keepalive.prom"
    run = render(shell, tmp_path, BINDING)
    assert run.returncode == 0, run.stderr
    assert parse(run).metrics_file is None  # off unless asked for


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    "value",
    [
        "var/prometheus/x.prom",
        "/var/prometheus/x.txt",
        "/var/prometheus/.prom",
        "/tmp/a b.prom",
        "/tmp/x'$(id).prom",
    ],
)
def test_bad_uci_metrics_file_is_rejected_clearly(shell: str, value: str, tmp_path: Path) -> None:
    quoted = value.replace("'", "'\\''")
    run = render(shell, tmp_path, AGENT.format(quoted) + BINDING)
    assert run.returncode == 1
    text = "\n".join(errors(run))
    assert f"nat-keepalive.main.metrics_file='{value}'" in text, run.stderr
    assert "absolute path ending in .prom" in text
    assert not run.conf.exists()
