"""Pull from the real registry: OCI and Docker schema2 images, a multi-platform index, gzip/zstd/
uncompressed layers, by tag and by digest, shared layers, up-to-date pulls, and the CLI end to end.
Fixture images are built by tests/oci.py and pushed with skopeo."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import oci
import pytest
from cli import ocibox, ocibox_popen
from oci import files_layer
from registry import Registry

from ocibox.digest import Digest
from ocibox.errors import ManifestError, NotFoundError
from ocibox.image import DOCKER_MANIFEST, OCI_MANIFEST, Platform, chain_ids
from ocibox.puller import pull
from ocibox.reference import Reference
from ocibox.settings import Settings
from ocibox.store import Store

pytestmark = pytest.mark.integration


@dataclass
class Pushed:
    ref: str
    digest: str
    layout: Path


def push(tmp: Path, registry: Registry, repo_tag: str, layers: list[oci.Layer], *, v2s2: bool = False,
         **kw: object) -> Pushed:
    lay = oci.Layout(tmp / ("layout-" + re.sub(r"[/:]", "_", repo_tag)))
    desc = lay.add_manifest(layers, **kw)  # type: ignore[arg-type]
    lay.tag(desc, "t")
    ref = f"{registry.host}/{repo_tag}"
    oci.skopeo_push(lay.path, "t", ref, docker_schema2=v2s2)
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                         check=True, capture_output=True).stdout
    return Pushed(ref, "sha256:" + hashlib.sha256(raw).hexdigest(), lay.path)


@pytest.fixture(scope="module")
def images(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pushed]:
    tmp = tmp_path_factory.mktemp("pull-images")
    out: dict[str, Pushed] = {}
    base = files_layer({"base": b"base layer\n"})
    out["oci"] = push(tmp, registry, "oci/single:v1", [base, files_layer({"top": b"oci top\n"})])
    out["mixed"] = push(tmp, registry, "mixed/layers:v1", [
        files_layer({"g": b"gzip\n" * 100}, "gzip"), files_layer({"z": b"zstd\n" * 100}, "zstd"),
        files_layer({"n": b"none\n" * 100}, "none")])
    out["docker"] = push(tmp, registry, "docker/s2:v1", [files_layer({"d": b"docker schema2\n"})], v2s2=True)
    lay = oci.Layout(tmp / "layout-multi")
    descs = [lay.add_manifest([files_layer({"arch": arch.encode() + variant.encode()})], arch=arch, variant=variant)
             for arch, variant in (("amd64", ""), ("arm64", ""), ("arm", "v7"))]
    lay.tag(lay.add_index(descs), "t")
    ref = f"{registry.host}/multi/arch:v1"
    oci.skopeo_push(lay.path, "t", ref, all_=True)
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                         check=True, capture_output=True).stdout
    out["multi"] = Pushed(ref, "sha256:" + hashlib.sha256(raw).hexdigest(), lay.path)
    out["shared_a"] = push(tmp, registry, "shared/a:v1", [base, files_layer({"a": b"a\n"})])
    out["shared_b"] = push(tmp, registry, "shared/b:v1", [base, files_layer({"b": b"b\n"})])
    return out


def settings(root: Path) -> Settings:
    return Settings(root=root, quiet=True)


def diff(store: Store, cid: Digest) -> Path:
    return store.layer_dir(cid) / "diff"


def check_complete(root: Path, rec_id: Digest) -> None:
    """Everything a pull publishes is there: blobs verified by name, layer dirs, rows."""
    store = Store(root)
    row = store.db.execute("SELECT manifest_digest FROM images WHERE id=?", (str(rec_id),)).fetchone()
    assert row is not None
    for d in (rec_id, Digest.parse(row[0])):
        assert hashlib.sha256(store.read_blob(d)).hexdigest() == d.hex
    for (cid,) in store.db.execute("SELECT chain_id FROM image_layers WHERE image_id=?", (str(rec_id),)):
        assert diff(store, Digest.parse(cid)).is_dir()
        assert store.db.execute("SELECT 1 FROM layers WHERE chain_id=?", (cid,)).fetchone()


def test_oci_by_tag_pins_digest(images: dict[str, Pushed], store_root: Path) -> None:
    p = images["oci"]
    r = pull(settings(store_root), Reference.parse(p.ref))
    assert str(r.pinned) == p.digest and not r.up_to_date
    assert r.image.manifest_digest == r.pinned and r.image.manifest_media_type == OCI_MANIFEST
    store = Store(store_root)
    cfg = r.image.config(store)
    cids = chain_ids(cfg.diff_ids)
    assert (diff(store, cids[0]) / "data/base").read_bytes() == b"base layer\n"
    assert (diff(store, cids[1]) / "data/top").read_bytes() == b"oci top\n"
    assert r.image.size > 0
    check_complete(store_root, r.image.id)


def test_gzip_zstd_uncompressed(images: dict[str, Pushed], store_root: Path) -> None:
    r = pull(settings(store_root), Reference.parse(images["mixed"].ref))
    store = Store(store_root)
    assert [lay.media_type.rsplit(".", 1)[-1] for lay in r.image.layers] == ["tar+gzip", "tar+zstd", "tar"]
    cids = [lay.chain_id for lay in r.image.layers]
    assert (diff(store, cids[0]) / "data/g").read_bytes() == b"gzip\n" * 100
    assert (diff(store, cids[1]) / "data/z").read_bytes() == b"zstd\n" * 100
    assert (diff(store, cids[2]) / "data/n").read_bytes() == b"none\n" * 100
    check_complete(store_root, r.image.id)


def test_docker_schema2(images: dict[str, Pushed], store_root: Path) -> None:
    p = images["docker"]
    r = pull(settings(store_root), Reference.parse(p.ref))
    assert str(r.pinned) == p.digest
    assert r.image.manifest_media_type == DOCKER_MANIFEST
    assert r.image.layers[0].media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    assert (diff(Store(store_root), r.image.layers[0].chain_id) / "data/d").read_bytes() == b"docker schema2\n"


@pytest.mark.parametrize(("plat", "arch", "content"), [
    ("linux/amd64", "amd64", b"amd64"), ("linux/arm64", "arm64", b"arm64"), ("linux/arm64/v8", "arm64", b"arm64"),
    ("linux/arm/v7", "arm", b"armv7"),
])
def test_index_platforms(images: dict[str, Pushed], store_root: Path, plat: str, arch: str, content: bytes) -> None:
    p = images["multi"]
    r = pull(settings(store_root), Reference.parse(p.ref), platform=Platform.parse(plat))
    assert str(r.pinned) == p.digest  # the index digest
    store = Store(store_root)
    assert r.image.config(store).platform.architecture == arch
    assert (diff(store, r.image.layers[0].chain_id) / "data/arch").read_bytes() == content
    assert store.has_blob(r.pinned)  # the index is kept, verified


def test_index_host_platform_default_and_missing_platform(images: dict[str, Pushed], store_root: Path) -> None:
    r = pull(settings(store_root), Reference.parse(images["multi"].ref))
    assert Platform.parse(r.image.platform) == Platform.host()
    with pytest.raises(ManifestError, match=r"no image for platform linux/s390x.*linux/amd64"):
        pull(settings(store_root), Reference.parse(images["multi"].ref), platform=Platform.parse("linux/s390x"))
    with pytest.raises(ManifestError, match="not the requested linux/arm64"):
        pull(settings(store_root), Reference.parse(images["oci"].ref), platform=Platform.parse("linux/arm64"))


def test_switching_platform_of_present_index_pulls_the_other(images: dict[str, Pushed], store_root: Path) -> None:
    s = settings(store_root)
    ref = Reference.parse(images["multi"].ref)
    a = pull(s, ref, platform=Platform.parse("linux/amd64"))
    b = pull(s, ref, platform=Platform.parse("linux/arm64"))
    assert not b.up_to_date and a.image.id != b.image.id
    assert pull(s, ref, platform=Platform.parse("linux/amd64")).up_to_date


def test_by_digest(images: dict[str, Pushed], store_root: Path, registry: Registry) -> None:
    p = images["oci"]
    name = p.ref.rsplit(":", 1)[0]
    r = pull(settings(store_root), Reference.parse(f"{name}@{p.digest}"))
    assert str(r.pinned) == p.digest and not r.up_to_date
    # tag and digest together; and the digest alone again costs no request at all
    before = registry.access_log().count('"GET /v2/')
    r2 = pull(settings(store_root), Reference.parse(f"{name}@{p.digest}"))
    assert r2.up_to_date and registry.access_log().count('"GET /v2/') == before
    r3 = pull(settings(store_root), Reference.parse(f"{p.ref}@{p.digest}"))
    assert r3.image.id == r.image.id
    with pytest.raises(NotFoundError, match="not found"):
        pull(settings(store_root), Reference.parse(f"{name}@sha256:{'0' * 64}"))


def _requests(log: str) -> list[str]:
    return re.findall(r'"((?:GET|HEAD) /v2/[^ ]*) HTTP', log)


def test_up_to_date_costs_one_manifest_request(images: dict[str, Pushed], store_root: Path,
                                               registry: Registry) -> None:
    p = images["oci"]
    s = settings(store_root)
    first = pull(s, Reference.parse(p.ref))
    time.sleep(0.2)
    n = len(_requests(registry.access_log()))
    again = pull(s, Reference.parse(p.ref))
    time.sleep(0.2)
    new = _requests(registry.access_log())[n:]
    assert again.up_to_date and again.image.id == first.image.id and again.pinned == first.pinned
    assert new == ["GET /v2/oci/single/manifests/v1"]


def test_shared_layer_is_not_downloaded_twice(images: dict[str, Pushed], store_root: Path,
                                              registry: Registry) -> None:
    s = settings(store_root)
    a = pull(s, Reference.parse(images["shared_a"].ref))
    n = len(_requests(registry.access_log()))
    b = pull(s, Reference.parse(images["shared_b"].ref))
    time.sleep(0.2)
    new = _requests(registry.access_log())[n:]
    base = a.image.layers[0]
    assert b.image.layers[0].chain_id == base.chain_id
    assert not any(str(base.blob_digest) in line for line in new)
    assert any(str(b.image.layers[1].blob_digest) in line for line in new)


def test_two_processes_share_one_download(registry: Registry, tmp_path: Path, store_root: Path) -> None:
    """Two CLI processes pull images sharing a 4 MiB base layer at once: it is fetched once."""
    big = files_layer({"big": os.urandom(4 << 20)})
    c = push(tmp_path, registry, "conc/c:v1", [big, files_layer({"c": b"c"})])
    d = push(tmp_path, registry, "conc/d:v1", [big, files_layer({"d": b"d"})])
    base_blob = oci.sha256(big.blob)
    procs = [ocibox_popen(store_root, "pull", "-q", x.ref, text=False) for x in (c, d)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o[0].decode().strip() for o in outs] == [c.digest, d.digest]
    time.sleep(0.2)
    fetched = [line for line in _requests(registry.access_log()) if line.startswith("GET") and base_blob in line]
    assert len(fetched) == 1, fetched


def test_cli_end_to_end(pulled_busybox: tuple[Path, str], registry: Registry) -> None:
    root, ref = pulled_busybox
    db = sqlite3.connect(root / "ocibox.db")
    rows = db.execute("SELECT id, manifest_digest, platform FROM images").fetchall()
    assert (len(rows) == 1 and rows[0][2] == "linux/amd64") or rows[0][2] == str(Platform.host())
    (cid,) = db.execute("SELECT chain_id FROM image_layers WHERE image_id=?", (rows[0][0],)).fetchone()
    assert (root / "layers" / cid.split(":")[1] / "diff" / "bin" / "busybox").is_file()
    assert db.execute("SELECT tag FROM tags WHERE name=?", (ref.rsplit(":", 1)[0],)).fetchone() == ("latest",)
    # again: status lines say up to date; --quiet prints only the digest
    p = ocibox(root, "pull", ref, check=True)
    assert p.stdout.splitlines() == [f"Digest: {rows[0][1]}", f"Status: Image is up to date for {ref}"]
    q = ocibox(root, "pull", "--quiet", ref, check=True)
    assert q.stdout == f"{rows[0][1]}\n"


def test_cli_status_lines_and_errors(busybox_ref: str, tmp_path: Path) -> None:
    root = tmp_path / "s"
    p = ocibox(root, "pull", busybox_ref, check=True)
    lines = p.stdout.splitlines()
    assert lines[0] == "latest: Pulling from busybox"
    assert re.fullmatch(r"[0-9a-f]{12}: Pulling fs layer", lines[1])
    assert lines[2] == lines[1].replace("Pulling fs layer", "Pull complete")
    assert lines[3].startswith("Digest: sha256:")
    assert lines[4] == f"Status: Downloaded newer image for {busybox_ref}"
    bad = ocibox(root, "pull", busybox_ref.rsplit(":", 1)[0] + ":nope")
    assert bad.returncode == 125
    assert bad.stderr.count("\n") == 1 and "not found" in bad.stderr and "MANIFEST_UNKNOWN" in bad.stderr
