"""``rmi`` and ``prune``: untag, then sweep what nothing uses (see ``_gc`` for the order)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ocibox._record import field, record
from ocibox.cache._gc import (
    HEX64,
    Refs,
    Trash,
    blob_files,
    blob_path,
    dangling_links,
    delete_image_rows,
    delete_layer_rows,
    layer_dirs,
    mounted_images,
    normalize_leases,
    orphan_container_dirs,
    remove_containers,
    stale_containers,
    trash_blob,
    trash_layer,
    unmount_under,
)
from ocibox.cache._listing import familiar
from ocibox.cache._util import DiskUsage, fs_free, human_size, parse_size, parse_until
from ocibox.errors import ImageNotFound, InUseError, OciboxError, UsageError
from ocibox.reference import Reference
from ocibox.settings import Settings
from ocibox.store import ContainerRecord, Store, find_image, list_containers, live_containers, tmp_owner_alive

#: A container directory with no row is only taken for garbage once it is this old: the runner
#: may create the directory just before it records the container.
ORPHAN_GRACE = 60.0


# ----------------------------------------------------------------------------- rmi


def remove_images(settings: Settings, names: list[str], *, force: bool) -> list[str]:
    """docker's ``rmi``: untag each name; an image none of whose names is left is deleted with
    its layers and blobs that no other image uses. All or nothing: when one name cannot be
    removed (unknown, in use by a running container, ambiguous without ``force``), nothing is."""
    store = Store(settings.root)
    trash = Trash(store)
    out: list[str] = []
    try:
        with store.lock("gc"):
            leased = normalize_leases(store.leased()) | mounted_images(store)
            live = live_containers(store)
            with store.transaction() as db:
                before = Refs.load(db)
                deleted: list[str] = []
                for text in names:
                    out += _untag(store, db, text, force=force, leased=leased, live=live, deleted=deleted)
                gone_layers, gone_blobs = _garbage_of(before, Refs.load(db), deleted, leased)
                delete_layer_rows(db, gone_layers)
            for c in gone_layers:
                trash_layer(store, trash, c, before.layers.get(c))
                out.append(f"Deleted: {c}")
            for b in gone_blobs:
                trash_blob(store, trash, b)
    finally:
        trash.empty()
    return out


def _untag(store: Store, db: sqlite3.Connection, text: str, *, force: bool, leased: set[str],
           live: list[ContainerRecord], deleted: list[str]) -> list[str]:
    ref: Reference | None
    try:
        ref = Reference.parse(text)
    except OciboxError:
        ref = None
    lines: list[str] = []
    iid: str | None = None
    if ref is not None and ref.digest is not None:
        row = db.execute("SELECT image_id FROM repo_digests WHERE name=? AND digest=?", (ref.name, str(ref.digest))).fetchone()
        if row is not None:
            iid = row[0]
            db.execute("DELETE FROM repo_digests WHERE name=? AND digest=?", (ref.name, str(ref.digest)))
            lines.append(f"Untagged: {familiar(ref.name)}@{ref.digest}")
    elif ref is not None and ref.tag is not None:
        row = db.execute("SELECT image_id FROM tags WHERE name=? AND tag=?", (ref.name, ref.tag)).fetchone()
        if row is not None:
            iid = row[0]
            if _tags_left(db, iid) == 1:
                _check_not_in_use(iid, text, leased, live)
            db.execute("DELETE FROM tags WHERE name=? AND tag=?", (ref.name, ref.tag))
            lines.append(f"Untagged: {familiar(ref.name)}:{ref.tag}")
    if iid is None:
        # An image id (or prefix), or a name@manifest-digest: remove every name of the image.
        try:
            iid = str(find_image(store, text).id)
        except ImageNotFound:
            raise ImageNotFound(f"no such image: {text} (see 'ocibox images')") from None
        names = {n for n, _ in db.execute("SELECT name, tag FROM tags WHERE image_id=?", (iid,))}
        names |= {n for n, _ in db.execute("SELECT name, digest FROM repo_digests WHERE image_id=?", (iid,))}
        if len(names) > 1 and not force:
            raise UsageError(f"unable to delete {iid[7:19]} (must be forced): the image is referenced in "
                             f"{len(names)} repositories; remove it by name, or pass -f to remove every name")
        _check_not_in_use(iid, text, leased, live)
        for n, t in db.execute("SELECT name, tag FROM tags WHERE image_id=? ORDER BY name, tag", (iid,)).fetchall():
            lines.append(f"Untagged: {familiar(n)}:{t}")
        db.execute("DELETE FROM tags WHERE image_id=?", (iid,))
    if _tags_left(db, iid) == 0:
        # The last tag is gone: the digests go with it (docker), then the image.
        _check_not_in_use(iid, text, leased, live)
        for n, d in db.execute("SELECT name, digest FROM repo_digests WHERE image_id=? ORDER BY name, digest",
                               (iid,)).fetchall():
            lines.append(f"Untagged: {familiar(n)}@{d}")
        delete_image_rows(db, iid)
        deleted.append(iid)
        lines.append(f"Deleted: {iid}")
    return lines


def _tags_left(db: sqlite3.Connection, iid: str) -> int:
    return int(db.execute("SELECT COUNT(*) FROM tags WHERE image_id=?", (iid,)).fetchone()[0])


def _check_not_in_use(iid: str, text: str, leased: set[str], live: list[ContainerRecord]) -> None:
    for c in live:
        if c.image_id == iid:
            raise InUseError(f"unable to remove image {text} ({iid[7:19]}): running container {c.id[:12]} uses it; "
                             "stop the container first")
    if iid in leased:
        raise InUseError(f"unable to remove image {text} ({iid[7:19]}): it is in use by a running ocibox process "
                         "or mounted by 'ocibox image mount'; wait for it to finish or run 'ocibox image umount'")


def _garbage_of(before: Refs, after: Refs, deleted: list[str], leased: set[str]) -> tuple[list[str], list[str]]:
    """Layers and blobs of the ``deleted`` images (as ``before`` knew them) that no image left
    (``after``) and no lease uses."""
    if not deleted:
        return [], []
    keep_layers = after.with_ancestors(after.used_layers(after.images) | (leased & set(after.layers)))
    keep_blobs = after.used_blobs(after.images) | leased
    layers = before.with_ancestors(before.used_layers(deleted))
    gone_layers = sorted(c for c in layers if c in after.layers and c not in keep_layers)
    gone_blobs = sorted(b for b in before.used_blobs(deleted) if b not in keep_blobs)
    return gone_layers, gone_blobs


# ----------------------------------------------------------------------------- prune


@record(frozen=False)
class Plan:
    """What a prune removes; built under the gc lock, applied in the same critical section."""

    containers: list[ContainerRecord] = field(default_factory=list)
    orphan_containers: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    evicted: list[str] = field(default_factory=list)  # by --keep-storage (also in images)
    layers: list[str] = field(default_factory=list)  # chain ids with a row
    layer_dirs: list[str] = field(default_factory=list)  # entries of layers/ with no row
    links: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    tmp: list[str] = field(default_factory=list)
    estimate: int = 0  # bytes, as du counts, of everything above
    store_size: int = 0  # bytes of the store after the plan, as du counts (with --keep-storage)


def _parse_filters(filters: list[str]) -> float | None:
    until: float | None = None
    for f in filters:
        key, eq, val = f.partition("=")
        if not eq or key.strip() != "until":
            raise UsageError(f"invalid --filter {f!r}: only until=DURATION is supported (e.g. until=24h)")
        until = parse_until(val.strip())
    return until


def prune(settings: Settings, *, all_: bool, dry_run: bool, keep_storage: str | None, filters: list[str],
          force: bool) -> list[str]:
    """Remove what nothing uses: dangling images (``all_``: every image no running container
    uses; ``filters`` ``until=``: only images not used since then), layers and blobs no image
    references, containers whose process is gone and stopped ones, and ``tmp/`` leftovers of
    dead processes. ``keep_storage`` then evicts least-recently-used images until the store fits.
    What a live pull or run leased is kept. Returns the lines to print, ending with the bytes
    freed as ``statvfs`` measured them."""
    until = _parse_filters(filters)
    budget = parse_size(keep_storage) if keep_storage is not None else None
    store = Store(settings.root)
    store.ensure()
    if not force and not dry_run and sys.stdin.isatty() and not _confirm(all_):
        return ["Aborted."]
    free_before = fs_free(store.root)
    trash = Trash(store)
    lines: list[str] = []
    try:
        with store.lock("gc"):
            leased = normalize_leases(store.leased()) | mounted_images(store)
            live = live_containers(store)
            plan = Plan()
            plan.containers = stale_containers(store) + [c for c in list_containers(store) if c.state == "exited"]
            known = {c.id for c in list_containers(store)}
            plan.orphan_containers = [n for n in orphan_container_dirs(store, known)
                                      if n not in leased and _older_than(store.containers / n, ORPHAN_GRACE)]
            plan.tmp = [e.name for e in _scandir(store.tmp) if not tmp_owner_alive(e.name) and not _tmp_busy(store, e.name)]
            if not dry_run:
                remove_containers(store, trash, plan.containers)
                for n in plan.orphan_containers:
                    unmount_under(store.containers / n)
                    trash.take(store.containers / n)
            with store.transaction() as db:
                before = Refs.load(db)
                _plan_sweep(store, before, plan, live=live, leased=leased, all_=all_, until=until, budget=budget,
                            db=db)
                lines = _plan_lines(plan, before)
                if not dry_run:
                    for iid in plan.images:
                        delete_image_rows(db, iid)
                    delete_layer_rows(db, plan.layers)
            if not dry_run:
                for c in plan.layers:
                    trash_layer(store, trash, c, before.layers.get(c))
                for name in plan.layer_dirs:
                    trash.take(store.layers / name)
                for short in plan.links:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(store.links / short)
                for b in plan.blobs:
                    trash_blob(store, trash, b)
                for name in plan.tmp:
                    with _tmp_lock(store, name) as free:
                        if free:
                            trash.take(store.tmp / name)
        if dry_run:
            lines.append(f"Total reclaimable space: {human_size(plan.estimate)} ({plan.estimate} bytes, as du counts; "
                         "dry run: nothing was removed)")
            return lines
        removed = trash.measure()
        trash.empty()
        with contextlib.suppress(sqlite3.Error):
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.close()
        freed = fs_free(store.root) - free_before
    finally:
        trash.empty()
    # statvfs sees every writer of the filesystem: with nothing removed, nothing was reclaimed.
    head = max(freed, 0) if removed else 0
    lines.append(f"Total reclaimed space: {human_size(head)} ({freed} bytes freed on the filesystem, "
                 f"measured by statvfs; the removed files held {removed} bytes)")
    if budget is not None and plan.store_size > budget:
        lines.append(f"The store still holds {human_size(plan.store_size)}, over --keep-storage {human_size(budget)}: "
                     "the rest is in use by running containers or pulls in flight")
    return lines


def _partial_lock_name(name: str) -> str | None:
    """``tmp/partial-<hex>`` is a resumable download kept across processes, used under the
    ``blob-<hex>`` lock (see the puller): in use while that lock is held."""
    if name.startswith("partial-"):
        return "blob-" + name[len("partial-"):]
    return None


def _tmp_busy(store: Store, name: str) -> bool:
    with _tmp_lock(store, name) as free:
        return not free


@contextlib.contextmanager
def _tmp_lock(store: Store, name: str) -> Iterator[bool]:
    """Yields False when the tmp entry is in use by a live process (its lock is held)."""
    lock = _partial_lock_name(name)
    if lock is None:
        yield True
        return
    fd = os.open(store.locks / lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _confirm(all_: bool) -> bool:
    what = "all images without at least one running container" if all_ else "dangling images"
    sys.stderr.write(f"WARNING! This will remove:\n  - stopped and crashed containers\n  - {what}\n"
                     "  - unused layers and blobs, and leftovers of interrupted work\n"
                     "Are you sure you want to continue? [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _scandir(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except FileNotFoundError:
        return []


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - os.lstat(path).st_mtime > seconds
    except FileNotFoundError:
        return False


def _plan_sweep(store: Store, refs: Refs, plan: Plan, *, live: list[ContainerRecord], leased: set[str], all_: bool,
                until: float | None, budget: int | None, db: sqlite3.Connection) -> None:
    last_used = dict(db.execute("SELECT id, last_used FROM images").fetchall())
    in_use = {c.image_id for c in live} | (leased & refs.images)
    pool = set(refs.images) if all_ else refs.dangling()
    if until is not None:
        pool = {i for i in pool if last_used.get(i, 0) < until}
    remove = pool - in_use
    remaining = refs.images - remove
    leased_layers = leased & set(refs.layers)

    def garbage(images_left: set[str]) -> tuple[set[str], set[str]]:
        keep_l = refs.with_ancestors(refs.used_layers(images_left) | leased_layers)
        keep_b = refs.used_blobs(images_left) | leased
        return ({c for c in refs.layers if c not in keep_l},
                {b for b in blob_files(store) if b not in keep_b})

    gone_layers, gone_blobs = garbage(remaining)
    rowless = [n for n in layer_dirs(store)
               if not (HEX64.match(n) and f"sha256:{n}" in refs.layers) and n not in leased]
    # A layer being published right now has its directory before its row: keep leased ones.
    plan.layer_dirs = sorted(rowless)
    plan.links = sorted(s for s in dangling_links(store, set(refs.layers.values()))
                        if _link_target_hex(store, s) not in leased)

    du = DiskUsage()
    layer_size = {c: du.tree(store.layers / c.split(":", 1)[-1]) for c in refs.layers}
    blob_size = {b: du.entry(blob_path(store, b)) for b in blob_files(store)}
    other = sum(du.tree(store.layers / n) for n in plan.layer_dirs) + sum(du.tree(store.tmp / n) for n in plan.tmp)
    other += sum(du.tree(store.container_dir(c.id)) for c in plan.containers)
    other += sum(du.tree(store.containers / n) for n in plan.orphan_containers)

    if budget is not None:
        size_now = DiskUsage().tree(store.root)
        projected = size_now - other - sum(layer_size[c] for c in gone_layers) - sum(blob_size.get(b, 0) for b in gone_blobs)
        for iid in sorted(remaining - in_use, key=lambda i: (last_used.get(i, 0), i)):
            if projected <= budget:
                break
            remaining.discard(iid)
            remove.add(iid)
            plan.evicted.append(iid)
            more_l, more_b = garbage(remaining)
            projected -= sum(layer_size[c] for c in more_l - gone_layers) + sum(blob_size.get(b, 0) for b in more_b - gone_blobs)
            gone_layers, gone_blobs = more_l, more_b
        plan.store_size = projected
    plan.images = sorted(remove, key=lambda i: (last_used.get(i, 0), i))
    plan.layers = sorted(gone_layers)
    plan.blobs = sorted(gone_blobs)
    plan.estimate = other + sum(layer_size[c] for c in gone_layers) + sum(blob_size.get(b, 0) for b in gone_blobs)


def _link_target_hex(store: Store, short: str) -> str:
    """The layer a link in ``layers/l`` points to (``../<hex>/diff``), or ''."""
    try:
        target = os.readlink(store.links / short)
    except OSError:
        return ""
    parts = [p for p in target.split("/") if p and p not in (".", "..", "diff")]
    return parts[-1] if parts else ""


def _plan_lines(plan: Plan, refs: Refs) -> list[str]:
    lines: list[str] = []
    if plan.containers or plan.orphan_containers:
        lines.append("Deleted Containers:")
        lines += [c.id for c in plan.containers] + plan.orphan_containers
        lines.append("")
    if plan.images:
        lines.append("Deleted Images:")
        for iid in plan.images:
            for n, t in refs.tags.get(iid, []):
                lines.append(f"untagged: {familiar(n)}:{t}")
            for n, d in refs.digests.get(iid, []):
                lines.append(f"untagged: {familiar(n)}@{d}")
            lines.append(f"deleted: {iid}" + (" (least recently used, for --keep-storage)" if iid in plan.evicted else ""))
        lines.append("")
    if plan.layers or plan.layer_dirs:
        lines.append("Deleted Layers:")
        lines += [f"deleted: {c}" for c in plan.layers]
        lines += [f"deleted: layers/{n} (no database row: leftover of interrupted work)" for n in plan.layer_dirs]
        lines.append("")
    if plan.blobs:
        lines.append("Deleted Blobs:")
        lines += [f"deleted: {b}" for b in plan.blobs]
        lines.append("")
    if plan.tmp or plan.links:
        lines.append("Deleted leftovers of interrupted work:")
        lines += [f"tmp/{n}" for n in plan.tmp] + [f"layers/l/{s}" for s in plan.links]
        lines.append("")
    return lines
