"""Faults between ocibox and the real registry, injected by tests/faultproxy.py on loopback: retries on
503/429/500 with backoff, a connection cut mid-blob (resume with Range, also in a later process),
an endless manifest, a lying Docker-Content-Digest, schema1, a corrupt blob; and mirrors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import oci
import pytest
from faultproxy import FaultProxy
from registry import Registry

from ocibox.errors import DigestMismatch, ManifestError, RegistryError, TransportError
from ocibox.puller import pull
from ocibox.reference import Reference
from ocibox.settings import Config, RegistryConfig, Settings
from ocibox.store import Store

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def image(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, oci.Layer]:
    import os

    layer = oci.Layer(oci.make_tar([oci.Entry("big", data=os.urandom(3 << 20))]), "gzip")
    oci.push_image(tmp_path_factory.mktemp("faults"), registry.host, "faults/img:v1", [layer])
    return "faults/img:v1", layer


def _pull(proxy: FaultProxy, root: Path, repo_tag: str = "faults/img:v1") -> object:
    return pull(Settings(root=root, quiet=True), Reference.parse(f"{proxy.host}/{repo_tag}"))


BLOB = r"/v2/faults/img/blobs/sha256:"
MANIFEST = r"/v2/faults/img/manifests/"


def test_retries_503_and_429(image: tuple[str, oci.Layer], proxy: FaultProxy, store_root: Path) -> None:
    blob = BLOB + oci.sha256(image[1].blob).split(":")[1]
    proxy.add(MANIFEST, "status", times=2, status=503)
    proxy.add(blob, "status", times=1, status=429, headers={"Retry-After": "1"})
    t = time.monotonic()
    _pull(proxy, store_root)
    assert len(proxy.requests(MANIFEST)) == 3
    assert len(proxy.requests(blob)) == 2
    assert time.monotonic() - t >= 1.0  # Retry-After honoured


def test_persistent_500_is_one_clear_error(image: tuple[str, oci.Layer], proxy: FaultProxy, store_root: Path) -> None:
    digest = oci.sha256(image[1].blob)
    proxy.add(BLOB + digest.split(":")[1], "status", times=1000, status=500)
    with pytest.raises(RegistryError) as ei:
        _pull(proxy, store_root)
    msg = str(ei.value)
    assert "faults/img" in msg and digest in msg and "500" in msg and "\n" not in msg
    assert ei.value.temporary
    assert 2 <= len(proxy.requests(BLOB)) <= 10  # bounded
    assert not list(Store(store_root).db.execute("SELECT * FROM images"))


def test_cut_mid_blob_resumes_with_range(image: tuple[str, oci.Layer], proxy: FaultProxy, store_root: Path) -> None:
    blob = BLOB + oci.sha256(image[1].blob).split(":")[1]
    proxy.add(blob, "cut", times=1, at=1_000_000)
    _pull(proxy, store_root)
    ranges = [s.headers.get("Range") for s in proxy.requests("^" + blob)]
    assert ranges == [None, "bytes=1000000-"]


def test_resume_in_a_later_process(image: tuple[str, oci.Layer], proxy: FaultProxy, store_root: Path) -> None:
    hexd = oci.sha256(image[1].blob).split(":")[1]
    proxy.add(BLOB + hexd, "cut", times=1, at=1_500_000)
    proxy.add(BLOB + hexd, "status", times=1000, status=503)
    with pytest.raises(RegistryError):
        _pull(proxy, store_root)
    partial = store_root / "tmp" / f"partial-{hexd}"
    assert partial.stat().st_size == 1_500_000
    proxy.clear()
    _pull(proxy, store_root)
    ranges = [s.headers.get("Range") for s in proxy.requests("^" + BLOB + hexd)]
    assert ranges == ["bytes=1500000-"]
    assert not partial.exists()


def test_bad_partial_file_is_discarded(image: tuple[str, oci.Layer], proxy: FaultProxy, store_root: Path) -> None:
    hexd = oci.sha256(image[1].blob).split(":")[1]
    (store_root / "tmp").mkdir(parents=True)
    (store_root / "tmp" / f"partial-{hexd}").write_bytes(b"\x1f\x8b" + b"garbage" * 1000)
    _pull(proxy, store_root)
    assert not (store_root / "tmp" / f"partial-{hexd}").exists()


def test_endless_manifest_is_cut(image: tuple[str, oci.Layer], proxy: FaultProxy, store_root: Path) -> None:
    proxy.add(MANIFEST, "endless", headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    t = time.monotonic()
    with pytest.raises(ManifestError, match="larger than 4194304 bytes"):
        _pull(proxy, store_root)
    assert time.monotonic() - t < 10


def test_lying_docker_content_digest(image: tuple[str, oci.Layer], proxy: FaultProxy, store_root: Path) -> None:
    proxy.add(MANIFEST, "headers", headers={"Docker-Content-Digest": "sha256:" + "1" * 64})
    with pytest.raises(DigestMismatch, match="Docker-Content-Digest"):
        _pull(proxy, store_root)


def test_schema1_is_refused(image: tuple[str, oci.Layer], proxy: FaultProxy, store_root: Path) -> None:
    body = json.dumps({"schemaVersion": 1, "name": "faults/img", "tag": "v1", "fsLayers": []}).encode()
    proxy.add(MANIFEST, "body", body=body,
              headers={"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"})
    with pytest.raises(ManifestError, match="schema1"):
        _pull(proxy, store_root)


def test_corrupt_blob_publishes_nothing(image: tuple[str, oci.Layer], proxy: FaultProxy, store_root: Path) -> None:
    blob = image[1].blob
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 0xFF
    proxy.add(BLOB + oci.sha256(blob).split(":")[1], "body", body=bytes(bad))
    with pytest.raises((DigestMismatch, Exception)) as ei:
        _pull(proxy, store_root)
    assert "faults/img" in str(ei.value)
    store = Store(store_root)
    assert not list(store.db.execute("SELECT * FROM images"))
    assert not [p for p in store.layers.iterdir() if p.name != "l"]


def test_mirror_before_origin(image: tuple[str, oci.Layer], registry: Registry, proxy: FaultProxy,
                              store_root: Path) -> None:
    """Origin 127.0.0.1:9 is closed; the first mirror answers 404, the second has the image."""
    proxy.add(MANIFEST, "status", times=100, status=404)
    cfg = Config(registries=(RegistryConfig("127.0.0.1:9", mirrors=(proxy.host, registry.host)),))
    r = pull(Settings(root=store_root, quiet=True, config=cfg), Reference.parse("127.0.0.1:9/faults/img:v1"))
    assert r.image.layers and len(proxy.requests(MANIFEST)) == 1
    assert str(r.reference) == "127.0.0.1:9/faults/img:v1"


def test_unreachable_registry(store_root: Path) -> None:
    with pytest.raises(TransportError, match=r"cannot reach 127\.0\.0\.1:9"):
        pull(Settings(root=store_root, quiet=True), Reference.parse("127.0.0.1:9/x:y"))
