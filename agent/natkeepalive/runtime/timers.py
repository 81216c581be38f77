"""The daemon's deadlines: a heap, a queue beside it for retransmissions, and lazy deletion.

Rules:
- An entry is (deadline, sequence number, owner); the owner is the object the deadline belongs
  to (a binding's Slot, a discovery's AutoInterval) and records, in `owner.scheduled`, the one
  deadline it currently wants. An entry whose deadline is no longer its owner's is superseded:
  it is never removed when superseded, only skipped when it reaches the top (lazy deletion), so
  rescheduling costs one push and cancelling costs nothing.
- The sequence number keeps entries with equal deadlines in the order they were set, and means
  owners themselves are never compared.
- A deadline set with `queued=True` (a retransmission's: due T1 after its send, sends go in time
  order, and the answer usually supersedes it) goes to a FIFO queue while that keeps the queue
  in deadline order. Dropping a superseded entry from the queue's head is O(1), where the heap
  would pay a pop; nearly every retransmission deadline is answered first and never reaches the
  heap. A queued entry joins the heap once it is due or is the earliest deadline of all.
"""

from __future__ import annotations

from natkeepalive.runtime.cstdlib import deque, heappop, heappush

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class Owner(Protocol):
        scheduled: float | None

    Entry = tuple[float, int, Owner]


class Timers:
    """Deadlines of owners; `heap` is read directly by the loop that runs them."""

    __slots__ = ("_seq", "heap", "later")

    def __init__(self) -> None:
        self.heap: list[Entry] = []
        self.later: deque[Entry] = deque()
        self._seq = 0

    def schedule(self, owner: Owner, deadline: float, *, queued: bool = False) -> None:
        """Make `deadline` the owner's one deadline; any earlier entry of it is superseded."""
        owner.scheduled = deadline
        self._seq += 1
        later = self.later
        if queued and (not later or later[-1][0] <= deadline):
            later.append((deadline, self._seq, owner))
        else:
            heappush(self.heap, (deadline, self._seq, owner))

    @staticmethod
    def cancel(owner: Owner) -> None:
        """The owner wants no deadline: its entries are superseded."""
        owner.scheduled = None

    def settle(self, now: float) -> list[Entry]:
        """Drop superseded entries off the heap's top and the queue's head, and move what is
        due by `now`, or earliest of all, from the queue into the heap. Returns the heap, whose
        top is then the earliest live deadline."""
        heap, later = self.heap, self.later
        while heap and heap[0][2].scheduled != heap[0][0]:
            heappop(heap)
        while later:
            entry = later[0]
            deadline = entry[0]
            if entry[2].scheduled != deadline:
                later.popleft()
            elif deadline <= now or not heap or deadline < heap[0][0]:
                heappush(heap, later.popleft())
            else:
                break
        return heap

    def pop(self) -> Entry:
        """Take the heap's top entry (the caller has looked at it)."""
        return heappop(self.heap)

    def __len__(self) -> int:
        """Entries held, superseded ones included."""
        return len(self.heap) + len(self.later)
