"""The command line's account options (``register``; ``--account``/``--proxy`` of ``call``/``uas``)
without an external peer: passwords only from the environment (never the command line), clear
usage errors, and a registration refused by a ``sessioncore uas`` (405) reported as a failure.

Every process talks SIP over loopback; every wait is bounded and every process a test starts is
killed at teardown.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

from .test_cli import (
    ROOT,
    RUN_TIMEOUT,
    Proc,
    Result,
    _env,
    call_args,
    counter,
    free_port,
    spawn,  # noqa: F401  (the fixture)
    start_uas,
)

AOR = "sip:alice@127.0.0.1"


def run_env(
    args: list[str], env: dict[str, str] | None = None, timeout: float = RUN_TIMEOUT
) -> Result:
    """``python ARGS`` to completion with extra environment variables; stdin is not a TTY."""
    full = _env()
    for name in ("SESSIONCORE_PASSWORD", "P", "MY_SIP_SECRET"):
        full.pop(name, None)
    full.update(env or {})
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=full,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def sc(*args: str) -> list[str]:
    return ["-m", "sessioncore", *args]


# --- passwords: never on the command line ---------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["register", AOR, "--username", "alice"],
        ["call", "sip:bob@127.0.0.1:5999", "--account", AOR, "--username", "alice"],
        ["uas", "--listen", "127.0.0.1:0", "--account", AOR, "--username", "alice"],
    ],
    ids=["register", "call", "uas"],
)
def test_there_is_no_password_option(args: list[str]) -> None:
    result = run_env(sc(*args, "--password", "s3cret"), env={"SESSIONCORE_PASSWORD": "x"})

    assert result.rc == 2, result.dump()
    assert "No such option" in result.err and "--password" in result.err, result.dump()
    assert "registration" not in result.out and "listening on" not in result.out


@pytest.mark.parametrize(
    "args",
    [
        ["register", AOR, "--username", "alice", "--once"],
        ["call", "sip:bob@127.0.0.1:5999", "--account", AOR, "--username", "alice"],
        ["uas", "--listen", "127.0.0.1:0", "--account", AOR, "--username", "alice"],
    ],
    ids=["register", "call", "uas"],
)
def test_missing_password_without_a_tty_is_a_usage_error(args: list[str]) -> None:
    result = run_env(sc(*args), timeout=30)

    assert result.rc == 2, result.dump()
    assert "no password for alice" in result.err, result.dump()
    assert "SESSIONCORE_PASSWORD" in result.err and "--password-env" in result.err
    assert "never taken on the command line" in result.err
    # nothing was started: no prompt waited for input, no SIP was sent
    assert "registration" not in result.out and "listening on" not in result.out


def test_password_env_names_the_variable() -> None:
    result = run_env(
        sc("register", AOR, "--username", "alice", "--password-env", "MY_SIP_SECRET", "--once"),
        env={"SESSIONCORE_PASSWORD": "not-this-one"},
        timeout=30,
    )

    assert result.rc == 2, result.dump()
    assert "MY_SIP_SECRET" in result.err, result.dump()


def test_password_env_rejects_what_looks_like_a_password_without_echoing_it() -> None:
    result = run_env(
        sc("register", AOR, "--username", "alice", "--password-env", "s3cr3t!pw", "--once"),
        timeout=30,
    )

    assert result.rc == 2, result.dump()
    assert "--password-env" in result.err and "NAME of an environment variable" in result.err
    assert "s3cr3t!pw" not in result.err + result.out


def test_account_options_need_an_account() -> None:
    result = run_env(sc("call", "sip:bob@127.0.0.1:5999", "--username", "alice"), timeout=30)

    assert result.rc == 2, result.dump()
    assert "--account" in result.err, result.dump()


def test_account_aor_must_be_user_at_domain() -> None:
    result = run_env(
        sc("register", "sip:127.0.0.1", "--username", "alice", "--once"),
        env={"SESSIONCORE_PASSWORD": "x"},
        timeout=30,
    )

    assert result.rc == 2, result.dump()
    assert "sip:user@domain" in result.err, result.dump()


# --- registering at something that is not a registrar ---------------------------------------


def test_register_once_at_a_uas_reports_the_405_and_exits_1(
    spawn: Callable[..., Proc],  # noqa: F811
) -> None:
    port = free_port()
    uas = start_uas(spawn, port)

    result = run_env(
        sc(
            "register", AOR, "--username", "alice", "--registrar", f"sip:127.0.0.1:{port}",
            "--once",
        ),
        env={"SESSIONCORE_PASSWORD": "secret-a"},
        timeout=60,
    )  # fmt: skip

    assert result.rc == 1, result.dump()
    assert f"registration {AOR}: failed 405 Method Not Allowed" in result.out, result.dump()
    assert "registered: no" in result.out
    assert "last status: 405 Method Not Allowed" in result.out
    assert "registration of sip:alice@127.0.0.1 failed: 405" in result.err
    assert "secret-a" not in result.out + result.err
    assert uas.popen.poll() is None, "the UAS refused the REGISTER but keeps running"


def test_uas_with_an_account_refused_by_its_registrar_exits_1(
    spawn: Callable[..., Proc],  # noqa: F811
) -> None:
    port = free_port()
    start_uas(spawn, port)
    own = free_port()

    result = run_env(
        sc(
            "uas", "--listen", f"127.0.0.1:{own}", "--account", "sip:bob@127.0.0.1",
            "--username", "bob", "--password-env", "P", "--registrar", f"sip:127.0.0.1:{port}",
        ),
        env={"P": "secret-b"},
        timeout=60,
    )  # fmt: skip

    assert result.rc == 1, result.dump()
    assert "registration of sip:bob@127.0.0.1 failed: 405 Method Not Allowed" in result.err
    assert "listening on" not in result.out and "registered sip:bob" not in result.out


def test_call_with_an_account_refused_by_its_registrar_places_no_call(
    spawn: Callable[..., Proc],  # noqa: F811
) -> None:
    port = free_port()
    uas = start_uas(spawn, port, "--max-calls", "1")

    result = run_env(
        call_args(
            port, "--account", AOR, "--username", "alice",
            "--registrar", f"sip:127.0.0.1:{port}",
        ),
        env={"SESSIONCORE_PASSWORD": "secret-a"},
        timeout=60,
    )  # fmt: skip

    assert result.rc == 1, result.dump()
    assert f"registration {AOR}: failed 405" in result.out, result.dump()
    assert "no call placed" in result.err
    uas.signal(signal.SIGTERM)
    uas_result = uas.finish(timeout=30)
    assert counter(uas_result.out, "received") == 0, uas_result.dump()


# --- --proxy without an account --------------------------------------------------------------


def test_call_through_an_outbound_proxy(spawn: Callable[..., Proc]) -> None:  # noqa: F811
    """The target's own port has nobody; the call only works if it goes to the proxy."""
    port = free_port()
    uas = start_uas(spawn, port, "--max-calls", "1")
    nobody = free_port()
    args = call_args(nobody, "--duration", "0.3", "--proxy", f"sip:127.0.0.1:{port}")

    result = run_env(args, timeout=60)

    assert result.rc == 0, result.dump()
    assert counter(result.out, "answered") == 1
    uas_result = uas.finish(timeout=30)
    assert uas_result.rc == 0, uas_result.dump()
    assert counter(uas_result.out, "received") == 1


