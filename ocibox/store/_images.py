"""Image records: what a pull publishes, and how a name finds an image again."""

from __future__ import annotations

import time

from ocibox._record import record
from ocibox.digest import Digest
from ocibox.errors import ImageNotFound, OciboxError
from ocibox.image import ImageConfig, Manifest, Platform, chain_ids
from ocibox.reference import Reference
from ocibox.store._store import Store


@record
class LayerRef:
    """One layer of an image as the store knows it."""

    chain_id: Digest
    diff_id: Digest
    blob_digest: Digest
    blob_size: int
    media_type: str


@record
class ImageRecord:
    id: Digest  # config digest
    manifest_digest: Digest
    manifest_media_type: str
    platform: str
    created: str
    size: int
    pulled_at: float
    last_used: float
    layers: tuple[LayerRef, ...]

    def config(self, store: Store) -> ImageConfig:
        return ImageConfig.parse(store.read_blob(self.id), f"config of image {self.id.short}")

    def manifest(self, store: Store) -> Manifest:
        return Manifest.parse(store.read_blob(self.manifest_digest), f"manifest {self.manifest_digest}")


def record_image(
    store: Store,
    ref: Reference,
    *,
    pinned: Digest,
    manifest_digest: Digest,
    manifest: Manifest,
    config_digest: Digest,
    config: ImageConfig,
    platform: Platform,
    size: int,
) -> ImageRecord:
    """Publish an image: its manifest, config and layers must already be in the store.

    ``pinned`` is the digest the reference resolved to (an index or the manifest);
    ``repository@pinned`` finds the image again, as does ``repository:tag``.
    """
    now = time.time()
    cids = chain_ids(config.diff_ids)
    with store.transaction() as db:
        db.execute(
            "INSERT INTO images(id, manifest_digest, manifest_media_type, platform, created, size, pulled_at, last_used)"
            " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET manifest_digest=excluded.manifest_digest,"
            " manifest_media_type=excluded.manifest_media_type, pulled_at=excluded.pulled_at, last_used=excluded.last_used",
            (str(config_digest), str(manifest_digest), manifest.media_type, str(platform), config.created, size, now, now),
        )
        db.execute("DELETE FROM image_layers WHERE image_id=?", (str(config_digest),))
        db.executemany(
            "INSERT INTO image_layers(image_id, idx, chain_id, blob_digest, blob_size, media_type) VALUES (?,?,?,?,?,?)",
            [
                (str(config_digest), i, str(cid), str(desc.digest), desc.size, desc.media_type)
                for i, (cid, desc) in enumerate(zip(cids, manifest.layers, strict=True))
            ],
        )
        if ref.tag is not None:
            # A tag that moves to another image takes that image's digest of this repository with
            # it (docker): the old image is then named by nothing, i.e. dangling, and prune removes it.
            old = db.execute("SELECT image_id FROM tags WHERE name=? AND tag=?", (ref.name, ref.tag)).fetchone()
            if old is not None and old[0] != str(config_digest):
                db.execute("DELETE FROM repo_digests WHERE name=? AND image_id=?", (ref.name, old[0]))
            db.execute(
                "INSERT INTO tags(name, tag, image_id) VALUES (?,?,?) ON CONFLICT(name, tag) DO UPDATE SET image_id=excluded.image_id",
                (ref.name, ref.tag, str(config_digest)),
            )
        db.execute(
            "INSERT INTO repo_digests(name, digest, image_id) VALUES (?,?,?)"
            " ON CONFLICT(name, digest) DO UPDATE SET image_id=excluded.image_id",
            (ref.name, str(pinned), str(config_digest)),
        )
    return load_image(store, config_digest)


def load_image(store: Store, image_id: Digest) -> ImageRecord:
    row = store.db.execute(
        "SELECT id, manifest_digest, manifest_media_type, platform, created, size, pulled_at, last_used"
        " FROM images WHERE id=?",
        (str(image_id),),
    ).fetchone()
    if row is None:
        raise ImageNotFound(f"no such image: {image_id}")
    layers = store.db.execute(
        "SELECT il.chain_id, l.diff_id, il.blob_digest, il.blob_size, il.media_type FROM image_layers il"
        " LEFT JOIN layers l ON l.chain_id = il.chain_id WHERE il.image_id=? ORDER BY il.idx",
        (str(image_id),),
    ).fetchall()
    return ImageRecord(
        id=Digest.parse(row[0]),
        manifest_digest=Digest.parse(row[1]),
        manifest_media_type=row[2],
        platform=row[3],
        created=row[4],
        size=row[5],
        pulled_at=row[6],
        last_used=row[7],
        layers=tuple(
            LayerRef(Digest.parse(c), Digest.parse(d) if d else Digest.parse(c), Digest.parse(b), s, m)
            for c, d, b, s, m in layers
        ),
    )


def _id_prefix(text: str) -> str | None:
    """The hex of an image id or id prefix (``^(?:sha256:)?([0-9a-f]{4,64})$``), else None."""
    hexpart = text.removeprefix("sha256:")
    return hexpart if 4 <= len(hexpart) <= 64 and not hexpart.strip("0123456789abcdef") else None


