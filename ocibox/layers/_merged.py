"""The merged view of a stack of layer directories, computed without mounting.

Used where overlayfs cannot be (the copied-rootfs fallback) and by ``export``.
It follows overlayfs' rules: the top layer's entry wins; a 0:0 character
device (whiteout) hides the name in every lower layer; a directory with
``trusted.overlay.opaque=y`` hides the lower layers' directories of that name;
a directory's contents merge with lower directories of the same name until a
non-directory, a whiteout or an opaque directory is met.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ocibox.layers._extract import OPAQUE_XATTR, USER_OPAQUE_XATTR


@dataclass(frozen=True)
class MergedEntry:
    rel: str  # path relative to the rootfs, '' for the root itself
    path: str  # where it is, in the layer that provides it
    st: os.stat_result


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


@functools.cache
def _opaque_name() -> str:
    """The opaque mark of this mode's store: ``user.overlay.opaque`` without root (see _extract); asked
    once per process (a walk asks at every directory)."""
    from ocibox.rootless import is_rootless

    return USER_OPAQUE_XATTR if is_rootless() else OPAQUE_XATTR


def is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _opaque_name(), follow_symlinks=False) == b"y"
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT):
            return False
        raise


def _cut(sources: list[str]) -> list[str]:
    """Sources of one directory, top first, ending at the first opaque one."""
    out = []
    for s in sources:
        out.append(s)
        if is_opaque(s):
            break
    return out


def walk_merged(lowers_top_first: list[Path]) -> Iterator[MergedEntry]:
    """Every visible entry, parents before children, names sorted; the root first."""
    roots = _cut([str(p) for p in lowers_top_first])
    yield MergedEntry("", roots[0], os.lstat(roots[0]))
    stack: list[tuple[str, list[str]]] = [("", roots)]
    while stack:
        rel, sources = stack.pop()
        visible: dict[str, tuple[int, str, os.stat_result]] = {}
        hidden: set[str] = set()
        for i, src in enumerate(sources):
            with os.scandir(src) as it:
                for de in it:
                    if de.name in visible or de.name in hidden:
                        continue
                    st = de.stat(follow_symlinks=False)
                    if is_whiteout(st):
                        hidden.add(de.name)
                    else:
                        visible[de.name] = (i, de.path, st)
        subdirs = []
        for name in sorted(visible):
            i, path, st = visible[name]
            crel = f"{rel}/{name}" if rel else name
            yield MergedEntry(crel, path, st)
            if stat.S_ISDIR(st.st_mode):
                csources = [path]
                if not is_opaque(path):
                    for lower in sources[i + 1 :]:
                        lp = os.path.join(lower, name)
                        try:
                            lst = os.lstat(lp)
                        except FileNotFoundError:
                            continue
                        if not stat.S_ISDIR(lst.st_mode):
                            break
                        csources.append(lp)
                        if is_opaque(lp):
                            break
                subdirs.append((crel, csources))
        stack.extend(reversed(subdirs))


def copy_xattrs(src: str, dst: str | int, *, follow: bool = True) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for k in names:
        if k.startswith(("trusted.", "user.overlay.")):
            continue
        with contextlib.suppress(OSError):
            os.setxattr(dst, k, os.getxattr(src, k, follow_symlinks=False), follow_symlinks=follow)


def copy_merged(lowers_top_first: list[Path], dest: Path) -> None:
    """Materialise the merged view into ``dest`` (an existing, empty directory)."""
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, os.stat_result]] = []
    for e in walk_merged(lowers_top_first):
        st = e.st
        out = os.path.join(dest, e.rel) if e.rel else str(dest)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            if e.rel:
                os.mkdir(out, 0o700)
            os.chown(out, st.st_uid, st.st_gid)
            copy_xattrs(e.path, out)
            dirs.append((out, st))
            continue
        if not stat.S_ISLNK(st.st_mode) and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            if key in links:
                os.link(links[key], out)
                continue
            links[key] = out
        if stat.S_ISREG(st.st_mode):
            shutil.copyfile(e.path, out, follow_symlinks=False)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(e.path), out)
            os.chown(out, st.st_uid, st.st_gid, follow_symlinks=False)
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            continue
        else:
            os.mknod(out, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev)
        os.chown(out, st.st_uid, st.st_gid, follow_symlinks=False)
        os.chmod(out, mode)
        copy_xattrs(e.path, out)
        os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    for out, st in reversed(dirs):
        os.chmod(out, stat.S_IMODE(st.st_mode))
        os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
