"""``verify [--repair]``: re-hash blobs, check layer directories and database rows against each other."""

from __future__ import annotations

import os

from ocibox.cache._containers import remove_containers
from ocibox.digest import Digest
from ocibox.errors import OciboxError
from ocibox.image import ImageConfig, Manifest, chain_ids
from ocibox.reference import Reference
from ocibox.settings import Settings
from ocibox.store import (
    Refs,
    Store,
    Trash,
    blob_files,
    dangling_links,
    delete_image,
    delete_layers,
    delete_rows_of_no_image,
    drop_link,
    layer_dirs,
    layer_rows_of_no_image,
    link_target,
    make_link,
    names_of_no_image,
    stale_containers,
)


def _hash_file(path: str, digest: Digest) -> str:
    h = digest.hasher()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _name(ref: Reference) -> str:
    return f"{ref.familiar()}@{ref.digest}" if ref.digest is not None else f"{ref.familiar()}:{ref.tag}"


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
            leased_names = {d.hex for d in store.leased()}
            # 1. Blobs: the name is the digest of the content.
            bad_blobs: set[Digest] = set()
            bad_files = []
            for b in blob_files(store):
                if b.digest is None:
                    problems.append(f"{os.path.relpath(b.path, store.root)}: not named by a digest{fixed}")
                    bad_files.append(b.path)
                    continue
                try:
                    got = _hash_file(str(b.path), b.digest)
                except FileNotFoundError:
                    continue
                except IsADirectoryError:
                    got = ""
                if got != b.digest.hex:
                    problems.append(f"blob {b.digest}: content does not match its digest (corrupt){fixed}")
                    bad_blobs.add(b.digest)
                    bad_files.append(b.path)

            with store.snapshot():  # one snapshot: a pull may commit while we read
                refs = Refs.load(store)
            # 2. Layers: every row has its directory and link, every directory its row.
            bad_layers: set[Digest] = set()
            for cid, short in sorted(refs.layers.items()):
                diff = store.layer_dir(cid) / "diff"
                if not diff.is_dir():
                    problems.append(f"layer {cid}: recorded in the database but layers/{cid.hex}/diff is missing{fixed}")
                    bad_layers.add(cid)
                    continue
                link = store.links / short
                if not os.path.islink(link) or os.path.realpath(link) != os.path.realpath(diff):
                    problems.append(f"layer {cid}: link layers/l/{short} is missing or points elsewhere"
                                    + (" (recreated)" if repair else ""))
                    if repair:
                        make_link(store, short, cid)
            known_dirs = {c.hex for c in refs.layers if c.algorithm == "sha256"}
            rowless = [n for n in layer_dirs(store) if n not in known_dirs and n not in leased_names]
            for n in rowless:
                problems.append(f"layers/{n}: a directory with no database row (leftover of interrupted work){fixed}")
            # Dot-names are links being published (``.<short>.<pid>.<thread>``): garbage for prune
            # once their process is gone, never a layer anybody can see.
            links = [s for s in dangling_links(store, set(refs.layers.values()))
                     if not s.startswith(".") and link_target(store, s) not in leased_names]
            for s in links:
                problems.append(f"layers/l/{s}: a link no layer row names{fixed}")

            # 3. Images: their layers and blobs exist and agree with the config and manifest.
            bad_images: dict[Digest, str] = {}
            for iid in sorted(refs.images):
                why = _image_problem(store, refs, iid, bad_layers, bad_blobs)
                if why:
                    names = [_name(r) for r in refs.tags.get(iid, []) + refs.digests.get(iid, [])]
                    problems.append(f"image {iid.short} ({', '.join(names) or 'no name'}): {why}"
                                    + (" (removed: pull it again)" if repair else "; pull it again after 'ocibox verify --repair'"))
                    bad_images[iid] = why
            for ref in names_of_no_image(store):
                problems.append(f"{_name(ref)}: names an image that is not in the store{fixed}")
            orphan_il = layer_rows_of_no_image(store)
            if orphan_il:
                problems.append(f"{orphan_il} image layer rows belong to no image{fixed}")

            # 4. Containers whose process is gone (a crash): their mounts, directories, cgroups.
            stale = stale_containers(store)
            for c in stale:
                problems.append(f"container {c.id[:12]}: recorded as {c.state} but its process {c.pid} is gone"
                                + (" (cleaned up)" if repair else "; 'ocibox prune' cleans it"))

            if repair:
                remove_containers(store, trash, stale)
                with store.transaction():
                    for iid in bad_images:
                        delete_image(store, iid)
                    delete_layers(store, bad_layers)
                    delete_rows_of_no_image(store)
                for cid in bad_layers:
                    trash.take_layer(cid, refs.layers.get(cid))
                for n in rowless:
                    trash.take(store.layers / n)
                for s in links:
                    drop_link(store, s)
                for path in bad_files:
                    trash.take(path)
    finally:
        trash.empty()
    return problems


def _image_problem(store: Store, refs: Refs, iid: Digest, bad_layers: set[Digest], bad_blobs: set[Digest]) -> str:
    """Why an image is broken, or ''."""
    layers = refs.image_layers.get(iid, [])
    for c in layers:
        if c not in refs.layers:
            return f"layer {c} has no database row"
        if c in bad_layers:
            return f"layer {c} is missing"
    manifest_digest = refs.images[iid].manifest_digest
    for what, d in (("config", iid), ("manifest", manifest_digest)):
        if d in bad_blobs:
            return f"its {what} blob {d} is corrupt"
        if not store.blob_path(d).is_file():
            return f"its {what} blob {d} is missing"
    try:
        config = ImageConfig.parse(store.read_blob(iid), f"config {iid}")
        manifest = Manifest.parse(store.read_blob(manifest_digest), f"manifest {manifest_digest}")
    except OciboxError as e:
        return str(e)
    if chain_ids(config.diff_ids) != layers:
        return "its layer rows do not match the config's rootfs.diff_ids"
    if manifest.config.digest != iid or len(manifest.layers) != len(layers):
        return "its manifest does not match its config and layers"
    return ""
