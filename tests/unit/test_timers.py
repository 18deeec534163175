"""The timer heap: ordering, lazy cancellation, compaction, and 100k timers."""

from __future__ import annotations

import random
import time

from sessioncore.sip.timers import TimerHeap


def test_empty_heap() -> None:
    heap: TimerHeap[str] = TimerHeap()
    assert heap.next_deadline() is None
    assert heap.pop_due(1e9) == []
    assert len(heap) == 0
    assert not heap


def test_pops_in_deadline_order_then_schedule_order() -> None:
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule(3.0, "c")
    heap.schedule(1.0, "a1")
    heap.schedule(2.0, "b")
    heap.schedule(1.0, "a2")
    assert heap.next_deadline() == 1.0
    assert len(heap) == 4
    assert heap.pop_due(0.999) == []
    assert heap.pop_due(1.0) == ["a1", "a2"]
    assert heap.next_deadline() == 2.0
    assert heap.pop_due(10.0) == ["b", "c"]
    assert heap.next_deadline() is None
    assert len(heap) == 0


def test_cancel_is_lazy_and_skipped() -> None:
    heap: TimerHeap[str] = TimerHeap()
    first = heap.schedule(1.0, "first")
    heap.schedule(2.0, "second")
    heap.cancel(first)
    assert not first.active
    assert len(heap) == 1
    assert heap.next_deadline() == 2.0  # the cancelled head is dropped
    assert heap.pop_due(5.0) == ["second"]


def test_cancel_none_fired_or_twice_is_a_noop() -> None:
    heap: TimerHeap[str] = TimerHeap()
    h = heap.schedule(1.0, "x")
    heap.cancel(None)
    assert heap.pop_due(1.0) == ["x"]
    assert not h.active
    heap.cancel(h)  # already fired
    heap.cancel(h)
    assert len(heap) == 0
    other = heap.schedule(2.0, "y")
    heap.cancel(other)
    heap.cancel(other)
    assert len(heap) == 0
    assert heap.next_deadline() is None


def test_cancelled_entries_inside_pop_due_are_not_returned() -> None:
    heap: TimerHeap[int] = TimerHeap()
    handles = [heap.schedule(float(i), i) for i in range(10)]
    for h in handles[::2]:
        heap.cancel(h)
    assert heap.pop_due(100.0) == [1, 3, 5, 7, 9]
    assert len(heap) == 0


def test_compaction_bounds_memory() -> None:
    heap: TimerHeap[int] = TimerHeap()
    keep = heap.schedule(1e9, -1)
    for i in range(20_000):
        heap.cancel(heap.schedule(float(i), i))
    # Dead entries never outnumber live ones by more than the small fixed threshold.
    assert len(heap._heap) <= 2048
    assert len(heap) == 1
    assert heap.next_deadline() == 1e9
    assert heap.pop_due(1e9) == [keep.key]


def test_clear() -> None:
    heap: TimerHeap[str] = TimerHeap()
    h = heap.schedule(1.0, "a")
    heap.clear()
    assert not h.active
    assert len(heap) == 0
    assert heap.next_deadline() is None
    heap.cancel(h)
    assert len(heap) == 0


def test_random_against_a_reference_model() -> None:
    rng = random.Random(1234)
    heap: TimerHeap[int] = TimerHeap()
    model: dict[int, float] = {}
    handles = {}
    now = 0.0
    for key in range(5000):
        op = rng.random()
        if op < 0.6:
            deadline = now + rng.uniform(0, 10)
            handles[key] = heap.schedule(deadline, key)
            model[key] = deadline
        elif op < 0.8 and model:
            victim = rng.choice(list(model))
            heap.cancel(handles[victim])
            del model[victim]
        else:
            now += rng.uniform(0, 2)
            due = heap.pop_due(now)
            expected = sorted(
                (k for k, d in model.items() if d <= now), key=lambda k: (model[k], k)
            )
            assert due == expected
            for k in due:
                del model[k]
        assert len(heap) == len(model)
        assert heap.next_deadline() == (min(model.values()) if model else None)


def test_100k_timers_are_cheap() -> None:
    heap: TimerHeap[int] = TimerHeap()
    start = time.perf_counter()
    handles = [heap.schedule(i * 0.001, i) for i in range(100_000)]
    for h in handles[::2]:
        heap.cancel(h)
    due = heap.pop_due(1e9)
    elapsed = time.perf_counter() - start
    assert len(due) == 50_000
    assert due[:3] == [1, 3, 5]
    assert len(heap) == 0
    assert elapsed < 2.0  # about 0.1 s on a laptop; generous for slow CI
