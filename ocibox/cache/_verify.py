"""``verify [--repair]``: re-hash blobs, check layer directories and database rows against each other."""

from __future__ import annotations

import contextlib
import hashlib
import os

from ocibox.cache._gc import (
    HEX64,
    Refs,
    Trash,
    blob_files,
    blob_path,
    dangling_links,
    delete_image_rows,
    delete_layer_rows,
    layer_dir_complete,
    layer_dirs,
    normalize_leases,
    remove_containers,
    stale_containers,
    trash_layer,
)
from ocibox.cache._listing import familiar
from ocibox.digest import Digest
from ocibox.errors import OciboxError
from ocibox.image import ImageConfig, Manifest, chain_ids
from ocibox.settings import Settings
from ocibox.store import Store

_ALGOS = {"sha256": 64, "sha512": 128}


def _hash_file(path: str, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def verify(settings: Settings, *, repair: bool) -> list[str]:
    """One line per problem found (nothing when the store is consistent). With ``repair``,
    what is broken is dropped (its rows first, then its files) so the next pull fetches it
    again, and each line says so. Works under the exclusive gc lock: what a live pull or run
    leased (a layer being published) is not a problem."""
    store = Store(settings.root)
    store.ensure()
    problems: list[str] = []
    fixed = " (removed: the next pull fetches it again)" if repair else ""
    trash = Trash(store)
    try:
        with store.lock("gc"):
            leased = normalize_leases(store.leased())
            # 1. Blobs: the name is the digest of the content.
            bad_blobs: set[str] = set()
            for d in blob_files(store):
                algo, _, hexpart = d.partition(":")
                p = blob_path(store, d)
                if algo not in _ALGOS or len(hexpart) != _ALGOS[algo] or not all(c in "0123456789abcdef" for c in hexpart):
                    problems.append(f"blobs/{algo}/{hexpart}: not named by a digest{fixed}")
                    bad_blobs.add(d)
                    continue
                try:
                    got = _hash_file(str(p), algo)
                except FileNotFoundError:
                    continue
                except IsADirectoryError:
                    got = ""
                if got != hexpart:
                    problems.append(f"blob {d}: content does not match its digest (corrupt){fixed}")
                    bad_blobs.add(d)

            db = store.db
            db.execute("BEGIN")  # one snapshot: a pull may commit while we read
            try:
                refs = Refs.load(db)
            finally:
                db.execute("COMMIT")
            # 2. Layers: every row has its directory and link, every directory its row.
            bad_layers: set[str] = set()
            for cid, short in sorted(refs.layers.items()):
                hexpart = cid.split(":", 1)[-1]
                if not layer_dir_complete(store, cid):
                    problems.append(f"layer {cid}: recorded in the database but layers/{hexpart}/diff is missing{fixed}")
                    bad_layers.add(cid)
                    continue
                link = store.links / short
                want = os.path.realpath(store.layers / hexpart / "diff")
                if not os.path.islink(link) or os.path.realpath(link) != want:
                    problems.append(f"layer {cid}: link layers/l/{short} is missing or points elsewhere"
                                    + (" (recreated)" if repair else ""))
                    if repair:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(link)
                        os.symlink(f"../{hexpart}/diff", link)
            rowless = [n for n in layer_dirs(store)
                       if not (HEX64.match(n) and f"sha256:{n}" in refs.layers) and n not in leased]
            for n in rowless:
                problems.append(f"layers/{n}: a directory with no database row (leftover of interrupted work){fixed}")
            # Dot-names are links being published (``.<short>.<pid>.<thread>``): garbage for prune
            # once their process is gone, never a layer anybody can see.
            links = [s for s in dangling_links(store, set(refs.layers.values()))
                     if not s.startswith(".") and _target_hex(store, s) not in leased]
            for s in links:
                problems.append(f"layers/l/{s}: a link no layer row names{fixed}")

            # 3. Images: their layers and blobs exist and agree with the config and manifest.
            bad_images: dict[str, str] = {}
            for iid in sorted(refs.images):
                why = _image_problem(store, refs, iid, bad_layers, bad_blobs)
                if why:
                    names = [f"{familiar(n)}:{t}" for n, t in refs.tags.get(iid, [])]
                    names += [f"{familiar(n)}@{d}" for n, d in refs.digests.get(iid, [])]
                    problems.append(f"image {iid[7:19]} ({', '.join(names) or 'no name'}): {why}"
                                    + (" (removed: pull it again)" if repair else "; pull it again after 'ocibox verify --repair'"))
                    bad_images[iid] = why
            orphan_refs = db.execute(
                "SELECT 'tag', name, tag FROM tags WHERE image_id NOT IN (SELECT id FROM images) UNION ALL "
                "SELECT 'digest', name, digest FROM repo_digests WHERE image_id NOT IN (SELECT id FROM images)").fetchall()
            for kind, name, what in orphan_refs:
                problems.append(f"{familiar(name)}{':' if kind == 'tag' else '@'}{what}: names an image that is not in the "
                                f"store{fixed}")
            orphan_il = db.execute("SELECT COUNT(*) FROM image_layers WHERE image_id NOT IN (SELECT id FROM images)").fetchone()[0]
            if orphan_il:
                problems.append(f"{orphan_il} image layer rows belong to no image{fixed}")

            # 4. Containers whose process is gone (a crash): their mounts, directories, cgroups.
            stale = stale_containers(store)
            for c in stale:
                problems.append(f"container {c.id[:12]}: recorded as {c.state} but its process {c.pid} is gone"
                                + (" (cleaned up)" if repair else "; 'ocibox prune' cleans it"))

            if repair:
                remove_containers(store, trash, stale)
                with store.transaction() as db:
                    for iid in bad_images:
                        delete_image_rows(db, iid)
                    delete_layer_rows(db, bad_layers)
                    db.execute("DELETE FROM tags WHERE image_id NOT IN (SELECT id FROM images)")
                    db.execute("DELETE FROM repo_digests WHERE image_id NOT IN (SELECT id FROM images)")
                    db.execute("DELETE FROM image_layers WHERE image_id NOT IN (SELECT id FROM images)")
                for cid in bad_layers:
                    trash_layer(store, trash, cid, refs.layers.get(cid))
                for n in rowless:
                    trash.take(store.layers / n)
                for s in links:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(store.links / s)
                for d in bad_blobs:
                    trash.take(blob_path(store, d))
    finally:
        trash.empty()
    return problems


def _target_hex(store: Store, short: str) -> str:
    try:
        target = os.readlink(store.links / short)
    except OSError:
        return ""
    parts = [p for p in target.split("/") if p and p not in (".", "..", "diff")]
    return parts[-1] if parts else ""


def _image_problem(store: Store, refs: Refs, iid: str, bad_layers: set[str], bad_blobs: set[str]) -> str:
    """Why an image is broken, or ''."""
    layers = refs.image_layers.get(iid, [])
    for c in layers:
        if c not in refs.layers:
            return f"layer {c} has no database row"
        if c in bad_layers:
            return f"layer {c} is missing"
    manifest_digest = next((b for b in refs.image_blobs[iid] if b != iid), iid)
    for what, d in (("config", iid), ("manifest", manifest_digest)):
        if d in bad_blobs:
            return f"its {what} blob {d} is corrupt"
        if not blob_path(store, d).is_file():
            return f"its {what} blob {d} is missing"
    try:
        config = ImageConfig.parse(store.read_blob(Digest.parse(iid)), f"config {iid}")
        manifest = Manifest.parse(store.read_blob(Digest.parse(manifest_digest)), f"manifest {manifest_digest}")
    except OciboxError as e:
        return str(e)
    if [str(c) for c in chain_ids(config.diff_ids)] != layers:
        return "its layer rows do not match the config's rootfs.diff_ids"
    if str(manifest.config.digest) != iid or len(manifest.layers) != len(layers):
        return "its manifest does not match its config and layers"
    return ""
