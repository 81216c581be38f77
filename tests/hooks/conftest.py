"""The loopback SIP responder, for the tests that run a hook from the real agent."""

from __future__ import annotations

from tests.loopback.conftest import responder

__all__ = ["responder"]