def find_image(store: Store, text: str) -> ImageRecord:
    """An image by ``name[:tag]``, ``name@digest``, full id or unique id prefix (docker's lookup order)."""
    prefix = _id_prefix(text)
    ref: Reference | None
    try:
        ref = Reference.parse(text)
    except OciboxError:
        ref = None
    if ref is not None:
        iid = image_named(store, ref)
        if iid is None and ref.digest is not None:
            # A digest of the platform manifest also finds the image.
            row = store.db.execute(
                "SELECT id FROM images WHERE manifest_digest=? AND id IN "
                "(SELECT image_id FROM repo_digests WHERE name=? UNION SELECT image_id FROM tags WHERE name=?)",
                (str(ref.digest), ref.name, ref.name)).fetchone()
            iid = Digest.parse(row[0]) if row else None
        if iid is not None:
            return load_image(store, iid)
    if prefix is not None:
        rows = store.db.execute("SELECT id FROM images WHERE id LIKE ?", (f"sha256:{prefix}%",)).fetchall()
        if len(rows) == 1:
            return load_image(store, Digest.parse(rows[0][0]))
        if len(rows) > 1:
            raise ImageNotFound(f"image id prefix {text!r} is ambiguous ({len(rows)} images); give more digits")
    raise ImageNotFound(f"no such image: {text} (pull it with 'ocibox pull {text}')")


def touch_image(store: Store, image_id: Digest) -> None:
    """Record a use (run) for least-recently-used eviction."""
    with store.transaction() as db:
        db.execute("UPDATE images SET last_used=? WHERE id=?", (time.time(), str(image_id)))


def image_for_manifest(store: Store, manifest_digest: Digest) -> ImageRecord | None:
    """The image recorded with this platform manifest, None if there is none."""
    row = store.db.execute("SELECT id FROM images WHERE manifest_digest=?", (str(manifest_digest),)).fetchone()
    return load_image(store, Digest.parse(row[0])) if row else None


# ----- names: repository:tag and repository@digest rows ------------------------------------------
# Read with ``store.db``: inside ``with store.transaction():`` they see (and the removals make) the
# changes of that transaction.


def name_ref(name: str, *, tag: str | None = None, digest: Digest | None = None) -> Reference:
    """The reference a name row stands for (rows hold ``Reference.name``: ``registry/repository``)."""
    registry, _, repository = name.partition("/")
    return Reference(registry, repository, tag, digest)


def image_named(store: Store, ref: Reference) -> Digest | None:
    """The image ``repository@digest`` (when ``ref`` has a digest) or ``repository:tag`` names."""
    if ref.digest is not None:
        row = store.db.execute("SELECT image_id FROM repo_digests WHERE name=? AND digest=?",
                               (ref.name, str(ref.digest))).fetchone()
    else:
        row = store.db.execute("SELECT image_id FROM tags WHERE name=? AND tag=?", (ref.name, ref.tag)).fetchone()
    return Digest.parse(row[0]) if row else None


def image_tags(store: Store, image_id: Digest) -> list[Reference]:
    """``repository:tag`` names of an image, by name and tag."""
    rows = store.db.execute("SELECT name, tag FROM tags WHERE image_id=? ORDER BY name, tag", (str(image_id),))
    return [name_ref(n, tag=t) for n, t in rows.fetchall()]


def image_digests(store: Store, image_id: Digest) -> list[Reference]:
    """``repository@digest`` names of an image, by name and digest."""
    rows = store.db.execute("SELECT name, digest FROM repo_digests WHERE image_id=? ORDER BY name, digest",
                            (str(image_id),))
    return [name_ref(n, digest=Digest.parse(d)) for n, d in rows.fetchall()]


def remove_name(store: Store, ref: Reference) -> None:
    """Drop the ``repository@digest`` row (``ref`` has a digest) or else the ``repository:tag`` row."""
    if ref.digest is not None:
        store.db.execute("DELETE FROM repo_digests WHERE name=? AND digest=?", (ref.name, str(ref.digest)))
    else:
        store.db.execute("DELETE FROM tags WHERE name=? AND tag=?", (ref.name, ref.tag))


def remove_tags(store: Store, image_id: Digest) -> None:
    """Drop every ``repository:tag`` of an image (its digests stay)."""
    store.db.execute("DELETE FROM tags WHERE image_id=?", (str(image_id),))


def delete_image(store: Store, image_id: Digest) -> None:
    """Drop an image's rows: its names, its layer list and the image (its layers keep their rows)."""
    db, iid = store.db, str(image_id)
    db.execute("DELETE FROM tags WHERE image_id=?", (iid,))
    db.execute("DELETE FROM repo_digests WHERE image_id=?", (iid,))
    db.execute("DELETE FROM image_layers WHERE image_id=?", (iid,))
    db.execute("DELETE FROM images WHERE id=?", (iid,))


def names_of_no_image(store: Store) -> list[Reference]:
    """Tags and digests that name an image the store does not have (a damaged database)."""
    rows = store.db.execute(
        "SELECT name, tag, NULL FROM tags WHERE image_id NOT IN (SELECT id FROM images) UNION ALL "
        "SELECT name, NULL, digest FROM repo_digests WHERE image_id NOT IN (SELECT id FROM images)").fetchall()
    return [name_ref(n, tag=t, digest=Digest.parse(d) if d is not None else None) for n, t, d in rows]


def layer_rows_of_no_image(store: Store) -> int:
    """How many image-layer rows belong to no image (a damaged database)."""
    return int(store.db.execute(
        "SELECT COUNT(*) FROM image_layers WHERE image_id NOT IN (SELECT id FROM images)").fetchone()[0])


def delete_rows_of_no_image(store: Store) -> None:
    """Drop the rows :func:`names_of_no_image` and :func:`layer_rows_of_no_image` count."""
    db = store.db
    db.execute("DELETE FROM tags WHERE image_id NOT IN (SELECT id FROM images)")
    db.execute("DELETE FROM repo_digests WHERE image_id NOT IN (SELECT id FROM images)")
    db.execute("DELETE FROM image_layers WHERE image_id NOT IN (SELECT id FROM images)")
