"""Throw-away test PKI made with the ``openssl`` command line (no key material in the repo).

:func:`make_test_pki` writes, into a temporary directory, a self-signed CA, a server/leaf
certificate signed by it (subjectAltName ``IP:127.0.0.1, IP:::1, DNS:localhost``) and a "rogue"
self-signed certificate with the same names that no CA vouches for. EC P-256 keys keep it fast
(a few tens of milliseconds).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

__all__ = ["TestPki", "make_test_pki", "openssl_available"]

_CONFIG = """\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = sessioncore test

[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[leaf_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1,IP:::1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer

[rogue_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1,IP:::1,DNS:localhost
subjectKeyIdentifier = hash
"""

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class TestPki:
    """Paths (as ``str``, ready for :mod:`ssl`) of the generated PEM files."""

    __test__: ClassVar[bool] = False  # not a pytest test class

    #: the CA certificate (trust anchor for clients)
    ca_file: str
    #: leaf certificate signed by the CA, and its key
    cert_file: str
    key_file: str
    #: self-signed certificate with the same names, not signed by the CA, and its key
    rogue_cert_file: str
    rogue_key_file: str


def openssl_available() -> bool:
    """True if the ``openssl`` command is on PATH."""
    return shutil.which("openssl") is not None


def _run(cwd: Path, *args: str) -> None:
    proc = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def make_test_pki(tmp_path: Path) -> TestPki:
    """Create the CA, leaf and rogue certificates under ``tmp_path / "pki"``.

    Skips the calling test when ``openssl`` is not installed; raises :class:`RuntimeError`
    with openssl's message if a command fails.
    """
    if not openssl_available():
        pytest.skip("the openssl command is not available")
    d = tmp_path / "pki"
    d.mkdir(exist_ok=True)
    (d / "openssl.cnf").write_text(_CONFIG)
    cnf = ["-config", "openssl.cnf"]
    days = ["-days", "2"]
    # fmt: off
    # the CA: self-signed
    _run(d, "req", "-x509", *_EC, *cnf, "-extensions", "ca_ext", *days,
         "-subj", "/CN=sessioncore test CA", "-keyout", "ca.key", "-out", "ca.pem")
    # the leaf: a request, signed by the CA
    _run(d, "req", "-new", *_EC, *cnf, "-subj", "/CN=localhost",
         "-keyout", "server.key", "-out", "server.csr")
    _run(d, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-set_serial", "2", *days, "-extfile", "openssl.cnf", "-extensions", "leaf_ext",
         "-out", "server.pem")
    # the rogue: self-signed, same names
    _run(d, "req", "-x509", *_EC, *cnf, "-extensions", "rogue_ext", *days,
         "-subj", "/CN=localhost", "-keyout", "rogue.key", "-out", "rogue.pem")
    # fmt: on
    return TestPki(
        ca_file=str(d / "ca.pem"),
        cert_file=str(d / "server.pem"),
        key_file=str(d / "server.key"),
        rogue_cert_file=str(d / "rogue.pem"),
        rogue_key_file=str(d / "rogue.key"),
    )
