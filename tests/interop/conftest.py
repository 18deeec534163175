"""Helpers and fixtures for interop tests against real SIP peers (SIPp first).

Everything binds 127.0.0.1. Every child process runs in its own session (process group), is
waited for with a bound, and is killed in teardown whatever happened in the test.

- ``require_peer("sipp")``: the binary's path; skips when it is missing, fails instead when
  ``SESSIONCORE_REQUIRE_PEERS=1`` (CI).
- ``free_port()``: a port free for both UDP and TCP on 127.0.0.1.
- ``SippRun``: one SIPp process in its own folder (stats CSV, error and message logs), with the
  final CSV row parsed into a ``SippResult``.
- ``SessioncoreProc``: ``python -m sessioncore ...`` as a child with its output in a file.
- fixtures ``sipp`` and ``sessioncore`` return factories whose processes are reaped at teardown.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from .baresip import Baresip

HOST = "127.0.0.1"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIRE_PEERS_ENV = "SESSIONCORE_REQUIRE_PEERS"

Transport = Literal["udp", "tcp"]
TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp")

#: SIPp's own bound on a run (``-timeout``); our wait adds a margin on top of it.
SIPP_TIMEOUT_S = 60
#: how long a sessioncore child gets to bind its port
STARTUP_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------- peers and ports


def peers_required() -> bool:
    return os.environ.get(REQUIRE_PEERS_ENV, "") == "1"


def require_peer(binary: str) -> str:
    """Path of ``binary``; skips the test when it is missing.

    Fails instead under ``SESSIONCORE_REQUIRE_PEERS=1`` (CI), where a missing peer is an error.
    """
    path = shutil.which(binary)
    if path is not None:
        return path
    reason = f"interop peer {binary!r} is not installed (not on PATH); `make peers` installs it"
    if peers_required():
        pytest.fail(f"{reason}, and {REQUIRE_PEERS_ENV}=1 requires every peer", pytrace=False)
    pytest.skip(reason)


def free_port(host: str = HOST, attempts: int = 50) -> int:
    """A port on ``host`` that is free for UDP and TCP at the time of the call."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
        return port
    raise RuntimeError(f"no port free for both UDP and TCP on {host} after {attempts} tries")


def _proc_net_bound(port: int, transport: Transport) -> bool | None:
    """Whether a socket is bound (UDP) or listening (TCP) on 127.0.0.1/0.0.0.0:port.

    None when /proc/net is not available (not Linux).
    """
    table = Path("/proc/net") / transport
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return None
    wanted = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or fields[1] not in wanted:
            continue
        if transport == "udp" or fields[3] == "0A":  # 0A = TCP_LISTEN
            return True
    return False


