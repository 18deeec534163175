"""Kamailio (Debian ``kamailio`` 5.6) as an interop peer: registrar + authenticating,
record-routing stateful proxy, run in the foreground from a config written into a temp folder.

Everything here was checked against Kamailio 5.6.3 on this machine (127.0.0.1 only).

What :class:`Kamailio` runs (see :meth:`Kamailio.cfg_text` for the whole config):

* ``listen=udp:127.0.0.1:PORT``, ``listen=tcp:127.0.0.1:PORT`` and, with ``tls=True``,
  ``listen=tls:127.0.0.1:TLS_PORT`` (module ``tls``, Debian package ``kamailio-tls-modules``).
  At start, a throw-away CA and a server certificate (subjectAltName ``IP:127.0.0.1``,
  ``DNS:localhost``, signed by that CA) are made with the ``openssl`` CLI; clients verify
  with :attr:`Kamailio.ca_file`. Client certificates are not asked for.
* Users and passwords live in an ``htable`` (``users``) filled in
  ``event_route[htable:mod-init]``; digest auth is ``pv_auth_check(realm, $sht(users=>$au),
  "0", "1")`` (auth user must equal the To user for REGISTER, the From user otherwise), with
  ``auth_challenge(realm, "1")`` (``qop=auth``; flags ``"0"`` with ``qop=False``) when it fails.
  ``algorithm="SHA-256"`` sets ``modparam("auth", "algorithm", "SHA-256")``: Kamailio 5.6 then
  challenges with ``algorithm=SHA-256`` only and verifies with SHA-256 only (the parameter is
  module-wide: one algorithm per instance). The default is MD5 (no ``algorithm`` in the
  challenge, as the module does for "").
* REGISTER (any Request-URI) -> 401 challenge, then ``save("location")`` into an in-memory
  ``usrloc`` (``db_mode 0``: a restart forgets every registration). ``default_expires``,
  ``min_expires`` (0 = no lower bound; below it Kamailio raises the value, it never sends 423
  here) and ``max_expires`` (0 = no bound; above it the 200 OK carries the shortened
  ``expires`` in the Contact) are constructor arguments.
* Initial requests (no To tag) -> 407 challenge (unless ``authenticate_calls=False``),
  ``consume_credentials()``, ``remove_hf("Route")``, ``record_route()`` (INVITE, SUBSCRIBE),
  then, when the Request-URI is local (Kamailio's own address, or ``127.0.0.1``/``localhost``
  without a port), ``lookup("location")`` (404 when the user is not registered), and
  ``t_relay()``. A Request-URI elsewhere (another port) is relayed as it is.
* In-dialog requests -> ``loose_route()`` + ``t_relay()``; ACK without a route:
  ``t_check_trans()``; CANCEL: ``t_check_trans()`` + relay; retransmissions absorbed with
  ``t_precheck_trans()`` (module ``tmx``), as in Kamailio's default config.
* OPTIONS to Kamailio itself without a user part -> 200 (keepalive / transport probe).
* Every request and reply is logged (``REQ ...`` / ``RPL ...`` / ``AUTH ...`` / ``REG ...``
  lines) to stderr, captured in ``workdir/kamailio.log`` (:attr:`Kamailio.log`).
* ``ctl`` listens on a unix socket in the work folder; :meth:`Kamailio.rpc` runs ``kamcmd -s``
  against it and :meth:`Kamailio.contacts` lists the registered contacts of a user
  (``ul.lookup location USER``).

Lifecycle: ``kamailio -DD -E -f CFG -P PIDFILE`` in its own process group; ``start()`` waits
until every listening port is bound, ``stop()`` is SIGTERM to the group then SIGKILL,
``restart()`` is stop + start on the same ports (registrations are lost).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

HOST = "127.0.0.1"
#: where Debian installs the binaries (not on a non-root PATH)
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin")
#: how long Kamailio gets to bind its ports
START_TIMEOUT_S = 15.0
#: how long ``openssl`` gets per certificate step
OPENSSL_TIMEOUT_S = 30.0
#: how long one ``kamcmd`` call may take
RPC_TIMEOUT_S = 5.0

DEFAULT_USERS: Mapping[str, str] = {"alice": "secret-a", "bob": "secret-b", "test": "secret-t"}

Algorithm = Literal["MD5", "SHA-256"]
KamTransport = Literal["udp", "tcp", "tls"]

#: characters we refuse in user names, passwords and realm: they would need escaping in the cfg
_UNSAFE = re.compile(r'["\\$\r\n]')
_USER = re.compile(r"^[A-Za-z0-9._~!*'()&=+,;?/-]+$")


def find_binary(name: str) -> str | None:
    """``name`` on PATH, else in /usr/sbin (Debian puts kamailio and kamcmd there)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


