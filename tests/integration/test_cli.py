"""End-to-end checks of the command line, the examples and the demo, run as real subprocesses.

Every process talks SIP over loopback on ports that were free a moment before. Every wait is
bounded, and every process a test starts is killed at teardown whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"

START_TIMEOUT = 15.0  # a process prints its "listening on" line within this
RUN_TIMEOUT = 60.0  # any one command finishes within this


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "120"  # rich tables: no wrapping in captured output
    env.pop("FORCE_COLOR", None)
    return env


def free_port() -> int:
    """A port of 127.0.0.1 free for both UDP and TCP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def media_range() -> str:
    """A distinct RTP port range per process, so two local peers never pick the same ports."""
    base = 20000 + 200 * (next(_media_slots) % 150)
    return f"{base}-{base + 199}"


_media_slots = iter(range(10**6))


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass
class Result:
    """How a process ended."""

    rc: int
    out: str
    err: str

    def dump(self) -> str:
        """Everything the process printed, for assertion messages."""
        return f"exit {self.rc}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


class Proc:
    """A Python subprocess whose output is read by threads, so waits can be bounded."""

    def __init__(self, args: list[str], *, ignore_sigint: bool = False) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # ignore_sigint: like a process a shell starts in the background
            preexec_fn=_ignore_sigint if ignore_sigint else None,
        )
        self._out: list[str] = []
        self._err: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump, args=(self.popen.stdout, self._out, True)),
            threading.Thread(target=self._pump, args=(self.popen.stderr, self._err, False)),
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def _pump(self, stream: IO[str], sink: list[str], is_stdout: bool) -> None:
        for line in stream:
            sink.append(line)
            if is_stdout:
                self._lines.put(line)
        if is_stdout:
            self._lines.put(None)

    def wait_for_line(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """The first stdout line matching ``pattern``; fail if it does not come in time."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:  # stdout closed: the process is gone
                break
            match = re.search(pattern, line)
            if match:
                return match
        self.kill()
        pytest.fail(f"{self.args}: no line matching {pattern!r}\n{self.result().dump()}")

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` if the process still runs."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def finish(self, timeout: float = RUN_TIMEOUT) -> Result:
        """Wait for the process to exit on its own (killed, and the test failed, if it does not)."""
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.args}: still running after {timeout} s\n{self.result().dump()}")
        return self.result()

    def result(self) -> Result:
        """Exit status and output so far (all of it once the process has exited)."""
        if self.popen.poll() is not None:
            for thread in self._threads:
                thread.join(timeout=5)
        return Result(self.popen.returncode, "".join(self._out), "".join(self._err))

    def kill(self) -> None:
        """Kill the process if it still runs, and reap it."""
        if self.popen.poll() is None:
            self.popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)


@pytest.fixture
def spawn() -> Iterator[Callable[..., Proc]]:
    """Start subprocesses that are killed at teardown, whatever the test did."""
    procs: list[Proc] = []

    def start(args: list[str], **kwargs: bool) -> Proc:
        proc = Proc(args, **kwargs)
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            proc.kill()
            for stream in (proc.popen.stdout, proc.popen.stderr):
                if stream is not None:
                    stream.close()


def run(args: list[str], timeout: float = RUN_TIMEOUT) -> Result:
    """Run a Python command to completion (killed after ``timeout``)."""
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def counter(output: str, name: str) -> int:
    """The value of a plain ``name: N`` summary line."""
    match = re.search(rf"^{re.escape(name)}: (\d+)\s*$", output, re.MULTILINE)
    assert match, f"no '{name}: N' line in:\n{output}"
    return int(match.group(1))


def start_uas(spawn: Callable[..., Proc], port: int, *extra: str, transport: str = "udp") -> Proc:
    """``sessioncore uas`` on ``port``, once it says it is listening."""
    uas = spawn(
        [
            "-m",
            "sessioncore",
            "uas",
            "--listen",
            f"127.0.0.1:{port}",
            "--transport",
            transport,
            "--media-ports",
            media_range(),
            *extra,
        ]
    )
    uas.wait_for_line(rf"^listening on {transport}:127\.0\.0\.1:{port}\b")
    return uas


def call_args(port: int, *extra: str, transport: str = "udp") -> list[str]:
    """Arguments of ``sessioncore call`` towards a local UAS on ``port``."""
    return [
        "-m",
        "sessioncore",
        "call",
        f"sip:uas@127.0.0.1:{port}",
        "--transport",
        transport,
        "--media-ports",
        media_range(),
        "--timeout",
        "10",
        *extra,
    ]


# --- sessioncore uas / call --------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_calls_are_all_answered(spawn: Callable[..., Proc], transport: str) -> None:
    port = free_port()
    uas = start_uas(spawn, port, "--max-calls", "3", transport=transport)

    result = run(
        call_args(port, "--count", "3", "--rate", "20", "--duration", "0.2", transport=transport)
    )

    assert result.rc == 0, result.dump()
    assert counter(result.out, "attempted") == 3
    assert counter(result.out, "answered") == 3
    assert counter(result.out, "failed") == 0
    assert counter(result.out, "ended") == 3
    assert "sessioncore call summary" in result.out

    served = uas.finish(timeout=20)  # --max-calls 3: it stops by itself
    assert served.rc == 0, served.dump()
    assert counter(served.out, "received") == 3
    assert counter(served.out, "answered") == 3
    assert counter(served.out, "ended") == 3
    assert counter(served.out, "active at stop") == 0
    assert "sessioncore uas summary" in served.out


def test_rejected_calls_fail_with_their_status(spawn: Callable[..., Proc]) -> None:
    port = free_port()
    uas = start_uas(spawn, port, "--reject", "486")

    result = run(call_args(port, "--count", "2", "--duration", "0.2"))

    assert result.rc == 1, result.dump()
    assert counter(result.out, "attempted") == 2
    assert counter(result.out, "answered") == 0
    assert counter(result.out, "failed") == 2
    assert counter(result.out, "failure 486") == 2

    uas.signal(signal.SIGTERM)
    served = uas.finish(timeout=20)
    assert served.rc == 0, served.dump()
    assert counter(served.out, "received") == 2
    assert counter(served.out, "rejected") == 2
    assert counter(served.out, "answered") == 0


def test_uas_hangs_up_after_delay(spawn: Callable[..., Proc]) -> None:
    port = free_port()
    uas = start_uas(spawn, port, "--hangup-after", "0.3", "--max-calls", "1")

    began = time.monotonic()
    result = run(call_args(port, "--duration", "20"))
    elapsed = time.monotonic() - began

    assert result.rc == 0, result.dump()
    assert counter(result.out, "answered") == 1
    assert counter(result.out, "ended") == 1
    assert re.search(r"hung up by far end\W+1\b", result.out), result.dump()
    assert elapsed < 15, f"the UAS did not hang up: the call lasted {elapsed:.1f} s"
    assert uas.finish(timeout=20).rc == 0


def test_uas_stops_on_sigint_even_when_started_in_background(spawn: Callable[..., Proc]) -> None:
    port = free_port()
    uas = spawn(["-m", "sessioncore", "uas", "--listen", f"127.0.0.1:{port}"], ignore_sigint=True)
    uas.wait_for_line(rf"^listening on udp:127\.0\.0\.1:{port}\b")

    uas.signal(signal.SIGINT)
    served = uas.finish(timeout=20)

    assert served.rc == 0, served.dump()
    assert counter(served.out, "received") == 0
    assert "sessioncore uas summary" in served.out


def test_call_without_answer_fails(spawn: Callable[..., Proc]) -> None:
    port = free_port()  # nobody listens there
    result = run(
        ["-m", "sessioncore", "call", f"sip:nobody@127.0.0.1:{port}", "--timeout", "2"],
        timeout=90,
    )
    assert result.rc == 1, result.dump()
    assert counter(result.out, "attempted") == 1
    assert counter(result.out, "answered") == 0
    assert counter(result.out, "failed") == 1


@pytest.mark.parametrize("uri", ["not a uri", "http://example.com/", "sip:"])
def test_bad_uri_is_a_usage_error(uri: str) -> None:
    result = run(["-m", "sessioncore", "call", uri], timeout=30)
    assert result.rc == 2, result.dump()
    assert "not a valid SIP URI" in result.err, result.dump()


def test_bad_listen_address_is_a_usage_error() -> None:
    result = run(["-m", "sessioncore", "uas", "--listen", "localhost"], timeout=30)
    assert result.rc == 2, result.dump()
    assert "HOST:PORT" in result.err, result.dump()


# --- examples ----------------------------------------------------------------------------------


def test_example_client_and_server(spawn: Callable[..., Proc]) -> None:
    server_port, client_port = free_port(), free_port()
    server = spawn(["examples/uas_server.py", "--port", str(server_port), "--auto-shutdown", "60"])
    server.wait_for_line(rf"listening on 127\.0\.0\.1:{server_port}\b")

    client = run(
        [
            "examples/uac_client.py",
            "--port",
            str(client_port),
            "--target",
            f"127.0.0.1:{server_port}",
            "--calls",
            "3",
            "--duration",
            "0.5",
            "--delay",
            "0.2",
        ]
    )

    assert client.rc == 0, client.dump()
    assert "=== Final Statistics ===" in client.out
    assert counter(client.out, "Calls initiated") == 3
    assert counter(client.out, "Calls connected") == 3
    assert counter(client.out, "Calls failed") == 0

    server.signal(signal.SIGTERM)
    served = server.finish(timeout=20)
    assert served.rc == 0, served.dump()
    assert "=== Server Statistics ===" in served.out


def test_example_server_shuts_down_by_itself(spawn: Callable[..., Proc]) -> None:
    port = free_port()
    server = spawn(["examples/uas_server.py", "--port", str(port), "--auto-shutdown", "1"])
    served = server.finish(timeout=30)
    assert served.rc == 0, served.dump()
    assert "=== Server Statistics ===" in served.out


# --- make demo ---------------------------------------------------------------------------------


def test_demo() -> None:
    result = run(["scripts/demo.py"], timeout=90)
    assert result.rc == 0, result.dump()
    assert "demo OK" in result.out
    assert len(re.findall(r"^Call \d\s+Call-ID \S+", result.out, re.MULTILINE)) == 3
