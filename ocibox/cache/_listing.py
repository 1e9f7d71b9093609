"""``images``, ``inspect`` and the tables the CLI prints."""

from __future__ import annotations

import json
import time
from typing import Any

from ocibox.cache._gc import Refs, blob_path, layer_dir_complete
from ocibox.cache._util import human_size, parse_time, since
from ocibox.digest import Digest
from ocibox.errors import UsageError
from ocibox.reference import Reference
from ocibox.settings import Settings
from ocibox.store import Store, find_image

NONE = "<none>"


def familiar(name: str) -> str:
    """``docker.io/library/busybox`` -> ``busybox``; other registries keep their host."""
    try:
        return Reference.parse(name).familiar()
    except Exception:
        return name


def complete_images(store: Store, refs: Refs | None = None) -> set[str]:
    """Images whose every layer has a row and a directory, and whose config and manifest blobs
    exist. Only these are listed: a crash can never make a broken image visible."""
    db = store.db
    if refs is None:
        refs = Refs.load(db)
    ok = set()
    for iid in refs.images:
        layers = refs.image_layers.get(iid, [])
        if not all(c in refs.layers and layer_dir_complete(store, c) for c in layers):
            continue
        if not all(blob_path(store, b).is_file() for b in refs.image_blobs[iid]):
            continue
        ok.add(iid)
    return ok


def list_images(settings: Settings, *, all_: bool) -> list[dict[str, Any]]:
    """One entry per tag (docker's ``images``); with ``all_`` also images that no tag names.
    Only complete images are listed (see :func:`complete_images`)."""
    store = Store(settings.root)
    db = store.db
    db.execute("BEGIN")
    try:
        refs = Refs.load(db)
        rows = {r[0]: r for r in db.execute("SELECT id, manifest_digest, created, size, pulled_at, last_used FROM images")}
        sizes = dict(db.execute(
            "SELECT il.image_id, SUM(l.size) FROM image_layers il JOIN layers l ON l.chain_id=il.chain_id GROUP BY il.image_id"
        ).fetchall())
        ok = complete_images(store, refs)
    finally:
        db.execute("COMMIT")
    out: list[dict[str, Any]] = []
    for iid in ok:
        _, manifest, created, size, pulled_at, last_used = rows[iid]
        base = {
            "ID": iid,
            "ManifestDigest": manifest,
            "Created": created,
            "CreatedAt": parse_time(created),
            "Size": int(sizes.get(iid) or size),
            "Pulled": pulled_at,
            "LastUsed": last_used,
        }
        tags = refs.tags.get(iid, [])
        digests = refs.digests.get(iid, [])
        for name, tag in tags:
            dg = next((d for n, d in digests if n == name), NONE)
            out.append({"Repository": familiar(name), "Tag": tag, "Digest": dg, **base})
        if not tags and all_:
            if digests:
                for name, dg in digests:
                    out.append({"Repository": familiar(name), "Tag": NONE, "Digest": dg, **base})
            else:
                out.append({"Repository": NONE, "Tag": NONE, "Digest": NONE, **base})
        elif not tags and digests:
            # Pulled by digest only: docker lists these as 'name <none>'.
            for name, dg in digests:
                out.append({"Repository": familiar(name), "Tag": NONE, "Digest": dg, **base})
    out.sort(key=lambda r: (-(r["Pulled"] or 0), r["Repository"], r["Tag"]))
    return out


def inspect_image(settings: Settings, name: str) -> dict[str, Any]:
    """docker-like ``inspect`` of an image: ids, references, config, the manifest, and each
    layer with its blob digest and size, diff id, chain id and unpacked size."""
    store = Store(settings.root)
    rec = find_image(store, name)
    db = store.db
    manifest_raw = json.loads(store.read_blob(rec.manifest_digest))
    config_raw = json.loads(store.read_blob(rec.id))
    tags = [f"{familiar(n)}:{t}" for n, t in db.execute("SELECT name, tag FROM tags WHERE image_id=? ORDER BY name, tag",
                                                           (str(rec.id),))]
    digests = [f"{familiar(n)}@{d}" for n, d in db.execute(
        "SELECT name, digest FROM repo_digests WHERE image_id=? ORDER BY name, digest", (str(rec.id),))]
    layer_rows = {c: (s, short) for c, s, short in db.execute(
        "SELECT l.chain_id, l.size, l.short FROM layers l JOIN image_layers il ON il.chain_id=l.chain_id WHERE il.image_id=?",
        (str(rec.id),))}
    layers = []
    for lr in rec.layers:
        unpacked, short = layer_rows.get(str(lr.chain_id), (None, None))
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


