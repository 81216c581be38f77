"""One error root. Bad bytes from the network and operator mistakes are different branches,
so the daemon can count the first and refuse to start on the second."""

from __future__ import annotations


class NatKeepaliveError(Exception):
    """Root of every error this package raises on purpose."""


class SipParseError(NatKeepaliveError, ValueError):
    """Bytes from the network that are not a SIP message we can use. Never fatal."""


class StunParseError(NatKeepaliveError, ValueError):
    """Bytes from the network that are not a STUN message we can use. Never fatal."""


class TargetError(NatKeepaliveError, ValueError):
    """A TARGET (host[:port], [v6]:port, sip:host[:port]) that cannot be parsed."""


class ConfigError(NatKeepaliveError):
    """An operator mistake in a configuration file; names the file, line and key path."""

    def __init__(
        self, message: str, *, file: str = "", line: int | None = None, key: str = ""
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        if self.key:
            where += f": {self.key}"
        return f"{where}: {self.message}"


class LocalProtocolError(NatKeepaliveError):
    """The core's API was used the wrong way (a bug in the caller, not in the network)."""


class SocketSetupError(NatKeepaliveError):
    """A binding's socket could not be created or bound (port in use, no such address)."""


class BindPermissionError(SocketSetupError):
    """No permission to bind a binding's port (below 1024 without CAP_NET_BIND_SERVICE): the
    configuration or the service's privileges must change, so a restart cannot help."""


class PortInUseError(SocketSetupError):
    """A local port another socket holds already (possibly only for a while)."""
