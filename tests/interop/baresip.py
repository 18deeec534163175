"""A headless baresip (Debian ``baresip-core`` 1.0.0) as an interop peer: config, control, logs.

Everything below was checked against baresip 1.0.0 on this machine (127.0.0.1 only).

Config folder (``baresip -f DIR``): ``config``, ``accounts``, an empty ``contacts``. The lines
that matter (see :meth:`Baresip.config_text`)::

    sip_listen       127.0.0.1:PORT          # also binds TCP PORT (and PORT+1 for TLS)
    net_interface    127.0.0.1               # the interface name "lo" fails
    rtp_ports        LO-HI                   # keep it clear of our own media range
    audio_source     ausine,440              # the device string is the frequency in Hz
    ausrc_srate      48000                   # ausine runs at 48 kHz stereo; baresip resamples
    ausrc_channels   2
    audio_player     nil,nil                 # no sound card: decoded audio is dropped ...
    audio_alert      nil,nil
    snd_path         DIR                     # ... but the sndfile filter records it
    statmode_default off                     # else menu prints a status ticker every 100 ms
    module stdio.so / g711.so / sndfile.so / ausine.so
    module_tmp account.so                    # REQUIRED: without it the accounts file is not read
                                             # and /dial fails "ua_connect failed: Invalid arg"
    module_app menu.so                       # the commands (/dial, /hold ...) and keys

Account line: ``<sip:test@127.0.0.1>;regint=0;answermode=auto`` (auto-answer; the request user of
an incoming INVITE must be ``test`` or baresip answers 404).

Control: ``stdio.so`` reads stdin even when it is a pipe (it logs "could not setup terminal:
Inappropriate ioctl for device" and works anyway; with stdin on /dev/null it fails to load, which
is harmless). Every byte is a key press for ``menu.so``; a long command is ``/name args`` plus a
newline. ``-e "/dial sip:..."`` types the same at start. Commands used here:

* ``/dial sip:user@127.0.0.1:PORT`` — call; logs ``Call established: <peer uri>``.
* ``/hangup`` (key ``b``) — BYE; logs ``Call with ... terminated (duration: N secs)``.
* DTMF: while a call is up, the keys ``0-9 * # A-D`` send RFC 4733 telephone-event (payload
  type 101, always offered). One key per ~0.25 s gives a start and an end per digit, logged
  ``audio: send DTMF digit: '1'`` / ``audio: send DTMF digit end: '1'``. ``/sndcode 123#``
  sends a burst: each digit ends the previous one (only the last gets an explicit end).
  Received digits are logged ``received event: '1' (end=0)`` then ``(end=1)``. (SIP INFO DTMF
  is neither sent nor logged by 1.0.0.)
* Hold: ``/hold`` (key ``x``) sends a re-INVITE with ``a=sendonly`` and logs ``call: hold
  <uri>``; ``/resume`` (key ``X``, capital) re-INVITEs with ``a=sendrecv``, logs ``call:
  resume``. A held baresip only logs ``call: got re-INVITE (SDP Offer)`` (the SDP is visible
  with ``-s``, the SIP trace, which this harness turns on) and answers ``a=recvonly``.
* ``A`` (``/audio_debug``) prints the audio stream with RTCP counters (``rcvd=N`` packets).

Lifecycle: SIGTERM (as ``-t SECONDS`` does) hangs up every call with a BYE and exits at once
(exit status 0, "terminated by signal 15"); the peer logs "session closed: Connection reset by
peer" for a BYE it received.

Recording: the ``sndfile`` filter writes ``dump-YYYY-MM-DD-hh-mm-ss-dec.wav`` (heard) and
``-enc.wav`` (sent) per call in ``snd_path``, at the codec rate (8 kHz mono 16-bit for G.711);
the name has a 1-second resolution. Quirk: after any re-INVITE (hold, resume, either side) the
decode pipeline is rebuilt *without* sndfile, so ``-dec.wav`` stops growing at the first
re-INVITE although RTP keeps arriving (``A`` still shows ``rcvd`` rising). A call leg with
nothing heard yet (before RTP arrives) is not in the file: recordings start with the first
decoded packet.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
#: how long baresip gets to print "baresip is ready." and bind its SIP port
READY_TIMEOUT_S = 10.0
#: a gap between DTMF key presses that gives every digit its own start and end
DTMF_KEY_GAP_S = 0.25

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RECEIVED_DTMF = re.compile(r"received event: '(.)' \(end=1\)")
_SENT_DTMF = re.compile(r"send DTMF digit: '(.)'")
#: one message of the -s trace: "ESC[36;1m#", "UDP src -> dst", the message, "ESC[;m"
_TRACE_BLOCK = re.compile(r"\x1b\[36;1m#\n(UDP|TCP|TLS) (\S+) -> (\S+)\n(.*?)\x1b\[;m", re.DOTALL)


@dataclass(frozen=True)
class SipTraceMessage:
    """One SIP message from baresip's ``-s`` trace."""

    transport: str
    source: str  # "127.0.0.1:5060"
    destination: str
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def is_request(self) -> bool:
        return not self.first_line.startswith("SIP/2.0")

    @property
    def method(self) -> str:
        """The request method, or the CSeq method of a response."""
        if self.is_request:
            return self.first_line.split(" ", 1)[0]
        cseq = re.search(r"(?im)^CSeq:\s*\d+\s+(\S+)", self.text)
        return cseq.group(1) if cseq else ""

    @property
    def status(self) -> int | None:
        if self.is_request:
            return None
        parts = self.first_line.split()
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

    @property
    def direction(self) -> str | None:
        """The SDP media direction attribute in the body, if any."""
        found = re.search(r"(?m)^a=(sendrecv|sendonly|recvonly|inactive)\s*$", self.text)
        return found.group(1) if found else None


