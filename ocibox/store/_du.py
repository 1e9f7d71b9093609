"""Bytes on disk as the filesystem counts them: ``du -x`` of store trees, and the free bytes ``statvfs``
reports (prune measures what it freed with both)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class DiskUsage:
    """Bytes on disk as ``du -x`` counts them: ``st_blocks * 512`` of every entry (directories
    too), each inode once however many hard links it has, not crossing into other filesystems.

    One instance shares its set of seen inodes across calls, so summing the results of
    several calls over disjoint trees equals ``du -sx`` of their common parent.
    """

    def __init__(self) -> None:
        self.seen: set[tuple[int, int]] = set()

    def entry(self, path: str | Path, dev: int | None = None) -> int:
        """One entry only (no descent)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return 0
        return self._count(st, dev)

    def _count(self, st: os.stat_result, dev: int | None) -> int:
        if dev is not None and st.st_dev != dev:
            return 0
        if st.st_nlink > 1 or stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in self.seen:
                return 0
            self.seen.add(key)
        return int(st.st_blocks) * 512

    def tree(self, path: str | Path, dev: int | None = None) -> int:
        """A whole tree, the top entry included. ``dev`` limits it to one filesystem
        (by default the top entry's)."""
        try:
            top = os.lstat(path)
        except FileNotFoundError:
            return 0
        if dev is None:
            dev = top.st_dev
        total = self._count(top, dev)
        if not stat.S_ISDIR(top.st_mode) or top.st_dev != dev:
            return total
        stack = [os.fspath(path)]
        while stack:
            d = stack.pop()
            try:
                it = os.scandir(d)
            except (FileNotFoundError, NotADirectoryError):
                continue
            with it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if st.st_dev != dev:
                        continue  # a mount point: du -x leaves it out
                    total += self._count(st, dev)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(e.path)
        return total


def du(path: str | Path) -> int:
    return DiskUsage().tree(path)


def fs_free(path: str | Path) -> int:
    """Free bytes of the filesystem holding ``path`` (statvfs ``f_bfree * f_frsize``)."""
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize
