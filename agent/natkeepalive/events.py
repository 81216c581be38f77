"""Events: what the agent tells its owner. Frozen dataclasses, one per log line.

Rules:
- The field order of a class is the key order of its log line (`event=NAME key=value ...`).
- NAME and SEVERITY are class constants; SEVERITY uses syslog's numbers (0 emerg .. 7 debug).
- Fields are plain str/int/float/None so the log formatter, the hooks and ubus can all render them
  without knowing the class.
"""

from __future__ import annotations

from natkeepalive.record import dataclass, field_names

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar, Union

    Value = Union[str, int, float, None]

EMERG, ALERT, CRIT, ERR, WARNING, NOTICE, INFO, DEBUG = range(8)


@dataclass(frozen=True)
class Event:
    NAME: ClassVar[str] = ""
    SEVERITY: ClassVar[int] = INFO

    def items(self) -> tuple[tuple[str, Value], ...]:
        """(key, value) pairs in log order."""
        return tuple((name, getattr(self, name)) for name in field_names(self))


# --- lifecycle -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Started(Event):
    NAME: ClassVar[str] = "started"
    SEVERITY: ClassVar[int] = NOTICE
    version: str
    bindings: int
    config: str = ""  # the file read
    status_file: str = ""
    log: str = ""  # where log lines go: stderr, or syslog and its address


@dataclass(frozen=True)
class Stopped(Event):
    NAME: ClassVar[str] = "stopped"
    SEVERITY: ClassVar[int] = NOTICE
    reason: str


@dataclass(frozen=True)
class Reloaded(Event):
    NAME: ClassVar[str] = "reloaded"
    SEVERITY: ClassVar[int] = NOTICE
    added: int
    changed: int
    removed: int


@dataclass(frozen=True)
class ConfigRejected(Event):
    NAME: ClassVar[str] = "config-rejected"
    SEVERITY: ClassVar[int] = ERR
    file: str
    error: str
    outcome: str = "the previous configuration keeps running"


@dataclass(frozen=True)
class SignalReceived(Event):
    """SIGUSR1 (write the status file now) or SIGUSR2 (probe every binding now)."""

    NAME: ClassVar[str] = "signal-received"
    SEVERITY: ClassVar[int] = NOTICE
    signal: str
    action: str


@dataclass(frozen=True)
class StatusWriteFailed(Event):
    NAME: ClassVar[str] = "status-write-failed"
    SEVERITY: ClassVar[int] = ERR
    file: str  # not `path`: a hook gets each key as a variable, and PATH is taken
    error: str


@dataclass(frozen=True)
class StatusWriteRecovered(Event):
    """The end of a `status-write-failed` outage."""

    NAME: ClassVar[str] = "status-write-recovered"
    SEVERITY: ClassVar[int] = NOTICE
    file: str


@dataclass(frozen=True)
class MetricsWriteFailed(Event):
    """The metrics file could not be written; reported once per outage."""

    NAME: ClassVar[str] = "metrics-write-failed"
    SEVERITY: ClassVar[int] = ERR
    file: str
    error: str


@dataclass(frozen=True)
class MetricsWriteRecovered(Event):
    NAME: ClassVar[str] = "metrics-write-recovered"
    SEVERITY: ClassVar[int] = NOTICE
    file: str


@dataclass(frozen=True)
class MetricsRemoveFailed(Event):
    """`metrics_file` was turned off (or the agent stopped) and its file could not be removed."""

    NAME: ClassVar[str] = "metrics-remove-failed"
    SEVERITY: ClassVar[int] = ERR
    file: str
    error: str


@dataclass(frozen=True)
class HookFailed(Event):
    """A hook command that could not start, exited non-zero, timed out, or events it missed."""

    NAME: ClassVar[str] = "hook-failed"
    SEVERITY: ClassVar[int] = WARNING
    command: str
    error: str


@dataclass(frozen=True)
class SyslogUnavailable(Event):
    """Written to stderr: log lines go there until syslog takes them again."""

    NAME: ClassVar[str] = "syslog-unavailable"
    SEVERITY: ClassVar[int] = ERR
    address: str
    error: str


@dataclass(frozen=True)
class SyslogRecovered(Event):
    NAME: ClassVar[str] = "syslog-recovered"
    SEVERITY: ClassVar[int] = NOTICE
    address: str


@dataclass(frozen=True)
class DatagramsDropped(Event):
    """Unmatched or malformed datagrams over the last `period_s` (a rate-limited summary)."""

    NAME: ClassVar[str] = "datagrams-dropped"
    SEVERITY: ClassVar[int] = NOTICE
    count: int
    period_s: float


# --- the mapping -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BindingLearned(Event):
    NAME: ClassVar[str] = "binding-learned"
    SEVERITY: ClassVar[int] = INFO
    binding: str
    server: str
    local: str
    public: str


@dataclass(frozen=True)
class BindingChanged(Event):
    NAME: ClassVar[str] = "binding-changed"
    SEVERITY: ClassVar[int] = WARNING
    binding: str
    old: str
    new: str
    cause: str  # port-remapped | address-changed


@dataclass(frozen=True)
class BindingExpired(Event):
    NAME: ClassVar[str] = "binding-expired"
    SEVERITY: ClassVar[int] = WARNING
    binding: str
    public: str
    idle_s: float
    detected: str  # inbound-check | remap


@dataclass(frozen=True)
class BindingFlapping(Event):
    NAME: ClassVar[str] = "binding-flapping"
    SEVERITY: ClassVar[int] = WARNING
    binding: str
    public: str
    alternate: str


@dataclass(frozen=True)
class RportUnsupported(Event):
    NAME: ClassVar[str] = "rport-unsupported"
    SEVERITY: ClassVar[int] = WARNING
    binding: str
    server: str