class Baresip:
    """One baresip process with its own config folder under ``workdir``.

    ``start()`` writes the config and runs ``baresip -f DIR -s [-e CMD] [-t S]`` in its own process
    group, stdin a pipe (the stdio UI) and stdout+stderr in ``workdir/baresip.log``. Commands go
    through :meth:`command`; the log is read back with :attr:`log` / :meth:`wait_for`. ``stop()``
    is SIGTERM (hangs up with BYE), then SIGKILL after a grace period.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        sip_port: int,
        rtp_ports: tuple[int, int] = (10000, 10039),
        user: str = "test",
        answermode: str = "auto",
        tone_hz: int = 440,
        record: bool = True,
        sip_trace: bool = True,
        binary: str = "baresip",
        extra_config: Sequence[str] = (),
        name: str = "baresip",
    ) -> None:
        self.workdir = workdir
        self.config_dir = workdir / "config"
        self.record_dir = workdir / "recordings"
        self.log_path = workdir / "baresip.log"
        self.sip_port = sip_port
        self.rtp_ports = rtp_ports
        self.user = user
        self.answermode = answermode
        self.tone_hz = tone_hz
        self.record = record
        self.sip_trace = sip_trace
        self.binary = binary
        self.extra_config = list(extra_config)
        self.name = name
        self.argv: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    # ------------------------------------------------------------------ config

    @property
    def uri(self) -> str:
        """The URI that reaches this baresip's account (auto-answered when answermode=auto)."""
        return f"sip:{self.user}@{HOST}:{self.sip_port}"

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{HOST}"

    def config_text(self) -> str:
        lo, hi = self.rtp_ports
        lines = [
            "poll_method\tepoll",
            f"sip_listen\t{HOST}:{self.sip_port}",
            f"net_interface\t{HOST}",
            "call_local_timeout\t30",
            "call_max_calls\t8",
            f"audio_source\tausine,{self.tone_hz}",
            "ausrc_srate\t48000",
            "ausrc_channels\t2",
            "audio_player\tnil,nil",
            "audio_alert\tnil,nil",
            f"rtp_ports\t{lo}-{hi}",
            "rtcp_mux\tno",
            "jitter_buffer_delay\t5-10",
            "statmode_default\toff",
            "module_path\t/usr/lib/baresip/modules",
            "module\tstdio.so",
            "module\tg711.so",
            "module\tausine.so",
        ]
        if self.record:
            lines += ["module\tsndfile.so", f"snd_path\t{self.record_dir}"]
        lines += [
            "module_tmp\taccount.so",
            "module_app\tmenu.so",
            *self.extra_config,
        ]
        return "\n".join(lines) + "\n"

    def account_line(self) -> str:
        return f"<{self.aor}>;regint=0;answermode={self.answermode}"

    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.record_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "config").write_text(self.config_text())
        (self.config_dir / "accounts").write_text(self.account_line() + "\n")
        (self.config_dir / "contacts").write_text("")

    # ------------------------------------------------------------------ lifecycle

    def start(
        self,
        *,
        dial: str | None = None,
        quit_after_s: int | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
    ) -> Baresip:
        """Write the config, start baresip, wait until it is ready and its SIP port is bound.

        ``dial``: a URI to call at once (``-e "/dial URI"``); ``quit_after_s``: ``-t``.
        Raises ``RuntimeError`` (with the log) when it exits or is not ready in time.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        argv = [self.binary, "-f", str(self.config_dir)]
        if self.sip_trace:
            argv.append("-s")
        if dial is not None:
            argv += ["-e", f"/dial {dial}"]
        if quit_after_s is not None:
            argv += ["-t", str(quit_after_s)]
        self.argv = argv
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(ready_timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        from .conftest import port_ready  # lazily: conftest imports this module

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                self.stop()
                raise RuntimeError(f"{self.name} exited during start-up\n{self.describe()}")
            if "baresip is ready." in self.log and port_ready(self.sip_port, "udp"):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout_s}s\n{self.describe()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout_s: float) -> int | None:
        """Wait for baresip to exit by itself (``-t``, ``/quit``); None if still running."""
        assert self.proc is not None, "start() first"
        try:
            self.returncode = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, grace_s: float = 5.0) -> int | None:
        """SIGTERM (baresip hangs up every call with a BYE and exits), then SIGKILL."""
        proc = self.proc
        if proc is None:
            return None
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_s)
        self._signal(signal.SIGKILL)  # also any stray child of an exited leader
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        self.returncode = proc.returncode
        return self.returncode

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    # ------------------------------------------------------------------ control

    def command(self, text: str) -> None:
        """Type into baresip's stdio UI: ``/cmd args`` (a newline is added) or raw key presses."""
        assert self.proc is not None and self.proc.stdin is not None, "start() first"
        if not self.running:
            raise RuntimeError(f"{self.name} is not running\n{self.describe()}")
        data = text + "\n" if text.startswith("/") and not text.endswith("\n") else text
        self.proc.stdin.write(data.encode())
        self.proc.stdin.flush()

    def dial(self, uri: str) -> None:
        self.command(f"/dial {uri}")

    def hangup(self) -> None:
        self.command("/hangup")

    def hold(self) -> None:
        self.command("/hold")

    def resume(self) -> None:
        self.command("/resume")

    def audio_debug(self) -> None:
        """Print the audio stream state (with RTCP ``rcvd=N``) into the log."""
        self.command("A")

    def send_dtmf(self, digits: str, gap_s: float = DTMF_KEY_GAP_S) -> None:
        """Send RFC 4733 digits on the current call, one key press per digit (blocks)."""
        for digit in digits:
            if digit not in "0123456789*#ABCD":
                raise ValueError(f"not a DTMF digit: {digit!r}")
            self.command(digit)
            time.sleep(gap_s)

    # ------------------------------------------------------------------ observation

    @property
    def raw_log(self) -> str:
        """stdout+stderr so far, as written."""
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    @property
    def log(self) -> str:
        """stdout+stderr so far, colour codes and CRs removed."""
        return _ANSI.sub("", self.raw_log).replace("\r", "")

    def wait_for(self, pattern: str, timeout_s: float = 10.0, count: int = 1) -> bool:
        """Wait until ``pattern`` (a regex, multiline) matches the log ``count`` times."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout_s
        while True:
            if len(regex.findall(self.log)) >= count:
                return True
            if time.monotonic() >= deadline or not self.running:
                return len(regex.findall(self.log)) >= count
            time.sleep(0.05)

    def wait_established(self, timeout_s: float = 10.0, count: int = 1) -> bool:
        return self.wait_for(r"Call established:", timeout_s, count)

    def wait_terminated(self, timeout_s: float = 10.0, count: int = 1) -> bool:
        return self.wait_for(r"terminated \(duration: \d+ secs?\)", timeout_s, count)

    def received_dtmf(self) -> str:
        """Digits baresip received (RFC 4733), in order, one per completed event."""
        return "".join(_RECEIVED_DTMF.findall(self.log))

    def sent_dtmf(self) -> str:
        return "".join(_SENT_DTMF.findall(self.log))

    def sip_messages(self) -> list[SipTraceMessage]:
        """The SIP messages of the ``-s`` trace, sent and received, in order."""
        return [
            SipTraceMessage(m.group(1), m.group(2), m.group(3), m.group(4).replace("\r", ""))
            for m in _TRACE_BLOCK.finditer(self.raw_log)
        ]

    def received(self, method: str) -> list[SipTraceMessage]:
        """Requests (or responses to ``method``) that reached baresip's SIP port."""
        local = f"{HOST}:{self.sip_port}"
        return [m for m in self.sip_messages() if m.destination == local and m.method == method]

    def sent(self, method: str) -> list[SipTraceMessage]:
        local = f"{HOST}:{self.sip_port}"
        return [m for m in self.sip_messages() if m.source == local and m.method == method]

    def rtcp_received_packets(self) -> list[int]:
        """The ``rcvd=N`` counters printed by each :meth:`audio_debug`, in order."""
        return [int(n) for n in re.findall(r"\brcvd=(\d+)", self.log)]

    def recordings(self, kind: str | None = "dec") -> list[Path]:
        """The sndfile dumps, oldest first: ``dec`` (heard), ``enc`` (sent) or None (both)."""
        suffix = f"-{kind}.wav" if kind else ".wav"
        return sorted(self.record_dir.glob(f"dump-*{suffix}"))

    def describe(self, lines: int = 80) -> str:
        text = self.log
        tail = "\n".join(text.splitlines()[-lines:])
        return (
            f"$ {' '.join(self.argv)}\n(in {self.workdir})\nexit status: {self.returncode}\n"
            f"--- {self.name} config ---\n{self.config_text()}"
            f"--- {self.name} log (tail) ---\n{tail}"
        )
