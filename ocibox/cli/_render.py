"""What the CLI prints for the cache verbs: docker-like tables, human sizes and ages, the lines of
``rmi`` and ``prune``, and prune's confirmation prompt. Pure functions of what the verbs return
(except :func:`confirm_prune`, which asks on the terminal)."""

from __future__ import annotations

import sys

from ocibox.digest import Digest
from ocibox.units import human_size, since

TYPE_CHECKING = False  # typing (3 ms) and the cache's records are not needed to print a table
if TYPE_CHECKING:
    from typing import Any

    from ocibox.cache import Deleted, PruneResult, Untagged
    from ocibox.reference import Reference


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


def short_id(iid: str, no_trunc: bool = False) -> str:
    """An image id as docker shows it: 12 hex digits (the whole ``sha256:...`` with ``no_trunc``)."""
    return iid if no_trunc else Digest.parse(iid).short


def _short_or_text(text: str) -> str:
    """A digest's 12 hex digits; anything else (a path of a leftover, '') as it is."""
    return Digest.parse(text).short if text.startswith("sha") else text


def familiar(ref: Reference) -> str:
    """``name:tag`` or ``name@digest`` with docker's short name (``busybox``, ``user/app``, ``host:5000/app``)."""
    return f"{ref.familiar()}@{ref.digest}" if ref.digest is not None else f"{ref.familiar()}:{ref.tag}"


# ----------------------------------------------------------------------------- images, system df


def images_table(data: list[dict[str, Any]], *, digests: bool = False, quiet: bool = False,
                 no_trunc: bool = False) -> list[str]:
    """``ocibox images``: the rows of ``cache.list_images`` as docker's table (ids only with ``quiet``)."""
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


def df_table(data: dict[str, Any]) -> list[str]:
    """``ocibox system df [-v]``: what ``cache.disk_usage`` measured, as docker's tables."""
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
            [[i["Repository"], i["Tag"], short_id(i["ID"]), since(i["CreatedAt"]), human_size(i["Size"]),
              human_size(i["SharedSize"]), human_size(i["UniqueSize"]), str(i["Containers"])] for i in data["Images"]],
        )
        lines += ["", "Layers space usage:", ""]
        lines += table(
            ["LAYER (CHAIN ID)", "SIZE", "IMAGES"],
            [[_short_or_text(x["ChainID"]), human_size(x["Size"]), str(x["Images"])] for x in data["LayerList"]],
        )
        lines += ["", "Containers space usage:", ""]
        lines += table(
            ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "SIZE"],
            [[c["ID"][:12], _short_or_text(c["Image"]), c["Command"][:30], since(c["Created"]), c["Status"],
              human_size(c["Size"])] for c in data["Containers"]],
        )
    return lines


# ----------------------------------------------------------------------------- rmi, prune


def rmi_lines(done: list[Untagged | Deleted]) -> list[str]:
    """``ocibox rmi``: ``Untagged: busybox:latest``, ``Deleted: sha256:...`` (docker's lines)."""
    from ocibox.cache import Untagged

    return [f"Untagged: {familiar(d.ref)}" if isinstance(d, Untagged) else f"Deleted: {d.id}" for d in done]


def confirm_prune(all_: bool) -> bool:
    """docker's question before a prune, on stderr; the answer from stdin (yes: ``y`` or ``yes``)."""
    what = "all images without at least one running container" if all_ else "dangling images"
    sys.stderr.write(f"WARNING! This will remove:\n  - stopped and crashed containers\n  - {what}\n"
                     "  - unused layers and blobs, and leftovers of interrupted work\n"
                     "Are you sure you want to continue? [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def prune_lines(r: PruneResult) -> list[str]:
    """``ocibox prune``: what was removed by kind, then the bytes reclaimed (in a dry run: what
    would be removed, and the bytes it holds)."""
    if r.aborted:
        return ["Aborted."]
    lines: list[str] = []
    if r.containers or r.orphan_containers:
        lines.append("Deleted Containers:")
        lines += [c.id for c in r.containers] + r.orphan_containers
        lines.append("")
    if r.images:
        lines.append("Deleted Images:")
        for img in r.images:
            lines += [f"untagged: {familiar(n)}" for n in img.names]
            lines.append(f"deleted: {img.id}" + (" (least recently used, for --keep-storage)" if img.evicted else ""))
        lines.append("")
    if r.layers or r.layer_dirs:
        lines.append("Deleted Layers:")
        lines += [f"deleted: {c}" for c in r.layers]
        lines += [f"deleted: layers/{n} (no database row: leftover of interrupted work)" for n in r.layer_dirs]
        lines.append("")
    if r.blobs or r.stray_blobs:
        lines.append("Deleted Blobs:")
        lines += [f"deleted: {b}" for b in sorted([*map(str, r.blobs), *r.stray_blobs])]
        lines.append("")
    if r.tmp or r.links:
        lines.append("Deleted leftovers of interrupted work:")
        lines += [f"tmp/{n}" for n in r.tmp] + [f"layers/l/{s}" for s in r.links]
        lines.append("")
    if r.dry_run:
        lines.append(f"Total reclaimable space: {human_size(r.estimate)} ({r.estimate} bytes, as du counts; "
                     "dry run: nothing was removed)")
        return lines
    # statvfs sees every writer of the filesystem: with nothing removed, nothing was reclaimed.
    head = max(r.freed, 0) if r.removed else 0
    lines.append(f"Total reclaimed space: {human_size(head)} ({r.freed} bytes freed on the filesystem, "
                 f"measured by statvfs; the removed files held {r.removed} bytes)")
    if r.keep_storage is not None and r.store_size > r.keep_storage:
        lines.append(f"The store still holds {human_size(r.store_size)}, over --keep-storage "
                     f"{human_size(r.keep_storage)}: the rest is in use by running containers or pulls in flight")
    return lines
