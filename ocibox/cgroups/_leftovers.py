"""Cgroups left behind by a container whose process is gone (a crash, a reboot of the runner):
found by the name the runner gives them, in every hierarchy, and removed."""

from __future__ import annotations

import os
from pathlib import Path

from ocibox._contextlib import suppress
from ocibox.cgroups._base import CGROUP_ROOT
from ocibox.linux import proc


def container_cgroups(cid: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """Cgroup directories named after the container (``ocibox-<id>``, ``ocibox-<id12>`` or the id)
    in every hierarchy: at its top, under ``ocibox/``, and under this process's own cgroup
    (the runner nests a container's cgroup under its caller's, as runc does)."""
    names = (f"ocibox-{cid}", f"ocibox-{cid[:12]}", cid)
    own = proc.cgroup()
    try:
        tops = [root, *[Path(e.path) for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]]
    except OSError:
        return []
    out: list[Path] = []
    for top in tops:
        key = "" if top == root or top.name == "unified" else top.name.split(",")[0]
        parents = {top, top / "ocibox"}
        mine = own.path(key)
        if mine and mine.lstrip("/"):
            parents.add(top / mine.lstrip("/"))
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
    with suppress(OSError):
        os.rmdir(path)


def remove_leftovers(cid: str, root: Path = CGROUP_ROOT) -> None:
    """Remove every cgroup named after container ``cid`` that holds no live task."""
    for cg in container_cgroups(cid, root):
        remove_cgroup(cg)
