#!/usr/bin/env python3
"""Media benchmark: N concurrent G.711 echo calls, our UAC against our UAS.

For each N a fresh ``sessioncore uas --media echo`` is started on 127.0.0.1 and a
``sessioncore call --tone 440`` process places N calls (all up at once), keeps them up
``--seconds`` and hangs up. One row per N:

    calls     N (and how many were answered)
    pps       RTP packets per second the UAS handled (received + sent) while all calls were up
    late %    frames the UAS sent more than 5 ms after their slot, of all it sent
    jitter    mean interarrival jitter the UAC measured on the echoed streams (ms)
    loss %    packets lost, as the UAC saw them
    cpu %     UAS CPU (utime+stime) over the steady window (100 % = one core)
    rss/call  (UAS peak RSS - RSS before the calls) / N, in KB

Stdlib only; Linux only (/proc). Example: ``python bench/media.py --calls 50 100 200``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cps import HOST, REPO_ROOT, cpu_seconds, free_port, peak_rss_mb, stop, udp_bound


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _sessioncore(*args: str) -> list[str]:
    return [sys.executable, "-m", "sessioncore", *args]


def _number(text: str, key: str) -> float:
    found = re.findall(rf"^{re.escape(key)}: ([0-9.]+)", text, re.MULTILINE)
    return sum(float(x) for x in found) if found else 0.0


def run(n: int, seconds: float, rate: float) -> str:
    port = free_port()
    env_path = str(REPO_ROOT / "src")
    uas = subprocess.Popen(
        _sessioncore("uas", "--listen", f"{HOST}:{port}", "--media", "echo",
                     "--media-ports", "20000-29999"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    uac: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 15
        while not udp_bound(port):
            if time.monotonic() > deadline or uas.poll() is not None:
                return f"{n:>6}  uas did not start"
            time.sleep(0.05)
        base_rss = rss_mb(uas.pid)
        uac = subprocess.Popen(
            _sessioncore("call", f"sip:echo@{HOST}:{port}", "--count", str(n),
                         "--concurrency", str(n), "--rate", str(rate),
                         "--duration", str(seconds), "--tone", "440", "--timeout", "30",
                         "--media-ports", "30000-39999"),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
            env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        ramp = n / rate + 1.0
        time.sleep(ramp)
        window = max(1.0, seconds - 2.0)
        c0, t0 = cpu_seconds(uas.pid), time.monotonic()
        time.sleep(window)
        c1, t1 = cpu_seconds(uas.pid), time.monotonic()
        cpu = 100.0 * (c1 - c0) / (t1 - t0)
        out_uac, _ = uac.communicate(timeout=seconds + 120)
        peak = peak_rss_mb(uas.pid)
        stop(uas)
        out_uas = uas.stdout.read().decode() if uas.stdout else ""
        text = out_uac.decode()
        answered = int(_number(text, "answered"))
        sent = _number(out_uas, "packets sent")
        received = _number(out_uas, "packets received")
        late = re.search(r"^late frames: (\d+) of (\d+)", out_uas, re.MULTILINE)
        late_pct = 100.0 * int(late.group(1)) / max(1, int(late.group(2))) if late else float("nan")
        jitters = [float(x) for x in re.findall(r"^jitter: ([0-9.]+) ms", text, re.MULTILINE)]
        jitter = sum(jitters) / len(jitters) if jitters else float("nan")
        lost = re.findall(r"^loss: ([0-9.]+)%", text, re.MULTILINE)
        loss = sum(float(x) for x in lost) / len(lost) if lost else float("nan")
        call_seconds = seconds  # every call is up for about this long
        pps = (sent + received) / call_seconds if call_seconds else 0.0
        per_call_kb = (peak - base_rss) * 1024 / n if n else 0.0
        return (
            f"{n:>6} {answered:>6} {pps:>9.0f} {late_pct:>7.2f} {jitter:>7.2f} {loss:>7.2f}"
            f" {cpu:>6.1f} {per_call_kb:>9.0f}"
        )
    finally:
        if uac is not None and uac.poll() is None:
            stop(uac)
        if uas.poll() is None:
            stop(uas)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long all calls stay up")
    parser.add_argument("--rate", type=float, default=50.0, help="call setup rate")
    args = parser.parse_args(argv)
    print("== sessioncore call --tone 440 -> sessioncore uas --media echo (G.711, 20 ms)")
    print(f"{'calls':>6} {'up':>6} {'pps':>9} {'late %':>7} {'jitter':>7} {'loss %':>7}"
          f" {'cpu %':>6} {'rss/call':>9}")  # fmt: skip
    for n in args.calls:
        print(run(n, args.seconds, args.rate), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
