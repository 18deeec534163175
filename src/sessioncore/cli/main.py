"""The ``sessioncore`` command.

Three subcommands, all thin drivers over the public API (``SessionManagerBuilder`` and the
coordinator it builds):

* ``sessioncore uas`` answers (or rejects) calls until SIGINT/SIGTERM or until ``--max-calls``
  calls have ended, then prints a summary;
* ``sessioncore call SIP_URI`` places ``--count`` calls at ``--rate`` calls per second with at most
  ``--concurrency`` in flight, keeps each up ``--duration`` seconds, hangs up, and prints a
  summary. It exits 0 only when every call was answered and ended cleanly;
* ``sessioncore register AOR`` registers an account and keeps it registered (the library
  refreshes it) until SIGINT/SIGTERM, printing each state change, then unregisters
  (``--once``: register, unregister, exit).

``uas`` and ``call`` take ``--account AOR`` (with ``--username``, ``--password-env``,
``--registrar``) to register first and act as that account, and ``--proxy URI`` to send their
requests through an outbound proxy. Passwords come from an environment variable or a hidden
prompt, never from the command line (where ``ps`` and shell histories would show them).

The summaries go to stdout as a rich table followed by plain ``name: value`` lines (easy to grep);
live progress and logs go to stderr. The CLI configures logging (``-v``: INFO, ``-vv``: DEBUG);
the library never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import re
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from sessioncore import (
    CallDecision,
    CallFailed,
    CallHandler,
    CallSession,
    IncomingCall,
    RegistrationFailed,
    RegistrationInfo,
    SessionCoordinator,
    SessionError,
    SessionId,
    SessionManagerBuilder,
)
from sessioncore.api.types import MediaQuality
from sessioncore.errors import InvalidArgumentError
from sessioncore.media.analysis import dominant_frequency, read_wav
from sessioncore.media.sinks import AudioSink, TeeSink, WavRecorder
from sessioncore.media.sources import (
    AudioSource,
    EchoBridge,
    SilenceSource,
    ToneSource,
    WavFileSource,
    WavFormatError,
)
from sessioncore.sip.headers import NameAddr
from sessioncore.sip.uri import SipUri, format_host, parse_host_port

__all__ = ["main"]

log = logging.getLogger("sessioncore.cli")

#: Exit statuses: success, some call failed / runtime error, usage error (click's convention).
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: Reason phrases for ``--reject CODE`` (RFC 3261 §21); other codes get a generic phrase.
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    480: "Temporarily Unavailable",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    503: "Service Unavailable",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
}

#: After ``--max-calls`` is reached, how long the UAS keeps running so that the last responses
#: (and their UDP retransmissions / the peer's ACK) complete before the sockets close.
_UAS_GRACE_SECONDS = 0.3

#: How long ``uas``/``call``/``register --once`` wait for a registration's outcome. The library
#: itself reports a failure (408) when the registrar does not answer within Timer F (32 s).
_REGISTER_TIMEOUT = 40.0
#: How long the unregistration at exit may take.
_UNREGISTER_TIMEOUT = 10.0
#: Where the password comes from unless ``--password-env`` names another variable.
_DEFAULT_PASSWORD_ENV = "SESSIONCORE_PASSWORD"


def _version() -> str:
    try:
        return metadata.version("sessioncore")
    except metadata.PackageNotFoundError:
        return "unknown"


# --- option types ---------------------------------------------------------------------------


def _host_port(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:5060``) -> ``(host, port)``; port 0 means "any free port"."""
    try:
        host, port = parse_host_port(value, "address")
    except SessionError as exc:
        raise click.BadParameter(f"{value!r} is not HOST:PORT ({exc})") from None
    if port is None:
        raise click.BadParameter(f"{value!r} has no port; expected HOST:PORT")
    return host, port


