"""Same image, same answer: a Debian-based multi-layer image built with umoci (and one
raw layer carrying an opaque whiteout, which umoci never writes itself), unpacked by
ocibox's unpack_layer and mounted with overlayfs, against ``umoci unpack`` of the same
OCI layout. Compared: path, type, mode, uid/gid, size, content hash, link target,
hardlink groups, device numbers, xattrs, file mtimes.

The base rootfs is the ``debootstrap --variant=minbase`` bookworm tree of conftest's
``debian_rootfs`` fixture (cached per machine), or the tree ``OCIBOX_TEST_DEBIAN_ROOTFS`` names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from layout_import import import_layout
from oci import Entry, make_tar

from ocibox.layers import mount_rootfs
from ocibox.linux import syscalls
from ocibox.linux.proc import is_mount_point as is_mounted
from ocibox.store import Store

pytestmark = [pytest.mark.privileged, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

CAP_NET_RAW = bytes.fromhex("0100000200200000000000000000000000000000")  # vfs cap v2, cap_net_raw+ep


def run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True, timeout=600)


def base_rootfs(rootfs: Path, deb: Path) -> None:
    run("cp", "-a", f"{os.environ.get('OCIBOX_TEST_DEBIAN_ROOTFS') or deb}/.", rootfs)
    os.chmod(rootfs / "tmp", 0o1777)
    (rootfs / "dev").mkdir(exist_ok=True)
    for n in ("null", "loop0", "initctl"):
        if os.path.lexists(rootfs / "dev" / n):
            os.unlink(rootfs / "dev" / n)
    os.mknod(rootfs / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(rootfs / "dev/loop0", stat.S_IFBLK | 0o660, os.makedev(7, 0))
    os.mkfifo(rootfs / "dev/initctl", 0o600)
    (rootfs / "usr/bin/pingish").write_bytes(b"\x7fELF pretend")
    os.chmod(rootfs / "usr/bin/pingish", 0o755)
    os.setxattr(rootfs / "usr/bin/pingish", "security.capability", CAP_NET_RAW)
    os.setxattr(rootfs / "etc/hostname" if (rootfs / "etc/hostname").exists() else rootfs / "etc/passwd",
                "user.origin", b"host")
    (rootfs / "usr/bin/setuidish").write_bytes(b"suid")
    os.chmod(rootfs / "usr/bin/setuidish", 0o4755)
    (rootfs / "var/lib/gone").mkdir(parents=True, exist_ok=True)
    for i in range(5):
        (rootfs / f"var/lib/gone/f{i}").write_text(str(i))
    (rootfs / "var/lib/opaque").mkdir(parents=True, exist_ok=True)
    (rootfs / "var/lib/opaque/old").write_text("old")
    (rootfs / "var/lib/becomes-file").mkdir(parents=True, exist_ok=True)
    (rootfs / "var/lib/becomes-file/x").write_text("x")
    os.chown(rootfs / "var/lib/opaque/old", 1000, 1000)
    os.symlink("/etc/passwd", rootfs / "var/lib/abs-link")
    os.symlink("../../etc/group", rootfs / "var/lib/rel-link")


def change_rootfs(rootfs: Path) -> None:
    shutil.rmtree(rootfs / "var/lib/gone")
    for n in ("passwd", "group"):
        (rootfs / f"etc/{n}").write_text((rootfs / f"etc/{n}").read_text() + f"app{n}:x:1000:1000::/:/bin/sh\n")
    os.unlink(rootfs / "usr/bin/setuidish")
    shutil.rmtree(rootfs / "var/lib/becomes-file")
    (rootfs / "var/lib/becomes-file").write_text("now a file")
    (rootfs / "srv/new").mkdir(parents=True)
    (rootfs / "srv/new/data").write_bytes(os.urandom(100_000))
    os.link(rootfs / "srv/new/data", rootfs / "srv/new/data-link")
    os.chmod(rootfs / "usr/bin/pingish", 0o750)
    os.setxattr(rootfs / "usr/bin/pingish", "security.capability", CAP_NET_RAW)  # chmod kept it; be sure


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            extra: object = ""
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    extra = hashlib.file_digest(f, "sha256").hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
            xattrs = () if stat.S_ISLNK(st.st_mode) else tuple(sorted(
                (k, os.getxattr(p, k)) for k in os.listxattr(p) if not k.startswith("trusted.")))
            mtime = 0 if stat.S_ISDIR(st.st_mode) else int(st.st_mtime)
            out[os.path.relpath(p, root)] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                                             0 if stat.S_ISDIR(st.st_mode) else st.st_size, extra, xattrs, mtime)
    return out


def hardlink_groups(root: Path) -> set[frozenset[str]]:
    groups: dict[int, set[str]] = {}
    for dirpath, _, files in os.walk(root):
        for n in files:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                groups.setdefault(st.st_ino, set()).add(os.path.relpath(p, root))
    return {frozenset(g) for g in groups.values() if len(g) > 1}


@pytest.mark.timeout(900)
def test_same_image_same_answer_as_umoci(tmp_path: Path, debian_rootfs: Path) -> None:
    layout = tmp_path / "layout"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:img")
    run("umoci", "unpack", "--image", f"{layout}:img", tmp_path / "b1")
    base_rootfs(tmp_path / "b1/rootfs", debian_rootfs)
    run("umoci", "repack", "--image", f"{layout}:img", tmp_path / "b1")
    run("umoci", "unpack", "--image", f"{layout}:img", tmp_path / "b2")
    change_rootfs(tmp_path / "b2/rootfs")
    run("umoci", "repack", "--image", f"{layout}:img", tmp_path / "b2")
    raw = tmp_path / "layer3.tar"
    raw.write_bytes(make_tar([
        Entry("var", "dir"), Entry("var/lib", "dir"), Entry("var/lib/opaque", "dir", mode=0o750),
        Entry("var/lib/opaque/.wh..wh..opq", data=b""),
        Entry("var/lib/opaque/new", data=b"new", uid=1000, gid=1000),
        Entry("etc/.wh.hostname", data=b""),
    ]))
    run("umoci", "raw", "add-layer", "--image", f"{layout}:img", raw)

    bundle = tmp_path / "umoci-bundle"
    run("umoci", "unpack", "--image", f"{layout}:img", bundle)
    store = Store(tmp_path / "store").ensure()
    record = import_layout(store, layout, "img", "test/debianish:1")
    assert len(record.layers) == 3
    target = tmp_path / "ours"
    target.mkdir()
    try:
        mount_rootfs(store, record, target, upper=None, work=None, readonly=True)
        ours, theirs = tree(target), tree(bundle / "rootfs")
        ours_links, theirs_links = hardlink_groups(target), hardlink_groups(bundle / "rootfs")
    finally:
        if is_mounted(target):
            syscalls.umount(str(target), syscalls.MNT_DETACH)
    # the image really exercises what it should
    assert "var/lib/gone" not in ours and "usr/bin/setuidish" not in ours and "etc/hostname" not in ours
    assert ours["var/lib/becomes-file"][0] == stat.S_IFREG
    assert [k for k in ours if k.startswith("var/lib/opaque/")] == ["var/lib/opaque/new"]
    assert ours["dev/loop0"][5] == (7, 0) and ours["usr/bin/pingish"][6] == (("security.capability", CAP_NET_RAW),)
    assert frozenset({"srv/new/data", "srv/new/data-link"}) in ours_links
    assert len(ours) > 500
    # the same answer
    only_ours = sorted(set(ours) - set(theirs))
    only_theirs = sorted(set(theirs) - set(ours))
    assert (only_ours, only_theirs) == ([], [])
    differ = {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]}
    assert differ == {}
    assert ours_links == theirs_links
