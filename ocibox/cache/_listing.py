"""``images`` and ``inspect``: docker's documents (``ocibox images --format json``, ``ocibox inspect``)."""

from __future__ import annotations

import json
import time
from typing import Any

from ocibox.digest import Digest
from ocibox.settings import Settings
from ocibox.store import Refs, Store, find_image, image_digests, image_tags, layer_row
from ocibox.units import parse_time

#: what docker shows for a missing repository, tag or digest
NONE = "<none>"


def complete_images(store: Store, refs: Refs) -> set[Digest]:
    """Images whose every layer has a row and a directory, and whose config and manifest blobs
    exist. Only these are listed: a crash can never make a broken image visible."""
    ok = set()
    for iid in refs.images:
        layers = refs.image_layers.get(iid, [])
        if not all(c in refs.layers and (store.layer_dir(c) / "diff").is_dir() for c in layers):
            continue
        if not all(store.blob_path(b).is_file() for b in refs.image_blobs(iid)):
            continue
        ok.add(iid)
    return ok


def list_images(settings: Settings, *, all_: bool) -> list[dict[str, Any]]:
    """One entry per tag (docker's ``images``); with ``all_`` also images that no tag names.
    Only complete images are listed (see :func:`complete_images`)."""
    store = Store(settings.root)
    with store.snapshot():
        refs = Refs.load(store)
        ok = complete_images(store, refs)
    out: list[dict[str, Any]] = []
    for iid in ok:
        row = refs.images[iid]
        base = {
            "ID": str(iid),
            "ManifestDigest": str(row.manifest_digest),
            "Created": row.created,
            "CreatedAt": parse_time(row.created),
            "Size": row.layers_size or row.size,
            "Pulled": row.pulled_at,
            "LastUsed": row.last_used,
        }
        tags = refs.tags.get(iid, [])
        digests = refs.digests.get(iid, [])
        for t in tags:
            dg = next((str(d.digest) for d in digests if d.name == t.name), NONE)
            out.append({"Repository": t.familiar(), "Tag": t.tag, "Digest": dg, **base})
        if not tags and all_:
            if digests:
                for d in digests:
                    out.append({"Repository": d.familiar(), "Tag": NONE, "Digest": str(d.digest), **base})
            else:
                out.append({"Repository": NONE, "Tag": NONE, "Digest": NONE, **base})
        elif not tags and digests:
            # Pulled by digest only: docker lists these as 'name <none>'.
            for d in digests:
                out.append({"Repository": d.familiar(), "Tag": NONE, "Digest": str(d.digest), **base})
    out.sort(key=lambda r: (-(r["Pulled"] or 0), r["Repository"], r["Tag"]))
    return out


def inspect_image(settings: Settings, name: str) -> dict[str, Any]:
    """docker-like ``inspect`` of an image: ids, references, config, the manifest, and each
    layer with its blob digest and size, diff id, chain id and unpacked size."""
    store = Store(settings.root)
    rec = find_image(store, name)
    manifest_raw = json.loads(store.read_blob(rec.manifest_digest))
    config_raw = json.loads(store.read_blob(rec.id))
    tags = [f"{r.familiar()}:{r.tag}" for r in image_tags(store, rec.id)]
    digests = [f"{r.familiar()}@{r.digest}" for r in image_digests(store, rec.id)]
    layers = []
    for lr in rec.layers:
        row = layer_row(store, lr.chain_id)
        short, unpacked = row if row is not None else (None, None)
        layers.append({
            "Digest": str(lr.blob_digest),
            "Size": lr.blob_size,
            "MediaType": lr.media_type,
            "DiffID": str(lr.diff_id),
            "ChainID": str(lr.chain_id),
            "UnpackedSize": unpacked,
            "Path": str(store.layer_dir(lr.chain_id) / "diff"),
            "Link": short,
        })
    cfg = config_raw.get("config") or {}
    return {
        "Id": str(rec.id),
        "RepoTags": tags,
        "RepoDigests": digests,
        "Created": rec.created,
        "Architecture": config_raw.get("architecture", ""),
        "Variant": config_raw.get("variant", ""),
        "Os": config_raw.get("os", ""),
        "Platform": rec.platform,
        "Size": sum(lr["UnpackedSize"] or 0 for lr in layers) or rec.size,
        "Config": cfg,
        "RootFS": config_raw.get("rootfs", {}),
        "History": config_raw.get("history", []),
        "ManifestDigest": str(rec.manifest_digest),
        "ManifestMediaType": rec.manifest_media_type,
        "Manifest": manifest_raw,
        "Layers": layers,
        "Metadata": {"Pulled": _iso(rec.pulled_at), "LastTagTime": _iso(rec.pulled_at), "LastUsed": _iso(rec.last_used)},
    }


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
