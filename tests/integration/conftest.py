"""Fixtures for loopback tests: pairs of coordinators talking over real sockets."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from sessioncore import (
    CallDecision,
    CallHandler,
    CallSession,
    CallState,
    IncomingCall,
    SessionCoordinator,
    SessionId,
    SessionManagerBuilder,
)


@dataclass
class RecordingHandler(CallHandler):
    """Records every callback; decides incoming calls with ``decision``."""

    decision: CallDecision | Callable[[IncomingCall], Awaitable[CallDecision]] = field(
        default_factory=CallDecision.accept
    )
    incoming: list[IncomingCall] = field(default_factory=list)
    established: list[SessionId] = field(default_factory=list)
    ended: list[tuple[SessionId, str, CallState]] = field(default_factory=list)
    states: list[tuple[SessionId, CallState, CallState]] = field(default_factory=list)
    dtmf: list[tuple[SessionId, str, int]] = field(default_factory=list)
    ended_event: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_incoming_call(self, call: IncomingCall) -> CallDecision:
        self.incoming.append(call)
        if isinstance(self.decision, CallDecision):
            return self.decision
        return await self.decision(call)

    async def on_call_established(
        self, session: CallSession, local_sdp: str | None, remote_sdp: str | None
    ) -> None:
        self.established.append(session.id)

    async def on_call_ended(self, session: CallSession, reason: str) -> None:
        self.ended.append((session.id, reason, session.state))
        self.ended_event.set()

    async def on_call_state_changed(
        self, session_id: SessionId, old: CallState, new: CallState, reason: str | None
    ) -> None:
        self.states.append((session_id, old, new))

    async def on_dtmf(self, session_id: SessionId, digit: str, duration_ms: int) -> None:
        self.dtmf.append((session_id, digit, duration_ms))

    def ended_count(self, sid: SessionId) -> int:
        return sum(1 for s, _, _ in self.ended if s == sid)

    async def wait_ended(self, n: int, timeout: float = 5.0) -> None:
        async def _wait() -> None:
            while len(self.ended) < n:
                self.ended_event.clear()
                await self.ended_event.wait()

        await asyncio.wait_for(_wait(), timeout)


async def make_ua(
    handler: CallHandler,
    user: str,
    transport: str = "udp",
    t1: float = 0.5,
    host: str = "127.0.0.1",
) -> SessionCoordinator:
    return await (
        SessionManagerBuilder()
        .with_local_address(f"sip:{user}@{f'[{host}]' if ':' in host else host}")
        .with_local_bind_addr(host, 0)
        .with_transport(transport)
        .with_timers(t1=t1, t2=max(4.0, t1), t4=5.0)
        .with_handler(handler)
        .build()
    )


@dataclass
class Pair:
    uac: SessionCoordinator
    uas: SessionCoordinator
    uac_handler: RecordingHandler
    uas_handler: RecordingHandler

    def target(self, user: str = "bob") -> str:
        addr = self.uas.dialogs.local_address()
        host = f"[{addr.host}]" if ":" in addr.host else addr.host
        suffix = "" if addr.transport == "udp" else f";transport={addr.transport}"
        return f"sip:{user}@{host}:{addr.port}{suffix}"


@pytest.fixture(params=["udp", "tcp"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    transport: str = request.param
    uac_h, uas_h = RecordingHandler(), RecordingHandler()
    uac = await make_ua(uac_h, "alice", transport)
    uas = await make_ua(uas_h, "bob", transport)
    try:
        yield Pair(uac, uas, uac_h, uas_h)
    finally:
        await uac.stop()
        await uas.stop()


async def settle(*coords: SessionCoordinator, timeout: float = 5.0) -> None:
    """Wait until every coordinator has no session and no transaction left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if all(not c.list_active_sessions() for c in coords):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"sessions left: {[c.list_active_sessions() for c in coords]}")


def ipv6_available() -> bool:
    """True when IPv6 loopback (::1) can be bound here."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


# Skip IPv6 cases only on a machine without ::1, and never in CI (SESSIONCORE_REQUIRE_PEERS=1):
# there the tests run and fail if IPv6 loopback is missing.
IPV6_SKIP = not ipv6_available() and os.environ.get("SESSIONCORE_REQUIRE_PEERS") != "1"
