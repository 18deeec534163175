"""TLS configuration for the SIP transport (RFC 3261 §26.2.1, RFC 5630).

A TLS transport is the TCP driver (:mod:`.tcp`) with an :class:`ssl.SSLContext` and
``kind="tls"``; this module only builds the contexts:

* the *server* context presents our certificate on the TLS listeners (no client certificate is
  asked for);
* the *client* context opens outgoing connections and verifies the peer's certificate chain and
  its name (a DNS name or, for an IP literal target, an ``IP:`` subjectAltName) by default.
  Turning verification off is possible but must be asked for explicitly, and is logged.

Both contexts refuse anything older than TLS 1.2.
"""

from __future__ import annotations

import ssl

from sessioncore.errors import TransportError
from sessioncore.sip.transport.base import logger

__all__ = ["default_client_context", "make_tls_contexts"]

_warned_insecure = False


def _harden(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def default_client_context() -> ssl.SSLContext:
    """The client context used when none is configured: the system trust store, certificate
    and hostname verification on, TLS 1.2 at least.
    """
    return _harden(ssl.create_default_context(ssl.Purpose.SERVER_AUTH))


def make_tls_contexts(
    *,
    certfile: str | None,
    keyfile: str | None,
    cafile: str | None,
    verify: bool = True,
) -> tuple[ssl.SSLContext | None, ssl.SSLContext]:
    """Build ``(server_context, client_context)`` for a
    :class:`~sessioncore.sip.transport.manager.TransportManager`.

    ``certfile`` / ``keyfile`` are PEM files with our certificate (chain) and private key; the
    server context is ``None`` unless ``certfile`` is given (``keyfile`` may be omitted when the
    key is inside ``certfile``). The client context also presents that certificate when the
    peer asks for one (mutual TLS between servers).

    ``cafile`` is a PEM bundle of trusted CAs for verifying peers; without it the system's
    default trust store is used. ``verify=False`` turns certificate and hostname checking off
    (``CERT_NONE``) -- only for tests and closed lab networks; a WARNING is logged once.

    Raises :class:`~sessioncore.errors.TransportError` when a file cannot be loaded (missing,
    unreadable, not PEM, or key and certificate do not match), naming the file.
    """
    global _warned_insecure
    if keyfile is not None and certfile is None:
        raise TransportError("a TLS key (tls_key) needs a certificate (tls_cert) to go with it")
    server: ssl.SSLContext | None = None
    client = _harden(ssl.create_default_context(ssl.Purpose.SERVER_AUTH))
    if cafile is not None:
        try:
            client.load_verify_locations(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(f"cannot load TLS CA file {cafile!r}: {exc}") from exc
    if certfile is not None:
        server = _harden(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))
        try:
            server.load_cert_chain(certfile, keyfile)
            client.load_cert_chain(certfile, keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(
                f"cannot load TLS certificate {certfile!r} / key {keyfile!r}: {exc}"
            ) from exc
    if not verify:
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        if not _warned_insecure:
            _warned_insecure = True
            logger.warning(
                "TLS certificate verification is OFF: peers are not authenticated "
                "(use only for testing)"
            )
    return server, client
