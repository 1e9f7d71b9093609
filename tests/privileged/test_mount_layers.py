"""Real overlay mounts of images imported through unpack_layer: a 128-layer image,
upper/work, the one-layer bind mount, image mount/umount/export, and the copied-rootfs
fallback compared with what the kernel's overlayfs shows."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from layout_import import import_layout
from oci import Entry, Layer, Layout, extractall, make_tar

from ocibox.layers import copy_merged, export_image, image_lowerdirs, mount_image, mount_rootfs, umount_image
from ocibox.linux import syscalls
from ocibox.linux.proc import is_mount_point as is_mounted
from ocibox.settings import Settings
from ocibox.store import ImageRecord, Store

pytestmark = [pytest.mark.privileged, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


@contextlib.contextmanager
def mounted(target: Path) -> Iterator[Path]:
    try:
        yield target
    finally:
        if is_mounted(target):
            syscalls.umount(str(target), syscalls.MNT_DETACH)


def tree(root: Path) -> dict[str, tuple]:
    """path -> (type, mode, uid, gid, size, content hash / link target / rdev, xattrs but trusted.*)"""
    out: dict[str, tuple] = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            extra: object = ""
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = st.st_rdev
            xa = () if stat.S_ISLNK(st.st_mode) else tuple(sorted(
                (k, os.getxattr(p, k)) for k in os.listxattr(p) if not k.startswith("trusted.")))
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                                             st.st_gid, st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
                                             extra, xa, int(st.st_mtime))
    return out


def many_layers(n: int) -> list[Layer]:
    layers = [Layer(make_tar([
        Entry("etc", "dir"), Entry("etc/base", data=b"base"), Entry("opt", "dir"),
        Entry("opt/old", data=b"old"), Entry("gone", "dir"), Entry("gone/x", data=b"x"),
        Entry("bin/tool", data=b"#!tool", mode=0o4755), Entry("bin/tool2", "hardlink", linkname="bin/tool"),
        Entry("dev/null", "char", devmajor=1, devminor=3, mode=0o666),
    ]), "gzip")]
    for i in range(1, n):
        entries = [Entry(f"layers/f{i:03d}", data=f"layer {i}".encode(), uid=i, gid=i)]
        if i == 3:
            entries.append(Entry(".wh.gone", data=b""))
        if i == 5:
            entries += [Entry("opt/.wh..wh..opq", data=b""), Entry("opt/new", data=b"new")]
        if i == 7:
            entries.append(Entry("etc/base", data=b"replaced", pax={"SCHILY.xattr.user.k": "v"}))
        if i == n - 1:
            entries.append(Entry("layers/.wh.f001", data=b""))
        layers.append(Layer(make_tar(entries), "zstd" if i % 2 else "gzip"))
    return layers


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, ImageRecord]:
    tmp = tmp_path_factory.mktemp("big")
    lay = Layout(tmp / "layout")
    lay.tag(lay.add_manifest(many_layers(128)), "t")
    store = Store(tmp / "store").ensure()
    return store, import_layout(store, lay.path, "t", "test/many:128")


def test_128_layer_image_mounts_and_reads(big: tuple[Store, ImageRecord], tmp_path: Path) -> None:
    store, record = big
    assert len(record.layers) == 128
    target = tmp_path / "rootfs"
    target.mkdir()
    cwd = os.getcwd()
    with mounted(target):
        mount_rootfs(store, record, target, upper=None, work=None, readonly=True)
        assert os.getcwd() == cwd
        assert is_mounted(target)
        assert (target / "layers/f127").read_bytes() == b"layer 127"
        assert not (target / "layers/f001").exists()
        assert sorted(os.listdir(target / "layers")) == [f"f{i:03d}" for i in range(2, 128)]
        assert os.lstat(target / "layers/f042").st_uid == 42
        assert not (target / "gone").exists()
        assert sorted(os.listdir(target / "opt")) == ["new"]
        assert (target / "etc/base").read_bytes() == b"replaced"
        assert os.getxattr(target / "etc/base", "user.k") == b"v"
        assert stat.S_IMODE(os.lstat(target / "bin/tool").st_mode) == 0o4755
        assert os.lstat(target / "bin/tool").st_ino == os.lstat(target / "bin/tool2").st_ino
        with pytest.raises(OSError):
            (target / "new").write_text("x")
        overlay_view = tree(target)
    # the copied-rootfs fallback gives the same tree as the kernel's overlayfs
    copy = tmp_path / "copy"
    copy.mkdir()
    copy_merged(image_lowerdirs(store, record), copy)
    assert tree(copy) == overlay_view


def test_upper_and_work(big: tuple[Store, ImageRecord], tmp_path: Path) -> None:
    store, record = big
    c = store.container_dir("c" * 64)
    for d in ("upper", "work", "merged"):
        (c / d).mkdir(parents=True)
    with mounted(c / "merged"):
        os.chdir(tmp_path)
        mount_rootfs(store, record, Path(os.path.relpath(c / "merged")), upper=c / "upper", work=c / "work")
        (c / "merged/layers/f010").write_text("changed")
        os.unlink(c / "merged/etc/base")
        assert (c / "upper/layers/f010").read_text() == "changed"
        assert stat.S_ISCHR(os.lstat(c / "upper/etc/base").st_mode)
    assert (store.layer_dir(record.layers[10].chain_id) / "diff/layers/f010").read_bytes() == b"layer 10"


def test_one_layer_image_is_a_read_only_bind(tmp_path: Path) -> None:
    lay = Layout(tmp_path / "layout")
    lay.tag(lay.add_manifest([Layer(make_tar([Entry("hello", data=b"hi")]))]), "t")
    store = Store(tmp_path / "store").ensure()
    record = import_layout(store, lay.path, "t", "test/one:1")
    target = tmp_path / "rootfs"
    target.mkdir()
    with mounted(target):
        mount_rootfs(store, record, target, upper=None, work=None)
        assert (target / "hello").read_bytes() == b"hi"
        with pytest.raises(OSError, match="Read-only"):
            (target / "x").write_text("x")
        fstype = [line.split(" - ")[1].split()[0] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if line.split()[4] == str(target)]
        assert fstype and fstype[-1] != "overlay"


def test_image_mount_umount_export(big: tuple[Store, ImageRecord], tmp_path: Path) -> None:
    store, _ = big
    settings = Settings(root=store.root)
    path = mount_image(settings, "test/many:128")
    try:
        assert mount_image(settings, "test/many:128") == path  # idempotent
        assert is_mounted(path) and (path / "layers/f100").read_bytes() == b"layer 100"
        mounted_view = tree(path)
        out = tmp_path / "flat.tar"
        export_image(settings, "test/many:128", out)
    finally:
        umount_image(settings, "test/many:128")
    assert not is_mounted(path) and not path.exists()
    with pytest.raises(Exception, match="not mounted"):
        umount_image(settings, "test/many:128")
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with tarfile.open(out) as tf:
        names = tf.getnames()
        assert "layers/f001" not in names and "gone" not in names and ".wh.gone" not in names
        assert not any(".wh." in n for n in names)
        assert tf.getmember("etc/base").pax_headers["SCHILY.xattr.user.k"] == "v"
        tool2 = tf.getmember("bin/tool2")
        assert tool2.islnk() and tool2.linkname == "bin/tool"
        extractall(tf, unpacked, numeric_owner=True)
    view = tree(unpacked)  # tarfile does not restore xattrs: compare all but them (checked above)
    assert {k: v[:6] for k, v in view.items()} == {k: v[:6] for k, v in mounted_view.items()}


def test_export_to_stdout(big: tuple[Store, ImageRecord], capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    store, _ = big
    export_image(Settings(root=store.root), "test/many:128", sys.stdout.buffer)
    data = capfdbinary.readouterr().out
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert tf.extractfile("layers/f127").read() == b"layer 127"  # type: ignore[union-attr]
