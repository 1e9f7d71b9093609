"""Containers and mounts seen by the sweeps: what ``ocibox image mount`` keeps in use, and the
cleanup of containers whose process is gone (their mounts, directories and cgroups)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ocibox import cgroups
from ocibox._contextlib import suppress
from ocibox.digest import Digest
from ocibox.errors import StoreError, UsageError
from ocibox.linux import proc
from ocibox.store import ContainerRecord, Store, Trash, delete_containers, stale_containers


def mount_points_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first, once per mount (a point mounted over
    twice is listed twice: unmounting it takes two umounts)."""
    base = os.path.realpath(path)
    out = [m.mount_point for m in proc.mountinfo() if m.mount_point == base or m.mount_point.startswith(base + "/")]
    return sorted(out, key=lambda p: p.count("/"), reverse=True)


def mounted_images(store: Store) -> set[Digest]:
    """Image ids mounted by ``ocibox image mount`` (``<root>/mounts/<hex>/merged``): in use."""
    base = os.path.realpath(store.mounts)
    out = set()
    for mp in mount_points_under(Path(base)):
        parts = os.path.relpath(mp, base).split(os.sep)
        if len(parts) == 2 and parts[1] == "merged":
            with suppress(UsageError):
                out.add(Digest.parse(f"sha256:{parts[0]}"))
    return out


def unmount_under(path: Path) -> None:
    from ocibox.linux import syscalls

    for mp in mount_points_under(path):
        try:
            syscalls.umount(mp, syscalls.MNT_DETACH)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOENT):
                raise StoreError(f"cannot unmount {mp} of a stale container: {e}; unmount it and retry") from None


def remove_containers(store: Store, trash: Trash, records: list[ContainerRecord]) -> list[str]:
    """Unmount, drop the rows, move the directories into the trash, remove the cgroups."""
    if not records:
        return []
    for c in records:
        unmount_under(store.container_dir(c.id))
    delete_containers(store, [c.id for c in records])
    for c in records:
        trash.take(store.container_dir(c.id))
        cgroups.remove_leftovers(c.id)
    return [c.id for c in records]


def clean_stale_containers(store: Store) -> list[str]:
    """Clean up containers whose process is gone (a crash): unmount what is left mounted under
    ``containers/<id>``, drop the rows, remove the directories and the cgroups named after them.
    Returns the ids cleaned. Any command may call it; prune and verify --repair do."""
    trash = Trash(store)
    try:
        with store.lock("gc"):
            return remove_containers(store, trash, stale_containers(store))
    finally:
        trash.empty()