class KamailioError(RuntimeError):
    """Kamailio did not start (the message carries the log tail)."""


class Kamailio:
    """One Kamailio process with its config, pid file, ctl socket and certificates in ``workdir``.

    ``users`` maps user name -> password (default :data:`DEFAULT_USERS`). Ports default to free
    ones (``port`` for UDP+TCP, ``tls_port`` when ``tls``). ``extra_cfg``: lines added to the
    global section (e.g. ``"debug=3"``).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        users: Mapping[str, str] | None = None,
        realm: str = HOST,
        port: int | None = None,
        tls: bool = False,
        tls_port: int | None = None,
        algorithm: Algorithm = "MD5",
        qop: bool = True,
        authenticate_calls: bool = True,
        default_expires: int = 3600,
        min_expires: int = 0,
        max_expires: int = 0,
        children: int = 2,
        debug: int = 2,
        binary: str | None = None,
        kamcmd: str | None = None,
        extra_cfg: Sequence[str] = (),
        name: str = "kamailio",
    ) -> None:
        from .conftest import free_port  # lazily, as baresip.py does

        self.workdir = workdir
        self.users = dict(DEFAULT_USERS if users is None else users)
        for user, password in self.users.items():
            if not _USER.match(user) or _UNSAFE.search(password) or not password:
                raise ValueError(f"user/password not usable in a kamailio.cfg: {user!r}")
        if not realm or _UNSAFE.search(realm):
            raise ValueError(f"realm not usable in a kamailio.cfg: {realm!r}")
        if algorithm not in ("MD5", "SHA-256"):
            raise ValueError(f"Kamailio 5.6 auth supports MD5 and SHA-256, not {algorithm!r}")
        self.realm = realm
        self.port = port if port is not None else free_port()
        self.tls = tls
        self.tls_port = (tls_port if tls_port is not None else free_port()) if tls else None
        self.algorithm: Algorithm = algorithm
        self.qop = qop
        self.authenticate_calls = authenticate_calls
        self.default_expires = default_expires
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.children = children
        self.debug = debug
        self.binary = binary or find_binary("kamailio") or "kamailio"
        self.kamcmd = kamcmd or find_binary("kamcmd")
        self.extra_cfg = list(extra_cfg)
        self.name = name

        self.cfg_path = workdir / "kamailio.cfg"
        self.pid_path = workdir / "kamailio.pid"
        self.ctl_path = workdir / "kamailio_ctl"
        self.log_path = workdir / "kamailio.log"
        self.tls_dir = workdir / "tls"
        self.ca_file = self.tls_dir / "ca.pem"
        self.cert_file = self.tls_dir / "server.pem"
        self.key_file = self.tls_dir / "server.key"
        self.argv: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self.starts = 0

    # ------------------------------------------------------------------ addresses

    def address(self, transport: KamTransport = "udp") -> str:
        """``127.0.0.1:PORT`` of the given listener."""
        if transport == "tls":
            if self.tls_port is None:
                raise ValueError("this Kamailio has no TLS listener (tls=False)")
            return f"{HOST}:{self.tls_port}"
        return f"{HOST}:{self.port}"

    def uri(self, user: str | None = None, transport: KamTransport = "udp") -> str:
        """``sip:[user@]127.0.0.1:PORT[;transport=tcp|tls]``: a URI that reaches Kamailio."""
        userpart = f"{user}@" if user else ""
        param = "" if transport == "udp" else f";transport={transport}"
        return f"sip:{userpart}{self.address(transport)}{param}"

    # ------------------------------------------------------------------ config

    def cfg_text(self) -> str:
        realm = self.realm
        challenge_flags = "1" if self.qop else "0"
        stale_flags = "17" if self.qop else "16"
        users = "\n".join(
            f'\t$sht(users=>{user}) = "{password}";' for user, password in self.users.items()
        )
        listen = [f"listen=udp:{HOST}:{self.port}", f"listen=tcp:{HOST}:{self.port}"]
        if self.tls:
            listen.append(f"listen=tls:{HOST}:{self.tls_port}")
        tls_global = "enable_tls=yes\n" if self.tls else "enable_tls=no\n"
        tls_module = ""
        if self.tls:
            tls_module = (
                'loadmodule "tls.so"\n'
                'modparam("tls", "tls_method", "TLSv1.2+")\n'
                f'modparam("tls", "certificate", "{self.cert_file}")\n'
                f'modparam("tls", "private_key", "{self.key_file}")\n'
                f'modparam("tls", "ca_list", "{self.ca_file}")\n'
                'modparam("tls", "verify_certificate", 0)\n'
                'modparam("tls", "require_certificate", 0)\n'
            )
        algorithm = (
            f'modparam("auth", "algorithm", "{self.algorithm}")\n'
            if self.algorithm != "MD5"
            else ""
        )
        auth_calls = "1" if self.authenticate_calls else "0"
        extra = "\n".join(self.extra_cfg)
        return f"""#!KAMAILIO
