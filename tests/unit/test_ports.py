"""RTP port allocator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessioncore.errors import InvalidArgumentError, SessionError
from sessioncore.media.ports import PortAllocator, PortsExhaustedError


def test_even_ports_round_robin() -> None:
    ports = PortAllocator(10000, 10007)
    assert ports.capacity == 4
    assert [ports.allocate() for _ in range(4)] == [10000, 10002, 10004, 10006]
    assert ports.in_use == 4
    assert ports.available == 0
    with pytest.raises(PortsExhaustedError) as info:
        ports.allocate()
    assert isinstance(info.value, SessionError)
    assert "10000-10007" in str(info.value)
    ports.release(10002)
    ports.release(10000)
    assert ports.allocate() == 10002  # released first, handed out first
    assert ports.allocate() == 10000


def test_released_port_goes_to_the_back() -> None:
    ports = PortAllocator(20000, 20009)
    first = ports.allocate()
    ports.release(first)
    assert [ports.allocate() for _ in range(5)] == [20002, 20004, 20006, 20008, 20000]


def test_odd_start_and_even_end_keep_rtcp_in_range() -> None:
    ports = PortAllocator(10001, 10006)  # 10002/10003, 10004/10005; 10006 has no 10007
    assert ports.capacity == 2
    assert [ports.allocate(), ports.allocate()] == [10002, 10004]
    with pytest.raises(PortsExhaustedError):
        ports.allocate()


def test_smallest_range() -> None:
    ports = PortAllocator(4000, 4001)
    assert ports.allocate() == 4000
    with pytest.raises(PortsExhaustedError):
        ports.allocate()


def test_double_release_is_harmless() -> None:
    ports = PortAllocator(10000, 10003)
    port = ports.allocate()
    ports.release(port)
    ports.release(port)
    ports.release(10002)  # never allocated
    assert ports.available == 2
    assert {ports.allocate(), ports.allocate()} == {10000, 10002}
    with pytest.raises(PortsExhaustedError):
        ports.allocate()


@pytest.mark.parametrize("port", [9998, 10001, 10004, True, "10000"])
def test_release_of_foreign_port_is_local_error(port: object) -> None:
    ports = PortAllocator(10000, 10003)
    with pytest.raises(InvalidArgumentError):
        ports.release(port)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 100), (100, 70000), (5000, 5000), (5001, 5002), (6000, 5000), (True, 10)],
)
def test_bad_ranges(start: int, end: int) -> None:
    with pytest.raises(InvalidArgumentError):
        PortAllocator(start, end)


def test_probe_skips_ports_in_use() -> None:
    busy = {10000, 10004}
    seen: list[int] = []

    def probe(port: int) -> bool:
        seen.append(port)
        return port not in busy

    ports = PortAllocator(10000, 10007, probe=probe)
    assert ports.allocate() == 10002
    assert ports.allocate() == 10006
    busy.clear()
    assert ports.allocate() == 10000  # refused ports went to the back and are tried again
    assert ports.allocate() == 10004
    assert seen == [10000, 10002, 10004, 10006, 10000, 10004]


def test_probe_refusing_everything_exhausts() -> None:
    ports = PortAllocator(10000, 10007, probe=lambda port: False)
    with pytest.raises(PortsExhaustedError, match="4 refused"):
        ports.allocate()
    assert ports.available == 4  # nothing was lost


def test_probe_exception_keeps_the_port() -> None:
    def probe(port: int) -> bool:
        raise OSError("boom")

    ports = PortAllocator(10000, 10003, probe=probe)
    with pytest.raises(OSError):
        ports.allocate()
    assert ports.available == 2


def test_is_allocated_and_repr() -> None:
    ports = PortAllocator(10000, 10003)
    port = ports.allocate()
    assert ports.is_allocated(port)
    assert not ports.is_allocated(10002)
    assert "in_use=1" in repr(ports)


@given(st.lists(st.booleans(), max_size=200))
def test_never_hands_out_a_port_twice(ops: list[bool]) -> None:
    ports = PortAllocator(30000, 30019)
    held: list[int] = []
    for allocate in ops:
        if allocate:
            try:
                port = ports.allocate()
            except PortsExhaustedError:
                assert len(held) == ports.capacity
                continue
            assert port % 2 == 0 and 30000 <= port <= 30018
            assert port not in held
            held.append(port)
        elif held:
            ports.release(held.pop(0))
        assert ports.in_use == len(held)
        assert ports.in_use + ports.available == ports.capacity
