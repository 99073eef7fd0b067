"""The SSL context for the external target's https URLs (readiness probes, answers alone and the load itself):
verified by default, against `target.tls.ca_bundle` when given, unverified only on request, with a client
certificate for mTLS. In the load process `ssl` is gevent's (Locust patches it), so the same code serves both."""

from __future__ import annotations

import ssl
from collections.abc import Sequence

from harness.config import TlsConfig
from harness.errors import ConfigError


def client_context(tls: TlsConfig) -> ssl.SSLContext:
    """An SSL context as `tls` asks; a ConfigError names the field of a file that cannot be read or used."""
    field = "target.tls.ca_bundle"
    try:
        context = ssl.create_default_context(cafile=None if tls.ca_bundle is None else str(tls.ca_bundle))
        if not tls.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if tls.client_cert is not None:
            field = "target.tls.client_cert"
            context.load_cert_chain(str(tls.client_cert), None if tls.client_key is None else str(tls.client_key))
    except OSError as error:
        # ssl.SSLError is an OSError: a file that is not PEM, or a key that does not match its certificate.
        reason = error.strerror or getattr(error, "reason", None) or str(error)
        path = tls.ca_bundle if field.endswith("ca_bundle") else tls.client_cert
        raise ConfigError(f"{field} '{path}': cannot use it ({reason})") from error
    return context


def context_for(urls: Sequence[str], tls: TlsConfig) -> ssl.SSLContext | None:
    """The context for a target's URLs: None when none is https (plain http needs none)."""
    return client_context(tls) if any(url.startswith("https:") for url in urls) else None


def tls_failure(error: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a failed https request (urllib wraps it in URLError), or None for any other failure."""
    reason = getattr(error, "reason", error)
    return reason if isinstance(reason, ssl.SSLError) else error if isinstance(error, ssl.SSLError) else None
