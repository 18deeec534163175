#!/usr/bin/env python3
"""Calls-per-second benchmark: SIPp's built-in ``uac`` against ``sessioncore uas`` (UDP).

For each target rate a fresh UAS is started on 127.0.0.1, SIPp places ``rate * seconds`` calls
at that rate (``-m`` bounds every run, ``-timeout`` bounds SIPp itself), and one table row is
printed:

    target   the rate asked of SIPp (calls/s)
    offered  the rate SIPp achieved (CallRate(C): calls created / elapsed, drain included)
    ok fail  SuccessfulCall(C), FailedCall(C)
    retr     Retransmissions(C) (SIPp resends after 500 ms without an answer)
    rtt ms   mean INVITE -> 200 time (ResponseTime1(C); SIPp counts whole ms, 0 = under 1 ms)
    cpu %    UAS CPU (utime+stime from /proc/PID/stat) over the wall time of the SIPp run
    rss MB   UAS peak resident set (VmHWM from /proc/PID/status)

SIPp's own ``-sn uas`` runs the same rates for reference (``--target sipp`` or ``both``).
Stdlib only. Linux only (/proc). Example: ``python bench/cps.py --quick --rates 250 500``.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RATES = (250, 500, 750, 1000, 1500, 2000)
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: stop climbing once more than this share of a rate's calls failed (unless --keep-going)
FAIL_SHARE_STOP = 0.05


def free_port() -> int:
    """A port free for UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((HOST, 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((HOST, port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port on 127.0.0.1")


def udp_bound(port: int) -> bool:
    wanted = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return any(len(f := line.split()) > 1 and f[1] in wanted for line in lines)


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (/proc/PID/stat fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return float("nan")


def stop(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> int:
    """SIGTERM the child's process group, then SIGKILL after ``grace_s``."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait(timeout=10)


def sipp_common(sipp: str) -> list[str]:
    """Options every SIPp here gets: loopback only (SIP, media, control sockets), no stdin."""
    return [
        sipp, "-i", HOST, "-mi", HOST, "-mp", str(free_port()),
        "-ci", HOST, "-cp", str(free_port()), "-nostdin",
    ]  # fmt: skip


def duration_text(value: str) -> float:
    """SIPp's ``HH:MM:SS:uuuuuu`` as milliseconds."""
    parts = value.strip().split(":")
    if len(parts) != 4:
        return float("nan")
    h, m, s, us = (int(p) for p in parts)
    return (h * 3600 + m * 60 + s) * 1000 + us / 1000


def last_stats(path: Path) -> dict[str, str]:
    try:
        with path.open(newline="", errors="replace") as fh:
            rows = [r for r in csv.reader(fh, delimiter=";") if any(c.strip() for c in r)]
    except FileNotFoundError:
        return {}
    if len(rows) < 2:
        return {}
    return {k: v for k, v in zip(rows[0], rows[-1], strict=False) if k}


@dataclass
class Row:
    target: int
    offered: float
    created: int
    ok: int
    failed: int
    retrans: int
    rtt_ms: float
    cpu_pct: float
    rss_mb: float
    note: str = ""

    HEADER = (
        f"{'target':>7} {'offered':>8} {'ok':>7} {'fail':>6} {'retr':>6} {'rtt ms':>7} "
        f"{'cpu %':>6} {'rss MB':>7}"
    )

    def line(self) -> str:
        return (
            f"{self.target:>7} {self.offered:>8.1f} {self.ok:>7} {self.failed:>6} "
            f"{self.retrans:>6} {self.rtt_ms:>7.2f} {self.cpu_pct:>6.1f} {self.rss_mb:>7.1f}"
            + (f"  {self.note}" if self.note else "")
        )


def start_uas(
    kind: str, sipp: str, port: int, workdir: Path, bound_s: int
) -> subprocess.Popen[bytes]:
    if kind == "sessioncore":
        env = dict(os.environ)
        src = str(REPO_ROOT / "src")
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        argv = [sys.executable, "-m", "sessioncore", "uas", "--listen", f"{HOST}:{port}",
                "--transport", "udp"]  # fmt: skip
    else:
        env = None
        # its own -timeout bounds it even if this script dies
        argv = [*sipp_common(sipp), "-sn", "uas", "-p", str(port), "-timeout", f"{bound_s}s"]
    with (workdir / "uas.out").open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (workdir / "uas.out").read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(
                f"{kind} uas exited with status {proc.returncode}: " + " | ".join(tail)
            )
        if udp_bound(port):
            return proc
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"{kind} uas did not bind {HOST}:{port} within 10 s")


def run_rate(
    kind: str, sipp: str, rate: int, seconds: float, calls_duration_s: float, workdir: Path
) -> Row:
    workdir.mkdir(parents=True)
    calls = max(1, int(rate * seconds))
    sipp_bound_s = int(seconds * 2 + calls_duration_s + 40)  # generous, but a bound
    port = free_port()
    uas = start_uas(kind, sipp, port, workdir, bound_s=sipp_bound_s + 60)
    try:
        # -l: room for ~2 s of calls in flight (plus the call length) before SIPp throttles,
        #     so an overloaded UAS shows up as a lower offered rate instead of unbounded state.
        # -max_socket: only matters for one-socket-per-call modes; u1 uses one socket, and a
        #     small value keeps SIPp from raising its fd limit to 50,000.
        limit = max(100, int(rate * (calls_duration_s + 2)))
        argv = [
            *sipp_common(sipp), f"{HOST}:{port}", "-sn", "uac", "-p", str(free_port()),
            "-t", "u1", "-r", str(rate), "-m", str(calls),
            "-d", str(int(calls_duration_s * 1000)), "-l", str(limit), "-max_socket", "1024",
            "-trace_stat", "-stf", "stats.csv", "-fd", "1",
            "-trace_err", "-error_file", "errors.log", "-timeout", f"{sipp_bound_s}s",
        ]  # fmt: skip
        cpu0, wall0 = cpu_seconds(uas.pid), time.monotonic()
        with (workdir / "uac.out").open("wb") as out:
            uac = subprocess.Popen(
                argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            note = ""
            try:
                uac.wait(timeout=sipp_bound_s + 15)
            except subprocess.TimeoutExpired:
                note = "sipp overran its bound, killed"
            finally:
                stop(uac, grace_s=2)
        cpu1, wall1 = cpu_seconds(uas.pid), time.monotonic()
        rss = peak_rss_mb(uas.pid)
    finally:
        stop(uas)
    stats = last_stats(workdir / "stats.csv")

    def num(name: str) -> float:
        try:
            return float(stats[name])
        except (KeyError, ValueError):
            return float("nan")

    if not stats:
        note = note or f"no SIPp statistics (see {workdir})"
    return Row(
        target=rate,
        offered=num("CallRate(C)"),
        created=int(num("TotalCallCreated")) if stats else 0,
        ok=int(num("SuccessfulCall(C)")) if stats else 0,
        failed=int(num("FailedCall(C)")) if stats else 0,
        retrans=int(num("Retransmissions(C)")) if stats else 0,
        rtt_ms=duration_text(stats.get("ResponseTime1(C)", "")),
        cpu_pct=100 * (cpu1 - cpu0) / max(wall1 - wall0, 1e-9),
        rss_mb=rss,
        note=note,
    )


def bench(
    kind: str,
    sipp: str,
    rates: Sequence[int],
    seconds: float,
    calls_duration_s: float,
    keep_going: bool,
    root: Path,
) -> list[Row]:
    title = "sessioncore uas" if kind == "sessioncore" else "SIPp -sn uas (reference)"
    print(f"\n== SIPp uac -> {title}: UDP, {seconds:g} s per rate, calls {calls_duration_s:g} s")
    print(Row.HEADER, flush=True)
    rows: list[Row] = []
    for rate in rates:
        try:
            row = run_rate(kind, sipp, rate, seconds, calls_duration_s, root / f"{kind}-{rate}")
        except RuntimeError as exc:
            print(f"{rate:>7}  error: {exc}", flush=True)
            break
        rows.append(row)
        print(row.line(), flush=True)
        expected = max(1, int(rate * seconds))
        if not keep_going and (row.failed > FAIL_SHARE_STOP * expected or row.ok < 0.9 * expected):
            print(f"        stopping here: failures beyond {FAIL_SHARE_STOP:.0%} (--keep-going "
                  "to continue)", flush=True)  # fmt: skip
            break
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--rates",
        type=int,
        nargs="+",
        default=list(DEFAULT_RATES),
        metavar="CPS",
        help="target call rates, in order (default: %(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=30.0,
        help="seconds of load per rate (default: %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="5 seconds per rate")
    parser.add_argument(
        "--calls-duration",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="how long each call stays up before SIPp's BYE (default: 0)",
    )
    parser.add_argument(
        "--target",
        choices=("both", "sessioncore", "sipp"),
        default="both",
        help="which UAS to load (default: both; sipp = the reference)",
    )
    parser.add_argument(
        "--keep-going", action="store_true", help="keep raising the rate after a rate with failures"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep SIPp files here (default: a temporary folder, removed)",
    )
    args = parser.parse_args(argv)

    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp is not installed (make peers)", file=sys.stderr)
        return 2
    seconds = 5.0 if args.quick else args.seconds
    kinds = ["sessioncore", "sipp"] if args.target == "both" else [args.target]

    with tempfile.TemporaryDirectory(prefix="sessioncore-cps-") as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for kind in kinds:
            bench(kind, sipp, args.rates, seconds, args.calls_duration, args.keep_going,
                  root / time.strftime("%H%M%S"))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
