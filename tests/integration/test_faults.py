"""Faults between ocibox and the real registry, injected by tests/faultproxy.py (a scripted proxy on
loopback; the registry is Debian's docker-registry). For each fault: ocibox retries what is
temporary (bounded, with backoff), resumes with Range where it can, otherwise fails with one line
naming the image and the blob; nothing unverified is published; credentials go only where they
belong; a second pull without faults succeeds and ``ocibox verify`` is clean.

The session figures (faults injected, recovered, failed cleanly, bytes re-downloaded) are printed
in pytest's terminal summary, and written as JSON to ``$OCIBOX_FAULT_REPORT`` when it is set.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import oci
import pytest
from cli import ocibox
from faultproxy import TALLY, FaultProxy, TokenServer, self_signed
from registry import Registry

from ocibox.errors import AuthError, DigestMismatch, OciboxError, RegistryError, TransportError
from ocibox.puller import _client
from ocibox.puller import pull as _pull_fn
from ocibox.reference import Reference
from ocibox.settings import Settings
from ocibox.store import Store

# every test here runs with no credentials from the machine (tests/integration/conftest.py)
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("isolated_creds")]
USER, PASSWORD = "alice", "fault-Pw-1"
REPO = "fx/img"


class _Summary:
    """A plugin registered by the module fixture: prints the figures at the end of the run."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.section("fault injection figures")
        for line in TALLY.lines():
            terminalreporter.write_line(line)
        out = os.environ.get("OCIBOX_FAULT_REPORT")
        if out:
            Path(out).write_text(json.dumps({"injected": TALLY.injected, "recovered": TALLY.recovered,
                                             "failed_cleanly": TALLY.failed_cleanly,
                                             "redownloaded": TALLY.redownloaded,
                                             "scenarios": TALLY.scenarios}, indent=2))


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> None:
    pm = request.config.pluginmanager
    if not pm.has_plugin("ocibox-fault-summary"):
        pm.register(_Summary(), "ocibox-fault-summary")


def _creds_for(tmp_path: Path, host: str) -> None:
    path = tmp_path / "docker" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))


class Image:
    def __init__(self, layers: list[oci.Layer], config: bytes, manifest_desc: dict[str, Any]) -> None:
        self.blobs = [oci.sha256(x.blob) for x in layers]
        self.sizes = [len(x.blob) for x in layers]
        diff_ids = [oci.sha256(x.tar) for x in layers]
        self.chains = [diff_ids[0]]
        for d in diff_ids[1:]:
            self.chains.append("sha256:" + hashlib.sha256(f"{self.chains[-1]} {d}".encode()).hexdigest())
        self.config = oci.sha256(config)
        self.config_size = len(config)
        self.manifest = manifest_desc["digest"]

    def blob_path(self, i: int) -> str:
        return f"/v2/{REPO}/blobs/{self.blobs[i]}"

    @property
    def config_path(self) -> str:
        return f"/v2/{REPO}/blobs/{self.config}"


MANIFEST = f"/v2/{REPO}/manifests/"