def test_uas_requires_credentials_with_auth_user() -> None:
    """``uas --auth-user`` challenges calls: a caller with the password gets through (the
    ``call --account ... --registrar`` path is covered elsewhere; here a Python caller)."""
    import asyncio
    import os
    import socket
    import subprocess
    import sys
    import time

    from sessioncore import CallFailed, SessionManagerBuilder

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, PYTHONPATH="src", UAS_PW="letmein")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sessioncore", "uas", "--listen", f"127.0.0.1:{port}",
         "--auth-user", "alice", "--auth-password-env", "UAS_PW", "--max-calls", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if line.startswith("listening on"):
                break
        else:
            raise AssertionError("uas did not start")

        async def calls() -> tuple[int | None, bool]:
            statuses: list[int | None] = []
            answered = False
            for password in ("wrong", "letmein"):
                ua = await (
                    SessionManagerBuilder()
                    .with_local_bind_addr("127.0.0.1", 0)
                    .with_account("sip:alice@127.0.0.1", "alice", password, register=False)
                    .build()
                )
                try:
                    s = await ua.make_call(f"sip:uas@127.0.0.1:{port}")
                    try:
                        await ua.wait_for_answer(s.id, timeout=5)
                        answered = True
                        await ua.terminate_session(s.id)
                        await ua.wait_for_end(s.id, timeout=5)
                    except CallFailed as exc:
                        statuses.append(exc.status)
                finally:
                    await ua.stop()
            return (statuses[0] if statuses else None), answered

        status, answered = asyncio.run(calls())
        assert status == 401 and answered
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=15)
    assert "answered: 1" in out.decode(), out.decode() + err.decode()