def _sip_uri(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A ``sip:``/``sips:`` URI, checked with the library's URI parser, kept as text."""
    if value is None:
        return None
    try:
        SipUri.parse(value)
    except SessionError as exc:
        raise click.BadParameter(f"{value!r} is not a valid SIP URI: {exc}") from None
    return value


def _port_range(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, int] | None:
    """``LOW-HIGH`` -> ``(low, high)``: the RTP port range for media."""
    if value is None:
        return None
    low_text, sep, high_text = value.partition("-")
    if not sep or not low_text.isdigit() or not high_text.isdigit():
        raise click.BadParameter(f"{value!r} is not LOW-HIGH")
    low, high = int(low_text), int(high_text)
    if not 1024 <= low < high <= 65535:
        raise click.BadParameter(f"{value!r}: need 1024 <= LOW < HIGH <= 65535")
    return low, high


def _account_aor(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An account's address of record, ``sip:user@domain``, normalised as the library keys it."""
    if value is None:
        return None
    try:
        uri = NameAddr.parse(value).uri
    except SessionError as exc:
        raise click.BadParameter(f"{value!r} is not a valid SIP URI: {exc}") from None
    if not isinstance(uri, SipUri) or not uri.user:
        raise click.BadParameter(f"{value!r}: an account AOR is sip:user@domain")
    return str(uri)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """The *name* of an environment variable (never echo the value: it may be a password)."""
    if not _ENV_NAME.fullmatch(value):
        raise click.BadParameter(
            "expected the NAME of an environment variable holding the password "
            "(letters, digits, _), not the password itself"
        )
    return value


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """A SIP account from the command line (the password read from the environment/a prompt)."""

    aor: str
    username: str
    password: str = field(repr=False)
    registrar: str | None = None
    expires: int = 3600


def _read_password(var: str, username: str) -> str:
    """The password: environment variable ``var``, else a hidden prompt when stdin is a terminal.

    Never from the command line. Without either, a usage error (exit 2) says how to pass it.
    """
    value = os.environ.get(var)
    if value:
        return value
    if sys.stdin is not None and sys.stdin.isatty():
        password: str = click.prompt(f"Password for {username}", hide_input=True, err=True)
        return password
    raise click.UsageError(
        f"no password for {username}: set the environment variable {var} (or name another one "
        "with --password-env VAR), or run from a terminal to be prompted. Passwords are never "
        "taken on the command line."
    )


def _account_spec(
    aor: str | None,
    username: str | None,
    password_env: str,
    registrar: str | None,
    *,
    expires: int = 3600,
) -> AccountSpec | None:
    """The ``--account`` of ``uas``/``call`` (``None`` without one), password included."""
    if aor is None:
        if username is not None or registrar is not None:
            raise click.UsageError("--username and --registrar need --account AOR")
        return None
    if username is None:
        raise click.UsageError("--account needs --username (the digest authentication user)")
    password = _read_password(password_env, username)
    return AccountSpec(aor, username, password, registrar, expires)


def _account_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--account``/``--username``/``--password-env``/``--registrar``/``--proxy``."""
    for option in reversed(
        (
            click.option(
                "--account",
                "account",
                metavar="AOR",
                callback=_account_aor,
                default=None,
                help="Register as this account (sip:user@domain) and place calls as it.",
            ),
            click.option(
                "--username", metavar="USER", default=None, help="Authentication user name."
            ),
            _password_env_option,
            click.option(
                "--registrar",
                metavar="SIP_URI",
                callback=_sip_uri,
                default=None,
                help="Registrar to register with (default: the AOR's domain).",
            ),
            click.option(
                "--proxy",
                metavar="SIP_URI",
                callback=_sip_uri,
                default=None,
                help="Outbound proxy: send every out-of-dialog request (REGISTER included) "
                "through it.",
            ),
        )
    ):
        command = option(command)
    return command


_transport_option = click.option(
    "--transport",
    type=click.Choice(["udp", "tcp"], case_sensitive=False),
    default="udp",
    show_default=True,
    help="SIP transport to listen and send on.",
)
_password_env_option = click.option(
    "--password-env",
    metavar="VAR",
    callback=_env_name,
    default=_DEFAULT_PASSWORD_ENV,
    show_default=True,
    help="Environment variable holding the password; when it is unset and stdin is a terminal, "
    "the password is prompted for. There is no --password option: a password on the command "
    "line would show in ps and shell histories.",
)
_media_ports_option = click.option(
    "--media-ports",
    metavar="LOW-HIGH",
    callback=_port_range,
    default=None,
    help="RTP port range LOW-HIGH (default: the library's).",
)
_verbose_option = click.option(
    "-v", "--verbose", count=True, help="Log to stderr: -v for INFO, -vv for DEBUG."
)


# --- media options ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaSpec:
    """What ``--media`` / ``--tone`` / ``--play`` asked for."""

    kind: str  # "silence" | "tone" | "echo" | "play"
    frequency: float = 440.0
    path: Path | None = None

    def source(self) -> AudioSource:
        """A fresh source for one call."""
        if self.kind == "tone":
            return ToneSource(self.frequency)
        if self.kind == "play" and self.path is not None:
            return WavFileSource(self.path, loop=True)
        return SilenceSource()

    def describe(self) -> str:
        """For summaries."""
        if self.kind == "tone":
            return f"tone {self.frequency:g} Hz"
        if self.kind == "play":
            return f"play {self.path}"
        return self.kind


def _check_wav(path: Path) -> None:
    try:
        WavFileSource(path).close()
    except (WavFormatError, OSError) as exc:
        raise click.BadParameter(str(exc)) from None


def _media_spec(ctx: click.Context, param: click.Parameter, value: str | None) -> MediaSpec | None:
    """``echo``, ``silence``, ``tone[:HZ]`` or ``play:FILE.wav``."""
    if value is None:
        return None
    kind, _, arg = value.partition(":")
    kind = kind.lower()
    if kind in ("echo", "silence") and not arg:
        return MediaSpec(kind)
    if kind == "tone":
        try:
            freq = float(arg) if arg else 440.0
        except ValueError:
            raise click.BadParameter(f"{value!r}: tone:HZ needs a number") from None
        if not 20 <= freq <= 3900:
            raise click.BadParameter(f"{value!r}: the tone must be 20-3900 Hz for 8 kHz audio")
        return MediaSpec("tone", freq)
    if kind == "play" and arg:
        path = Path(arg)
        _check_wav(path)
        return MediaSpec("play", path=path)
    raise click.BadParameter(f"{value!r} is not echo, silence, tone[:HZ] or play:FILE.wav")


def _safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.@" else "_" for ch in text)[:120] or "call"


def _media_lines(stats: MediaQuality | None) -> list[tuple[str, str]]:
    if stats is None:
        return [("packets sent", "0"), ("packets received", "0"), ("loss", "n/a"),
                ("jitter", "n/a")]  # fmt: skip
    expected = stats.packets_received + stats.packets_lost
    loss = 100.0 * stats.packets_lost / expected if expected else 0.0
    return [
        ("packets sent", str(stats.packets_sent)),
        ("packets received", str(stats.packets_received)),
        ("loss", f"{loss:.1f}%"),
        ("jitter", f"{stats.jitter_ms:.1f} ms"),
    ]


# --- shared helpers -------------------------------------------------------------------------


def _setup_logging(verbose: int) -> None:
    """Configure logging for the process; only with ``-v`` (the library never configures it)."""
    if verbose <= 0:
        return
    logging.basicConfig(
        level=logging.DEBUG if verbose > 1 else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )


def _free_port(host: str, transport: str) -> int:
    """A port on ``host`` that is free right now (used when ``--listen`` asks for port 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    with socket.socket(family, kind) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def _build_coordinator(
    *,
    user: str,
    host: str,
    port: int,
    transport: str,
    media_ports: tuple[int, int] | None,
    handler: CallHandler,
    source: Callable[[CallSession], AudioSource | None] | None = None,
    sink: Callable[[CallSession], AudioSink | None] | None = None,
    account: AccountSpec | None = None,
    proxy: str | None = None,
    inbound_auth: tuple[str, dict[str, str]] | None = None,
) -> SessionCoordinator:
    """Build and start a coordinator bound to ``host:port`` over ``transport``.

    With ``account`` it is our identity (From of our calls, user of our Contact), registered
    at start and used to answer challenges; ``proxy`` is the outbound proxy of every request.
    """
    local = account.aor if account is not None else f"sip:{user}@{format_host(host)}"
    builder = (
        SessionManagerBuilder()
        .with_local_address(local)
        .with_local_bind_addr(host, port)
        .with_transport(transport)
        .with_user_agent(f"sessioncore/{_version()}")
        .with_handler(handler)
        .with_audio(source, sink)
    )
    if media_ports is not None:
        builder = builder.with_media_ports(*media_ports)
    if account is not None:
        builder = builder.with_account(
            account.aor, account.username, account.password, account.registrar, account.expires
        )
    if proxy is not None:
        builder = builder.with_outbound_proxy(proxy)
    if inbound_auth is not None:
        builder = builder.with_inbound_auth(*inbound_auth)
    return await builder.build()


def _registration_line(info: RegistrationInfo) -> str:
    """``registration <aor>: <state> <status> <reason> expires=<n>`` (+ ``retry_in=<s>``)."""
    line = (
        f"registration {info.aor}: {info.state} {info.status} {info.reason}"
        f" expires={info.expires if info.expires is not None else 0}"
    )
    if info.retry_in is not None:
        line += f" retry_in={info.retry_in:.0f}"
    return line


class RegistrationTracker(CallHandler):
    """Prints every registration state change as a plain line and keeps count.

    ``changed`` is set on each change (the ``register`` command waits on it).
    """

    def __init__(self) -> None:
        self.last: RegistrationInfo | None = None
        #: the last outcome of a REGISTER that was not an unregistration (registered or failed)
        self.outcome: RegistrationInfo | None = None
        self.successes = 0
        self.changed = asyncio.Event()

    @property
    def ever_registered(self) -> bool:
        """Whether a registration ever succeeded."""
        return self.successes > 0

    @property
    def refreshes(self) -> int:
        """Successful registrations after the first."""
        return max(0, self.successes - 1)

    async def on_registration_state(self, info: RegistrationInfo) -> None:
        """Print ``registration <aor>: <state> ...`` and remember it."""
        self.last = info
        if info.state == "registered":
            self.successes += 1
            self.outcome = info
        elif info.state == "failed":
            self.outcome = info
        print(_registration_line(info), flush=True)
        self.changed.set()


async def _registration_error(
    coordinator: SessionCoordinator, aor: str, timeout: float = _REGISTER_TIMEOUT
) -> str | None:
    """Wait for account ``aor``'s registration: ``None`` once registered, else why it failed."""
    try:
        await coordinator.wait_registered(aor, timeout=timeout)
    except RegistrationFailed as exc:
        return f"registration of {aor} failed: {exc.status} {exc.reason}"
    except TimeoutError:
        return f"registration of {aor}: no outcome within {timeout:g} s"
    return None


async def _unless_stopped(coro: Coroutine[Any, Any, str | None], stop: asyncio.Event) -> str | None:
    """What ``coro`` returns, or a text saying we were interrupted if ``stop`` is set first."""
    loop = asyncio.get_running_loop()
    work = loop.create_task(coro)
    stopped = loop.create_task(stop.wait())
    try:
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work, stopped):
            task.cancel()
        await asyncio.gather(work, stopped, return_exceptions=True)
    if work.cancelled():
        return "interrupted before the registration completed"
    return work.result()


@contextlib.contextmanager
def _on_signals(callback: Callable[[], None]) -> Iterator[None]:
    """Run ``callback`` on SIGINT and SIGTERM while inside the block.

    Both are installed explicitly: a process started in the background inherits SIGINT ignored,
    and SIGTERM is what process managers (and tests) send.
    """
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, callback)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _tune_gc() -> None:
    """A server process's GC tuning: objects alive at start-up are never collected, and the
    young generation is collected less often (fewer pauses under thousands of calls/s)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def _live_status(
    err: Console, status: Callable[[], Text]
) -> contextlib.AbstractContextManager[Any]:
    """A live one-line status on stderr when it is a terminal (else nothing)."""
    if not err.is_terminal:
        return contextlib.nullcontext()
    return Live(
        console=err,
        get_renderable=status,
        refresh_per_second=2,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    )


def _stat(stats: dict[str, int], key: str) -> int:
    return int(stats.get(key, 0))


def _print_table(console: Console, title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def _stdout_console() -> Console:
    return Console(highlight=False, soft_wrap=False)


# --- the group --------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="sessioncore")
def main() -> None:
    """sessioncore: an asyncio SIP session stack. Test calls from the command line."""


# --- sessioncore uas -----------------------------------------------------------------------


@dataclass(slots=True)
class UasCounters:
    """What the UAS handler saw."""

    received: int = 0
    answered: int = 0
    rejected: int = 0
    ended: int = 0
    local_hangups: int = 0
    end_reasons: Counter[str] = field(default_factory=Counter)
    dtmf: str = ""
    media: list[MediaQuality] = field(default_factory=list)
    late_frames: int = 0
    frames_sent: int = 0


class UasHandler(RegistrationTracker):
    """Accepts (or rejects) every call, optionally hangs up after a delay, counts what happens
    (and, with ``--account``, prints the registration's state changes)."""

    def __init__(
        self,
        *,
        reject: int | None,
        hangup_after: float | None,
        max_calls: int | None,
        on_limit: Callable[[], None],
        answer_after: float | None = None,
    ) -> None:
        super().__init__()
        self.reject = reject
        self.answer_after = answer_after
        self.hangup_after = hangup_after
        self.max_calls = max_calls
        self.on_limit = on_limit
        self.limit_reached = False
        self.counters = UasCounters()
        self.coordinator: SessionCoordinator | None = None
        self._timers: dict[SessionId, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def on_incoming_call(self, call: IncomingCall) -> CallDecision:
        """Accept, or reject with ``--reject CODE``."""
        self.counters.received += 1
        log.info("incoming call %s from %s to %s", call.sip_call_id, call.from_uri, call.to_uri)
        if self.reject is not None:
            self.counters.rejected += 1
            return CallDecision.reject(
                status=self.reject, reason=_REASONS.get(self.reject, "Rejected")
            )
        if self.answer_after is not None:
            loop = asyncio.get_running_loop()
            self._timers[call.id] = loop.call_later(self.answer_after, self._start_answer, call.id)
            return CallDecision.defer()
        return CallDecision.accept()

    def _start_answer(self, session_id: SessionId) -> None:
        self._timers.pop(session_id, None)
        task = asyncio.get_running_loop().create_task(self._answer(session_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, session_id: SessionId) -> None:
        if self.coordinator is None:
            return
        try:
            await self.coordinator.accept_incoming_call(session_id)
        except SessionError as exc:  # the caller cancelled first, most likely
            log.debug("answer of %s skipped: %s", session_id, exc)

    async def on_call_established(
        self, session: CallSession, local_sdp: str | None, remote_sdp: str | None
    ) -> None:
        """Count the answer; with ``--hangup-after`` schedule our own BYE."""
        self.counters.answered += 1
        log.info("call %s established", session.sip_call_id)
        if self.hangup_after is not None:
            loop = asyncio.get_running_loop()
            self._timers[session.id] = loop.call_later(
                self.hangup_after, self._start_hangup, session.id
            )

    async def on_dtmf(self, session_id: SessionId, digit: str, duration_ms: int) -> None:
        """Print each received digit (``dtmf <session> <digit>``)."""
        self.counters.dtmf += digit
        print(f"dtmf {session_id} {digit}", flush=True)

    async def on_call_ended(self, session: CallSession, reason: str) -> None:
        """Count the end; stop the server when ``--max-calls`` calls have ended."""
        if session.media_stats is not None:
            q = session.media_stats
            self.counters.media.append(q)
            self.counters.late_frames += q.late_frames
            self.counters.frames_sent += int(q.details.get("frames_sent", 0))
        timer = self._timers.pop(session.id, None)
        if timer is not None:
            timer.cancel()
        self.counters.ended += 1
        self.counters.end_reasons[reason] += 1
        log.info("call %s ended: %s", session.sip_call_id, reason)
        if (
            self.max_calls is not None
            and self.counters.ended >= self.max_calls
            and not self.limit_reached
        ):
            self.limit_reached = True
            self.on_limit()

    def _start_hangup(self, session_id: SessionId) -> None:
        self._timers.pop(session_id, None)
        task = asyncio.get_running_loop().create_task(self._hangup(session_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hangup(self, session_id: SessionId) -> None:
        if self.coordinator is None:
            return
        try:
            await self.coordinator.terminate_session(session_id)
            self.counters.local_hangups += 1
        except SessionError as exc:  # the caller hung up first, most likely
            log.debug("hangup of %s skipped: %s", session_id, exc)

    async def close(self) -> None:
        """Cancel pending hangup timers and wait for hangups in progress."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


@main.command()
@click.option(
    "--listen",
    "listen",
    metavar="HOST:PORT",
    callback=_host_port,
    default="127.0.0.1:5060",
    show_default=True,
    help="Address to listen on (port 0: any free port).",
)
@_transport_option
@click.option(
    "--max-calls",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many calls have ended (default: run until SIGINT/SIGTERM).",
)
@click.option(
    "--reject",
    type=click.IntRange(400, 699),
    default=None,
    metavar="CODE",
    help="Reject every call with this status (e.g. 486) instead of answering.",
)
@click.option(
    "--media",
    "media",
    metavar="echo|tone[:HZ]|silence|play:FILE.wav",
    callback=_media_spec,
    default="silence",
    show_default=True,
    help="What to send to callers.",
)
@click.option(
    "--record",
    "record_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Record what each caller sends to DIR/<Call-ID>.wav (8 kHz mono 16-bit).",
)
@click.option(
    "--answer-after",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Ring (180) for this many seconds before answering each call.",
)
@click.option(
    "--hangup-after",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Hang up each call this many seconds after it is established.",
)
@click.option(
    "--auth-user",
    "auth_user",
    metavar="USER",
    default=None,
    help="Require digest credentials for incoming calls: this user, whose password comes "
    "from --auth-password-env (or a prompt). Unauthenticated INVITEs get 401.",
)
@click.option(
    "--auth-password-env",
    "auth_password_env",
    metavar="VAR",
    default="SESSIONCORE_AUTH_PASSWORD",
    show_default=True,
    help="Environment variable holding --auth-user's password.",
)
@click.option("--auth-realm", default="sessioncore", show_default=True, help="Digest realm.")
@_account_options
@_media_ports_option
@_verbose_option
def uas(
    listen: tuple[str, int],
    transport: str,
    max_calls: int | None,
    reject: int | None,
    media: MediaSpec,
    record_dir: Path | None,
    answer_after: float | None,
    hangup_after: float | None,
    auth_user: str | None,
    auth_password_env: str,
    auth_realm: str,
    account: str | None,
    username: str | None,
    password_env: str,
    registrar: str | None,
    proxy: str | None,
    media_ports: tuple[int, int] | None,
    verbose: int,
) -> None:
    """Answer incoming calls until interrupted (or until --max-calls calls have ended).

    With --account the UAS first registers (and prints ``registered AOR``); it exits 1 if the
    registration fails.
    """
    _setup_logging(verbose)
    spec = _account_spec(account, username, password_env, registrar)
    inbound = None
    if auth_user is not None:
        inbound = (auth_realm, {auth_user: _read_password(auth_password_env, auth_user)})
    code = asyncio.run(
        _run_uas(
            listen=listen,
            transport=transport.lower(),
            max_calls=max_calls,
            reject=reject,
            answer_after=answer_after,
            hangup_after=hangup_after,
            media_ports=media_ports,
            media=media,
            record_dir=record_dir,
            account=spec,
            proxy=proxy,
            inbound_auth=inbound,
        )
    )
    sys.exit(code)


async def _run_uas(
    *,
    listen: tuple[str, int],
    transport: str,
    max_calls: int | None,
    reject: int | None,
    hangup_after: float | None,
    media_ports: tuple[int, int] | None,
    answer_after: float | None = None,
    media: MediaSpec | None = None,
    record_dir: Path | None = None,
    account: AccountSpec | None = None,
    proxy: str | None = None,
    inbound_auth: tuple[str, dict[str, str]] | None = None,
) -> int:
    err = Console(stderr=True)
    host, port = listen
    spec = media or MediaSpec("silence")
    if record_dir is not None:
        record_dir.mkdir(parents=True, exist_ok=True)
    bridges: dict[SessionId, EchoBridge] = {}

    def make_source(session: CallSession) -> AudioSource:
        if spec.kind == "echo":
            bridge = bridges[session.id] = EchoBridge()
            return bridge
        return spec.source()

    def make_sink(session: CallSession) -> AudioSink | None:
        sinks: list[AudioSink] = []
        if record_dir is not None:
            name = _safe_name(session.sip_call_id or session.id)
            sinks.append(WavRecorder(record_dir / f"{name}.wav"))
        bridge = bridges.pop(session.id, None)
        if bridge is not None:
            sinks.append(bridge)
        if not sinks:
            return None
        return sinks[0] if len(sinks) == 1 else TeeSink(*sinks)

    if port == 0:
        port = _free_port(host, transport)
    stop = asyncio.Event()
    handler = UasHandler(
        reject=reject,
        hangup_after=hangup_after,
        max_calls=max_calls,
        on_limit=stop.set,
        answer_after=answer_after,
    )
    try:
        coordinator = await _build_coordinator(
            user="uas",
            host=host,
            port=port,
            transport=transport,
            media_ports=media_ports,
            handler=handler,
            source=make_source,
            sink=make_sink,
            account=account,
            proxy=proxy,
            inbound_auth=inbound_auth,
        )
    except (SessionError, OSError) as exc:
        err.print(f"[red]error:[/] cannot listen on {transport}:{host}:{port}: {exc}")
        return EXIT_FAILED
    handler.coordinator = coordinator
    _tune_gc()

    started = time.monotonic()
    active_at_stop = 0
    c = handler.counters

    def status() -> Text:  # runs in rich's refresh thread: read our own counters only
        reg = handler.last
        return Text(
            f"{transport}:{format_host(host)}:{port}  received {c.received}  "
            f"answered {c.answered}  rejected {c.rejected}  ended {c.ended}  "
            f"in progress {c.received - c.ended}"
            + (f"  {reg.aor}: {reg.state}" if reg is not None else "")
        )

    live = _live_status(err, status)
    try:
        with _on_signals(stop.set), live:
            if account is not None:
                problem = await _unless_stopped(_registration_error(coordinator, account.aor), stop)
                if problem is not None:
                    err.print(f"[red]error:[/] {problem}", highlight=False)
                    return EXIT_FAILED
                print(f"registered {account.aor}", flush=True)
            # announced only once SIGINT/SIGTERM are handled: a script may signal right away
            print(f"listening on {transport}:{format_host(host)}:{port}", flush=True)
            await stop.wait()
            if handler.limit_reached:
                await asyncio.sleep(_UAS_GRACE_SECONDS)
        active_at_stop = _stat(coordinator.get_stats(), "active_sessions")
    finally:
        await handler.close()
        await coordinator.stop()
    elapsed = time.monotonic() - started
    stats = coordinator.get_stats()

    failed = _stat(stats, "calls_failed")
    rows = [
        ("listening on", f"{transport}:{format_host(host)}:{port}"),
        ("calls received", str(c.received)),
        ("calls answered", str(c.answered)),
        ("calls rejected", str(c.rejected)),
        ("calls ended", str(c.ended)),
        ("calls failed", str(failed)),
        ("hung up by us", str(c.local_hangups)),
        ("active at stop", str(active_at_stop)),
        ("messages in", str(_stat(stats, "messages_received"))),
        ("messages out", str(_stat(stats, "messages_sent"))),
        ("retransmissions", str(_stat(stats, "retransmissions"))),
        ("parse errors", str(_stat(stats, "parse_errors"))),
        ("duration", f"{elapsed:.2f} s"),
        ("media", spec.describe()),
    ]
    media_rows = _media_lines(_sum_media(c.media)) if c.media else []
    if c.media:
        media_rows.append(("late frames", f"{c.late_frames} of {c.frames_sent}"))
    rows += media_rows
    if c.dtmf:
        rows.append(("dtmf received", c.dtmf))
    out = _stdout_console()
    _print_table(out, "sessioncore uas summary", rows)
    if c.end_reasons:
        _print_breakdown(out, "end reasons", "reason", c.end_reasons)
    for key, value in (
        ("received", c.received),
        ("answered", c.answered),
        ("rejected", c.rejected),
        ("ended", c.ended),
        ("failed", failed),
        ("active at stop", active_at_stop),
    ):
        print(f"{key}: {value}")
    for key, text in media_rows:
        print(f"{key}: {text}")
    sys.stdout.flush()
    return EXIT_OK


def _sum_media(items: list[MediaQuality]) -> MediaQuality:
    """All calls' RTP figures added up (jitter: the mean)."""
    n = len(items)
    return MediaQuality(
        packets_sent=sum(q.packets_sent for q in items),
        packets_received=sum(q.packets_received for q in items),
        packets_lost=sum(q.packets_lost for q in items),
        fraction_lost=sum(q.fraction_lost for q in items) / n if n else 0.0,
        jitter_ms=sum(q.jitter_ms for q in items) / n if n else 0.0,
        rtt_ms=None,
        mos=min((q.mos for q in items), default=0.0),
    )


def _print_breakdown(console: Console, title: str, column: str, counts: Counter[str]) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column(column)
    table.add_column("calls", justify="right")
    for key, value in counts.most_common():
        table.add_row(key, str(value))
    console.print(table)


# --- sessioncore call ----------------------------------------------------------------------


@dataclass(slots=True)
class CallResults:
    """What happened to the calls placed by ``sessioncore call``."""

    attempted: int = 0
    answered: int = 0
    failed: int = 0
    ended: int = 0
    unclean_ends: int = 0
    remote_hangups: int = 0
    interrupted: bool = False
    usage_error: str | None = None
    failures: Counter[str] = field(default_factory=Counter)
    end_reasons: Counter[str] = field(default_factory=Counter)
    setup_ms: list[float] = field(default_factory=list)
    launch_times: list[float] = field(default_factory=list)
    media: list[tuple[int, str, MediaQuality | None]] = field(default_factory=list)

    @property
    def finished(self) -> int:
        """Calls whose outcome is known (failed, or answered and over)."""
        return self.failed + self.ended + self.unclean_ends

    @property
    def launch_rate(self) -> float | None:
        """Calls started per second, measured between the first and the last start."""
        if len(self.launch_times) < 2:
            return None
        span = self.launch_times[-1] - self.launch_times[0]
        return (len(self.launch_times) - 1) / span if span > 0 else None

    def fail(self, reason: str) -> None:
        """Count a call that was never answered."""
        self.failed += 1
        self.failures[reason] += 1


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = max(0, math.ceil(pct / 100 * len(ordered)) - 1)
    return ordered[index]


class CallRunner:
    """Places calls with a bounded scheduler and records their outcomes in :class:`CallResults`.

    One call is started every ``1/rate`` seconds, with at most ``concurrency`` in flight (a
    semaphore: when it is full, the schedule slips rather than piling up).
    """

    def __init__(
        self,
        coordinator: SessionCoordinator,
        *,
        uri: str,
        from_uri: str | None,
        count: int,
        rate: float,
        concurrency: int,
        duration: float,
        timeout: float,
        on_progress: Callable[[CallResults], None],
        dtmf: str | None = None,
    ) -> None:
        self.dtmf = dtmf
        self.coordinator = coordinator
        self.uri = uri
        self.from_uri = from_uri
        self.count = count
        self.rate = rate
        self.concurrency = concurrency
        self.duration = duration
        self.timeout = timeout
        self.on_progress = on_progress
        self.results = CallResults()

    async def run(self) -> None:
        """Place every call and wait for all of them; cancel this to abort (calls are dropped)."""
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.concurrency)
        tasks: list[asyncio.Task[None]] = []
        start = loop.time()
        interval = 1.0 / self.rate
        try:
            for index in range(self.count):
                delay = start + index * interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await slots.acquire()
                self.results.launch_times.append(loop.time())
                task = loop.create_task(self._one_call(index))
                task.add_done_callback(lambda _t: slots.release())
                tasks.append(task)
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _one_call(self, index: int) -> None:
        results = self.results
        results.attempted += 1
        try:
            await self._call(index)
        except asyncio.CancelledError:
            results.interrupted = True
            raise
        except Exception as exc:  # a bug below us must not take the other calls down
            log.exception("call %d: unexpected error", index + 1)
            results.fail(f"error: {type(exc).__name__}")
        finally:
            self.on_progress(results)

    async def _call(self, index: int) -> None:
        results = self.results
        coordinator = self.coordinator
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            session = await coordinator.make_call(self.uri, self.from_uri)
        except InvalidArgumentError as exc:
            results.usage_error = str(exc)
            results.fail("invalid request")
            return
        except SessionError as exc:
            results.fail(f"error: {type(exc).__name__}")
            log.warning("call %d: could not start: %s", index + 1, exc)
            return
        sid = session.id
        # Wait for the end from the start, so that no end (however early) can be missed.
        end = loop.create_task(self._wait_end(sid))
        try:
            try:
                await coordinator.wait_for_answer(sid, timeout=self.timeout)
            except CallFailed as exc:
                key = str(exc.status) if exc.status is not None else (exc.reason or "failed")
                results.fail(key)
                log.info("call %d (%s) failed: %s", index + 1, session.sip_call_id, exc)
                return
            except TimeoutError:
                results.fail("timeout")
                log.info(
                    "call %d (%s): no answer in %ss", index + 1, session.sip_call_id, self.timeout
                )
                await self._hangup(sid)  # CANCEL
                await asyncio.wait({end}, timeout=self.timeout)
                return
            except SessionError as exc:
                results.fail(f"error: {type(exc).__name__}")
                log.warning("call %d: %s", index + 1, exc)
                return
            results.answered += 1
            results.setup_ms.append((loop.time() - began) * 1000.0)
            log.info("call %d (%s) answered", index + 1, session.sip_call_id)
            if self.dtmf:
                try:
                    await coordinator.send_dtmf(sid, self.dtmf)
                except SessionError as exc:
                    log.warning("call %d: DTMF not sent: %s", index + 1, exc)

            done, _ = await asyncio.wait({end}, timeout=self.duration)
            hung_up = True
            if done:
                results.remote_hangups += 1
            else:
                hung_up = await self._hangup(sid)
            try:
                reason = await asyncio.wait_for(asyncio.shield(end), timeout=self.timeout)
            except TimeoutError:
                reason = None
            ended = coordinator.get_session(sid)
            results.media.append(
                (index + 1, session.sip_call_id or sid, ended.media_stats if ended else None)
            )
            if reason is not None and hung_up:
                results.ended += 1
                results.end_reasons[reason] += 1
            else:
                results.unclean_ends += 1
                results.end_reasons[reason or "no end seen"] += 1
        finally:
            if not end.done():
                end.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await end

    async def _wait_end(self, sid: SessionId) -> str | None:
        """The end reason, or ``None`` when the library reported an error instead."""
        try:
            return await self.coordinator.wait_for_end(sid)
        except SessionError as exc:
            log.debug("wait_for_end(%s): %s", sid, exc)
            return None

    async def _hangup(self, sid: SessionId) -> bool:
        try:
            await self.coordinator.terminate_session(sid)
        except SessionError as exc:
            log.warning("hangup of %s failed: %s", sid, exc)
            return False
        return True


class _ProgressView:
    """Live progress on stderr (a rich ``Progress``), or nothing."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = enabled
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]calls"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("answered {task.fields[answered]}  failed {task.fields[failed]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            redirect_stdout=False,
            redirect_stderr=False,
            disable=not enabled,
        )
        self.task: TaskID = self.progress.add_task("calls", total=total, answered=0, failed=0)

    def update(self, results: CallResults) -> None:
        self.progress.update(
            self.task,
            completed=results.finished,
            answered=results.answered,
            failed=results.failed,
        )

    def __enter__(self) -> _ProgressView:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()


@main.command()
@click.argument("uri", metavar="SIP_URI", callback=_sip_uri)
@click.option(
    "--from", "from_uri", metavar="SIP_URI", callback=_sip_uri, help="From URI of the calls."
)
@click.option(
    "--listen",
    "listen",
    metavar="HOST:PORT",
    callback=_host_port,
    default="127.0.0.1:0",
    show_default=True,
    help="Local address to send from (port 0: any free port).",
)
@_transport_option
@click.option(
    "--count", type=click.IntRange(min=1), default=1, show_default=True, help="Number of calls."
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="New calls per second.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="At most this many calls in flight.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds each answered call stays up before we hang up.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=15.0,
    show_default=True,
    help="Seconds to wait for an answer (and for each end).",
)
@click.option(
    "--tone",
    type=click.FloatRange(20, 3900),
    default=None,
    metavar="HZ",
    help="Send a sine tone of HZ.",
)
@click.option(
    "--play",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE.wav",
    help="Send this WAV file (mono 16-bit, looped).",
)
@click.option(
    "--record",
    "record",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE.wav",
    help="Record what the callee sends (FILE-N.wav when --count > 1).",
)
@click.option(
    "--dtmf",
    default=None,
    metavar="DIGITS",
    help="Send these DTMF digits (RFC 4733, or SIP INFO) once the call is up.",
)
@_account_options
@_media_ports_option
@_verbose_option
def call(
    uri: str,
    from_uri: str | None,
    listen: tuple[str, int],
    transport: str,
    count: int,
    rate: float,
    concurrency: int,
    duration: float,
    timeout: float,
    tone: float | None,
    play: Path | None,
    record: Path | None,
    dtmf: str | None,
    account: str | None,
    username: str | None,
    password_env: str,
    registrar: str | None,
    proxy: str | None,
    media_ports: tuple[int, int] | None,
    verbose: int,
) -> None:
    """Place calls to SIP_URI and report how they went (exit 0 only if all succeeded).

    With --account the calls wait for the account's registration and go out as it (its
    credentials answer 401/407 challenges); exit 1 if the registration fails.
    """
    _setup_logging(verbose)
    if tone is not None and play is not None:
        raise click.UsageError("--tone and --play exclude each other")
    if play is not None:
        _check_wav(play)
    if dtmf is not None and (not dtmf or any(ch not in "0123456789*#ABCDabcd" for ch in dtmf)):
        raise click.BadParameter(f"{dtmf!r}: DTMF digits are 0-9 * # A-D", param_hint="--dtmf")
    spec = (
        MediaSpec("tone", tone) if tone is not None
        else MediaSpec("play", path=play) if play is not None
        else MediaSpec("silence")
    )  # fmt: skip
    account_spec = _account_spec(account, username, password_env, registrar)
    code = asyncio.run(
        _run_calls(
            uri=uri,
            from_uri=from_uri,
            listen=listen,
            transport=transport.lower(),
            count=count,
            rate=rate,
            concurrency=concurrency,
            duration=duration,
            timeout=timeout,
            media_ports=media_ports,
            spec=spec,
            record=record,
            dtmf=dtmf,
            account=account_spec,
            proxy=proxy,
        )
    )
    sys.exit(code)


async def _run_calls(
    *,
    uri: str,
    from_uri: str | None,
    listen: tuple[str, int],
    transport: str,
    count: int,
    rate: float,
    concurrency: int,
    duration: float,
    timeout: float,
    media_ports: tuple[int, int] | None,
    spec: MediaSpec | None = None,
    record: Path | None = None,
    dtmf: str | None = None,
    account: AccountSpec | None = None,
    proxy: str | None = None,
) -> int:
    err = Console(stderr=True)
    host, port = listen
    media = spec or MediaSpec("silence")
    recordings: list[Path] = []

    def make_sink(session: CallSession) -> AudioSink | None:
        if record is None:
            return None
        path = record if count == 1 else record.with_name(
            f"{record.stem}-{len(recordings) + 1}{record.suffix}"
        )  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        recordings.append(path)
        return WavRecorder(path)

    try:
        coordinator = await _build_coordinator(
            user="sessioncore",
            host=host,
            port=port,
            transport=transport,
            media_ports=media_ports,
            handler=RegistrationTracker(),
            source=lambda session: media.source(),
            sink=make_sink,
            account=account,
            proxy=proxy,
        )
    except (SessionError, OSError) as exc:
        err.print(f"[red]error:[/] cannot start on {transport}:{host}:{port}: {exc}")
        return EXIT_FAILED

    view = _ProgressView(count, enabled=err.is_terminal or count > 1)
    runner = CallRunner(
        coordinator,
        uri=uri,
        from_uri=from_uri,
        count=count,
        rate=rate,
        concurrency=concurrency,
        duration=duration,
        timeout=timeout,
        on_progress=view.update,
        dtmf=dtmf,
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    registration_problem: str | None = None

    async def place_calls() -> None:
        nonlocal registration_problem
        if account is not None:
            registration_problem = await _registration_error(coordinator, account.aor)
            if registration_problem is not None:
                return
        await runner.run()

    work = loop.create_task(place_calls())
    try:

        def interrupt() -> None:
            work.cancel()

        with _on_signals(interrupt), view:
            try:
                await work
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # we were cancelled ourselves, not interrupted by a signal
                runner.results.interrupted = True
    finally:
        await coordinator.stop()
    if registration_problem is not None:
        err.print(f"[red]error:[/] {registration_problem}; no call placed", highlight=False)
        return EXIT_FAILED
    elapsed = loop.time() - started
    results = runner.results
    _print_call_summary(
        results,
        uri=uri,
        transport=transport,
        elapsed=elapsed,
        stats=coordinator.get_stats(),
        recordings=recordings,
    )
    if results.usage_error is not None:
        err.print(f"[red]error:[/] {results.usage_error}")
        return EXIT_USAGE
    ok = (
        not results.interrupted
        and results.answered == count
        and results.ended == count
        and results.failed == 0
    )
    return EXIT_OK if ok else EXIT_FAILED


def _print_call_summary(
    results: CallResults,
    *,
    uri: str,
    transport: str,
    elapsed: float,
    stats: dict[str, int],
    recordings: list[Path] | None = None,
) -> None:
    rate = results.launch_rate
    rows = [
        ("target", f"{uri} ({transport})"),
        ("attempted", str(results.attempted)),
        ("answered", str(results.answered)),
        ("failed", str(results.failed)),
        ("ended cleanly", str(results.ended)),
        ("hung up by far end", str(results.remote_hangups)),
    ]
    if results.unclean_ends:
        rows.append(("answered, end not clean", str(results.unclean_ends)))
    if results.setup_ms:
        avg = sum(results.setup_ms) / len(results.setup_ms)
        rows.append(
            (
                "setup time avg / p95 / max",
                f"{avg:.1f} / {_percentile(results.setup_ms, 95):.1f}"
                f" / {max(results.setup_ms):.1f} ms",
            )
        )
    rows += [
        (
            "messages in / out",
            f"{_stat(stats, 'messages_received')} / {_stat(stats, 'messages_sent')}",
        ),
        ("retransmissions", str(_stat(stats, "retransmissions"))),
        ("parse errors", str(_stat(stats, "parse_errors"))),
        ("duration", f"{elapsed:.2f} s"),
        ("calls started per second", "-" if rate is None else f"{rate:.1f}"),
    ]
    out = _stdout_console()
    _print_table(out, "sessioncore call summary", rows)
    if results.failures:
        _print_breakdown(out, "failures", "status / reason", results.failures)
    if results.end_reasons:
        _print_breakdown(out, "end reasons", "reason", results.end_reasons)
    print(f"attempted: {results.attempted}")
    print(f"answered: {results.answered}")
    print(f"failed: {results.failed}")
    print(f"ended: {results.ended}")
    for reason, n in sorted(results.failures.items()):
        print(f"failure {reason}: {n}")
    if results.interrupted:
        print("interrupted: yes")
    # per-call RTP figures: one block per call, plain lines (the table above is for people)
    for index, call_id, quality in sorted(results.media, key=lambda m: m[0])[:100]:
        print(f"call {index} ({call_id}):")
        for key, text in _media_lines(quality):
            print(f"{key}: {text}")
    for path in recordings or []:
        try:
            pcm, rate = read_wav(path)
        except (SessionError, OSError) as exc:
            print(f"recording {path}: unreadable ({exc})")
            continue
        seconds = len(pcm) / 2 / rate if rate else 0.0
        freq = dominant_frequency(pcm, rate) if len(pcm) >= rate // 5 else 0.0
        print(f"recording {path}: {seconds:.2f} s, dominant frequency: {freq:.0f} Hz")
    sys.stdout.flush()


# --- sessioncore register ------------------------------------------------------------------


@main.command()
@click.argument("aor", metavar="AOR", callback=_account_aor)
@click.option("--username", metavar="USER", required=True, help="Authentication user name.")
@_password_env_option
@click.option(
    "--registrar",
    metavar="SIP_URI",
    callback=_sip_uri,
    default=None,
    help="Registrar to register with (default: the AOR's domain).",
)
@click.option(
    "--expires",
    type=click.IntRange(min=1),
    default=3600,
    show_default=True,
    metavar="SECONDS",
    help="Expiry to ask for (the registrar may grant less; refreshes come before it).",
)
@click.option(
    "--listen",
    "listen",
    metavar="HOST:PORT",
    callback=_host_port,
    default="127.0.0.1:0",
    show_default=True,
    help="Local address to register (our Contact; port 0: any free port).",
)
@_transport_option
@click.option("--once", is_flag=True, help="Register, unregister and exit (0 if registered).")
@_verbose_option
def register(
    aor: str,
    username: str,
    password_env: str,
    registrar: str | None,
    expires: int,
    listen: tuple[str, int],
    transport: str,
    once: bool,
    verbose: int,
) -> None:
    """Register AOR and stay registered until SIGINT/SIGTERM, then unregister.

    Each state change is printed as ``registration AOR: STATE STATUS REASON expires=N``; the
    library refreshes the binding before it expires. Exits 1 when the registration fails for
    good (e.g. a wrong password); with --once, 0 only if the registration succeeded.
    """
    _setup_logging(verbose)
    account = AccountSpec(aor, username, _read_password(password_env, username), registrar, expires)
    code = asyncio.run(
        _run_register(account=account, listen=listen, transport=transport.lower(), once=once)
    )
    sys.exit(code)


async def _run_register(
    *, account: AccountSpec, listen: tuple[str, int], transport: str, once: bool
) -> int:
    err = Console(stderr=True)
    host, port = listen
    if port == 0:
        port = _free_port(host, transport)
    aor = account.aor
    tracker = RegistrationTracker()
    try:
        coordinator = await _build_coordinator(
            user=account.username,
            host=host,
            port=port,
            transport=transport,
            media_ports=None,
            handler=tracker,
            account=account,
        )
    except (SessionError, OSError) as exc:
        err.print(f"[red]error:[/] cannot start on {transport}:{host}:{port}: {exc}")
        return EXIT_FAILED

    loop = asyncio.get_running_loop()
    started = loop.time()
    stop = asyncio.Event()
    gave_up: RegistrationInfo | None = None  # a failure the library will not retry
    timed_out = False
    registered_at_stop = False
    unregistered = False

    def status() -> Text:  # rich's refresh thread: read the tracker only
        info = tracker.last
        if info is None:
            return Text(f"{aor}: registering ...")
        text = f"{aor}: {info.state} {info.status} {info.reason}"
        if info.expires:
            text += f"  expires {info.expires} s"
        if info.retry_in is not None:
            text += f"  retry in {info.retry_in:.0f} s"
        return Text(f"{text}  refreshes {tracker.refreshes}")

    live = _live_status(err, status)
    try:
        with _on_signals(stop.set), live:
            log.info("registering %s from %s:%s:%s", aor, transport, format_host(host), port)
            deadline = loop.time() + _REGISTER_TIMEOUT if once else None
            while not stop.is_set():
                outcome = tracker.outcome
                # a failure ends the run when it is final (--once, or no retry is coming)
                if (
                    outcome is not None
                    and outcome.state == "failed"
                    and (once or outcome.retry_in is None)
                ):
                    gave_up = outcome
                    break
                if once and outcome is not None and outcome.state == "registered":
                    break
                tracker.changed.clear()
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    timed_out = True
                    break
                await _first_of(tracker.changed, stop, remaining)
            registered_at_stop = tracker.outcome is not None and tracker.outcome.registered
            current = coordinator.get_registration(aor)
            if current is not None and current.state in ("registered", "registering"):
                try:
                    info = await coordinator.unregister(aor, timeout=_UNREGISTER_TIMEOUT)
                    unregistered = info.state == "unregistered"
                except (TimeoutError, SessionError) as exc:
                    log.warning("unregistration of %s: %s", aor, exc or "no answer")
    finally:
        await coordinator.stop()
    elapsed = loop.time() - started

    last = tracker.outcome
    last_status = f"{last.status} {last.reason}" if last is not None else "none"
    if timed_out and last is None:
        last_status = f"no answer within {_REGISTER_TIMEOUT:g} s"
    rows = [
        ("account", aor),
        ("registrar", account.registrar or "(the AOR's domain)"),
        ("contact address", f"{transport}:{format_host(host)}:{port}"),
        ("registered", "yes" if tracker.ever_registered else "no"),
        ("refreshes", str(tracker.refreshes)),
        ("last status", last_status),
        ("unregistered", "yes" if unregistered else "no"),
        ("duration", f"{elapsed:.2f} s"),
    ]
    _print_table(_stdout_console(), "sessioncore register summary", rows)
    for name in ("registered", "refreshes", "last status", "unregistered"):
        print(f"{name}: {dict(rows)[name]}")
    sys.stdout.flush()
    if gave_up is not None or timed_out:
        why = last_status if gave_up is not None else f"no outcome within {_REGISTER_TIMEOUT:g} s"
        err.print(f"[red]error:[/] registration of {aor} failed: {why}", highlight=False)
        return EXIT_FAILED
    return EXIT_OK if registered_at_stop else EXIT_FAILED


async def _first_of(a: asyncio.Event, b: asyncio.Event, timeout: float | None) -> None:
    """Return when ``a`` or ``b`` is set, or after ``timeout`` seconds."""
    waits = {asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())}
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
