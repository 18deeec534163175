"""One heap for every timer of a sans-I/O core, with lazy cancellation.

Thousands of transactions each run two or three timers; giving every one its own
``loop.call_at`` handle costs far more than one binary heap of ``(deadline, seq, handle)``
entries. Cancelling only flags the handle (O(1)); flagged entries are dropped when they reach
the top of the heap, and the heap is compacted when dead entries outnumber live ones, so memory
stays proportional to the live timers.

The driver asks :meth:`TimerHeap.next_deadline` for the one deadline to arm and calls
:meth:`TimerHeap.pop_due` when it passes.
"""

from __future__ import annotations

from collections.abc import Hashable
from heapq import heapify, heappop, heappush
from typing import Generic, TypeVar

__all__ = ["TimerHandle", "TimerHeap"]

K = TypeVar("K", bound=Hashable)

#: Dead entries tolerated before a compaction is considered (keeps small heaps cheap).
_COMPACT_MIN = 1024


class TimerHandle(Generic[K]):
    """One scheduled timer: its ``deadline``, its ``key`` and whether it is still pending.

    Cancel it with :meth:`TimerHeap.cancel`; ``active`` turns false once the timer has been
    cancelled or returned by :meth:`TimerHeap.pop_due`.
    """

    __slots__ = ("active", "deadline", "key")

    def __init__(self, deadline: float, key: K) -> None:
        self.deadline = deadline
        self.key = key
        self.active = True

    def __repr__(self) -> str:
        state = "active" if self.active else "done"
        return f"<TimerHandle {self.key!r} at {self.deadline} {state}>"


class TimerHeap(Generic[K]):
    """A min-heap of timers ordered by deadline, then by scheduling order.

    Timers with the same deadline fire in the order they were scheduled.
    """

    __slots__ = ("_dead", "_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle[K]]] = []
        self._seq = 0
        self._live = 0
        self._dead = 0

    def schedule(self, deadline: float, key: K) -> TimerHandle[K]:
        """Arrange for ``key`` to be returned by :meth:`pop_due` once ``now >= deadline``."""
        handle = TimerHandle(deadline, key)
        self._seq += 1
        heappush(self._heap, (deadline, self._seq, handle))
        self._live += 1
        return handle

    def cancel(self, handle: TimerHandle[K] | None) -> None:
        """Cancel ``handle`` in O(1); ``None``, fired and cancelled handles are ignored."""
        if handle is None or not handle.active:
            return
        handle.active = False
        self._live -= 1
        self._dead += 1
        if self._dead > _COMPACT_MIN and self._dead > self._live:
            self._compact()

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if entry[2].active]
        heapify(self._heap)
        self._dead = 0

    def next_deadline(self) -> float | None:
        """The earliest pending deadline, or ``None`` when no timer is pending."""
        heap = self._heap
        while heap:
            entry = heap[0]
            if entry[2].active:
                return entry[0]
            heappop(heap)
            self._dead -= 1
        return None

    def pop_due(self, now: float) -> list[K]:
        """Remove and return the keys of every pending timer with ``deadline <= now``, in order."""
        heap = self._heap
        due: list[K] = []
        while heap and heap[0][0] <= now:
            handle = heappop(heap)[2]
            if handle.active:
                handle.active = False
                self._live -= 1
                due.append(handle.key)
            else:
                self._dead -= 1
        return due

    def clear(self) -> None:
        """Forget every timer."""
        for entry in self._heap:
            entry[2].active = False
        self._heap = []
        self._live = 0
        self._dead = 0

    def __len__(self) -> int:
        """The number of pending (not cancelled, not fired) timers."""
        return self._live

    def __bool__(self) -> bool:
        return self._live > 0