def _probe_port(port: int, transport: Transport) -> bool:
    """Fallback readiness probe without /proc: an OPTIONS over UDP, a connect over TCP."""
    if transport == "tcp":
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return True
        except OSError:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(0.3)
        local = sock.getsockname()[1]
        options = (
            f"OPTIONS sip:probe@{HOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{local};branch=z9hG4bK-probe-{time.monotonic_ns()}\r\n"
            f"From: <sip:probe@{HOST}:{local}>;tag=probe\r\n"
            f"To: <sip:probe@{HOST}:{port}>\r\n"
            f"Call-ID: probe-{time.monotonic_ns()}@{HOST}\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        try:
            sock.sendto(options.encode(), (HOST, port))
            sock.recvfrom(65535)
        except OSError:
            return False
        return True


def port_ready(port: int, transport: Transport) -> bool:
    bound = _proc_net_bound(port, transport)
    return bound if bound is not None else _probe_port(port, transport)


# --------------------------------------------------------------------------- child processes


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _terminate(proc: subprocess.Popen[bytes], grace_s: float) -> int:
    """SIGTERM the child's process group, wait ``grace_s``, then SIGKILL. Returns the exit code."""
    if proc.poll() is None:
        _kill_group(proc, signal.SIGTERM)
        try:
            return proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    _kill_group(proc, signal.SIGKILL)  # also reaps stray grandchildren of an exited leader
    return proc.wait(timeout=10)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def summary_count(output: str, *labels: str) -> int | None:
    """The number printed next to the first of ``labels`` found in a summary.

    Accepts ``answered: 3``, ``answered = 3``, ``| answered | 3 |`` and ``3 answered``/``3 calls
    answered``; labels match as whole words, case-insensitively (``answered`` does not match
    ``unanswered``). None when no label is found.
    """
    for label in labels:
        word = re.escape(label)
        after = re.search(rf"(?im)(?<![\w-]){word}(?![\w-])[^\d\n]{{0,24}}(\d+)", output)
        if after:
            return int(after.group(1))
        before = re.search(rf"(?im)(\d+)\s+(?:calls?\s+)?{word}(?![\w-])", output)
        if before:
            return int(before.group(1))
    return None


def sessioncore_env() -> dict[str, str]:
    """Environment for children: src/ on the path (works before `pip install -e .`)."""
    env = dict(os.environ)
    src = str(REPO_ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def sessioncore_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "sessioncore", *args]


class SessioncoreProc:
    """``python -m sessioncore ARGS`` as a child process; output (stdout+stderr) goes to a file."""

    def __init__(self, workdir: Path, args: Sequence[str], name: str = "sessioncore") -> None:
        self.workdir = workdir
        self.args = list(args)
        self.name = name
        self.log_path = workdir / f"{name}.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def argv(self) -> list[str]:
        return sessioncore_argv(*self.args)

    def start(self) -> SessioncoreProc:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=sessioncore_env(),
                start_new_session=True,
            )
        return self

    @property
    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\nexit status: {self.returncode}\n"
            f"--- {self.name} output (tail) ---\n{_tail(self.output)}"
        )

    def wait_listening(
        self, port: int, transport: Transport, timeout_s: float = STARTUP_TIMEOUT_S
    ) -> None:
        """Wait until the child has bound ``port``; fail if it exits first or takes too long.

        The bound socket (in /proc/net, else a probe) is the signal, not a "listening" line: a
        line can be printed a moment before the bind.
        """
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                pytest.fail(f"{self.name} exited before listening\n{self.describe()}")
            if port_ready(port, transport):
                return
            time.sleep(0.05)
        self.stop()
        pytest.fail(
            f"{self.name} not listening on {transport} {port} after {timeout_s}s\n{self.describe()}"
        )

    def wait(self, timeout_s: float) -> int | None:
        """Wait for the child to exit on its own; None (still running) after ``timeout_s``."""
        assert self.proc is not None, "start() first"
        try:
            self.returncode = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, grace_s: float = 10.0) -> int:
        """SIGTERM, wait ``grace_s`` for the summary and exit, then SIGKILL."""
        assert self.proc is not None, "start() first"
        if self.returncode is None:
            self.returncode = _terminate(self.proc, grace_s)
        return self.returncode


@dataclass(frozen=True)
class CliRun:
    argv: list[str]
    returncode: int | None  # None: killed on timeout
    output: str

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\nexit status: {self.returncode}\n"
            f"--- output (tail) ---\n{_tail(self.output)}"
        )


def run_sessioncore(workdir: Path, args: Sequence[str], timeout_s: float) -> CliRun:
    """Run ``python -m sessioncore ARGS`` to completion, bounded (killed after ``timeout_s``)."""
    child = SessioncoreProc(workdir, args, name=args[0] if args else "sessioncore").start()
    code = child.wait(timeout_s)
    if code is None:
        child.stop(grace_s=5.0)
        code = None
    return CliRun(child.argv, code, child.output)


# --------------------------------------------------------------------------- SIPp


