"""nat-keepalive: keeps NAT UDP bindings alive with SIP OPTIONS and reports their changes."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
