"""Mark and sweep of the store, shared by rmi, prune and verify.

Removal order, for a store that survives a crash at any point:

1. with ``locks/gc`` held exclusively (a pull or run declares what it uses under the same
   lock, shared, before it looks anything up: see ``Store.lease``), decide what is garbage,
   leaving out whatever a live lease names;
2. delete the database rows and commit: from now on nothing lists or reuses the object;
3. rename its directory or file into ``tmp/`` (one ``rename``: a crash leaves garbage in
   ``tmp/`` that the next command cleans, never a listed-but-broken layer);
4. remove the tree (after the lock is released: the trash is no longer reachable).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from ocibox._record import field, record
from ocibox.cache._util import DiskUsage
from ocibox.errors import StoreError
from ocibox.store import ContainerRecord, Store, disk_error, list_containers, remove_tree

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def normalize_leases(items: Iterable[str]) -> set[str]:
    """Leases may name ``sha256:<hex>`` or a bare hex: keep both spellings."""
    out: set[str] = set()
    for it in items:
        out.add(it)
        if ":" in it:
            out.add(it.split(":", 1)[1])
        elif HEX64.match(it):
            out.add(f"sha256:{it}")
    return out


# ----------------------------------------------------------------------------- what is referenced


@record(frozen=False)
class Refs:
    """What the database references (a consistent snapshot: read inside one transaction)."""

    images: set[str] = field(default_factory=set)
    image_layers: dict[str, list[str]] = field(default_factory=dict)  # image id -> chain ids
    layers: dict[str, str] = field(default_factory=dict)  # chain id -> short link name
    parents: dict[str, str | None] = field(default_factory=dict)
    image_blobs: dict[str, set[str]] = field(default_factory=dict)  # image id -> its config and manifest
    layer_blobs: dict[str, set[str]] = field(default_factory=dict)  # image id -> compressed layer digests
    tags: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # image id -> (name, tag)
    digests: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # image id -> (name, digest)

    @classmethod
    def load(cls, db: sqlite3.Connection) -> Refs:
        r = cls()
        for iid, manifest in db.execute("SELECT id, manifest_digest FROM images"):
            r.images.add(iid)
            r.image_layers[iid] = []
            r.image_blobs[iid] = {iid, manifest}
            r.layer_blobs[iid] = set()
            r.tags[iid] = []
            r.digests[iid] = []
        for iid, cid, blob in db.execute("SELECT image_id, chain_id, blob_digest FROM image_layers ORDER BY image_id, idx"):
            if iid in r.images:
                r.image_layers[iid].append(cid)
                r.layer_blobs[iid].add(blob)
        for cid, short, parent in db.execute("SELECT chain_id, short, parent FROM layers"):
            r.layers[cid] = short
            r.parents[cid] = parent
        for name, tag, iid in db.execute("SELECT name, tag, image_id FROM tags ORDER BY name, tag"):
            r.tags.setdefault(iid, []).append((name, tag))
        for name, dg, iid in db.execute("SELECT name, digest, image_id FROM repo_digests ORDER BY name, digest"):
            r.digests.setdefault(iid, []).append((name, dg))
        return r

    def used_layers(self, images: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for i in images:
            out.update(self.image_layers.get(i, ()))
        return out

    def used_blobs(self, images: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for i in images:
            out.update(self.image_blobs.get(i, ()))
            out.update(self.layer_blobs.get(i, ()))
            out.update(d for _, d in self.digests.get(i, ()))
        return out

    def with_ancestors(self, chain_ids: Iterable[str]) -> set[str]:
        """The layers and every layer below them (an overlay needs its whole stack)."""
        out: set[str] = set()
        for c in chain_ids:
            cur: str | None = c
            while cur is not None and cur not in out:
                out.add(cur)
                cur = self.parents.get(cur)
        return out

    def dangling(self) -> set[str]:
        """Images nothing names: no tag and no repository digest (docker's ``<none>:<none>``)."""
        return {i for i in self.images if not self.tags.get(i) and not self.digests.get(i)}


# ----------------------------------------------------------------------------- trash


class Trash:
    """A directory under ``tmp/`` owned by this process, into which objects are renamed before
    removal. If the process dies, the next prune (or ``Store.clean_tmp``) removes it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._dir: Path | None = None
        self._n = 0

    @property
    def dir(self) -> Path:
        if self._dir is None:
            self._dir = self.store.mkdtemp("trash")
        return self._dir

    def take(self, path: Path) -> bool:
        """Move ``path`` into the trash; False if it was not there."""
        if not os.path.lexists(path):
            return False
        self._n += 1
        dest = self.dir / f"{self._n}-{path.name}"
        try:
            os.rename(path, dest)
        except FileNotFoundError:
            return False
        except PermissionError:
            # Renaming a directory to another parent rewrites its '..': it must be writable.
            os.chmod(path, 0o700)
            os.rename(path, dest)
        except OSError as e:
            raise disk_error(e, f"moving {path} out of the store") from None
        return True

    def measure(self) -> int:
        return DiskUsage().tree(self._dir) if self._dir is not None else 0

    def empty(self) -> None:
        if self._dir is not None:
            remove_tree(self._dir)
            self._dir = None


# ----------------------------------------------------------------------------- layers, blobs


def layer_dir_complete(store: Store, chain_id: str) -> bool:
    hexpart = chain_id.split(":", 1)[-1]
    return (store.layers / hexpart / "diff").is_dir()


def blob_path(store: Store, digest: str) -> Path:
    algo, _, hexpart = digest.partition(":")
    return store.root / "blobs" / algo / hexpart


def delete_image_rows(db: sqlite3.Connection, image_id: str) -> None:
    db.execute("DELETE FROM tags WHERE image_id=?", (image_id,))
    db.execute("DELETE FROM repo_digests WHERE image_id=?", (image_id,))
    db.execute("DELETE FROM image_layers WHERE image_id=?", (image_id,))
    db.execute("DELETE FROM images WHERE id=?", (image_id,))


def delete_layer_rows(db: sqlite3.Connection, chain_ids: Iterable[str]) -> None:
    db.executemany("DELETE FROM layers WHERE chain_id=?", [(c,) for c in chain_ids])


def trash_layer(store: Store, trash: Trash, chain_id: str, short: str | None) -> bool:
    """Move a layer's link and directory into the trash (its row is already deleted)."""
    hexpart = chain_id.split(":", 1)[-1]
    if short:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(store.links / short)
    return trash.take(store.layers / hexpart)


def trash_blob(store: Store, trash: Trash, digest: str) -> bool:
    return trash.take(blob_path(store, digest))


def blob_files(store: Store) -> list[str]:
    """Digests of every blob file in the store."""
    out: list[str] = []
    base = store.root / "blobs"
    try:
        algos = list(os.scandir(base))
    except FileNotFoundError:
        return out
    for a in algos:
        if not a.is_dir(follow_symlinks=False):
            continue
        with os.scandir(a.path) as it:
            out.extend(f"{a.name}:{e.name}" for e in it)
    return out


def layer_dirs(store: Store) -> list[str]:
    """Names of the entries of ``layers/`` other than the ``l/`` links directory."""
    try:
        with os.scandir(store.layers) as it:
            return [e.name for e in it if e.name != "l"]
    except FileNotFoundError:
        return []


def dangling_links(store: Store, shorts: set[str]) -> list[str]:
    """Links in ``layers/l`` that no layer row names."""
    try:
        with os.scandir(store.links) as it:
            return [e.name for e in it if e.name not in shorts]
    except FileNotFoundError:
        return []


# ----------------------------------------------------------------------------- containers


def mount_points_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (from /proc/self/mountinfo), deepest first."""
    base = os.path.realpath(path)
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split(" ")
                if len(fields) < 5:
                    continue
                mp = _unescape(fields[4])
                if mp == base or mp.startswith(base + "/"):
                    out.append(mp)
    except OSError:
        return []
    return sorted(out, key=lambda p: p.count("/"), reverse=True)


def mounted_images(store: Store) -> set[str]:
    """Image ids mounted by ``ocibox image mount`` (``<root>/mounts/<hex>/merged``): in use."""
    base = os.path.realpath(store.root / "mounts")
    out = set()
    for mp in mount_points_under(Path(base)):
        parts = os.path.relpath(mp, base).split(os.sep)
        if len(parts) == 2 and parts[1] == "merged":
            out.add(f"sha256:{parts[0]}")
    return out


def _unescape(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def unmount_under(path: Path) -> None:
    from ocibox.linux import syscalls

    for mp in mount_points_under(path):
        try:
            syscalls.umount(mp, syscalls.MNT_DETACH)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOENT):
                raise StoreError(f"cannot unmount {mp} of a stale container: {e}; unmount it and retry") from None


def stale_containers(store: Store) -> list[ContainerRecord]:
    """Containers recorded as created or running whose process is gone (crash leftovers)."""
    return [c for c in list_containers(store) if c.state in ("created", "running") and not c.alive]


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
    with store.transaction() as db:
        db.executemany("DELETE FROM containers WHERE id=?", [(c.id,) for c in records])
    for c in records:
        trash.take(store.container_dir(c.id))
        for cg in container_cgroups(c.id):
            remove_cgroup(cg)
    return [c.id for c in records]


def orphan_container_dirs(store: Store, known: set[str]) -> list[str]:
    """Entries of ``containers/`` with no database row."""
    try:
        with os.scandir(store.containers) as it:
            return [e.name for e in it if e.name not in known]
    except FileNotFoundError:
        return []