# written by tests/interop/kamailio.py: registrar + authenticating record-routing proxy

debug={self.debug}
log_stderror=yes
fork=yes
children={self.children}
tcp_children={self.children}
auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=no
tcp_accept_no_cl=yes
tcp_connection_lifetime=3605
{tls_global}{chr(10).join(listen)}
{extra}

{tls_module}loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
loadmodule "ctl.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "htable.so"
loadmodule "nathelper.so"

modparam("ctl", "binrpc", "unix:{self.ctl_path}")
modparam("tm", "fr_timer", 30000)
modparam("tm", "fr_inv_timer", 120000)
modparam("rr", "enable_full_lr", 1)
modparam("rr", "append_fromtag", 1)
modparam("usrloc", "db_mode", 0)
modparam("nathelper", "received_avp", "$avp(RECEIVED)")
modparam("nathelper", "natping_interval", 0)
modparam("registrar", "received_avp", "$avp(RECEIVED)")
modparam("registrar", "default_expires", {self.default_expires})
modparam("registrar", "min_expires", {self.min_expires})
modparam("registrar", "max_expires", {self.max_expires})
modparam("registrar", "method_filtering", 0)
{algorithm}modparam("htable", "htable", "users=>size=4;")

event_route[htable:mod-init] {{
{users}
}}

request_route {{
	xlog("L_INFO", "REQ $rm $ru from $si:$sp/$pr\\n");
	route(REQINIT);

	if (is_method("CANCEL")) {{
		if (t_check_trans()) {{
			route(RELAY);
		}}
		exit;
	}}

	# retransmissions: absorbed by the transaction
	if (!is_method("ACK")) {{
		if (t_precheck_trans()) {{
			t_check_trans();
			exit;
		}}
		t_check_trans();
	}}

	route(WITHINDLG);

	# only initial requests below
	if (is_method("REGISTER")) {{
		route(AUTH);
		route(REGISTRAR);
		exit;
	}}
	if ({auth_calls} == 1 && !is_method("ACK")) {{
		route(AUTH);
	}}
	remove_hf("Route");
	if (is_method("INVITE|SUBSCRIBE")) {{
		record_route();
	}}
	route(TCPALIAS);
	route(LOCATION);
	route(RELAY);
}}

route[REQINIT] {{
	if (!mf_process_maxfwd_header("10")) {{
		sl_send_reply("483", "Too Many Hops");
		exit;
	}}
	if (!sanity_check("17895", "7")) {{
		xlog("L_WARN", "malformed request from $si:$sp\\n");
		exit;
	}}
	if (is_method("OPTIONS") && uri==myself && $rU==$null) {{
		sl_send_reply("200", "Keepalive");
		exit;
	}}
}}

route[WITHINDLG] {{
	if (!has_totag()) return;
	if (loose_route()) {{
		route(TCPALIAS);
		if (!isdsturiset()) {{
			handle_ruri_alias();
		}}
		route(RELAY);
		exit;
	}}
	if (is_method("ACK")) {{
		if (t_check_trans()) {{
			route(RELAY);
		}}
		exit;
	}}
	sl_send_reply("404", "Not here");
	exit;
}}

route[AUTH] {{
	$var(pw) = "";
	if ($au != $null && $sht(users=>$au) != $null) {{
		$var(pw) = $sht(users=>$au);
	}}
	if ($var(pw) == "") {{
		xlog("L_INFO", "AUTH $rm: challenge (auth user '$au')\\n");
		auth_challenge("{realm}", "{challenge_flags}");
		exit;
	}}
	$var(rc) = pv_auth_check("{realm}", "$var(pw)", "0", "1");
	xlog("L_INFO", "AUTH $rm user $au: result $var(rc)\\n");
	if ($var(rc) == -4) {{
		auth_challenge("{realm}", "{stale_flags}");
		exit;
	}}
	if ($var(rc) < 0) {{
		auth_challenge("{realm}", "{challenge_flags}");
		exit;
	}}
	if (!is_method("REGISTER")) {{
		consume_credentials();
	}}
}}

