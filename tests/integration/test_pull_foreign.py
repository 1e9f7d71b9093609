"""Foreign (non-distributable) layers: fetched from the descriptor's ``urls``, without
credentials, digest checked (issue 2).

Peers, all real except the foreign URL's server:
- a real distribution registry with htpasswd basic auth whose config allows foreign URLs on
  ``^http://127\\.0\\.0\\.2:PORT/`` (``validation: manifests: urls: allow``); it validates the
  manifests itself, and refuses them without that section;
- the manifests are pushed by skopeo: it keeps a layer that has ``urls`` as a reference and
  never uploads it (the layer blob is not even in the layout skopeo reads), so the registry
  holds no copy of it;
- the foreign URL is served by tests/faultproxy.py's FileServer in a thread on 127.0.0.2, which
  records every request's headers: that stands in for a vendor's download site, which cannot run here.
Pulls run the CLI (``python -m ocibox``) as a subprocess with the credentials in a docker
config, so the registry gets them and we can see that the foreign server does not.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import oci
import pytest
from auth_helpers import htpasswd_auth
from cli import ocibox
from faultproxy import FileServer
from registry import Registry

pytestmark = pytest.mark.integration

USER, PASSWORD = "fay", "f0reign-Pw"
ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


@dataclass
class Site:
    reg: Registry
    foreign: FileServer
    tmp: Path


@dataclass
class ForeignImage:
    ref: str
    blob: bytes
    digest: str  # of the compressed layer blob
    diff_id: str
    path: str  # on the foreign server
    url: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("foreign")
    foreign = FileServer(host="127.0.0.2").start()
    port = foreign.host.rsplit(":", 1)[1]
    extra = ("validation:\n  manifests:\n    urls:\n      allow:\n"
             f"        - '^http://127\\.0\\.0\\.2:{port}/'\n")
    reg = Registry(tmp / "reg", auth=htpasswd_auth(tmp / "auth", {USER: PASSWORD}), extra=extra)
    try:
        reg.start()
        yield Site(reg, foreign, tmp)
    finally:
        reg.stop()
        foreign.stop()


def push_foreign(site: Site, repo: str, text: bytes, *, docker: bool = False) -> ForeignImage:
    """An OCI image whose only layer is non-distributable, with ``urls`` on the foreign server;
    pushed by skopeo, which leaves the layer where its ``urls`` say it is. ``docker``: a Docker
    schema2 manifest with a ``foreign.diff.tar.gzip`` layer instead, its config uploaded and the
    manifest PUT with httpx (skopeo reads OCI layouts; the real registry still validates it)."""
    tar = oci.make_tar([oci.Entry("etc", "dir"), oci.Entry("etc/foreign", data=text)])
    blob = oci.compress(tar, "gzip")
    digest, diff_id = oci.sha256(blob), oci.sha256(tar)
    path = f"/vendor/{repo}/{digest.split(':')[1]}.tar.gz"
    url = f"http://{site.foreign.host}{path}"
    lay = oci.Layout(site.tmp / f"layout-{repo}")
    config = oci.image_config([diff_id])
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
        "config": {"mediaType": oci.OCI_CONFIG, "digest": lay.put(config), "size": len(config)},
        "layers": [{"mediaType": ND_GZIP, "digest": digest, "size": len(blob), "urls": [url]}],
    }).encode()
    ref = f"{site.reg.host}/foreign/{repo}:v1"
    if docker:
        upload_blob(site, repo, config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": oci.sha256(config), "size": len(config)},
            "layers": [{"mediaType": DOCKER_FOREIGN, "digest": digest, "size": len(blob), "urls": [url]}],
        }).encode()
        r = httpx.put(f"http://{site.reg.host}/v2/foreign/{repo}/manifests/v1", content=manifest,
                      headers={"Content-Type": DOCKER_MANIFEST}, auth=(USER, PASSWORD))
        assert r.status_code == 201, r.text
    else:
        lay.tag({"mediaType": oci.OCI_MANIFEST, "digest": lay.put(manifest), "size": len(manifest)}, "t")
        oci.skopeo_push(lay.path, "t", ref, creds=f"{USER}:{PASSWORD}")
    # The registry took the manifest without the layer: it has no copy of the blob.
    r = httpx.head(f"http://{site.reg.host}/v2/foreign/{repo}/blobs/{digest}", auth=(USER, PASSWORD))
    assert r.status_code == 404, r
    return ForeignImage(ref, blob, digest, diff_id, path, url)


def upload_blob(site: Site, repo: str, blob: bytes) -> None:
    """Put a blob into the registry (monolithic upload), as another image's push would."""
    base = f"http://{site.reg.host}"
    with httpx.Client(auth=(USER, PASSWORD)) as c:
        r = c.post(f"{base}/v2/foreign/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        loc = httpx.URL(base).join(r.headers["location"])
        r = c.put(loc.copy_merge_params({"digest": oci.sha256(blob)}), content=blob,
                  headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text


def creds_env(site: Site, root: Path) -> dict[str, str]:
    """The environment of a CLI with the registry's credentials in a docker config of its own."""
    home = root.parent / "creds"
    cfg = home / "docker" / "config.json"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    cfg.write_text(json.dumps({"auths": {site.reg.host: {"auth": auth}}}))
    env = {k: v for k, v in os.environ.items() if k not in ("REGISTRY_AUTH_FILE", "OCIBOX_CONFIG")}
    env.update(DOCKER_CONFIG=str(cfg.parent), XDG_RUNTIME_DIR=str(home / "xdg"), HOME=str(home))
    return env


def registry_blob_gets(site: Site, repo: str, digest: str) -> int:
    return len(re.findall(rf'"GET /v2/foreign/{re.escape(repo)}/blobs/{re.escape(digest)} ', site.reg.access_log()))


def layer_file(root: Path, img: ForeignImage) -> Path:
    # one layer: its chain id is its diff_id
    return root / "layers" / img.diff_id.split(":")[1] / "diff" / "etc" / "foreign"


def nothing_published(root: Path, img: ForeignImage) -> None:
    """No layer, no blob, no image record; no downloaded bytes kept (a registry error keeps an
    empty partial file for a later resume, which holds nothing)."""
    assert not (root / "layers" / img.diff_id.split(":")[1]).exists()
    blobs = root / "blobs" / "sha256"
    assert not blobs.is_dir() or not any(blobs.iterdir()), list(blobs.iterdir())
    partials = list(root.glob("tmp/partial-*"))
    assert all(p.stat().st_size == 0 for p in partials), partials
    images = ocibox(root, "images", "-q", timeout=60)
    assert images.returncode == 0 and images.stdout.strip() == "", (images.stdout, images.stderr)


def test_the_registry_checks_foreign_urls(site: Site) -> None:
    """The real registry validates foreign URLs: the same manifest is refused with a URL outside
    the allow list and taken with one inside it, without the layer blob in either case; so the
    pushes below are accepted because of the configuration, not by accident."""
    blob = b"x" * 10
    config = oci.image_config([oci.sha256(blob)])
    upload_blob(site, "checked", config)

    def put(url: str) -> httpx.Response:
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
            "config": {"mediaType": oci.OCI_CONFIG, "digest": oci.sha256(config), "size": len(config)},
            "layers": [{"mediaType": ND_GZIP, "digest": oci.sha256(blob), "size": len(blob), "urls": [url]}],
        }).encode()
        return httpx.put(f"http://{site.reg.host}/v2/foreign/checked/manifests/v1", content=manifest,
                         headers={"Content-Type": oci.OCI_MANIFEST}, auth=(USER, PASSWORD))

    # distribution 2.8 answers an invalid URL with 500 UNKNOWN (plus MANIFEST_BLOB_UNKNOWN)
    refused = put("http://127.0.0.3:1/elsewhere")
    assert refused.status_code >= 400 and "MANIFEST_BLOB_UNKNOWN" in refused.text, refused.text
    taken = put(f"http://{site.foreign.host}/elsewhere")
    assert taken.status_code == 201, taken.text


