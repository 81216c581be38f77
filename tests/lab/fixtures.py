"""Fixtures for the NAT lab: every Lab made here is closed after the test, also when it fails.

A pytest plugin (tests/conftest.py lists it), so any folder's tests can use them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.lab.agents import TimedAgent
from tests.lab.netlab import Lab, cleanup_stale
from tests.support.tools import require_root, require_tool


@pytest.fixture(scope="session")
def lab_host() -> None:
    """Root, the namespace tools, and no namespaces left over from a killed earlier run."""
    require_root()
    for tool in ("ip", "nft", "conntrack"):
        require_tool(tool)
    cleanup_stale()


@pytest.fixture
def make_lab(lab_host: None) -> Iterator[Callable[[], Lab]]:
    """Factory for (more) labs; all of them are closed at teardown."""
    labs: list[Lab] = []

    def make() -> Lab:
        instance = Lab()
        labs.append(instance)
        instance.__enter__()
        return instance

    yield make
    for instance in reversed(labs):
        instance.close()


@pytest.fixture
def lab(make_lab: Callable[[], Lab]) -> Lab:
    return make_lab()


@pytest.fixture
def kamailio_lab(lab: Lab) -> Lab:
    """A lab with Kamailio answering on 203.0.113.10:5060."""
    lab.start_kamailio(binary=require_tool("kamailio"))
    return lab


@pytest.fixture
def sipp_lab(lab: Lab) -> Lab:
    """A lab with the SIPp server that ignores rport on 203.0.113.10:5070."""
    lab.start_sipp_norport(binary=require_tool("sipp"))
    return lab


@pytest.fixture
def start_agent() -> Iterator[Callable[[Lab, Path], TimedAgent]]:
    """Agents started here are killed before their lab is taken down, also on failure."""
    agents: list[TimedAgent] = []

    def start(lab: Lab, config: Path) -> TimedAgent:
        agent = TimedAgent(lab, config)
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.kill()
