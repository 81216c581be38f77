"""YAML text -> a validated, frozen Config (the keys of docs/configuration.md).

Rules:
- The file is composed into YAML nodes, never constructed into Python objects wholesale: nodes
  keep their line, so every error names the file, the 1-based line and the key path
  (`bindings[1].source_port`). Only the scalars we expect are turned into values, one at a time.
- Types are strict where YAML 1.1 guesses: a quoted "yes" is not a boolean, `true` is not a
  number, 2.5 is not an integer. Fields that are text take a plain scalar as written, so
  `user: 1000` or an address YAML would read as a base-60 number stay text.
- Unknown and duplicate keys are errors; a close spelling gets a "did you mean".
- Precedence of probe settings: the binding's own key, then `defaults:`, then model.py.
- Nothing here touches the network: a server name that does not resolve is the runtime's business.
Reading one node into a checked value is nodes.py's; the probe settings' per-key rules are rules.py.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from natkeepalive.config.model import (
    DEFAULT_CONFIG_PATH,
    SAFE_INTERVAL,
    BindingConfig,
    Config,
    HooksConfig,
    LogConfig,
    ProbeSettings,
)
from natkeepalive.config.nodes import NULL, NodeReader, describe, join_key, line_of, suggest
from natkeepalive.config.rules import (
    AUTO,
    SETTING_KEYS as SETTING_KEYS,  # tests read it here
    SETTING_RULES,
    num,
)
from natkeepalive.errors import ConfigError, TargetError
from natkeepalive.events import ALL_EVENTS
from natkeepalive.record import replace
from natkeepalive.sip.target import parse_target

ENV_VAR = "NAT_KEEPALIVE_CONFIG"
MAX_CONFIG_BYTES = 8 * 1024 * 1024  # 100,000 bindings fit; a runaway file does not

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

TOP_KEYS = ("log", "status_file", "metrics_file", "defaults", "bindings", "hooks", "user")
LOG_KEYS = ("target", "facility", "address", "level")
HOOK_KEYS = ("command", "events")
BINDING_KEYS = ("name", "server", "source_port", "interface", "bind")
LOG_TARGETS = ("syslog", "stderr")
LOG_LEVELS = ("debug", "info", "notice", "warning", "err")
FACILITIES = (
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    *(f"local{i}" for i in range(8)),
)

_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")
_IFNAME = re.compile(r"[A-Za-z0-9_.-]+\Z")
_HOSTPORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]+)\Z")

if TYPE_CHECKING:  # aliases used only in annotations
    from natkeepalive.config.nodes import Pairs
    from natkeepalive.config.rules import Value

    # A probe setting as read: its value, the node it came from and its key path.
    Setting = tuple[Value, Node, str]


def config_path(explicit: str | None, environ: Mapping[str, str]) -> str:
    """`-c FILE` when given, else $NAT_KEEPALIVE_CONFIG when set and not empty, else the default."""
    if explicit is not None:
        return explicit
    return environ.get(ENV_VAR) or DEFAULT_CONFIG_PATH


def load_config(path: str, host_checks: bool = True) -> Config:
    """Read and validate `path`. With `host_checks`, also refuse what `run` cannot do on this host
    (a `user:` that does not exist, a hook command that is missing or not executable)."""
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError("cannot read: file not found", file=path) from None
    except PermissionError:
        raise ConfigError("cannot read: permission denied", file=path) from None
    except IsADirectoryError:
        raise ConfigError("cannot read: is a directory", file=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=path) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError("cannot read: is a directory", file=path)
        if not stat.S_ISREG(mode):
            # a FIFO would block the reader, /dev/zero would never end
            raise ConfigError("cannot read: not a regular file", file=path)
        with os.fdopen(fd, "rb") as handle:
            fd = -1
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=path) from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"too large: a configuration file may have at most "
            f"{MAX_CONFIG_BYTES // 1024 // 1024} MiB",
            file=path,
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x})", file=path, line=line
        ) from None
    return parse_config(text, path, host_checks)


def parse_config(text: str, file: str, host_checks: bool = False) -> Config:
    root = _compose(text, file)
    return _Reader(file, host_checks).config(root)


def _compose(text: str, file: str) -> Node:
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        parts = [str(p) for p in (exc.context, exc.problem) if p]
        where = f" (column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(
            f"invalid YAML{where}: {', '.join(parts)}",
            file=file,
            line=mark.line + 1 if mark is not None else None,
        ) from None
    except yaml.YAMLError as exc:
        # ReaderError (a control character) carries a character offset instead of a mark.
        position = getattr(exc, "position", None)
        line = text[:position].count("\n") + 1 if isinstance(position, int) else None
        first = str(exc).splitlines()[0]
        raise ConfigError(f"invalid YAML: {first}", file=file, line=line) from None
    if root is None:
        raise ConfigError("the file is empty; it needs at least a 'bindings' list", file=file)
    return root


class _Reader(NodeReader):
    """Walks the node tree; every check raises ConfigError with the node's line and key path."""

    def __init__(self, file: str, host_checks: bool = False) -> None:
        super().__init__(file)
        self.host_checks = host_checks

    def metrics_file(self, node: Node) -> str | None:
        """An absolute path ending in .prom (node_exporter's textfile collector reads only
        those), or null: off."""
        if node.tag == NULL:
            return None
        value = self.absolute_path(node, "metrics_file")
        if not value.endswith(".prom") or value.endswith("/.prom"):
            self.fail(
                f"must name a file ending in .prom (node_exporter's textfile collector "
                f"reads only those), not {value!r}",
                node,
                "metrics_file",
            )
        return value

    def executable(self, command: str, node: Node, path: str) -> None:
        import os

        if not os.path.exists(command):
            self.fail(f"{command} does not exist", node, path)
        if os.path.isdir(command):
            self.fail(f"{command} is a directory, not a program", node, path)
        if not os.access(command, os.X_OK):
            self.fail(f"{command} is not executable (chmod +x, or check its owner)", node, path)

    # --- sections -----------------------------------------------------------------------------

    def config(self, root: Node) -> Config:
        if not isinstance(root, MappingNode):
            self.fail(
                f"the top level must be a mapping with keys {', '.join(TOP_KEYS)}, "
                f"not {describe(root)}",
                root,
                "",
            )
        top = self.mapping(root, "", TOP_KEYS)
        defaults_layer = self.settings(top["defaults"][1], "defaults") if "defaults" in top else {}
        log = self.log(top["log"][1]) if "log" in top else LogConfig()
        status_file = (
            self.absolute_path(top["status_file"][1], "status_file")
            if "status_file" in top
            else Config.status_file
        )
        metrics_file = self.metrics_file(top["metrics_file"][1]) if "metrics_file" in top else None
        hooks = self.hooks(top["hooks"][1]) if "hooks" in top else HooksConfig()
        user = None
        if "user" in top and top["user"][1].tag != NULL:
            user = self.text(top["user"][1], "user")
            if not user:
                self.fail("must not be empty", top["user"][1], "user")
            if self.host_checks and lookup_user(user) is None:
                self.fail(
                    f"no such user {user!r} on this host (create it, or remove 'user:')",
                    top["user"][1],
                    "user",
                )
        # Bindings last: a file without them still gets its other mistakes reported first.
        if "bindings" not in top:
            self.fail("required key is missing", root, "bindings")
        return Config(
            bindings=self.bindings(top["bindings"][1], defaults_layer),
            log=log,
            status_file=status_file,
            metrics_file=metrics_file,
            defaults=self.merge([defaults_layer]),
            hooks=hooks,
            user=user,
            source=self.file,
        )

    def log(self, node: Node) -> LogConfig:
        keys = self.mapping(node, "log", LOG_KEYS)
        values: dict[str, str] = {}
        if "target" in keys:
            values["target"] = self.choice(keys["target"][1], "log.target", LOG_TARGETS)
        if "facility" in keys:
            values["facility"] = self.choice(keys["facility"][1], "log.facility", FACILITIES)
        if "level" in keys:
            values["level"] = self.choice(keys["level"][1], "log.level", LOG_LEVELS)
        if "address" in keys:
            values["address"] = self.log_address(keys["address"][1], "log.address")
        return replace(LogConfig(), **values)

    def log_address(self, node: Node, path: str) -> str:
        value = self.text(node, path)
        if value.startswith("/"):
            return value
        match = _HOSTPORT.match(value)
        if not match:
            self.fail(
                f"must be a socket path (starting with /) or host:port, not {value!r}", node, path
            )
        port = int(match.group(2))
        if not 1 <= port <= 65535:
            self.fail(f"port must be between 1 and 65535, not {port}", node, path)
        return value

    def hooks(self, node: Node) -> HooksConfig:
        keys = self.mapping(node, "hooks", HOOK_KEYS)
        command = None
        if "command" in keys and keys["command"][1].tag != NULL:
            command = self.absolute_path(keys["command"][1], "hooks.command")
            if self.host_checks:
                self.executable(command, keys["command"][1], "hooks.command")
        events = HooksConfig.events
        if "events" in keys:
            names: list[str] = []
            for index, item in enumerate(self.sequence(keys["events"][1], "hooks.events")):
                path = f"hooks.events[{index}]"
                name = self.text(item, path)
                if name not in ALL_EVENTS:
                    self.fail(
                        f"unknown event {name!r}{suggest(name, list(ALL_EVENTS))}", item, path
                    )
                if name not in names:
                    names.append(name)
            events = tuple(names)
        return HooksConfig(command=command, events=events)

    # --- probe settings -----------------------------------------------------------------------

    def settings(self, node: Node, path: str, keys: Pairs | None = None) -> dict[str, Setting]:
        """The probe settings written in one mapping (defaults or a binding), each validated."""
        if keys is None:
            keys = self.mapping(node, path, SETTING_KEYS)
        layer: dict[str, Setting] = {}
        for key, (_, value_node) in keys.items():
            rule = SETTING_RULES.get(key)
            if rule is not None:
                key_path = join_key(path, key)
                layer[key] = (rule(self, value_node, key_path), value_node, key_path)
        return layer

    def merge(self, layers: Sequence[dict[str, Setting]]) -> ProbeSettings:
        """Later layers win. Checks that span two keys are reported at the more specific one."""
        merged: dict[str, tuple[Setting, int]] = {}
        for depth, layer in enumerate(layers):
            for key, setting in layer.items():
                merged[key] = (setting, depth)
        values: dict[str, Any] = {key: s[0] for key, (s, _) in merged.items()}
        base = ProbeSettings()
        low = float(values.get("interval_min", base.interval_min))
        high = float(values.get("interval_max", base.interval_max))
        if low > high:
            lo_depth = merged["interval_min"][1] if "interval_min" in merged else -1
            hi_depth = merged["interval_max"][1] if "interval_max" in merged else -1
            _, node, path = merged["interval_min" if lo_depth >= hi_depth else "interval_max"][0]
            self.fail(
                f"interval_min ({num(low)}) must not be greater than interval_max ({num(high)})",
                node,
                path,
            )
        if values.get("check") == "stun" and values.get("stun_server") is None:
            _, node, path = merged["check"][0]
            self.fail("'stun' needs stun_server (an RFC 5780 STUN server, host[:port])", node, path)
        if values.get("interval") == AUTO:
            values["interval_auto"] = True
            values["interval"] = min(SAFE_INTERVAL, high)  # the safe start until measured
        return replace(base, **values)

    # --- bindings -----------------------------------------------------------------------------

    def bindings(self, node: Node, defaults: dict[str, Setting]) -> tuple[BindingConfig, ...]:
        if node.tag == NULL or (isinstance(node, SequenceNode) and not node.value):
            self.fail("must be a non-empty list of bindings", node, "bindings")
        seen: list[tuple[BindingConfig, Pairs]] = []
        # Indexed by name and by port, so a file of many bindings is checked in linear time:
        # only bindings on the same port can overlap.
        by_name: dict[str, tuple[BindingConfig, Pairs]] = {}
        by_port: dict[int, list[tuple[BindingConfig, Pairs]]] = {}
        for index, item in enumerate(self.sequence(node, "bindings")):
            path = f"bindings[{index}]"
            binding, keys = self.binding(item, path, defaults)
            first = by_name.get(binding.name)
            if first is not None:
                self.fail(
                    f"duplicate name {binding.name!r} "
                    f"(first at line {line_of(first[1]['name'][1])})",
                    keys["name"][1],
                    f"{path}.name",
                )
            same_port = by_port.setdefault(binding.source_port, [])
            for other, other_keys in same_port:
                if _overlaps(binding, other):
                    self.fail(
                        f"binding {binding.name!r} shares local port {binding.source_port} "
                        f"with binding {other.name!r} (line "
                        f"{line_of(other_keys['source_port'][1])}); give each its own "
                        f"source_port, bind address or interface",
                        keys["source_port"][1],
                        f"{path}.source_port",
                    )
            by_name[binding.name] = (binding, keys)
            same_port.append((binding, keys))
            seen.append((binding, keys))
        return tuple(binding for binding, _ in seen)

    def binding(
        self, node: Node, path: str, defaults: dict[str, Setting]
    ) -> tuple[BindingConfig, Pairs]:
        if node.tag == NULL:
            self.fail("must be a mapping, not empty", node, path)
        keys = self.mapping(node, path, _BINDING_ALL)
        for required in ("name", "server", "source_port"):
            if required not in keys:
                self.fail("required key is missing", node, f"{path}.{required}")
        name_node, server_node, port_node = (keys[k][1] for k in ("name", "server", "source_port"))
        name = self.text(name_node, f"{path}.name")
        if not _NAME.match(name):
            self.fail(f"must match [A-Za-z0-9_.-]+, not {name!r}", name_node, f"{path}.name")
        try:
            server = parse_target(self.text(server_node, f"{path}.server"))
        except TargetError as exc:
            self.fail(str(exc), server_node, f"{path}.server")
        port = self.integer(port_node, f"{path}.source_port")
        if not 1 <= port <= 65535:
            self.fail(f"must be between 1 and 65535, not {port}", port_node, f"{path}.source_port")
        if "interface" in keys and "bind" in keys:
            self.fail(
                "cannot be used together with 'interface': choose one",
                keys["bind"][0],
                f"{path}.bind",
            )
        interface = bind = None
        if "interface" in keys:
            interface_node = keys["interface"][1]
            interface = self.text(interface_node, f"{path}.interface")
            if not _IFNAME.match(interface) or interface in (".", ".."):
                self.fail(
                    f"must be an interface name (letters, digits, _ . -), not {interface!r}",
                    interface_node,
                    f"{path}.interface",
                )
        if "bind" in keys:
            bind_node = keys["bind"][1]
            bind = self.text(bind_node, f"{path}.bind")
            packed = _packed(bind)
            if packed is None:
                self.fail(
                    f"must be an IPv4 or IPv6 address, not {bind!r}", bind_node, f"{path}.bind"
                )
            server_packed = _packed(server.host)
            if server_packed is not None and len(server_packed) != len(packed):
                self.fail(
                    f"{bind} is an {_family_name(packed)} address but server "
                    f"{server.host} is {_family_name(server_packed)}: a socket can only "
                    f"reach its own address family",
                    bind_node,
                    f"{path}.bind",
                )
        settings = self.merge([defaults, self.settings(node, path, keys)])
        return BindingConfig(
            name=name,
            server=server,
            source_port=port,
            interface=interface,
            bind=bind,
            settings=settings,
        ), keys