@pytest.fixture(scope="module")
def img(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Image:
    """Two layers: 3 MiB of random bytes (the one faults hit) and a small one."""
    rnd = os.urandom(3 << 20)
    layers = [oci.Layer(oci.make_tar([oci.Entry("big", data=rnd)]), "gzip"),
              oci.Layer(oci.make_tar([oci.Entry("etc", "dir"), oci.Entry("etc/small", data=b"small\n")]), "gzip")]
    config = oci.image_config([oci.sha256(x.tar) for x in layers])
    desc = oci.push_image(tmp_path_factory.mktemp("fx"), registry.host, f"{REPO}:v1", layers, config=config)
    return Image(layers, config, desc)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_proxy(registry: Registry, cert: tuple[Path, Path]) -> Iterator[FaultProxy]:
    """Answers TLS and plain HTTP on the same host:port (ocibox tries HTTPS first on loopback)."""
    p = FaultProxy(registry.host, tls=cert).start()
    yield p
    p.stop()


@pytest.fixture
def storage(registry: Registry) -> Iterator[FaultProxy]:
    """'Blob storage' on another loopback host: a plain proxy on 127.0.0.2 without auth."""
    p = FaultProxy(registry.host, host="127.0.0.2").start()
    yield p
    p.stop()


# ---------------------------------------------------------------------------------- checks
def _pull(proxy: FaultProxy, root: Path) -> Any:
    return _pull_fn(Settings(root=root, quiet=True), Reference.parse(f"{proxy.host}/{REPO}:v1"))


def _blob_bytes(img: Image, *proxies: FaultProxy) -> int:
    """Bytes of layer and config blobs served, over every request (first tries and retries)."""
    pat = f"/v2/{REPO}/blobs/"
    return sum(p.sent(pat) for p in proxies)


def _verify_clean(root: Path) -> None:
    r = ocibox(root, "verify")
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def _nothing_unverified(root: Path, img: Image, failed: int | None) -> None:
    store = Store(root)
    assert not list(store.db.execute("SELECT * FROM images"))
    rows = {r[0] for r in store.db.execute("SELECT chain_id FROM layers")}
    if failed is not None:
        assert img.chains[failed] not in rows
        assert not store.layer_dir(oci_digest(img.chains[failed])).exists()
    # every published layer dir has its row (a verified layer), and nothing else is there
    for p in store.layers.iterdir():
        if p.name != "l":
            assert f"sha256:{p.name}" in rows, p
    # blobs/: each file hashes to its name
    for p in (store.root / "blobs" / "sha256").glob("*"):
        assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name
    # tmp/: at most partial downloads, each shorter than its blob (never complete-looking)
    sizes = dict(zip([b.split(":")[1] for b in img.blobs], img.sizes, strict=True))
    for p in store.tmp.iterdir() if store.tmp.exists() else []:
        assert p.is_file() and p.name.startswith("partial-"), p
        assert p.stat().st_size < sizes[p.name.removeprefix("partial-")], p


def oci_digest(s: str) -> Any:
    from ocibox.digest import Digest

    return Digest.parse(s)


def expect_recovery(name: str, proxy: FaultProxy, root: Path, img: Image, *others: FaultProxy) -> None:
    """The pull succeeds despite the faults; verify is clean; re-downloaded bytes are counted."""
    _pull(proxy, root)
    served = _blob_bytes(img, proxy, *others)
    TALLY.redownloaded += max(0, served - sum(img.sizes) - img.config_size)
    TALLY.recovered += 1
    TALLY.scenarios.append(f"{name}: recovered, {max(0, served - sum(img.sizes) - img.config_size)} bytes again")
    _verify_clean(root)


def expect_clean_failure(name: str, proxy: FaultProxy, root: Path, img: Image, error: type[Exception],
                         names: list[str], failed: int | None = None) -> OciboxError:
    """The pull fails with one line naming the image and ``names``; nothing unverified is in the
    store; without the faults the next pull succeeds and verify is clean."""
    with pytest.raises(error) as ei:
        _pull(proxy, root)
    e = ei.value
    assert isinstance(e, OciboxError)
    msg = str(e)
    assert "\n" not in msg and f"{REPO}" in msg, msg
    for n in names:
        assert n in msg, msg
    _nothing_unverified(root, img, failed)
    proxy.rules.clear()
    _pull(proxy, root)
    served = _blob_bytes(img, proxy)
    TALLY.redownloaded += max(0, served - sum(img.sizes) - img.config_size)
    TALLY.failed_cleanly += 1
    TALLY.scenarios.append(f"{name}: failed cleanly ({type(e).__name__}), "
                           f"{max(0, served - sum(img.sizes) - img.config_size)} bytes again")
    _verify_clean(root)
    return e


# ---------------------------------------------------------------------------------- transient faults
def test_reset_mid_blob_resumes_with_range(img: Image, proxy: FaultProxy, store_root: Path) -> None:
    proxy.add(img.blob_path(0), "reset", at=1_200_000)
    expect_recovery("reset mid-blob", proxy, store_root, img)
    ranges = [s.headers.get("Range") for s in proxy.requests(img.blob_path(0))]
    assert ranges[0] is None and len(ranges) == 2
    # resumed from what had arrived (the RST may lose what was in flight, never more)
    start = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 1_200_000


def test_body_cut_short_resumes(img: Image, proxy: FaultProxy, store_root: Path) -> None:
    proxy.add(img.blob_path(0), "cut", at=700_000, times=2)
    expect_recovery("body cut short (twice)", proxy, store_root, img)
    ranges = [s.headers.get("Range") for s in proxy.requests(img.blob_path(0))]
    assert ranges == [None, "bytes=700000-", "bytes=1400000-"]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried(img: Image, proxy: FaultProxy, store_root: Path, status: int) -> None:
    proxy.add(MANIFEST, "status", status=status, times=2)
    proxy.add(img.config_path, "status", status=status)
    proxy.add(img.blob_path(0), "status", status=status, times=2)
    expect_recovery(f"{status} on manifest, config and blob", proxy, store_root, img)
    assert len(proxy.requests(MANIFEST)) == 3 and len(proxy.requests(img.blob_path(0))) == 3
    # backoff: the retries are spaced, growing
    ts = [s.t for s in proxy.requests(MANIFEST)]
    assert ts[1] - ts[0] >= 0.1 and ts[2] - ts[1] >= 0.2


def test_429_with_retry_after_is_honoured(img: Image, proxy: FaultProxy, store_root: Path) -> None:
    proxy.add(img.blob_path(0), "status", status=429, headers={"Retry-After": "2"})
    t = time.monotonic()
    expect_recovery("429 with Retry-After", proxy, store_root, img)
    ts = [s.t for s in proxy.requests(img.blob_path(0))]
    assert ts[1] - ts[0] >= 2.0 and time.monotonic() - t >= 2.0


def test_429_without_retry_after_backs_off(img: Image, proxy: FaultProxy, store_root: Path) -> None:
    proxy.add(img.blob_path(0), "status", status=429, times=3)
    expect_recovery("429 without Retry-After", proxy, store_root, img)
    ts = [s.t for s in proxy.requests(img.blob_path(0))]
    assert len(ts) == 4
    gaps = [b - a for a, b in itertools.pairwise(ts)]
    assert all(g >= 0.1 for g in gaps) and gaps[2] >= 0.5  # 0.25 * 2**k, halved at worst


def test_trickling_body_completes(img: Image, proxy: FaultProxy, store_root: Path) -> None:
    proxy.add(img.blob_path(0), "trickle", chunk=128 * 1024, delay=0.03)
    expect_recovery("trickling body", proxy, store_root, img)
    assert len(proxy.requests(img.blob_path(0))) == 1  # slow is not broken: no retry


def test_stall_beyond_read_timeout_resumes(img: Image, proxy: FaultProxy, store_root: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_client, "TIMEOUT", httpx.Timeout(5.0, read=1.0))
    proxy.add(img.blob_path(0), "stall", at=900_000, delay=3.0)
    expect_recovery("stall longer than the read timeout", proxy, store_root, img)
    ranges = [s.headers.get("Range") for s in proxy.requests(img.blob_path(0))]
    assert ranges == [None, "bytes=900000-"]


# ---------------------------------------------------------------------------------- persistent faults
def test_persistent_503_fails_cleanly_and_resumes_later(img: Image, proxy: FaultProxy, store_root: Path) -> None:
    proxy.add(img.blob_path(0), "cut", at=1_000_000)
    proxy.add(img.blob_path(0), "status", status=503, times=1000)
    expect_clean_failure("persistent 503 on a blob", proxy, store_root, img, RegistryError,
                         [img.blobs[0], "503"], failed=0)
    ranges = [s.headers.get("Range") for s in proxy.requests(img.blob_path(0))]
    assert 3 <= len(ranges) <= 8  # bounded
    assert ranges[-1] == "bytes=1000000-"  # the later pull resumed from the partial file


def test_persistent_stall_fails_cleanly(img: Image, proxy: FaultProxy, store_root: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_client, "TIMEOUT", httpx.Timeout(5.0, read=0.5))
    proxy.add(img.blob_path(0), "stall", at=400_000, delay=1.5, times=1000)
    t = time.monotonic()
    e = expect_clean_failure("stalls on every try", proxy, store_root, img, TransportError,
                             [img.blobs[0]], failed=0)
    assert time.monotonic() - t < 60
    assert isinstance(e, RegistryError) and e.temporary


def test_body_longer_than_descriptor(img: Image, proxy: FaultProxy, store_root: Path) -> None:
    proxy.add(img.blob_path(0), "longer", extra=4096)
    expect_clean_failure("blob longer than its descriptor", proxy, store_root, img, DigestMismatch,
                         [img.blobs[0], "longer"], failed=0)


def test_config_longer_than_descriptor(img: Image, proxy: FaultProxy, store_root: Path) -> None:
    proxy.add(img.config_path, "longer", extra=10)
    expect_clean_failure("config longer than its descriptor", proxy, store_root, img, DigestMismatch,
                         [img.config])


@pytest.mark.parametrize("offset", [10, 1_500_000])
def test_bytes_changed(img: Image, proxy: FaultProxy, store_root: Path, offset: int) -> None:
    proxy.add(img.blob_path(0), "flip", at=offset)
    # The decompressor usually fails first; the puller then reads the rest and reports the
    # digest mismatch, which is what happened (not a corrupt image).
    expect_clean_failure(f"a byte changed at {offset}", proxy, store_root, img, DigestMismatch,
                         [img.blobs[0], "digest mismatch"], failed=0)


def test_config_that_never_ends(img: Image, proxy: FaultProxy, store_root: Path) -> None:
    proxy.add(img.config_path, "endless")
    t = time.monotonic()
    expect_clean_failure("endless config", proxy, store_root, img, DigestMismatch, [img.config])
    assert time.monotonic() - t < 30


def test_manifest_that_never_ends_slowly(img: Image, proxy: FaultProxy, store_root: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A manifest that trickles forever, each piece well within the read timeout: the total
    time to read a manifest is bounded too."""
    monkeypatch.setattr(_client, "MANIFEST_DEADLINE", 2.0)
    proxy.add(MANIFEST, "endless", chunk=16, delay=0.05,
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    t = time.monotonic()
    expect_clean_failure("manifest trickling forever", proxy, store_root, img, TransportError, ["still incomplete"])
    assert time.monotonic() - t < 30


# ---------------------------------------------------------------------------------- redirects and credentials
def _auth_headers(seen: list[Any]) -> list[str]:
    return [s.headers.get("Authorization", "") for s in seen]


def test_redirect_to_other_loopback_host(img: Image, proxy: FaultProxy, storage: FaultProxy, store_root: Path,
                                         isolated_creds: Path) -> None:
    """Blobs redirected to 127.0.0.2, where the connection is also reset once: resumed (the
    Range request is redirected again); 127.0.0.2 never sees the registry's credentials."""
    _creds_for(isolated_creds, proxy.host)
    proxy.require_basic = (USER, PASSWORD)
    proxy.add(f"/v2/{REPO}/blobs/", "redirect", times=100, location=f"http://{storage.host}/storage{{path}}")
    storage.add(img.blob_path(0), "reset", at=1_000_000)
    expect_recovery("redirect to 127.0.0.2, reset there", proxy, store_root, img, storage)
    assert storage.requests(img.blob_path(0)) and storage.requests(img.config_path)
    assert not any(_auth_headers(storage.seen))
    assert any(a.startswith("Basic ") for a in _auth_headers(proxy.seen))


def test_redirect_https_to_http_drops_credentials(img: Image, tls_proxy: FaultProxy, store_root: Path,
                                                  isolated_creds: Path) -> None:
    """The registry is reached over HTTPS (same host:port also speaks HTTP); it redirects blobs to
    http://same-host:port: the downgraded requests carry no credentials."""
    p = tls_proxy
    _creds_for(isolated_creds, p.host)
    p.require_basic = (USER, PASSWORD)
    p.add(f"^/v2/{REPO}/blobs/", "redirect", times=100, location=f"http://{p.host}/storage{{path}}")
    expect_recovery("redirect https -> http", p, store_root, img)
    v2 = [s for s in p.seen if s.path.startswith("/v2/") and s.path != "/v2/"]
    assert v2 and all(s.scheme == "https" for s in v2)
    down = [s for s in p.seen if s.path.startswith("/storage/")]
    assert down and all(s.scheme == "http" for s in down)
    assert not any(_auth_headers(down))
    assert any(a.startswith("Basic ") for a in _auth_headers(v2))


def test_downgrade_then_challenge_sends_no_credentials(img: Image, tls_proxy: FaultProxy, store_root: Path,
                                                       isolated_creds: Path) -> None:
    """https -> http redirect to a path that then asks for a token: after a downgrade the token
    service gets no credentials (the pull fails cleanly: the target demands what we won't send)."""
    p = tls_proxy
    tokens = TokenServer(isolated_creds / "tokens", {USER: PASSWORD}, "127.0.0.3").start()
    try:
        _creds_for(isolated_creds, p.host)
        p.require_bearer = (tokens.realm, tokens)
        p.add(img.blob_path(0), "redirect", times=100, location=f"http://{p.host}{{path}}")
        e = expect_clean_failure("https -> http redirect, then a challenge", p, store_root, img, AuthError,
                                 [img.blobs[0]], failed=0)
        assert e.status == 401
        assert not any(_auth_headers(tokens.seen))
        assert all("account" not in q for q in tokens.queries())
        assert not any(_auth_headers(s for s in p.seen if s.scheme == "http"))
    finally:
        tokens.stop()


def test_http_token_realm_of_https_registry_gets_no_credentials(img: Image, tls_proxy: FaultProxy,
                                                                store_root: Path, isolated_creds: Path) -> None:
    p = tls_proxy
    tokens = TokenServer(isolated_creds / "tokens", {USER: PASSWORD}, "127.0.0.3").start()
    try:
        _creds_for(isolated_creds, p.host)
        p.require_bearer = (tokens.realm, tokens)
        p.add(img.blob_path(0), "reset", at=500_000)
        expect_recovery("token realm http://127.0.0.3 of an https registry", p, store_root, img)
        assert tokens.seen
        assert not any(_auth_headers(tokens.seen))
        assert all("account" not in q for q in tokens.queries())
        # the registry got bearer tokens only, never the basic credentials
        assert all(not a.startswith("Basic ") for a in _auth_headers(p.seen))
    finally:
        tokens.stop()


def test_https_token_realm_on_other_host_gets_credentials(img: Image, proxy: FaultProxy, store_root: Path,
                                                          isolated_creds: Path, cert: tuple[Path, Path]) -> None:
    """The registry's own realm over HTTPS on another host is where docker sends credentials."""
    tokens = TokenServer(cert[0].parent / "t3", {USER: PASSWORD}, "127.0.0.3",
                         tls=self_signed(cert[0].parent / "t3", "127.0.0.3")).start()
    try:
        _creds_for(isolated_creds, proxy.host)
        proxy.require_bearer = (tokens.realm, tokens)
        proxy.add(MANIFEST, "status", status=502)
        expect_recovery("token realm https://127.0.0.3", proxy, store_root, img)
        want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        assert tokens.seen and all(a == want for a in _auth_headers(tokens.seen))
        assert all(not a.startswith("Basic ") for a in _auth_headers(proxy.seen))
    finally:
        tokens.stop()