# ----------------------------------------------------------------------------- tables


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Columns padded like docker's tabwriter (3 spaces between columns)."""
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    lines = []
    for r in [headers, *rows]:
        lines.append("   ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
    return lines


def short_id(iid: str, no_trunc: bool) -> str:
    return iid if no_trunc else Digest.parse(iid).short


def render_table(kind: str, data: Any, **kw: Any) -> list[str]:
    """Lines of a docker-like table: ``kind`` is ``images`` (data from :func:`list_images`)
    or ``df`` (data from ``disk_usage``)."""
    if kind == "images":
        return _images_table(data, digests=bool(kw.get("digests")), quiet=bool(kw.get("quiet")),
                             no_trunc=bool(kw.get("no_trunc")))
    if kind == "df":
        return _df_table(data)
    raise UsageError(f"unknown table kind {kind!r}")


def _images_table(data: list[dict[str, Any]], *, digests: bool, quiet: bool, no_trunc: bool) -> list[str]:
    if quiet:
        seen: list[str] = []
        for r in data:
            i = short_id(r["ID"], no_trunc)
            if i not in seen:
                seen.append(i)
        return seen
    headers = ["REPOSITORY", "TAG", *(["DIGEST"] if digests else []), "IMAGE ID", "CREATED", "SIZE"]
    rows = []
    for r in data:
        row = [r["Repository"], r["Tag"]]
        if digests:
            row.append(r["Digest"])
        row += [short_id(r["ID"], no_trunc), since(r["CreatedAt"]), human_size(r["Size"])]
        rows.append(row)
    return table(headers, rows)


def _pct(part: int, whole: int) -> str:
    return f"{human_size(part)} ({round(100 * part / whole) if whole else 0}%)"


def _df_table(data: dict[str, Any]) -> list[str]:
    rows = [[t["Type"], str(t["Total"]), str(t["Active"]), human_size(t["Size"]), _pct(t["Reclaimable"], t["Size"])]
            for t in data["Types"]]
    lines = table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], rows)
    lay = data["Layers"]
    lines.append("")
    lines.append(f"Layers: {lay['Total']} ({lay['SharedCount']} shared by several images: {human_size(lay['SharedSize'])}; "
                 f"{lay['UniqueCount']} used by one image: {human_size(lay['UniqueSize'])}; "
                 f"{lay['UnusedCount']} unused: {human_size(lay['UnusedSize'])})")
    lines.append(f"Store {data['Root']}: {human_size(data['TotalSize'])} on disk ({data['TotalSize']} bytes, as du counts)")
    if data.get("Images") is not None:
        lines += ["", "Images space usage:", ""]
        lines += table(
            ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"],
            [[i["Repository"], i["Tag"], Digest.parse(i["ID"]).short, since(i["CreatedAt"]), human_size(i["Size"]),
              human_size(i["SharedSize"]), human_size(i["UniqueSize"]), str(i["Containers"])] for i in data["Images"]],
        )
        lines += ["", "Layers space usage:", ""]
        lines += table(
            ["LAYER (CHAIN ID)", "SIZE", "IMAGES"],
            [[Digest.parse(x["ChainID"]).short if x["ChainID"].startswith("sha") else x["ChainID"],
              human_size(x["Size"]), str(x["Images"])] for x in data["LayerList"]],
        )
        lines += ["", "Containers space usage:", ""]
        lines += table(
            ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "SIZE"],
            [[c["ID"][:12], Digest.parse(c["Image"]).short if c["Image"].startswith("sha") else c["Image"],
              c["Command"][:30], since(c["Created"]), c["Status"], human_size(c["Size"])] for c in data["Containers"]],
        )
    return lines