@dataclass(frozen=True)
class InboundCheckUnsupported(Event):
    """Expiry on a port-preserving NAT cannot be proven against this server: `reason` says why
    (it answered the check on the probing socket, i.e. it forces rport; or it never answered
    the check), `remedy` what would make it possible."""

    NAME: ClassVar[str] = "inbound-check-unsupported"
    SEVERITY: ClassVar[int] = NOTICE
    binding: str
    server: str
    reason: str = "server forces rport"
    remedy: str = ""


# --- reachability ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reachable(Event):
    NAME: ClassVar[str] = "reachable"
    SEVERITY: ClassVar[int] = NOTICE
    binding: str
    rtt_ms: float


@dataclass(frozen=True)
class Lagged(Event):
    NAME: ClassVar[str] = "lagged"
    SEVERITY: ClassVar[int] = WARNING
    binding: str
    rtt_ms: float
    threshold_ms: int


@dataclass(frozen=True)
class Unreachable(Event):
    NAME: ClassVar[str] = "unreachable"
    SEVERITY: ClassVar[int] = ERR
    binding: str
    failures: int
    reason: str = "no answer"  # or the status of an answer require_2xx refused


# --- the network around the binding -------------------------------------------------------------


@dataclass(frozen=True)
class LocalAddressChanged(Event):
    NAME: ClassVar[str] = "local-address-changed"
    SEVERITY: ClassVar[int] = NOTICE
    binding: str
    old: str
    new: str


@dataclass(frozen=True)
class NoLocalAddress(Event):
    """A binding has no local address to send from (its interface is missing or has no
    address of the server's family); reported once until it has one."""

    NAME: ClassVar[str] = "no-local-address"
    SEVERITY: ClassVar[int] = ERR
    binding: str
    reason: str


@dataclass(frozen=True)
class ResolveFailed(Event):
    NAME: ClassVar[str] = "resolve-failed"
    SEVERITY: ClassVar[int] = ERR
    binding: str
    host: str
    error: str


@dataclass(frozen=True)
class ResolveRecovered(Event):
    """The end of a `resolve-failed` outage: the name resolves again (to `address`)."""

    NAME: ClassVar[str] = "resolve-recovered"
    SEVERITY: ClassVar[int] = NOTICE
    binding: str
    host: str
    address: str


@dataclass(frozen=True)
class SendFailed(Event):
    NAME: ClassVar[str] = "send-failed"
    SEVERITY: ClassVar[int] = ERR
    binding: str
    error: str


@dataclass(frozen=True)
class ServerChanged(Event):
    NAME: ClassVar[str] = "server-changed"
    SEVERITY: ClassVar[int] = NOTICE
    binding: str
    old: str
    new: str


@dataclass(frozen=True)
class LifetimeDiscovered(Event):
    NAME: ClassVar[str] = "lifetime-discovered"
    SEVERITY: ClassVar[int] = NOTICE
    binding: str
    lifetime_s: float
    lo_s: float
    hi_s: float | None  # None: nothing expired up to the longest idle tried


@dataclass(frozen=True)
class LifetimeDiscoveryFailed(Event):
    NAME: ClassVar[str] = "lifetime-discovery-failed"
    SEVERITY: ClassVar[int] = WARNING
    binding: str
    error: str
    interval_s: float  # the interval kept


@dataclass(frozen=True)
class IntervalAdjusted(Event):
    NAME: ClassVar[str] = "interval-adjusted"
    SEVERITY: ClassVar[int] = NOTICE
    binding: str
    old_s: float
    new_s: float
    reason: str


# --- per-probe detail (debug) ---------------------------------------------------------------


@dataclass(frozen=True)
class ProbeSent(Event):
    NAME: ClassVar[str] = "probe-sent"
    SEVERITY: ClassVar[int] = DEBUG
    binding: str
    cseq: int
    transmission: int
    kind: str  # keepalive | confirm | inbound


@dataclass(frozen=True)
class ProbeAnswered(Event):
    NAME: ClassVar[str] = "probe-answered"
    SEVERITY: ClassVar[int] = DEBUG
    binding: str
    cseq: int
    status: int
    rtt_ms: float
    public: str


@dataclass(frozen=True)
class ProbeTimedOut(Event):
    NAME: ClassVar[str] = "probe-timeout"
    SEVERITY: ClassVar[int] = DEBUG
    binding: str
    cseq: int
    transmissions: int


@dataclass(frozen=True)
class DatagramDropped(Event):
    NAME: ClassVar[str] = "datagram-dropped"
    SEVERITY: ClassVar[int] = DEBUG
    binding: str
    source: str
    reason: str


ALL_EVENTS: dict[str, type[Event]] = {
    cls.NAME: cls
    for cls in (
        Started,
        Stopped,
        Reloaded,
        ConfigRejected,
        SignalReceived,
        StatusWriteFailed,
        StatusWriteRecovered,
        MetricsWriteFailed,
        MetricsWriteRecovered,
        MetricsRemoveFailed,
        HookFailed,
        SyslogUnavailable,
        SyslogRecovered,
        DatagramsDropped,
        BindingLearned,
        BindingChanged,
        BindingExpired,
        BindingFlapping,
        RportUnsupported,
        InboundCheckUnsupported,
        Reachable,
        Lagged,
        Unreachable,
        LocalAddressChanged,
        NoLocalAddress,
        ResolveFailed,
        ResolveRecovered,
        SendFailed,
        ServerChanged,
        LifetimeDiscovered,
        LifetimeDiscoveryFailed,
        IntervalAdjusted,
        ProbeSent,
        ProbeAnswered,
        ProbeTimedOut,
        DatagramDropped,
    )
}