route[REGISTRAR] {{
	if ($pr == "tcp" || $pr == "tls") {{
		fix_nated_register();
	}}
	if (!save("location")) {{
		xlog("L_WARN", "REG save failed for $tu\\n");
		sl_reply_error();
		exit;
	}}
	xlog("L_INFO", "REG saved $tu contact $ct\\n");
	exit;
}}

route[LOCATION] {{
	if (!(uri==myself || $ru =~ "^sips?:([^@]+@)?(127\\.0\\.0\\.1|localhost)([;?].*)?$")) {{
		return;
	}}
	if (!lookup("location")) {{
		$var(rc) = $rc;
		t_newtran();
		switch ($var(rc)) {{
			case -2:
				send_reply("405", "Method Not Allowed");
				exit;
			default:
				send_reply("404", "Not Found");
				exit;
		}}
	}}
}}

# a TCP/TLS client is reached back over its own connection: ;alias=ip~port~proto on its Contact
route[TCPALIAS] {{
	if (($pr == "tcp" || $pr == "tls") && is_method("INVITE|SUBSCRIBE|UPDATE|REFER|NOTIFY")) {{
		add_contact_alias();
	}}
}}

route[RELAY] {{
	if (!t_relay()) {{
		sl_reply_error();
	}}
	exit;
}}