_BINDING_ALL = BINDING_KEYS + SETTING_KEYS


# --- helpers ------------------------------------------------------------------------------------


def _family_name(packed: bytes) -> str:
    return "IPv4" if len(packed) == 4 else "IPv6"


def lookup_user(user: str) -> tuple[int, int] | None:
    """(uid, gid) of an account named `user`, or numbered so; None when there is none."""
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        if not user.isdigit():
            return None
        try:
            entry = pwd.getpwuid(int(user))
        except (KeyError, OverflowError):
            return None
    return entry.pw_uid, entry.pw_gid


def _packed(address: str) -> bytes | None:
    """The packed form of an IPv4 or IPv6 literal (so ::1 and 0::1 compare equal), else None."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_pton(family, address)
        except (OSError, ValueError):
            continue
    return None


_WILDCARDS = (bytes(4), bytes(16))


def _overlaps(a: BindingConfig, b: BindingConfig) -> bool:
    """Could both bindings end up on the same local address and port? Interface addresses are
    unknown until run time, so only what is certain from the file counts; a wildcard (no bind and
    no interface, 0.0.0.0 or ::) overlaps everything on its port."""
    if a.source_port != b.source_port:
        return False
    pa = _packed(a.bind) if a.bind else None
    pb = _packed(b.bind) if b.bind else None
    for binding, packed in ((a, pa), (b, pb)):
        if binding.interface is None and (packed is None or packed in _WILDCARDS):
            return True
    if a.interface is not None and a.interface == b.interface:
        return True
    return pa is not None and pa == pb
