"""Loading the configuration in a forked child (runtime/configproc.py) and the plain form it
crosses the pipe in (config/plain.py): same result, same errors, no PyYAML left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from natkeepalive.config.loader import load_config, parse_config
from natkeepalive.config.plain import from_plain, to_plain
from natkeepalive.errors import ConfigError
from natkeepalive.runtime.configproc import ChildTimeout, load_config_in_child, run_in_child

EXAMPLE = Path(__file__).resolve().parents[2] / "agent" / "natkeepalive" / "config" / "example.yaml"

FULL = """\
log: {target: stderr, facility: local3, level: debug, address: /dev/log}
status_file: /tmp/nk-status.json
user: nobody
hooks: {command: /bin/true, events: [unreachable, binding-changed]}
defaults: {interval: 20, jitter: 0.1, timeout: 2, inbound_check: 0, user_agent: "x y"}
bindings:
  - name: one
    server: sip.example.net:5080
    source_port: 5062
    interface: eth1
    interval: auto
    interval_max: 120
  - name: two
    server: "[2001:db8::1]"
    source_port: 5064
    bind: 2001:db8::2
    require_2xx: true
"""


def test_plain_round_trip_keeps_every_field() -> None:
    config = parse_config(FULL, "full.yaml")
    assert from_plain(to_plain(config)) == config
    example = load_config(str(EXAMPLE))
    assert from_plain(to_plain(example)) == example


def test_plain_form_survives_marshal() -> None:
    import marshal

    config = parse_config(FULL, "full.yaml")
    assert from_plain(marshal.loads(marshal.dumps(to_plain(config)))) == config


def test_from_plain_refuses_what_is_not_a_configuration() -> None:
    with pytest.raises(TypeError):
        from_plain(to_plain(parse_config(FULL, "f").log))


def test_child_loads_what_the_loader_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(FULL)
    assert load_config_in_child(str(path)) == load_config(str(path))


@pytest.mark.parametrize(
    "text",
    [
        "bindings:\n  - name: a\n    server: 192.0.2.1\n    source_port: 99999\n",
        "bindings: [\n",
        "log: {target: paper}\n",
        "\xff not utf-8",
    ],
)
def test_child_raises_the_loaders_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError) as here:
        load_config(str(path))
    with pytest.raises(ConfigError) as there:
        load_config_in_child(str(path))
    got, want = there.value, here.value
    assert (got.message, got.file, got.line, got.key) == (
        want.message,
        want.file,
        want.line,
        want.key,
    )
    assert str(got) == str(want)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config_in_child(str(tmp_path / "none.yaml"))


def test_the_parent_never_imports_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(FULL)
    code = textwrap.dedent(f"""
        import sys
        from natkeepalive.runtime.configproc import load_config_in_child
        config = load_config_in_child({str(path)!r})
        assert config.bindings[0].name == "one", config
        heavy = sorted(m for m in sys.modules
                       if m.split(".")[0] in ("yaml", "argparse", "_yaml")
                       or m == "natkeepalive.config.loader")
        print(",".join(heavy))
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == ""


def test_exit_codes_and_output_of_the_child() -> None:
    def exits() -> bytes:
        raise SystemExit(3)

    def breaks() -> bytes:
        raise RuntimeError("boom")

    assert run_in_child(lambda: b"x" * 200_000, 5.0) == (0, b"x" * 200_000)  # beyond a pipe's
    assert run_in_child(exits, 5.0) == (3, b"")
    assert run_in_child(breaks, 5.0) == (70, b"")


def test_a_stuck_child_is_killed_and_reaped() -> None:
    read_fd, write_fd = os.pipe()  # the child blocks reading a pipe nobody writes

    def stuck() -> bytes:
        return os.read(read_fd, 1)

    try:
        with pytest.raises(ChildTimeout):
            run_in_child(stuck, 0.2)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    with pytest.raises(ChildProcessError):  # nothing left to reap: no zombie
        os.waitpid(-1, os.WNOHANG)


def test_equal_settings_are_one_shared_object_but_types_stay_apart() -> None:
    text = (
        "bindings:\n"
        + "".join(
            f"  - name: b{i}\n    server: 192.0.2.1\n    source_port: {5062 + i}\n"
            for i in range(3)
        )
        + "  - name: int\n    server: 192.0.2.1\n    source_port: 5070\n    interval: 20\n"
        + "  - name: float\n    server: 192.0.2.1\n    source_port: 5071\n"
        + "    interval: 20.0\n"
    )
    config = from_plain(to_plain(parse_config(text, "shared.yaml")))
    first, second, third, whole, point = config.bindings
    assert first.settings is second.settings is third.settings
    assert first.server is second.server
    assert repr(whole.settings.interval) == repr(
        parse_config(text, "s").bindings[3].settings.interval
    )
    assert repr(point.settings.interval) == "20.0"
    assert config == parse_config(text, "shared.yaml")
