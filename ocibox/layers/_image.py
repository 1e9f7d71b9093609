"""The image verbs of the layer store: ``image mount``, ``image umount``, ``export``."""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ocibox._contextlib import suppress
from ocibox.errors import StoreError, UsageError
from ocibox.layers._merged import walk_merged
from ocibox.layers._mount import copy_dir_for, image_lowerdirs, mount_rootfs
from ocibox.linux import proc, syscalls
from ocibox.settings import Settings
from ocibox.store import Store, find_image, remove_tree


def _mountpoint(store: Store, image_hex: str) -> Path:
    return store.mounts / image_hex / "merged"


def _refuse_outside_userns(verb: str) -> None:
    """Without root a mount is made, and seen, only in a user (and mount) namespace: the one of
    ``ocibox unshare`` (as podman's rootless image mount needs ``podman unshare``)."""
    if os.geteuid() != 0:
        from ocibox.errors import RootlessError

        raise RootlessError(f"{verb} without root works only inside 'ocibox unshare' (the mount exists in its mount "
                            f"namespace): ocibox unshare ocibox {verb} IMAGE")


def mount_image(settings: Settings, name: str, *, warn: Callable[[str], None] | None = None) -> Path:
    """Mount the image's rootfs read-only (in the caller's mount namespace) and return
    the mount point, as ``podman image mount`` does. Mounting twice returns the same path.
    ``warn`` is told when overlayfs cannot be used (see ``mount_rootfs``)."""
    _refuse_outside_userns("image mount")
    store = Store(settings.root)
    record = find_image(store, name)
    target = _mountpoint(store, record.id.hex)
    if target.is_dir() and proc.is_mount_point(target):
        return target
    target.mkdir(parents=True, exist_ok=True)
    mount_rootfs(store, record, target, upper=None, work=None, readonly=True, warn=warn)
    return target


def umount_image(settings: Settings, name: str) -> None:
    """Undo :func:`mount_image`."""
    _refuse_outside_userns("image umount")
    store = Store(settings.root)
    record = find_image(store, name)
    target = _mountpoint(store, record.id.hex)
    if not target.is_dir() or not proc.is_mount_point(target):
        raise UsageError(f"image {name} is not mounted (mount it with 'ocibox image mount {name}')")
    try:
        syscalls.umount(str(target), syscalls.UMOUNT_NOFOLLOW)
    except OSError as e:
        raise StoreError(f"cannot unmount image {name} at {target}: {e.strerror}; is a process using it?") from None
    copy = copy_dir_for(target)
    if copy.exists():
        remove_tree(copy)
    with suppress(OSError):
        target.rmdir()
        target.parent.rmdir()


def _tarinfo(rel: str, st: os.stat_result, path: str) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(rel)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.uname = ti.gname = ""
    ti.mtime = st.st_mtime_ns // 1_000_000_000
    if stat.S_ISDIR(st.st_mode):
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISREG(st.st_mode):
        ti.type = tarfile.REGTYPE
        ti.size = st.st_size
    elif stat.S_ISLNK(st.st_mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.readlink(path)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(st.st_mode):
        ti.type = tarfile.FIFOTYPE
    else:
        raise StoreError(f"cannot export {rel}: a socket or unknown file type")
    if not stat.S_ISLNK(st.st_mode):
        pax: dict[str, str] = {}
        with suppress(OSError):
            for k in os.listxattr(path, follow_symlinks=False):
                if not k.startswith("trusted."):
                    v = os.getxattr(path, k, follow_symlinks=False)
                    pax["SCHILY.xattr." + k] = v.decode("utf-8", "surrogateescape")
        ti.pax_headers = pax
    return ti


def write_flat_tar(lowers_top_first: list[Path], out: IO[bytes]) -> None:
    """The merged rootfs as one tar stream (PAX, numeric owners, hardlinks kept)."""
    links: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tf:
        for e in walk_merged(lowers_top_first):
            if not e.rel:
                continue
            st = e.st
            if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in links:
                    ti = _tarinfo(e.rel, st, e.path)
                    ti.type, ti.size, ti.linkname = tarfile.LNKTYPE, 0, links[key]
                    ti.pax_headers = {}
                    tf.addfile(ti)
                    continue
                links[key] = e.rel
            ti = _tarinfo(e.rel, st, e.path)
            if ti.type == tarfile.REGTYPE:
                with open(e.path, "rb") as f:
                    tf.addfile(ti, f)
            else:
                tf.addfile(ti)


def export_image(settings: Settings, name: str, output: Path | IO[bytes]) -> None:
    """Write the image's flattened rootfs as a tar, like ``crane export``: to the file ``output``
    (written beside it, then renamed into place), or to an open binary stream (the CLI passes its
    stdout for ``-o -``). Needs no mount: the merged view is computed from the layers."""
    store = Store(settings.root)
    record = find_image(store, name)
    lowers = image_lowerdirs(store, record)
    if not isinstance(output, Path):
        write_flat_tar(lowers, output)
        output.flush()
        return
    out = Path(output)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write_flat_tar(lowers, f)
        os.rename(tmp, out)
    except OSError as e:
        with suppress(OSError):
            tmp.unlink()
        raise StoreError(f"cannot write {output}: {e.strerror or e}") from None