@dataclass(frozen=True)
class SippResult:
    """A finished SIPp run: exit code and the last row of its ``-stf`` statistics CSV."""

    returncode: int | None  # None: killed after overrunning its bound
    stats: dict[str, str]
    workdir: Path
    argv: list[str]

    def counter(self, name: str) -> int:
        value = self.stats.get(name)
        if value is None or not value.strip():
            raise KeyError(f"SIPp statistics have no {name!r} (have: {sorted(self.stats)[:8]}...)")
        return int(float(value))

    @property
    def successful(self) -> int:
        return self.counter("SuccessfulCall(C)")

    @property
    def failed(self) -> int:
        return self.counter("FailedCall(C)")

    @property
    def retransmissions(self) -> int:
        return self.counter("Retransmissions(C)")

    @property
    def created(self) -> int:
        return self.counter("TotalCallCreated")

    def _read(self, name: str, limit: int) -> str:
        path = self.workdir / name
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text if len(text) <= limit else "[...]\n" + text[-limit:]

    def describe(self) -> str:
        nonzero = {
            k: v
            for k, v in self.stats.items()
            if k.endswith("(C)")
            and k.startswith(("Failed", "Retrans", "Dead", "OutOfCall", "Succ"))
            and v.strip() not in ("", "0")
        }
        return (
            f"$ {' '.join(self.argv)}\n(in {self.workdir})\nexit status: {self.returncode}\n"
            f"cumulative counters (non-zero): {nonzero}\n"
            f"--- SIPp errors ---\n{self._read('errors.log', 4000)}\n"
            f"--- SIPp screen (tail) ---\n{_tail(self._read('sipp.out', 20000), 30)}\n"
            f"--- SIPp messages (tail) ---\n{self._read('messages.log', 3000)}"
        )


def read_sipp_stats(path: Path) -> dict[str, str]:
    """The last row of a SIPp ``-stf`` CSV (';'-separated) as {column: value}; {} if none."""
    try:
        with path.open(newline="", errors="replace") as fh:
            rows = [row for row in csv.reader(fh, delimiter=";") if any(c.strip() for c in row)]
    except FileNotFoundError:
        return {}
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {name: value for name, value in zip(header, last, strict=False) if name}


class SippRun:
    """One SIPp process, run in its own folder with bounded waits.

    ``scenario`` is a built-in name (``"uac"``, ``"uas"``) or the path of an XML file. A UAC
    needs ``remote`` (``host:port``). Files in ``workdir``: ``stats.csv``, ``errors.log``,
    ``messages.log`` (with ``trace_msg``), ``sipp.out`` (the screen).
    """

    def __init__(
        self,
        workdir: Path,
        scenario: str | Path,
        *,
        remote: str | None = None,
        port: int | None = None,
        transport: Transport = "udp",
        calls: int | None = None,
        rate: float | None = None,
        service: str = "service",
        timeout_s: int = SIPP_TIMEOUT_S,
        trace_msg: bool = True,
        extra: Sequence[str] = (),
    ) -> None:
        self.binary = require_peer("sipp")
        self.workdir = workdir
        self.scenario = scenario
        self.remote = remote
        self.port = port if port is not None else free_port()
        self.transport: Transport = transport
        self.calls = calls
        self.rate = rate
        self.service = service
        self.timeout_s = timeout_s
        self.trace_msg = trace_msg
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self.result: SippResult | None = None

    @property
    def argv(self) -> list[str]:
        argv = [self.binary]
        if self.remote:
            argv.append(self.remote)
        if isinstance(self.scenario, Path) or self.scenario.endswith(".xml"):
            argv += ["-sf", str(self.scenario)]
        else:
            argv += ["-sn", self.scenario]
        argv += [
            "-t", "t1" if self.transport == "tcp" else "u1",
            "-i", HOST, "-p", str(self.port),
            "-mi", HOST, "-mp", str(free_port()),
            "-ci", HOST, "-cp", str(free_port()),  # control socket: else 0.0.0.0:8888
            "-s", self.service,
            "-nostdin",
            "-trace_stat", "-stf", "stats.csv", "-fd", "1",
            "-trace_err", "-error_file", "errors.log",
            "-timeout", f"{self.timeout_s}s",
        ]  # fmt: skip
        if self.trace_msg:
            argv += ["-trace_msg", "-message_file", "messages.log"]
        if self.calls is not None:
            argv += ["-m", str(self.calls)]
        if self.rate is not None:
            argv += ["-r", f"{self.rate:g}"]
        return argv + self.extra

    def start(self) -> SippRun:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / "sipp.out").open("wb") as screen:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=screen,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_listening(self, timeout_s: float = STARTUP_TIMEOUT_S) -> SippRun:
        """For a SIPp UAS: wait until its SIP port is bound."""
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"SIPp exited before listening\n{self._finish().describe()}")
            if _proc_net_bound(self.port, self.transport) is not False:
                return self
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"SIPp not listening on {self.port}\n{self._finish().describe()}")

    def _finish(self) -> SippResult:
        assert self.proc is not None
        self.result = SippResult(
            self.proc.returncode,
            read_sipp_stats(self.workdir / "stats.csv"),
            self.workdir,
            self.argv,
        )
        return self.result

    def wait(self, timeout_s: float | None = None) -> SippResult:
        """Wait for SIPp to end by itself (``-m`` reached or its own ``-timeout``), bounded.

        A SIPp that overruns ``timeout_s`` (default: its ``-timeout`` plus 15 s) is killed and
        reported as returncode None.
        """
        assert self.proc is not None, "start() first"
        bound = timeout_s if timeout_s is not None else self.timeout_s + 15
        try:
            self.proc.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            _terminate(self.proc, grace_s=2.0)
            self._finish()
            assert self.result is not None
            self.result = SippResult(None, self.result.stats, self.workdir, self.argv)
            return self.result
        return self._finish()

    def run(self, timeout_s: float | None = None) -> SippResult:
        return self.start().wait(timeout_s)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            _terminate(self.proc, grace_s=2.0)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[Callable[..., SippRun]]:
    """Factory for ``SippRun``s in ``tmp_path/<name>``; every one is killed at teardown."""
    runs: list[SippRun] = []

    def make(scenario: str | Path, *, name: str | None = None, **kwargs: Any) -> SippRun:
        label = name or f"sipp{len(runs)}"
        run = SippRun(tmp_path / label, scenario, **kwargs)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.kill()


@pytest.fixture(scope="session")
def sessioncore_cli(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Checks once that ``python -m sessioncore --help`` works; returns the help text."""
    workdir = tmp_path_factory.mktemp("cli-help")
    result = run_sessioncore(workdir, ["--help"], timeout_s=30)
    if result.returncode != 0:
        pytest.fail(f"the sessioncore CLI does not run\n{result.describe()}", pytrace=False)
    return result.output


@dataclass
class RunningUas:
    proc: SessioncoreProc
    port: int
    transport: Transport

    @property
    def remote(self) -> str:
        return f"{HOST}:{self.port}"


@pytest.fixture
def sessioncore_uas(tmp_path: Path, sessioncore_cli: str) -> Iterator[Callable[..., RunningUas]]:
    """Factory: start ``sessioncore uas`` on a free port and wait until it listens.

    ``start(*extra_args, transport="udp", name="uas")``; stopped (SIGTERM, then SIGKILL) at
    teardown if the test did not stop it.
    """
    started: list[SessioncoreProc] = []

    def start(*extra: str, transport: Transport = "udp", name: str = "uas") -> RunningUas:
        port = free_port()
        args = ["uas", "--listen", f"{HOST}:{port}", "--transport", transport, *extra]
        proc = SessioncoreProc(tmp_path / name, args, name=name)
        started.append(proc)
        proc.start()
        proc.wait_listening(port, transport)
        return RunningUas(proc, port, transport)

    yield start
    for proc in started:
        proc.stop(grace_s=5.0)


# --------------------------------------------------------------------------- baresip

#: RTP ports of the n-th baresip of a test: BARESIP_RTP_BASE + n * BARESIP_RTP_SPAN onwards (clear
#: of the 20000-20999 media range the sessioncore side uses in these tests)
BARESIP_RTP_BASE = 10000
BARESIP_RTP_SPAN = 40


@pytest.fixture
def baresip(tmp_path: Path) -> Iterator[Callable[..., Baresip]]:
    """Factory for :class:`Baresip` peers in ``tmp_path/<name>``, not yet started.

    ``make(name="baresip", tone_hz=440, user="test", answermode="auto", **kwargs)``: each gets a
    free SIP port and its own RTP port range; every one is stopped (SIGTERM, then SIGKILL) at
    teardown. Skips (fails under ``SESSIONCORE_REQUIRE_PEERS=1``) when baresip is missing.
    """
    binary = require_peer("baresip")
    peers: list[Baresip] = []

    def make(name: str | None = None, **kwargs: Any) -> Baresip:
        label = name or f"baresip{len(peers)}"
        lo = BARESIP_RTP_BASE + len(peers) * BARESIP_RTP_SPAN
        kwargs.setdefault("sip_port", free_port())
        kwargs.setdefault("rtp_ports", (lo, lo + BARESIP_RTP_SPAN - 1))
        peer = Baresip(tmp_path / label, binary=binary, name=label, **kwargs)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.stop(grace_s=3.0)