onreply_route {{
	xlog("L_INFO", "RPL $rs $rr for $rm from $si:$sp/$pr\\n");
	if (($pr == "tcp" || $pr == "tls") && status =~ "^(1[0-9][1-9]|2[0-9][0-9])$") {{
		add_contact_alias();
	}}
}}
"""

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.tls and not (self.cert_file.exists() and self.ca_file.exists()):
            self.make_certificates()
        self.cfg_path.write_text(self.cfg_text())

    def make_certificates(self) -> None:
        """A CA (``ca.pem``) and a server cert for 127.0.0.1/localhost signed by it."""
        openssl = shutil.which("openssl")
        if openssl is None:
            raise KamailioError("TLS needs the openssl CLI, which is not on PATH")
        d = self.tls_dir
        d.mkdir(parents=True, exist_ok=True)
        (d / "server.ext").write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        )
        steps = [
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
             "-subj", "/CN=sessioncore interop test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-sha256",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
            [openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-set_serial", str(int(time.time() * 1000)), "-days", "30", "-sha256",
             "-extfile", "server.ext", "-out", "server.pem"],
        ]  # fmt: skip
        for argv in steps:
            done = subprocess.run(
                argv,
                cwd=d,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=OPENSSL_TIMEOUT_S,
                check=False,
            )
            if done.returncode != 0:
                raise KamailioError(
                    f"$ {' '.join(argv)}\nexit {done.returncode}\n"
                    + done.stdout.decode(errors="replace")
                    + done.stderr.decode(errors="replace")
                )

    # ------------------------------------------------------------------ lifecycle

    def _ports(self) -> list[tuple[int, Literal["udp", "tcp"]]]:
        ports: list[tuple[int, Literal["udp", "tcp"]]] = [(self.port, "udp"), (self.port, "tcp")]
        if self.tls_port is not None:
            ports.append((self.tls_port, "tcp"))
        return ports

    def start(self, timeout_s: float = START_TIMEOUT_S) -> Kamailio:
        """Write the config (and certificates), run Kamailio, wait until its ports are bound.

        Raises :class:`KamailioError` with the log when it exits or does not bind in time.
        """
        from .conftest import port_ready

        if self.running:
            raise KamailioError(f"{self.name} is already running")
        self.write_config()
        self.argv = [
            self.binary, "-DD", "-E", "-f", str(self.cfg_path), "-P", str(self.pid_path),
            "-m", "64", "-M", "8", "-w", str(self.workdir), "-Y", str(self.workdir),
        ]  # fmt: skip
        self.returncode = None
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"===== start #{self.starts}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                self.stop()
                raise KamailioError(f"{self.name} exited during start-up\n{self.describe()}")
            if all(port_ready(port, proto) for port, proto in self._ports()):
                return self
            time.sleep(0.05)
        self.stop()
        raise KamailioError(f"{self.name} not listening after {timeout_s}s\n{self.describe()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = 5.0) -> int | None:
        """SIGTERM to the process group (Kamailio stops its children), then SIGKILL."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_s)
        self._signal(signal.SIGKILL)  # also any child left behind by an exited main process
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        self.returncode = proc.returncode
        return self.returncode

    def restart(self, timeout_s: float = START_TIMEOUT_S) -> Kamailio:
        """Stop and start again on the same ports (in-memory registrations are lost)."""
        self.stop()
        return self.start(timeout_s)

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def __enter__(self) -> Kamailio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ observation

    @property
    def log(self) -> str:
        """Everything Kamailio wrote so far (all starts), one file."""
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, pattern: str, timeout_s: float = 10.0, count: int = 1) -> bool:
        """Wait until ``pattern`` (a multiline regex) matches the log ``count`` times."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout_s
        while True:
            if len(regex.findall(self.log)) >= count:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def requests(self, method: str | None = None) -> list[str]:
        """The ``REQ METHOD RURI from SRC`` lines logged so far (all starts)."""
        lines = re.findall(r"REQ (\S+ \S+ from \S+)", self.log)
        return [line for line in lines if method is None or line.split(" ", 1)[0] == method]

    def rpc(self, *command: str, timeout_s: float = RPC_TIMEOUT_S) -> str:
        """``kamcmd -s unix:CTL COMMAND...``; its output. Raises KamailioError if it fails."""
        if self.kamcmd is None:
            raise KamailioError("kamcmd is not installed")
        argv = [self.kamcmd, "-s", f"unix:{self.ctl_path}", *command]
        try:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise KamailioError(f"$ {' '.join(argv)}: no answer in {timeout_s}s") from exc
        out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        if done.returncode != 0:
            raise KamailioError(f"$ {' '.join(argv)}\nexit {done.returncode}\n{out}")
        return out

    def contacts(self, user: str) -> list[str]:
        """Contact URIs registered for ``user`` (``ul.lookup location USER``); [] if none."""
        try:
            out = self.rpc("ul.lookup", "location", user)
        except KamailioError as exc:
            if "Not Found" in str(exc) or "404" in str(exc):
                return []
            raise
        return re.findall(r"Address:\s*(\S+)", out)

    def describe(self, lines: int = 60) -> str:
        return (
            f"$ {' '.join(self.argv)}\n(in {self.workdir})\nexit status: {self.returncode}\n"
            f"--- {self.name} log (tail) ---\n{_tail(self.log, lines)}"
        )


def kamailio_factory(workdir: Path) -> Iterator[Callable[..., Kamailio]]:
    """Generator for a pytest fixture: ``make(name="kamailio", **kwargs)`` builds (does not
    start) a :class:`Kamailio` in ``workdir/NAME``; all of them are stopped afterwards.

    In a test module::

        @pytest.fixture
        def kamailio(tmp_path):
            require_kamailio()
            yield from kamailio_factory(tmp_path)
    """
    made: list[Kamailio] = []

    def make(name: str | None = None, **kwargs: object) -> Kamailio:
        label = name or ("kamailio" if not made else f"kamailio{len(made)}")
        kam = Kamailio(workdir / label, name=label, **kwargs)  # type: ignore[arg-type]
        made.append(kam)
        return kam

    try:
        yield make
    finally:
        for kam in made:
            kam.stop()


def require_kamailio(*, tls: bool = False) -> str:
    """The kamailio binary (also found in /usr/sbin); else ``require_peer`` skips or fails.

    ``tls=True`` also needs the ``tls`` module (Debian ``kamailio-tls-modules``): a skip, or a
    failure under ``SESSIONCORE_REQUIRE_PEERS=1``, when it is missing.
    """
    import pytest

    from .conftest import REQUIRE_PEERS_ENV, peers_required, require_peer

    binary = find_binary("kamailio") or require_peer("kamailio")
    if tls and not tls_module_available():
        reason = "Kamailio's tls module is not installed (Debian: kamailio-tls-modules)"
        if peers_required():
            pytest.fail(f"{reason}, and {REQUIRE_PEERS_ENV}=1 requires every peer", pytrace=False)
        pytest.skip(reason)
    return binary


def tls_module_available() -> bool:
    """Whether ``tls.so`` is in one of the usual Kamailio module folders."""
    patterns = ("/usr/lib/*/kamailio/modules/tls.so", "/usr/lib*/kamailio/modules/tls.so",
                "/usr/local/lib*/kamailio/modules/tls.so")  # fmt: skip
    return any(any(Path("/").glob(p.lstrip("/"))) for p in patterns)
