"""The external target's SSL context: verified by default, a CA bundle, an explicit opt-out, a client certificate."""

from __future__ import annotations

import ssl
import urllib.error
from pathlib import Path

import pytest
import trustme

from harness.config import TlsConfig
from harness.errors import ConfigError
from harness.tls import client_context, tls_failure


def test_verification_is_on_by_default_and_off_only_when_asked() -> None:
    default = client_context(TlsConfig())
    assert default.verify_mode == ssl.CERT_REQUIRED and default.check_hostname
    off = client_context(TlsConfig(verify=False))
    assert off.verify_mode == ssl.CERT_NONE and not off.check_hostname


def test_a_ca_bundle_and_a_client_certificate_are_loaded(tmp_path: Path) -> None:
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    client = ca.issue_cert("client.example")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    context = client_context(TlsConfig(ca_bundle=bundle, client_cert=cert, client_key=key))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert any(entry.get("subject") for entry in context.get_ca_certs())


def test_a_file_that_cannot_be_used_is_named_by_its_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"target\.tls\.ca_bundle '.*missing\.pem': cannot use it"):
        client_context(TlsConfig(ca_bundle=tmp_path / "missing.pem"))
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(ConfigError, match=r"target\.tls\.client_cert '.*not\.pem': cannot use it"):
        client_context(TlsConfig(client_cert=not_pem))


def test_contradictory_options_are_refused() -> None:
    with pytest.raises(ValueError, match="choose one"):
        TlsConfig(verify=False, ca_bundle=Path("ca.pem"))
    with pytest.raises(ValueError, match=r"client_key needs target\.tls\.client_cert"):
        TlsConfig(client_key=Path("k.pem"))


def test_a_tls_failure_is_told_from_other_failures() -> None:
    verify = ssl.SSLCertVerificationError("certificate verify failed")
    assert tls_failure(urllib.error.URLError(verify)) is verify
    assert tls_failure(verify) is verify
    assert tls_failure(urllib.error.URLError(ConnectionRefusedError())) is None
