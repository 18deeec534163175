"""The command line's accounts against Kamailio (registrar + authenticating proxy).

* ``sessioncore register --once`` with the right password (from the environment): registered,
  then unregistered; with a wrong one: ``failed 401``, exit 1, exactly two REGISTERs (no retry);
* ``sessioncore uas --account bob`` registers, then ``sessioncore call --account alice`` calls
  bob through Kamailio, answering its 407 challenge with alice's credentials.

Users (realm 127.0.0.1): alice/secret-a, bob/secret-b. Every child runs in its own process
group with its output in a file, every wait is bounded, every child is killed in ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import free_port, sessioncore_argv, sessioncore_env
from .kamailio import Kamailio, kamailio_factory, require_kamailio

pytestmark = pytest.mark.interop

KamailioFactory = Callable[..., Kamailio]
RUN_TIMEOUT_S = 60.0
START_TIMEOUT_S = 20.0


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[KamailioFactory]:
    require_kamailio()
    yield from kamailio_factory(tmp_path)


def _env(**extra: str) -> dict[str, str]:
    env = sessioncore_env()
    env.pop("SESSIONCORE_PASSWORD", None)
    env["COLUMNS"] = "120"
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str], timeout_s: float = RUN_TIMEOUT_S) -> tuple[int, str]:
    """``python -m sessioncore ARGS`` to completion: (exit status, stdout + stderr)."""
    proc = subprocess.Popen(
        sessioncore_argv(*args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(proc)
        out, _ = proc.communicate(timeout=10)
        pytest.fail(f"{args}: still running after {timeout_s}s\n{out.decode(errors='replace')}")
    finally:
        _kill(proc)
    return proc.returncode, out.decode(errors="replace")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


class Background:
    """A long-running ``sessioncore`` child whose output goes to a file."""

    def __init__(self, workdir: Path, *args: str, env: dict[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.args = args
        self.path = workdir / "uas.out"
        with self.path.open("wb") as out:
            self.proc = subprocess.Popen(
                sessioncore_argv(*args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    @property
    def output(self) -> str:
        return self.path.read_text(errors="replace")

    def wait_for_line(self, pattern: str, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if re.search(pattern, self.output, re.MULTILINE):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"{self.args}: no line matching {pattern!r}\n{self.output}")

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        _kill(self.proc)


def test_register_once_with_the_right_password(kamailio: KamailioFactory) -> None:
    kam = kamailio().start()

    rc, out = run_cli(
        "register", "sip:alice@127.0.0.1", "--username", "alice",
        "--registrar", kam.uri(), "--expires", "300", "--once",
        env=_env(SESSIONCORE_PASSWORD="secret-a"),
    )  # fmt: skip

    assert rc == 0, f"{out}\n{kam.describe()}"
    assert re.search(r"^registration sip:alice@127\.0\.0\.1: registered 200 ", out, re.M), out
    assert re.search(r"^registration sip:alice@127\.0\.0\.1: unregistered 200 ", out, re.M), out
    assert "registered: yes" in out and "unregistered: yes" in out
    assert "secret-a" not in out
    assert not kam.contacts("alice"), kam.describe()  # the --once unregistration removed it
    # first REGISTER challenged, then with credentials; then the removal
    assert len(kam.requests("REGISTER")) >= 3, kam.describe()


def test_register_once_with_a_wrong_password_fails_without_retry(
    kamailio: KamailioFactory,
) -> None:
    kam = kamailio().start()

    rc, out = run_cli(
        "register", "sip:alice@127.0.0.1", "--username", "alice",
        "--password-env", "ALICE_PW", "--registrar", kam.uri(), "--once",
        env=_env(ALICE_PW="wrong"),
    )  # fmt: skip

    assert rc == 1, f"{out}\n{kam.describe()}"
    assert re.search(r"^registration sip:alice@127\.0\.0\.1: failed 401 ", out, re.M), out
    assert "retry_in" not in out  # a wrong password is not retried
    assert "registered: no" in out and "last status: 401" in out
    time.sleep(1.0)  # nothing more may arrive
    assert len(kam.requests("REGISTER")) == 2, kam.describe()  # the first, and with credentials
    assert not kam.contacts("alice")


def test_register_stays_registered_until_sigterm(kamailio: KamailioFactory, tmp_path: Path) -> None:
    kam = kamailio(max_expires=4).start()
    reg = Background(
        tmp_path / "register",
        "register", "sip:bob@127.0.0.1", "--username", "bob", "--registrar", kam.uri(),
        "--expires", "60",
        env=_env(SESSIONCORE_PASSWORD="secret-b"),
    )  # fmt: skip
    try:
        reg.wait_for_line(r"^registration sip:bob@127\.0\.0\.1: registered 200 ")
        assert kam.contacts("bob"), kam.describe()
        # Kamailio grants at most 4 s: the refresh must come from the library in time
        reg.wait_for_line(
            r"^registration sip:bob@127\.0\.0\.1: registered 200 (?s:.*)"
            r"^registration sip:bob@127\.0\.0\.1: registered 200 ",
            timeout_s=10,
        )
        assert kam.contacts("bob"), kam.describe()
        reg.proc.send_signal(signal.SIGTERM)
        assert reg.wait(20) == 0, reg.output
        out = reg.output
        assert re.search(r"^registration sip:bob@127\.0\.0\.1: unregistered 200 ", out, re.M)
        assert "registered: yes" in out and re.search(r"^refreshes: [1-9]", out, re.M), out
        assert not kam.contacts("bob"), kam.describe()
    finally:
        reg.kill()


def test_uas_and_call_with_accounts_through_kamailio(
    kamailio: KamailioFactory, tmp_path: Path
) -> None:
    kam = kamailio().start()
    uas_port = free_port()
    uas = Background(
        tmp_path / "uas",
        "uas", "--listen", f"127.0.0.1:{uas_port}", "--media-ports", "26000-26199",
        "--account", "sip:bob@127.0.0.1", "--username", "bob", "--password-env", "P",
        "--registrar", kam.uri(), "--max-calls", "1",
        env=_env(P="secret-b"),
    )  # fmt: skip
    try:
        uas.wait_for_line(r"^registered sip:bob@127\.0\.0\.1$")
        uas.wait_for_line(rf"^listening on udp:127\.0\.0\.1:{uas_port}$")
        assert kam.contacts("bob"), kam.describe()

        rc, out = run_cli(
            "call", kam.uri("bob"), "--media-ports", "26200-26399", "--timeout", "10",
            "--account", "sip:alice@127.0.0.1", "--username", "alice", "--password-env", "P2",
            "--registrar", kam.uri(), "--duration", "1",
            env=_env(P2="secret-a"),
        )  # fmt: skip

        assert rc == 0, f"{out}\n{uas.output}\n{kam.describe()}"
        assert re.search(r"^answered: 1$", out, re.M) and re.search(r"^ended: 1$", out, re.M)
        assert re.search(r"^registration sip:alice@127\.0\.0\.1: registered 200 ", out, re.M)
        # the INVITE was challenged (407) and answered with alice's credentials
        assert kam.wait_for(r"AUTH INVITE user alice: result 1", 5), kam.describe()
        assert uas.wait(20) == 0, uas.output  # --max-calls 1: the UAS ends by itself
        assert re.search(r"^answered: 1$", uas.output, re.M), uas.output
        assert not kam.contacts("bob"), kam.describe()  # unregistered at exit
    finally:
        uas.kill()
