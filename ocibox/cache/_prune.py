"""``prune``: remove what nothing uses (see ``ocibox.store._gc`` for the order of a sweep)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from ocibox._record import field, record
from ocibox.cache._containers import mounted_images, remove_containers, unmount_under
from ocibox.digest import Digest
from ocibox.errors import UsageError
from ocibox.reference import Reference
from ocibox.settings import Settings
from ocibox.store import (
    ContainerRecord,
    DiskUsage,
    Refs,
    Store,
    Trash,
    blob_files,
    claim_tmp,
    container_dirs,
    dangling_links,
    delete_image,
    delete_layers,
    drop_link,
    fs_free,
    layer_dirs,
    link_target,
    list_containers,
    stale_containers,
    tmp_busy,
    tmp_entries,
    tmp_owner_alive,
    using_containers,
)
from ocibox.units import parse_until

#: A container directory with no row is only taken for garbage once it is this old: the runner
#: may create the directory just before it records the container.
ORPHAN_GRACE = 60.0


@record
class PrunedImage:
    id: Digest
    names: list[Reference]  # its repository:tag names, then its repository@digest names
    evicted: bool  # removed by keep_storage: the least recently used


@record(frozen=False)
class PruneResult:
    """What a prune removed (or, in a dry run, would remove); built under the gc lock and applied
    in the same critical section. ``aborted``: the confirmation was refused, nothing was done."""

    dry_run: bool = False
    aborted: bool = False
    containers: list[ContainerRecord] = field(default_factory=list)  # stopped, and crashed ones
    orphan_containers: list[str] = field(default_factory=list)  # directories of containers with no row
    images: list[PrunedImage] = field(default_factory=list)
    layers: list[Digest] = field(default_factory=list)  # chain ids with a row
    layer_dirs: list[str] = field(default_factory=list)  # entries of layers/ with no row
    links: list[str] = field(default_factory=list)  # entries of layers/l no row names
    blobs: list[Digest] = field(default_factory=list)
    stray_blobs: list[str] = field(default_factory=list)  # files under blobs/ not named by a digest (ALGO:NAME)
    tmp: list[str] = field(default_factory=list)  # entries of tmp/ of dead processes
    estimate: int = 0  # bytes, as du counts, of everything above
    removed: int = 0  # bytes the removed files held, as du counts (0 in a dry run)
    freed: int = 0  # bytes freed on the filesystem, as statvfs measured (0 in a dry run)
    keep_storage: int | None = None
    store_size: int = 0  # bytes of the store after the prune, as du counts (with keep_storage)


def parse_prune_filters(filters: list[str]) -> float | None:
    """``--filter until=DURATION`` (the only filter): the cut-off as a unix time, None without one."""
    until: float | None = None
    for f in filters:
        key, eq, val = f.partition("=")
        if not eq or key.strip() != "until":
            raise UsageError(f"invalid --filter {f!r}: only until=DURATION is supported (e.g. until=24h)")
        until = parse_until(val.strip())
    return until


def prune(settings: Settings, *, all_: bool, dry_run: bool, keep_storage: int | None = None,
          until: float | None = None, confirm: Callable[[], bool] | None = None) -> PruneResult:
    """Remove what nothing uses: dangling images (``all_``: every image no running container
    uses; ``until``: only images not used since then), layers and blobs no image references,
    containers whose process is gone and stopped ones, and ``tmp/`` leftovers of dead processes.
    ``keep_storage`` (bytes) then evicts least-recently-used images until the store fits.
    What a live pull or run leased is kept. ``confirm`` is asked first (not in a dry run): False
    aborts. The result ends with the bytes freed as ``statvfs`` measured them."""
    store = Store(settings.root)
    store.ensure()
    if confirm is not None and not dry_run and not confirm():
        return PruneResult(aborted=True)
    free_before = fs_free(store.root)
    trash = Trash(store)
    plan = PruneResult(dry_run=dry_run, keep_storage=keep_storage)
    try:
        with store.lock("gc"):
            leased = store.leased() | mounted_images(store)
            live = using_containers(store)
            # Foreground containers whose process is gone (crashed, or exited: their writable layer went
            # with them); a detached container stays until 'rm' or 'container prune', and keeps its image.
            plan.containers = stale_containers(store) + [c for c in list_containers(store)
                                                         if c.state == "exited" and not c.detached]
            known = {c.id for c in list_containers(store)}
            leased_names = {d.hex for d in leased}
            plan.orphan_containers = [n for n in container_dirs(store) if n not in known and n not in leased_names
                                      and _older_than(store.containers / n, ORPHAN_GRACE)]
            plan.tmp = [n for n in tmp_entries(store) if not tmp_owner_alive(n) and not tmp_busy(store, n)]
            if not dry_run:
                remove_containers(store, trash, plan.containers)
                for n in plan.orphan_containers:
                    unmount_under(store.containers / n)
                    trash.take(store.containers / n)
            with store.transaction():
                before = Refs.load(store)
                _plan_sweep(store, before, plan, live=live, leased=leased, all_=all_, until=until, budget=keep_storage)
                if not dry_run:
                    for img in plan.images:
                        delete_image(store, img.id)
                    delete_layers(store, plan.layers)
            if not dry_run:
                for c in plan.layers:
                    trash.take_layer(c, before.layers.get(c))
                for name in plan.layer_dirs:
                    trash.take(store.layers / name)
                for short in plan.links:
                    drop_link(store, short)
                for b in plan.blobs:
                    trash.take_blob(b)
                for stray in plan.stray_blobs:
                    algo, _, name = stray.partition(":")
                    trash.take(store.root / "blobs" / algo / name)
                for name in plan.tmp:
                    with claim_tmp(store, name) as free:
                        if free:
                            trash.take(store.tmp / name)
        if dry_run:
            return plan
        plan.removed = trash.measure()
        trash.empty()
        store.checkpoint()
        store.close()
        plan.freed = fs_free(store.root) - free_before
    finally:
        trash.empty()
    return plan


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - os.lstat(path).st_mtime > seconds
    except FileNotFoundError:
        return False


def _plan_sweep(store: Store, refs: Refs, plan: PruneResult, *, live: list[ContainerRecord], leased: set[Digest],
                all_: bool, until: float | None, budget: int | None) -> None:
    in_use = {c.image_id for c in live} | (leased & set(refs.images))
    pool = set(refs.images) if all_ else refs.dangling()
    if until is not None:
        pool = {i for i in pool if refs.images[i].last_used < until}
    remove = pool - in_use
    remaining = set(refs.images) - remove
    leased_layers = leased & set(refs.layers)
    leased_names = {d.hex for d in leased}
    files = blob_files(store)

    def garbage(images_left: set[Digest]) -> tuple[set[Digest], set[Digest]]:
        keep_l = refs.with_ancestors(refs.used_layers(images_left) | leased_layers)
        keep_b = refs.used_blobs(images_left) | leased
        return ({c for c in refs.layers if c not in keep_l},
                {b.digest for b in files if b.digest is not None and b.digest not in keep_b})

    gone_layers, gone_blobs = garbage(remaining)
    # A layer being published right now has its directory before its row: keep leased ones.
    known_dirs = {c.hex for c in refs.layers if c.algorithm == "sha256"}
    plan.layer_dirs = sorted(n for n in layer_dirs(store) if n not in known_dirs and n not in leased_names)
    plan.links = sorted(s for s in dangling_links(store, set(refs.layers.values()))
                        if link_target(store, s) not in leased_names)
    plan.stray_blobs = sorted(b.name for b in files if b.digest is None)

    du = DiskUsage()
    layer_size = {c: du.tree(store.layer_dir(c)) for c in refs.layers}
    blob_size = {b.digest: du.entry(b.path) for b in files if b.digest is not None}
    other = sum(du.tree(store.layers / n) for n in plan.layer_dirs) + sum(du.tree(store.tmp / n) for n in plan.tmp)
    other += sum(du.tree(store.container_dir(c.id)) for c in plan.containers)
    other += sum(du.tree(store.containers / n) for n in plan.orphan_containers)
    other += sum(du.entry(b.path) for b in files if b.digest is None)

    evicted: set[Digest] = set()
    if budget is not None:
        size_now = DiskUsage().tree(store.root)
        projected = size_now - other - sum(layer_size[c] for c in gone_layers) - sum(blob_size.get(b, 0) for b in gone_blobs)
        for iid in sorted(remaining - in_use, key=lambda i: (refs.images[i].last_used, i)):
            if projected <= budget:
                break
            remaining.discard(iid)
            remove.add(iid)
            evicted.add(iid)
            more_l, more_b = garbage(remaining)
            projected -= sum(layer_size[c] for c in more_l - gone_layers) + sum(blob_size.get(b, 0) for b in more_b - gone_blobs)
            gone_layers, gone_blobs = more_l, more_b
        plan.store_size = projected
    plan.images = [PrunedImage(i, refs.tags.get(i, []) + refs.digests.get(i, []), i in evicted)
                   for i in sorted(remove, key=lambda i: (refs.images[i].last_used, i))]
    plan.layers = sorted(gone_layers)
    plan.blobs = sorted(gone_blobs)
    plan.estimate = other + sum(layer_size[c] for c in gone_layers) + sum(blob_size.get(b, 0) for b in gone_blobs)
