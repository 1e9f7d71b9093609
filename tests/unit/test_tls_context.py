"""certs.d directories (docker's and podman's layout) turned into the client's TLS context."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import pytest
from faultproxy import self_signed

from ocibox.errors import UsageError
from ocibox.puller._transport import tls_context
from ocibox.settings import Settings


def test_cas_and_client_pairs(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path / "mk", "10.9.8.7")
    d = tmp_path / "certs"
    d.mkdir()
    shutil.copy(cert, d / "ca.crt")
    ctx = tls_context(str(d))
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert any(c.get("subject") == ((("commonName", "10.9.8.7"),),) for c in ctx.get_ca_certs())
    shutil.copy(cert, d / "client.cert")
    with pytest.raises(UsageError, match=r"client certificate .*client.cert has no key .*client.key"):
        tls_context(str(d))
    shutil.copy(key, d / "client.key")
    loose = tls_context(str(d), verify=False)  # loopback / --insecure-registry: client cert only
    assert loose.verify_mode == ssl.CERT_NONE and not loose.check_hostname
    with pytest.raises(UsageError, match="certificate directory"):
        tls_context(str(tmp_path / "absent"))


def test_cert_dir_lookup(tmp_path: Path) -> None:
    s = Settings(root=tmp_path, cert_dir="/given")
    assert s.tls_dir("reg.example:5000") == "/given"
    assert Settings(root=tmp_path).tls_dir("no-such-registry.invalid:1") is None
