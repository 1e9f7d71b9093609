"""``system df``: the store's bytes on disk, split so that the parts add up to ``du -sx`` of it."""

from __future__ import annotations

import json
import os
from typing import Any

from ocibox.cache._listing import NONE
from ocibox.digest import Digest
from ocibox.errors import UsageError
from ocibox.settings import Settings
from ocibox.store import DiskUsage, Refs, Store, list_containers, tmp_owner_alive
from ocibox.units import parse_time


def disk_usage(settings: Settings, *, verbose: bool) -> dict[str, Any]:
    """Bytes on disk as ``du -x`` counts them (``st_blocks``, hard links once), split into
    images (layers and blobs some image uses), containers, unused layers and blobs, temporary
    work and metadata (database, locks, directories). The ``Size`` of the types adds up to
    ``TotalSize``, which equals ``du -sx --block-size=1`` of the store root."""
    store = Store(settings.root)
    store.ensure()
    with store.snapshot():
        refs = Refs.load(store)
    containers = list_containers(store)
    live = [c for c in containers if c.state in ("created", "running") and c.alive]
    live_ids = {c.id for c in live}
    leased = store.leased()
    leased_names = {d.hex for d in leased}
    active_images = {c.image_id for c in live} | (leased & set(refs.images))
    # Closing the last connection checkpoints the WAL and removes it and the shared-memory
    # file: measure the store at rest, as du sees it once this command has exited.
    store.close()

    du = DiskUsage()
    root = store.root
    dev = os.lstat(root).st_dev
    meta = du.entry(root, dev)
    blob_size: dict[Digest, int] = {}
    stray_size: dict[str, int] = {}
    layer_size: dict[Digest, int] = {}
    rowless: dict[str, int] = {}
    container_size: dict[str, int] = {}
    tmp_live = tmp_dead = 0
    tmp_live_n = tmp_dead_n = 0
    known_dirs = {c.hex: c for c in refs.layers if c.algorithm == "sha256"}
    for top in _entries(str(root)):
        p = os.path.join(root, top)
        if top == "blobs" and os.path.isdir(p):
            meta += du.entry(p, dev)
            for algo in _entries(p):
                ap = os.path.join(p, algo)
                meta += du.entry(ap, dev)
                for b in _entries(ap):
                    d = _digest(algo, b)
                    if d is None:
                        stray_size[f"{algo}:{b}"] = du.tree(os.path.join(ap, b), dev)
                    else:
                        blob_size[d] = du.tree(os.path.join(ap, b), dev)
        elif top == "layers" and os.path.isdir(p):
            meta += du.entry(p, dev)
            for name in _entries(p):
                lp = os.path.join(p, name)
                if name == "l":
                    meta += du.tree(lp, dev)
                elif name in known_dirs:
                    layer_size[known_dirs[name]] = du.tree(lp, dev)
                else:
                    rowless[name] = du.tree(lp, dev)
        elif top == "containers" and os.path.isdir(p):
            meta += du.entry(p, dev)
            for name in _entries(p):
                container_size[name] = du.tree(os.path.join(p, name), dev)
        elif top == "tmp" and os.path.isdir(p):
            meta += du.entry(p, dev)
            for name in _entries(p):
                n = du.tree(os.path.join(p, name), dev)
                if tmp_owner_alive(name):
                    tmp_live, tmp_live_n = tmp_live + n, tmp_live_n + 1
                else:
                    tmp_dead, tmp_dead_n = tmp_dead + n, tmp_dead_n + 1
        else:
            meta += du.tree(p, dev)

    users: dict[Digest, set[Digest]] = {}
    for iid in refs.images:
        for c in refs.with_ancestors(refs.image_layers.get(iid, [])):
            users.setdefault(c, set()).add(iid)
    used_blobs = refs.used_blobs(refs.images)
    active_layers = refs.with_ancestors(refs.used_layers(active_images) | (leased & set(refs.layers)))
    active_blobs = refs.used_blobs(active_images) | leased

    img_layers = {c for c in layer_size if c in users}
    img_blobs = {b for b in blob_size if b in used_blobs}
    images_size = sum(layer_size[c] for c in img_layers) + sum(blob_size[b] for b in img_blobs)
    images_reclaim = (sum(layer_size[c] for c in img_layers if c not in active_layers)
                      + sum(blob_size[b] for b in img_blobs if b not in active_blobs))

    unused_layers = [c for c in layer_size if c not in users]
    unused_blobs = [b for b in blob_size if b not in used_blobs]
    unused_size = (sum(layer_size[c] for c in unused_layers) + sum(blob_size[b] for b in unused_blobs)
                   + sum(stray_size.values()) + sum(rowless.values()))
    unused_kept = (sum(layer_size[c] for c in unused_layers if c in leased)
                   + sum(blob_size[b] for b in unused_blobs if b in leased)
                   + sum(n for name, n in rowless.items() if name in leased_names))
    n_unused = len(unused_layers) + len(unused_blobs) + len(stray_size) + len(rowless)

    cont_size = sum(container_size.values())
    cont_reclaim = sum(n for cid, n in container_size.items() if cid not in live_ids)

    shared = [c for c in img_layers if len(users[c]) > 1]
    unique = [c for c in img_layers if len(users[c]) == 1]
    types = [
        {"Type": "Images", "Total": len(refs.images), "Active": len(active_images & set(refs.images)),
         "Size": images_size, "Reclaimable": images_reclaim},
        {"Type": "Containers", "Total": max(len(containers), len(container_size)), "Active": len(live),
         "Size": cont_size, "Reclaimable": cont_reclaim},
        {"Type": "Unused layers and blobs", "Total": n_unused, "Active": 0,
         "Size": unused_size, "Reclaimable": unused_size - unused_kept},
        {"Type": "Interrupted and in-flight work", "Total": tmp_live_n + tmp_dead_n, "Active": tmp_live_n,
         "Size": tmp_live + tmp_dead, "Reclaimable": tmp_dead},
        {"Type": "Metadata", "Total": 1, "Active": 1, "Size": meta, "Reclaimable": 0},
    ]
    out: dict[str, Any] = {
        "Root": str(root),
        "Types": types,
        "TotalSize": sum(t["Size"] for t in types),
        "Reclaimable": sum(t["Reclaimable"] for t in types),
        "Layers": {
            "Total": len(layer_size) + len(rowless),
            "SharedCount": len(shared), "SharedSize": sum(layer_size[c] for c in shared),
            "UniqueCount": len(unique), "UniqueSize": sum(layer_size[c] for c in unique),
            "UnusedCount": len(unused_layers) + len(rowless),
            "UnusedSize": sum(layer_size[c] for c in unused_layers) + sum(rowless.values()),
        },
    }
    if verbose:
        imgs = []
        for iid in sorted(refs.images, key=lambda i: -refs.images[i].pulled_at):
            row = refs.images[iid]
            ls = refs.with_ancestors(refs.image_layers.get(iid, []))
            lsize = sum(layer_size.get(c, 0) for c in ls)
            bsize = sum(blob_size.get(b, 0) for b in refs.image_blobs(iid))
            shared_size = sum(layer_size.get(c, 0) for c in ls if len(users.get(c, ())) > 1)
            tags = refs.tags.get(iid, [])
            digests = refs.digests.get(iid, [])
            repo, tag = ((tags[0].familiar(), tags[0].tag or NONE) if tags else
                         (digests[0].familiar(), NONE) if digests else (NONE, NONE))
            imgs.append({"Repository": repo, "Tag": tag, "ID": str(iid), "Created": row.created,
                         "CreatedAt": parse_time(row.created), "Size": lsize + bsize, "SharedSize": shared_size,
                         "UniqueSize": lsize + bsize - shared_size,
                         "Containers": sum(1 for c in live if c.image_id == iid)})
        out["Images"] = imgs
        out["LayerList"] = [{"ChainID": str(c), "Size": n, "Images": len(users.get(c, ()))}
                            for c, n in sorted(layer_size.items(), key=lambda x: -x[1])]
        out["LayerList"] += [{"ChainID": f"layers/{name}", "Size": n, "Images": 0} for name, n in rowless.items()]
        rows = {c.id: c for c in containers}
        conts = []
        for cid in sorted(set(container_size) | set(rows)):
            rec = rows.get(cid)
            conts.append({
                "ID": cid, "Image": str(rec.image_id) if rec else "",
                "Command": " ".join(json.loads(rec.command)) if rec and rec.command.startswith("[") else (rec.command if rec else ""),
                "Created": rec.created if rec else None,
                "Status": ("running" if cid in live_ids else ("exited" if rec and rec.state == "exited" else "dead"))
                if rec else "no record",
                "Size": container_size.get(cid, 0),
            })
        out["Containers"] = conts
    return out


def _digest(algorithm: str, name: str) -> Digest | None:
    try:
        return Digest.parse(f"{algorithm}:{name}")
    except UsageError:
        return None


def _entries(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
