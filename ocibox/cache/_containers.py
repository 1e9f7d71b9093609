"""Containers and mounts seen by the sweeps: what ``ocibox image mount`` keeps in use, and the
cleanup of containers whose process is gone (their mounts, directories and cgroups)."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

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
            with contextlib.suppress(UsageError):
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


def container_cgroups(cid: str) -> list[Path]:
    """Cgroup directories named after the container (``ocibox-<id>``, ``ocibox-<id12>`` or the id)
    in every hierarchy: at its top, under ``ocibox/``, and under this process's own cgroup
    (the runner nests a container's cgroup under its caller's, as runc does)."""
    root = Path("/sys/fs/cgroup")
    names = (f"ocibox-{cid}", f"ocibox-{cid[:12]}", cid)
    own: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) == 3:
                    for c in (parts[1].split(",") if parts[1] else [""]):
                        own[c.removeprefix("name=")] = parts[2].lstrip("/")
    except OSError:
        pass
    try:
        tops = [root, *[Path(e.path) for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]]
    except OSError:
        return []
    out: list[Path] = []
    for top in tops:
        key = "" if top == root or top.name == "unified" else top.name.split(",")[0]
        parents = {top, top / "ocibox"}
        if own.get(key):
            parents.add(top / own[key])
        for parent in parents:
            for n in names:
                p = parent / n
                if p not in out and (p / "cgroup.procs").exists():
                    out.append(p)
    return out


def remove_cgroup(path: Path) -> None:
    """rmdir a cgroup and its children (empty ones only: a cgroup with live tasks stays)."""
    try:
        subs = [Path(e.path) for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for s in subs:
        remove_cgroup(s)
    with contextlib.suppress(OSError):
        os.rmdir(path)


def remove_containers(store: Store, trash: Trash, records: list[ContainerRecord]) -> list[str]:
    """Unmount, drop the rows, move the directories into the trash, remove the cgroups."""
    if not records:
        return []
    for c in records:
        unmount_under(store.container_dir(c.id))
    delete_containers(store, [c.id for c in records])
    for c in records:
        trash.take(store.container_dir(c.id))
        for cg in container_cgroups(c.id):
            remove_cgroup(cg)
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
