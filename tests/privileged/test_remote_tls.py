"""A registry that is not on loopback: Debian's docker-registry with a self-signed certificate,
inside a network namespace the test makes, reached over a veth pair (10.x addresses). Its TLS is
verified: a certificate nobody vouches for is a clear one-line error and nothing is stored; the CA
in a certs.d directory (--cert-dir) makes it trusted; --insecure-registry lifts verification; a
plain-HTTP registry there is refused unless marked insecure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import oci
import pytest
from cli import ocibox
from faultproxy import self_signed

pytestmark = pytest.mark.privileged


class Remote:
    def __init__(self, tls_host: str, plain_host: str, ca: Path) -> None:
        self.tls_host, self.plain_host, self.ca = tls_host, plain_host, ca


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    tmp = tmp_path_factory.mktemp("remote")
    tag = f"{os.getpid() % 100000}"
    ns, veth = f"oxtls{tag}", f"oxv{tag}"
    net = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
    host_ip, peer_ip = f"{net}.1", f"{net}.2"
    procs: list[subprocess.Popen[bytes]] = []
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", f"{veth}h", "type", "veth", "peer", "name", f"{veth}n")
        _ip("link", "set", f"{veth}n", "netns", ns)
        _ip("addr", "add", f"{host_ip}/30", "dev", f"{veth}h")
        _ip("link", "set", f"{veth}h", "up")
        _ip("-n", ns, "addr", "add", f"{peer_ip}/30", "dev", f"{veth}n")
        _ip("-n", ns, "link", "set", f"{veth}n", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        cert, key = self_signed(tmp / "tls", peer_ip)
        exe = shutil.which("docker-registry") or "/usr/bin/docker-registry"
        for name, port, tls in (("tls", 5443, True), ("plain", 5080, False)):
            cfg = tmp / f"{name}.yml"
            cfg.write_text(
                "version: 0.1\nlog:\n  level: error\n"
                f"storage:\n  filesystem:\n    rootdirectory: {tmp / name}\n"
                f"http:\n  addr: {peer_ip}:{port}\n"
                + (f"  tls:\n    certificate: {cert}\n    key: {key}\n" if tls else ""))
            log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child
            procs.append(subprocess.Popen(["ip", "netns", "exec", ns, exe, "serve", str(cfg)],
                                          stdout=log, stderr=subprocess.STDOUT))
        for url in (f"https://{peer_ip}:5443/v2/", f"http://{peer_ip}:5080/v2/"):
            deadline = time.monotonic() + 20
            while True:
                try:
                    httpx.get(url, verify=False, timeout=1)
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, (tmp / "tls.log").read_text()
                    time.sleep(0.1)
        layers = [oci.Layer(oci.busybox_layer())]
        for host in (f"{peer_ip}:5443", f"{peer_ip}:5080"):
            oci.push_image(tmp / host.replace(":", "_"), host, "bb:1", layers)
        yield Remote(f"{peer_ip}:5443", f"{peer_ip}:5080", cert)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        subprocess.run(["ip", "link", "del", f"{veth}h"], capture_output=True)
        _ip("netns", "del", ns)


def _images(root: Path) -> list[object]:
    return json.loads(ocibox(root, "images", "--format", "json").stdout or "[]")  # type: ignore[no-any-return]


def test_untrusted_certificate_is_refused_in_one_line(remote: Remote, tmp_path: Path) -> None:
    root = tmp_path / "s"
    cp = ocibox(root, "pull", f"{remote.tls_host}/bb:1")
    assert cp.returncode == 125 and cp.stderr.count("\n") == 1, cp
    assert "TLS" in cp.stderr and "certificate" in cp.stderr and f"--insecure-registry {remote.tls_host}" in cp.stderr
    assert f"certs.d/{remote.tls_host}/ca.crt" in cp.stderr, cp.stderr
    assert _images(root) == [] and not any((root / "blobs" / "sha256").iterdir())


def test_ca_in_a_cert_dir_is_trusted(remote: Remote, tmp_path: Path) -> None:
    certs = tmp_path / "certs.d" / remote.tls_host
    certs.mkdir(parents=True)
    shutil.copy(remote.ca, certs / "ca.crt")
    root = tmp_path / "s"
    cp = ocibox(root, "pull", "--cert-dir", str(certs), f"{remote.tls_host}/bb:1")
    assert cp.returncode == 0, cp.stderr
    (certs / "broken.crt").write_text("not a certificate\n")
    cp = ocibox(root, "pull", "--cert-dir", str(certs), f"{remote.tls_host}/bb:1")
    assert cp.returncode == 125 and "broken.crt cannot be loaded" in cp.stderr, cp


def test_insecure_registry_lifts_verification(remote: Remote, tmp_path: Path) -> None:
    root = tmp_path / "s"
    cp = ocibox(root, "--insecure-registry", remote.tls_host, "pull", f"{remote.tls_host}/bb:1")
    assert cp.returncode == 0, cp.stderr
    assert len(_images(root)) == 1


def test_plain_http_needs_insecure_registry(remote: Remote, tmp_path: Path) -> None:
    root = tmp_path / "s"
    cp = ocibox(root, "pull", f"{remote.plain_host}/bb:1")
    assert cp.returncode == 125 and cp.stderr.count("\n") == 1 and f"--insecure-registry {remote.plain_host}" in cp.stderr, cp
    cp = ocibox(root, "--insecure-registry", remote.plain_host, "pull", f"{remote.plain_host}/bb:1")
    assert cp.returncode == 0, cp.stderr
    cp = ocibox(root, "run", "--rm", f"{remote.plain_host}/bb:1", "echo", "ran")
    assert cp.stdout == "ran\n", cp
