"""The configuration as frozen dataclasses. Defaults live here, once; the loader only validates
and fills them. The YAML keys are a user contract: docs/configuration.md documents each."""

from __future__ import annotations

from natkeepalive.sip.target import Target as Target  # a binding's `server`, defined with TARGET

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dataclasses import dataclass, field
else:
    from natkeepalive.record import dataclass, field

DEFAULT_CONFIG_PATH = "/etc/nat-keepalive/config.yaml"
DEFAULT_STATUS_FILE = "/run/nat-keepalive/status.json"
SAFE_INTERVAL = 25.0
# `check`: how a binding's expiry is proven from outside (core/checks.py holds the methods)
SENT_BY, RELAY, STUN = "sent-by", "relay", "stun"
AUTO, OFF = "auto", "off"
CHECK_CHOICES = (AUTO, SENT_BY, RELAY, STUN, OFF)


@dataclass(frozen=True)
class ProbeSettings:
    """Every key of `defaults:`; each binding may override any of them."""

    interval: float = SAFE_INTERVAL  # with interval_auto: min(SAFE_INTERVAL, interval_max) at start
    interval_auto: bool = False
    jitter: float = 0.2
    timeout: float = 3.0
    lagged_ms: int = 2000
    fail_threshold: int = 2
    ok_threshold: int = 1
    retry_interval: float = 10.0
    # a check before every keepalive: a NAT reboot on a port-preserving NAT is caught at the next
    # keepalive, not one in ten (the keepalive alone re-creates the binding on the same port)
    inbound_check: int = 1
    # how a check proves the binding (core/checks.py): auto | sent-by | relay | stun | off
    check: str = "auto"
    stun_server: Target | None = None  # an RFC 5780 STUN server (or `nat-keepalive responder`)
    require_2xx: bool = False
    max_forwards: int = 70
    user_agent: str = "nat-keepalive"
    # interval: auto (lifetime discovery)
    interval_min: float = 5.0
    interval_max: float = 300.0  # longer gains little; an unnoticed expiry costs up to this long
    safety: float = 0.8
    rediscover: float = 24.0  # hours


@dataclass(frozen=True)
class BindingConfig:
    name: str
    server: Target
    source_port: int
    interface: str | None = None
    bind: str | None = None
    settings: ProbeSettings = field(default_factory=ProbeSettings)


@dataclass(frozen=True)
class LogConfig:
    target: str = "syslog"  # syslog | stderr
    facility: str = "daemon"
    address: str = "/dev/log"  # a socket path, or host:port for a UDP collector
    level: str = "info"  # debug info notice warning err


@dataclass(frozen=True)
class HooksConfig:
    command: str | None = None
    events: tuple[str, ...] = ("binding-changed", "binding-expired", "unreachable", "reachable")


@dataclass(frozen=True)
class Config:
    bindings: tuple[BindingConfig, ...] = ()
    log: LogConfig = field(default_factory=LogConfig)
    status_file: str = DEFAULT_STATUS_FILE
    metrics_file: str | None = None  # Prometheus text for node_exporter's textfile collector
    defaults: ProbeSettings = field(default_factory=ProbeSettings)
    hooks: HooksConfig = field(default_factory=HooksConfig)
    user: str | None = None  # drop privileges to this user after binding, when started as root
    source: str = ""  # the file it was read from
