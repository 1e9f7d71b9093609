import json

import pytest

from ocibox.digest import Digest
from ocibox.errors import ManifestError
from ocibox.image import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    chain_ids,
    sniff_media_type,
)

H = "sha256:" + "a" * 64


def desc(mt: str, plat: dict | None = None, digest: str = H) -> dict:
    d: dict = {"mediaType": mt, "digest": digest, "size": 10}
    if plat is not None:
        d["platform"] = plat
    return d


def test_manifest_parse_and_compression() -> None:
    m = Manifest.parse(json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json"),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar+zstd"),
                   desc("application/vnd.docker.image.rootfs.diff.tar.gzip"),
                   desc("application/vnd.oci.image.layer.v1.tar")],
    }).encode(), "m")
    assert [x.compression for x in m.layers] == ["zstd", "gzip", "none"]


def test_manifest_unknown_layer_type() -> None:
    with pytest.raises(ManifestError, match="unsupported layer media type"):
        Manifest.parse(json.dumps({"config": desc("x"), "layers": [desc("application/x-foo")]}).encode(), "m")


@pytest.mark.parametrize("body,msg", [
    (b"not json", "not valid JSON"),
    (b"[]", "not a JSON object"),
    (json.dumps({"schemaVersion": 1, "fsLayers": []}).encode(), "schema1"),
    (json.dumps({"mediaType": "application/x-weird"}).encode(), "unsupported manifest media type"),
    (b" " * (4 * 1024 * 1024 + 1), "larger than"),
])
def test_sniff_errors(body: bytes, msg: str) -> None:
    with pytest.raises(ManifestError, match=msg):
        sniff_media_type(body, "", "m")


def test_sniff_by_shape_and_header() -> None:
    assert sniff_media_type(b'{"manifests": []}', "application/json", "m") == OCI_INDEX
    assert sniff_media_type(b'{"config": {}, "layers": []}', DOCKER_MANIFEST, "m") == DOCKER_MANIFEST


def test_index_select() -> None:
    idx = Index.parse(json.dumps({"manifests": [
        desc(OCI_MANIFEST, {"os": "linux", "architecture": "amd64"}, "sha256:" + "1" * 64),
        desc(OCI_MANIFEST, {"os": "linux", "architecture": "arm64", "variant": "v8"}, "sha256:" + "2" * 64),
        desc(OCI_MANIFEST, {"os": "linux", "architecture": "arm", "variant": "v7"}, "sha256:" + "3" * 64),
        desc(OCI_MANIFEST, {"os": "linux", "architecture": "arm", "variant": "v6"}, "sha256:" + "4" * 64),
    ]}).encode(), "i")
    assert idx.select(Platform.parse("linux/amd64"), "i").digest.hex == "1" * 64
    assert idx.select(Platform.parse("linux/arm64"), "i").digest.hex == "2" * 64
    assert idx.select(Platform.parse("linux/arm64/v8"), "i").digest.hex == "2" * 64
    assert idx.select(Platform.parse("linux/arm/v6"), "i").digest.hex == "4" * 64
    assert idx.select(Platform.parse("linux/arm"), "i").digest.hex == "3" * 64
    with pytest.raises(ManifestError, match="no image for platform linux/s390x"):
        idx.select(Platform.parse("linux/s390x"), "i")


def test_config_parse() -> None:
    cfg = ImageConfig.parse(json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/sh", "-c"], "Cmd": None, "Env": ["A=1"], "User": "app",
                   "WorkingDir": "/w", "Labels": {"x": "y"}, "Memory": 1024},
        "rootfs": {"type": "layers", "diff_ids": [H]},
    }).encode())
    assert cfg.entrypoint == ("/bin/sh", "-c") and cfg.cmd is None
    assert cfg.env == ("A=1",) and cfg.user == "app" and cfg.working_dir == "/w"
    assert cfg.labels == (("x", "y"),) and cfg.memory == 1024
    assert cfg.diff_ids == (Digest.parse(H),)


def test_chain_ids() -> None:
    # Values from the OCI image spec's ChainID definition, computed independently with hashlib.
    import hashlib

    a, b = Digest.parse("sha256:" + "a" * 64), Digest.parse("sha256:" + "b" * 64)
    want = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert [str(x) for x in chain_ids([a, b])] == [str(a), want]
