"""What a pull does with what the store already holds (issue 16, section 5): the walk index ->
manifest -> config reads the store first and the registry second. A blob missing from the store is
"not here": fetched again. A blob whose bytes do not match its digest is damaged: a warning, the
blob fetched again and put in its place (as docker re-pulls an image whose content fails
verification), the pull succeeds. A store that cannot be read is an error, not "not here".
Requests are counted at tests/faultproxy.py's proxy in front of the real registry; pulls run the CLI."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import oci
import pytest
from cli import ocibox
from faultproxy import FaultProxy
from registry import Registry

pytestmark = pytest.mark.integration

REPO = "local/img"


@dataclass
class Img:
    manifest: str
    config: str
    layer: str


@pytest.fixture(scope="module")
def img(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Img:
    layer = oci.Layer(oci.make_tar([oci.Entry("f", data=os.urandom(100_000))]))
    config = oci.image_config([oci.sha256(layer.tar)])
    desc = oci.push_image(tmp_path_factory.mktemp("local"), registry.host, f"{REPO}:v1", [layer], config=config)
    return Img(desc["digest"], oci.sha256(config), oci.sha256(layer.blob))


def blob(root: Path, digest: str) -> Path:
    return root / "blobs" / "sha256" / digest.removeprefix("sha256:")


def verify_clean(root: Path) -> None:
    v = ocibox(root, "verify")
    assert v.returncode == 0 and v.stdout == "", v.stdout + v.stderr


def test_missing_config_is_fetched_again(img: Img, proxy: FaultProxy, store_root: Path) -> None:
    ref = f"{proxy.host}/{REPO}:v1"
    assert ocibox(store_root, "pull", "-q", ref).returncode == 0
    blob(store_root, img.config).unlink()
    proxy.clear()

    r = ocibox(store_root, "pull", ref)

    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert [len(proxy.requests(p)) for p in ("/manifests/v1$", f"/blobs/{img.config}$", f"/blobs/{img.layer}$")] \
        == [1, 1, 0]
    assert hashlib.sha256(blob(store_root, img.config).read_bytes()).hexdigest() == img.config.split(":")[1]
    verify_clean(store_root)


def test_damaged_config_is_fetched_again_and_replaced(img: Img, proxy: FaultProxy, store_root: Path) -> None:
    ref = f"{proxy.host}/{REPO}:v1"
    assert ocibox(store_root, "pull", "-q", ref).returncode == 0
    path = blob(store_root, img.config)
    path.chmod(0o644)
    path.write_bytes(b"not a config, not even JSON")
    proxy.clear()

    r = ocibox(store_root, "pull", ref)

    assert r.returncode == 0, r.stderr
    assert r.stderr.count("\n") == 1 and "warning" in r.stderr and img.config in r.stderr, r.stderr
    assert "does not match its digest" in r.stderr, r.stderr
    assert [len(proxy.requests(p)) for p in ("/manifests/v1$", f"/blobs/{img.config}$", f"/blobs/{img.layer}$")] \
        == [1, 1, 0]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == img.config.split(":")[1]
    verify_clean(store_root)
    run = ocibox(store_root, "inspect", ref)
    assert run.returncode == 0 and img.config in run.stdout, run.stderr


def test_damaged_manifest_of_a_digest_pull_is_fetched_again(img: Img, proxy: FaultProxy, store_root: Path) -> None:
    ref = f"{proxy.host}/{REPO}@{img.manifest}"
    assert ocibox(store_root, "pull", "-q", ref).returncode == 0
    proxy.clear()
    assert ocibox(store_root, "pull", "-q", ref).returncode == 0
    assert proxy.seen == []  # all here: no request at all
    path = blob(store_root, img.manifest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))

    r = ocibox(store_root, "pull", "-q", ref)

    assert r.returncode == 0 and r.stdout.strip() == img.manifest, r.stderr
    assert "does not match its digest" in r.stderr, r.stderr
    # the manifest once (by digest); the config and the layer were still good
    assert [len(proxy.requests(p)) for p in (f"/manifests/{img.manifest}$", f"/blobs/{img.config}$",
                                             f"/blobs/{img.layer}$")] == [1, 0, 0]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == img.manifest.split(":")[1]
    verify_clean(store_root)


def test_unreadable_store_is_an_error_not_absence(img: Img, proxy: FaultProxy, store_root: Path) -> None:
    ref = f"{proxy.host}/{REPO}:v1"
    assert ocibox(store_root, "pull", "-q", ref).returncode == 0
    path = blob(store_root, img.config)
    path.unlink()
    path.mkdir()  # something the store cannot read as a blob (as EIO or EACCES would be)
    proxy.clear()

    r = ocibox(store_root, "pull", "-q", ref)

    assert r.returncode == 125 and r.stderr.count("\n") == 1, r
    assert img.config in r.stderr and "cannot be read" in r.stderr and "ocibox verify --repair" in r.stderr
    assert proxy.requests(f"/blobs/{img.config}$") == []  # not taken for "not here"
