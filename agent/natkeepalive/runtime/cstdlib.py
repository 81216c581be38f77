"""The standard library's C modules that the long-running process uses in place of their
Python wrappers, under the wrappers' names.

The wrappers bring what a router's daemon pays for in memory and never uses: `socket` and
`signal` wrap constants in enums (and import `enum`), `collections` and `threading` import more
of the library, `heapq.py` adds merge() and nlargest(). The C modules hold every function and
class the daemon calls. Import them from here, never the wrappers (ruff's banned imports and
tests/loopback/test_lean_run.py check); mypy sees the wrappers, whose stubs are the same API.
"""

from __future__ import annotations

import _socket as socket
import _thread
from _heapq import heappop, heappush

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections import deque
else:
    import _signal as signal
    from _collections import deque

__all__ = ["_thread", "deque", "heappop", "heappush", "signal", "socket"]
