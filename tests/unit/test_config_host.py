"""What `check` refuses because `run` could not do it: on this host (a missing user, a hook that
cannot run), for any host (a bind address of the other family, an interval that is a flood), and
files that are no configuration (too large, a FIFO, a device). Binding checks stay linear."""

from __future__ import annotations

import os
import pwd
import threading
import time
from pathlib import Path

import pytest

import natkeepalive.config.loader as loader
from natkeepalive.config import load_config, parse_config
from natkeepalive.errors import ConfigError

BINDING = "bindings:\n  - {name: a, server: 192.0.2.1, source_port: 5062}\n"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def refused(path: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


def absent_user() -> str:
    name = "nk-no-such-user"
    with pytest.raises(KeyError):
        pwd.getpwnam(name)
    return name


# --- user ----------------------------------------------------------------------------------------


def test_a_user_that_does_not_exist_is_refused_with_file_line_and_key(tmp_path: Path) -> None:
    name = absent_user()
    path = write(tmp_path, f"log: {{target: stderr}}\nuser: {name}\n{BINDING}")
    err = refused(path)
    assert (err.line, err.key) == (2, "user")
    assert str(err) == (
        f"{path}:2: user: no such user {name!r} on this host (create it, or remove 'user:')"
    )


def test_an_existing_user_by_name_or_number_passes(tmp_path: Path) -> None:
    root = pwd.getpwuid(0).pw_name
    assert load_config(write(tmp_path, f"user: {root}\n{BINDING}")).user == root
    assert load_config(write(tmp_path, f"user: 0\n{BINDING}")).user == "0"
    assert loader.lookup_user("0") == (0, pwd.getpwuid(0).pw_gid)


def test_parse_config_alone_does_not_ask_the_host() -> None:
    # the file's own rules only: a file written for another machine still parses
    assert parse_config(f"user: {absent_user()}\n{BINDING}", "c.yaml").user is not None


# --- hooks.command -------------------------------------------------------------------------------


def test_a_hook_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    hook = tmp_path / "missing-hook"
    err = refused(write(tmp_path, f"hooks: {{command: {hook}}}\n{BINDING}"))
    assert (err.line, err.key, err.message) == (1, "hooks.command", f"{hook} does not exist")


def test_a_hook_that_is_not_executable_is_refused(tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o644)
    if os.geteuid() == 0:  # root may execute nothing without an x bit either; say so plainly
        assert not os.access(hook, os.X_OK)
    err = refused(write(tmp_path, f"hooks: {{command: {hook}}}\n{BINDING}"))
    assert err.key == "hooks.command" and "is not executable" in err.message
    hook.chmod(0o755)
    assert load_config(write(tmp_path, f"hooks: {{command: {hook}}}\n{BINDING}")).hooks.command


def test_a_directory_as_hook_is_refused(tmp_path: Path) -> None:
    err = refused(write(tmp_path, f"hooks: {{command: {tmp_path}}}\n{BINDING}"))
    assert err.message == f"{tmp_path} is a directory, not a program"


# --- rules that hold on any host -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "bind", "message"),
    [
        ("192.0.2.1", "::1", "::1 is an IPv6 address but server 192.0.2.1 is IPv4"),
        (
            '"[2001:db8::10]:5080"',
            "192.168.1.2",
            "192.168.1.2 is an IPv4 address but server 2001:db8::10 is IPv6",
        ),
    ],
)
def test_a_bind_address_of_the_other_family_is_refused(
    server: str, bind: str, message: str
) -> None:
    text = (
        f"bindings:\n  - name: a\n    server: {server}\n    source_port: 5062\n    bind: {bind}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml")
    assert (info.value.line, info.value.key) == (5, "bindings[0].bind")
    assert info.value.message.startswith(message)


def test_a_host_name_server_with_any_bind_passes() -> None:
    # the family of a name is known only once it resolves: the runtime's business
    text = "bindings:\n  - {name: a, server: sip.example.net, source_port: 5062, bind: '::1'}\n"
    assert parse_config(text, "c.yaml").bindings[0].bind == "::1"


@pytest.mark.parametrize("key", ["interval", "interval_min"])
def test_an_interval_below_the_minimum_is_refused(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(f"defaults: {{{key}: 0.001}}\n{BINDING}", "c.yaml")
    assert (info.value.key, info.value.message) == (
        f"defaults.{key}",
        "must be at least 0.1 s, not 0.001",
    )
    assert parse_config(f"defaults: {{{key}: 0.1}}\n{BINDING}", "c.yaml").defaults


# --- what is read ------------------------------------------------------------------------------


def test_a_file_over_the_limit_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with open(path, "wb") as handle:
        handle.write(BINDING.encode())
        handle.write(b"#" * loader.MAX_CONFIG_BYTES)
    err = refused(str(path))
    assert err.message == "too large: a configuration file may have at most 8 MiB"


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_is_refused(device: str) -> None:
    assert refused(device).message == "cannot read: not a regular file"


def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    outcome: list[str] = []
    reader = threading.Thread(
        target=lambda: outcome.append(refused(str(fifo)).message), daemon=True
    )
    reader.start()
    reader.join(10.0)
    if reader.is_alive():  # unblock the reader before failing, so the test run ends
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert outcome == ["cannot read: not a regular file"]


def test_a_symlink_to_a_regular_file_is_read(tmp_path: Path) -> None:
    target = Path(write(tmp_path, BINDING))
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    assert load_config(str(link)).bindings[0].name == "a"


# --- linear in the number of bindings -------------------------------------------------------------


def test_bindings_are_compared_only_with_those_on_the_same_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every binding against every other was 60 s at 20,000 bindings; counted, not timed."""
    calls = 0
    real = loader._overlaps

    def counting(a: object, b: object) -> bool:
        nonlocal calls
        calls += 1
        return real(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(loader, "_overlaps", counting)
    count = 3000
    lines = ["bindings:"] + [
        f"  - {{name: b{i}, server: 192.0.2.1, source_port: {1024 + i % 1500}, "
        f"bind: 10.0.{i // 256}.{i % 256}}}"
        for i in range(count)
    ]
    started = time.perf_counter()
    config = parse_config("\n".join(lines) + "\n", "c.yaml")
    assert len(config.bindings) == count
    assert calls == count - 1500  # one earlier binding on each shared port, no more
    assert time.perf_counter() - started < 60  # a bound for a loaded machine, not a benchmark


def test_a_shared_port_is_still_found_among_many() -> None:
    lines = ["bindings:"] + [
        f"  - {{name: b{i}, server: 192.0.2.1, source_port: {2000 + i}}}" for i in range(500)
    ]
    lines.append("  - {name: late, server: 192.0.2.1, source_port: 2250}")
    with pytest.raises(ConfigError) as info:
        parse_config("\n".join(lines) + "\n", "c.yaml")
    assert info.value.key == "bindings[500].source_port"
    assert "shares local port 2250 with binding 'b250' (line 252)" in info.value.message
    dup = (
        ["bindings:"]
        + [f"  - {{name: b{i}, server: 192.0.2.1, source_port: {2000 + i}}}" for i in range(500)]
        + ["  - {name: b7, server: 192.0.2.1, source_port: 9000}"]
    )
    with pytest.raises(ConfigError) as info:
        parse_config("\n".join(dup) + "\n", "c.yaml")
    assert info.value.message == "duplicate name 'b7' (first at line 9)"