@pytest.mark.parametrize("docker", [False, True], ids=["oci-nondistributable", "docker-foreign"])
def test_foreign_layer_comes_from_its_url_without_credentials(site: Site, tmp_path: Path, docker: bool) -> None:
    repo = "docker" if docker else "oci"
    img = push_foreign(site, repo, b"from the vendor\n", docker=docker)
    site.foreign.files[img.path] = img.blob
    root = tmp_path / "store"

    res = ocibox(root, "pull", img.ref, env=creds_env(site, root))

    assert res.returncode == 0, res.stderr
    assert layer_file(root, img).read_bytes() == b"from the vendor\n"
    gets = site.foreign.gets(img.path)
    assert len(gets) == 1, site.foreign.seen
    assert "authorization" not in gets[0] and "cookie" not in gets[0], gets[0]
    assert registry_blob_gets(site, repo, img.digest) == 0
    # The registry did get the credentials (it answers 401 without them): the pull used them.
    assert "401" in site.reg.access_log()


def test_foreign_url_404_falls_back_to_the_registry(site: Site, tmp_path: Path) -> None:
    """The foreign URL is gone: the puller asks the registry for the blob. Without it there,
    a one-line not-found error names the layer and what the foreign URL answered; once the
    registry has the blob, the pull succeeds from it (with credentials, to the registry only)."""
    img = push_foreign(site, "gone", b"mirrored by the registry\n")  # nothing served at img.path
    root = tmp_path / "store"

    res = ocibox(root, "pull", img.ref, env=creds_env(site, root))

    assert res.returncode == 125, res
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert img.digest in err and f"{img.url}: 404" in err and "not found" in err, err
    assert registry_blob_gets(site, "gone", img.digest) == 1
    nothing_published(root, img)

    upload_blob(site, "gone", img.blob)
    res = ocibox(root, "pull", img.ref, env=creds_env(site, root))

    assert res.returncode == 0, res.stderr
    assert layer_file(root, img).read_bytes() == b"mirrored by the registry\n"
    assert registry_blob_gets(site, "gone", img.digest) == 2
    gets = site.foreign.gets(img.path)
    assert len(gets) == 2 and all("authorization" not in h for h in gets), gets


def test_foreign_layer_with_wrong_bytes_is_refused(site: Site, tmp_path: Path) -> None:
    img = push_foreign(site, "tampered", b"the real thing\n")
    bad = bytearray(img.blob)
    for i in range(20, len(bad) - 8):  # same length, other bytes: only the digest can tell
        bad[i] ^= 0x5A
    site.foreign.files[img.path] = bytes(bad)
    root = tmp_path / "store"

    res = ocibox(root, "pull", img.ref, env=creds_env(site, root))

    assert res.returncode == 125, res
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("Error: "), err
    assert img.digest in err and "digest" in err.lower(), err
    assert "Traceback" not in res.stderr and "ocibox failed" not in err, err
    assert len(site.foreign.gets(img.path)) == 1
    assert registry_blob_gets(site, "tampered", img.digest) == 0
    nothing_published(root, img)


