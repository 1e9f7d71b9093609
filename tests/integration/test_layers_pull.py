"""Through the real registry: images pushed by skopeo, pulled by ocibox, mounted and
exported; a hostile or corrupt layer fails the pull with one line naming it, leaves
nothing of itself in the store, and the next pull of a good image works."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
from cli import ocibox
from oci import Entry, Layer, busybox_layer, make_tar, push_image

from ocibox.errors import HostileLayerError, LayerError
from ocibox.layers import mount_image, umount_image
from ocibox.puller import pull
from ocibox.reference import Reference
from ocibox.settings import Settings
from ocibox.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def settings_for(root: Path, registry_host: str) -> Settings:
    return Settings(root=root, quiet=True, insecure_registries=(registry_host,))


def test_pull_mount_export(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    layers = [Layer(busybox_layer(), "gzip"),
              Layer(make_tar([Entry("etc/.wh.group", data=b""), Entry("app/run", data=b"run", mode=0o755)]), "zstd"),
              Layer(make_tar([Entry("app/.wh..wh..opq", data=b""), Entry("app/new", data=b"new")]), "none")]
    push_image(tmp_path, registry.host, "layers/three:1", layers)
    settings = settings_for(tmp_path / "store", registry.host)
    pull(settings, Reference.parse(f"{registry.host}/layers/three:1"))
    name = f"{registry.host}/layers/three:1"
    path = mount_image(settings, name)
    try:
        assert sorted(os.listdir(path / "app")) == ["new"]
        assert not (path / "etc/group").exists() and (path / "etc/passwd").exists()
        assert os.readlink(path / "bin/sh") == "busybox"
    finally:
        umount_image(settings, name)
    out = ocibox(settings.root, "export", name, "-o", "-", check=True, text=False).stdout
    tf_path = tmp_path / "x.tar"
    tf_path.write_bytes(out)
    with tarfile.open(tf_path) as tf:
        names = set(tf.getnames())
    assert {"bin/busybox", "app/new", "etc/passwd"} <= names and "app/run" not in names and "etc/group" not in names


@pytest.mark.parametrize("bad", ["hostile", "diff-id"])
def test_bad_layer_fails_pull_cleanly(registry, tmp_path: Path, bad: str) -> None:  # type: ignore[no-untyped-def]
    good = Layer(make_tar([Entry("ok", data=b"ok")]), "gzip")
    if bad == "hostile":
        evil = Layer(make_tar([Entry("../../../../tmp/ocibox-pwned", data=b"x")]), "gzip")
        push_image(tmp_path, registry.host, f"layers/{bad}:1", [good, evil])
    else:
        evil = Layer(make_tar([Entry("f", data=b"f")]), "gzip")
        lies = make_tar([Entry("g", data=b"g")])
        from oci import image_config, sha256

        cfg = image_config([sha256(good.tar), sha256(lies)])
        push_image(tmp_path, registry.host, f"layers/{bad}:1", [good, evil], config=cfg)
    settings = settings_for(tmp_path / "store", registry.host)
    with pytest.raises(LayerError) as ei:
        pull(settings, Reference.parse(f"{registry.host}/layers/{bad}:1"))
    msg = str(ei.value)
    assert "\n" not in msg and "sha256:" in msg
    if bad == "hostile":
        assert isinstance(ei.value, HostileLayerError) and "ocibox-pwned" in msg
    assert not os.path.exists("/tmp/ocibox-pwned")
    store = Store(settings.root)
    evil_dirs = [n for n in os.listdir(store.layers) if n != "l"]
    assert len(evil_dirs) <= 1  # at most the good layer, complete
    assert [n for n in os.listdir(store.tmp) if "layer" in n] == []
    push_image(tmp_path, registry.host, "layers/after:1", [good])
    pull(settings, Reference.parse(f"{registry.host}/layers/after:1"))
