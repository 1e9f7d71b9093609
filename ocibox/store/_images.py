"""Image records: what a pull publishes, and how a name finds an image again."""

from __future__ import annotations

import re
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


_ID_PREFIX = re.compile(r"^(?:sha256:)?([0-9a-f]{4,64})$")


def find_image(store: Store, text: str) -> ImageRecord:
    """An image by ``name[:tag]``, ``name@digest``, full id or unique id prefix (docker's lookup order)."""
    db = store.db
    m = _ID_PREFIX.match(text)
    ref: Reference | None
    try:
        ref = Reference.parse(text)
    except OciboxError:
        ref = None
    if ref is not None:
        if ref.digest is not None:
            row = db.execute("SELECT image_id FROM repo_digests WHERE name=? AND digest=?",
                             (ref.name, str(ref.digest))).fetchone()
            if row is None:
                # A digest of the platform manifest also finds the image.
                row = db.execute("SELECT id FROM images WHERE manifest_digest=? AND id IN "
                                 "(SELECT image_id FROM repo_digests WHERE name=? UNION SELECT image_id FROM tags WHERE name=?)",
                                 (str(ref.digest), ref.name, ref.name)).fetchone()
        else:
            row = db.execute("SELECT image_id FROM tags WHERE name=? AND tag=?", (ref.name, ref.tag)).fetchone()
        if row is not None:
            return load_image(store, Digest.parse(row[0]))
    if m:
        rows = db.execute("SELECT id FROM images WHERE id LIKE ?", (f"sha256:{m.group(1)}%",)).fetchall()
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
