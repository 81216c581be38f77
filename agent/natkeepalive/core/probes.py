"""What a binding's engine keeps of its requests, sans-I/O: the templates they are rendered
from, one per Via, and the marks of the last finished branches (to tell a duplicate answer from
a stray one)."""

from __future__ import annotations

from natkeepalive.sip.request import OptionsTemplate, options_template

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from natkeepalive.config.model import ProbeSettings
    from natkeepalive.core.transaction import ClientTransaction

    RandomBytes = Callable[[int], bytes]

TEMPLATES_KEPT = 4
RECENT_DONE = 8
# A finished branch's mark: 16 bits of its hash, and a 17th set so that no mark is 0 (empty)
_MARK_BITS = 17
_MARK_MASK = (1 << _MARK_BITS) - 1
_RECENT_MASK = (1 << (RECENT_DONE * _MARK_BITS)) - 1


def _mark(branch: str) -> int:
    return (hash(branch) & 0xFFFF) | 0x10000


def random_hex(random_bytes: RandomBytes, n: int) -> str:
    return random_bytes(n).hex()


class ProbeRecords:
    """The request records' part of core/engine.py's BindingEngine (a base class of it, so the
    engine's calls stay plain method calls)."""

    # No __dict__ for the engine; mypy is kept from checking the engine's assignments against
    # these empty slots (the engine's own hold the fields).
    if not TYPE_CHECKING:
        __slots__ = ()

    # the engine's fields the records read and set
    settings: ProbeSettings
    uri_host: str
    uri_port: int
    call_id: str
    from_tag: str
    _templates: dict[tuple[str, int, bool], OptionsTemplate]
    _recent_done: int
    _tx: dict[str, ClientTransaction]
    _newest_outcome: int

    def _template(self, via_host: str, via_port: int, rport: bool) -> OptionsTemplate:
        """The request around branch and CSeq, built once per Via (local or public mapping)."""
        key = (via_host, via_port, rport)
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) >= TEMPLATES_KEPT:  # old mappings: keep a handful at most
                self._templates.clear()
            template = self._templates[key] = options_template(
                uri_host=self.uri_host,
                uri_port=self.uri_port,
                via_host=via_host,
                via_port=via_port,
                call_id=self.call_id,
                from_tag=self.from_tag,
                rport=rport,
                max_forwards=self.settings.max_forwards,
                user_agent=self.settings.user_agent,
            )
        return template

    def _finish(self, branch: str) -> None:
        self._tx.pop(branch, None)
        self._recent_done = ((self._recent_done << _MARK_BITS) | _mark(branch)) & _RECENT_MASK

    def _just_finished(self, branch: str) -> bool:
        """Whether `branch` is one of the last RECENT_DONE to finish (asked for refused answers
        only)."""
        mark, done = _mark(branch), self._recent_done
        while done:
            if done & _MARK_MASK == mark:
                return True
            done >>= _MARK_BITS
        return False

    def _stale(self, tx: ClientTransaction) -> bool:
        """Whether a newer probe's outcome was applied already; if not, this one is the newest."""
        if tx.key.cseq < self._newest_outcome:
            return True
        self._newest_outcome = tx.key.cseq
        return False
