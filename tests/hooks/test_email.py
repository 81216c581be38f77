"""examples/hooks/email through Debian's real `sendmail` (msmtp-mta) to a real SMTP server on
loopback (aiosmtpd): the message, hostile values kept out of the headers, and failures."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.support.helpers import free_port
from tests.support.tools import require_tool

from .common import HOSTILE, install, run_hook


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.reject = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.reject:
            return "554 5.7.1 rejected by the test"
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port(kind=socket.SOCK_STREAM)
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def msmtp_home(folder: Path, port: int) -> dict[str, str]:
    """HOME with a ~/.msmtprc for the real sendmail (msmtp insists on mode 0600)."""
    home = folder / "home"
    home.mkdir()
    rc = home / ".msmtprc"
    rc.write_text(
        f"defaults\nauth off\ntls off\naccount default\nhost 127.0.0.1\nport {port}\n"
        "from fallback@example.org\n"
    )
    rc.chmod(0o600)
    return {"HOME": str(home)}


@pytest.mark.parametrize("shell", ["dash", "busybox"])
def test_mails_the_event_through_sendmail(
    tmp_path: Path, smtp: tuple[Mailbox, int], shell: str
) -> None:
    require_tool("sendmail")
    box, port = smtp
    hook = install(tmp_path, "email", "MAIL_TO=noc@example.net\nMAIL_FROM=r1@example.org\n")
    env = dict(
        HOSTILE, EVENT="binding-changed", NAT_KEEPALIVE_EVENT_LINE="event=binding-changed binding=x"
    )
    env["BINDING"] += "\nX-Injected: yes"
    result = run_hook(
        hook, "binding-changed", env, shell=shell, extra_env=msmtp_home(tmp_path, port)
    )
    assert result.returncode == 0, result.stderr
    assert len(box.messages) == 1
    sender, recipients, content = box.messages[0]
    assert (sender, recipients) == ("r1@example.org", ["noc@example.net"])
    message = email.message_from_bytes(content, policy=email.policy.default)
    subject = str(message["Subject"])
    assert subject.startswith("[nat-keepalive] ") and ": binding-changed pro" in subject
    assert "\n" not in subject and "\r" not in subject
    assert message["X-Injected"] is None
    body = message.get_content()
    assert "cause:     ünïcødé €" in body
    assert "old:       203.0.113.1:5060" in body
    assert "Log line: event=binding-changed binding=x" in body
    assert not (tmp_path / "PWNED").exists()


def test_a_rejecting_server_fails_the_hook(tmp_path: Path, smtp: tuple[Mailbox, int]) -> None:
    require_tool("sendmail")
    box, port = smtp
    box.reject = True
    hook = install(tmp_path, "email", "MAIL_TO=noc@example.net\n")
    result = run_hook(
        hook,
        "unreachable",
        {"EVENT": "unreachable", "BINDING": "b"},
        extra_env=msmtp_home(tmp_path, port),
    )
    assert result.returncode == 1
    assert "sendmail failed" in result.stderr


def test_no_server_fails_the_hook(tmp_path: Path) -> None:
    require_tool("sendmail")
    hook = install(tmp_path, "email", "MAIL_TO=noc@example.net\n")
    result = run_hook(
        hook,
        "unreachable",
        {"EVENT": "unreachable", "BINDING": "b"},
        extra_env=msmtp_home(tmp_path, free_port(kind=socket.SOCK_STREAM)),
    )
    assert result.returncode == 1
    assert "sendmail failed" in result.stderr
