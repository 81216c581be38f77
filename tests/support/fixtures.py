"""Fixtures any test may use (a pytest plugin: tests/conftest.py lists it): the real UDP SIP
responder on 127.0.0.1, one per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.responder import SipResponder


@pytest.fixture
def responder() -> Iterator[SipResponder]:
    with SipResponder() as r:
        yield r
