"""The running bindings, and what finds them: by name, by Call-ID, by socket in the poller."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Union

    from natkeepalive.runtime.auto import AutoInterval
    from natkeepalive.runtime.cstdlib import socket
    from natkeepalive.runtime.poller import Poller
    from natkeepalive.runtime.slot import Slot

    Owner = Union[Slot, AutoInterval]


class Registry:
    def __init__(self, selector: Poller) -> None:
        self.selector = selector
        self.slots: dict[str, Slot] = {}
        self.autos: dict[str, AutoInterval] = {}  # bindings with interval: auto
        self.by_call_id: dict[str, Slot] = {}
        self._registered: dict[Owner, socket.socket] = {}  # the poller's sockets, by owner

    def add(self, slot: Slot) -> None:
        self.slots[slot.name] = slot
        self.by_call_id[slot.engine.call_id] = slot

    def remove(self, name: str) -> tuple[Slot, AutoInterval | None]:
        """Forget a binding; the caller closes what it held."""
        slot = self.slots.pop(name)
        self.by_call_id.pop(slot.engine.call_id, None)
        return slot, self.autos.pop(name, None)

    def answered(self, call_id: str) -> Owner | None:
        """Whose request an answer on the AUX socket is to: a binding's Call-IDs are its prefix,
        "-" and the request's CSeq number, and so are a discovery trial's."""
        prefix = call_id.rpartition("-")[0]
        slot = self.by_call_id.get(prefix)
        if slot is not None:
            return slot
        for auto in self.autos.values():
            if auto.trial is not None and auto.call_id == prefix:
                return auto
        return None

    def track(self, owner: Owner) -> None:
        """Keep the poller in step with an owner's socket, which is replaced when re-opened.

        Sockets are compared as objects, not by fd: a re-opened socket usually gets the closed
        one's fd number back, and closing a socket silently drops it from epoll.
        """
        sock = owner.sock
        old = self._registered.get(owner)
        if old is sock:
            return
        if old is not None:
            del self._registered[owner]
            self.selector.unregister(old)
        if sock is not None:
            self.selector.register(sock, owner)
            self._registered[owner] = sock

    def close(self) -> None:
        for slot in self.slots.values():
            slot.close()
        for auto in self.autos.values():
            auto.close()
