"""What the database references, read at once: the input of every mark and sweep (rmi, prune,
verify) and of the listings (images, system df)."""

from __future__ import annotations

from collections.abc import Iterable

from ocibox._record import field, record
from ocibox.digest import Digest
from ocibox.reference import Reference
from ocibox.store._images import name_ref
from ocibox.store._store import Store


@record
class ImageRow:
    """One image as its row records it."""

    id: Digest  # the config digest
    manifest_digest: Digest
    created: str  # the config's 'created' (RFC 3339), '' if it has none
    size: int  # unpacked bytes recorded by the pull
    layers_size: int  # sum of the recorded sizes of its layers (0 when none has a row)
    pulled_at: float
    last_used: float


@record(frozen=False)
class Refs:
    """What the database references. Read it in one transaction (``Refs.load`` inside
    ``store.transaction()`` or ``store.snapshot()``): then it is one consistent state."""

    images: dict[Digest, ImageRow] = field(default_factory=dict)
    image_layers: dict[Digest, list[Digest]] = field(default_factory=dict)  # image id -> chain ids, base first
    layers: dict[Digest, str] = field(default_factory=dict)  # chain id -> short link name
    parents: dict[Digest, Digest | None] = field(default_factory=dict)  # chain id -> the layer below
    layer_blobs: dict[Digest, set[Digest]] = field(default_factory=dict)  # image id -> compressed layer digests
    tags: dict[Digest, list[Reference]] = field(default_factory=dict)  # image id -> repository:tag, sorted
    digests: dict[Digest, list[Reference]] = field(default_factory=dict)  # image id -> repository@digest, sorted

    @classmethod
    def load(cls, store: Store) -> Refs:
        db = store.db
        r = cls()
        sizes = {iid: int(n or 0) for iid, n in db.execute(
            "SELECT il.image_id, SUM(l.size) FROM image_layers il JOIN layers l ON l.chain_id=il.chain_id"
            " GROUP BY il.image_id")}
        for iid_s, manifest, created, size, pulled_at, last_used in db.execute(
                "SELECT id, manifest_digest, created, size, pulled_at, last_used FROM images"):
            iid = Digest.parse(iid_s)
            r.images[iid] = ImageRow(iid, Digest.parse(manifest), created, size, sizes.get(iid_s, 0), pulled_at,
                                     last_used)
            r.image_layers[iid] = []
            r.layer_blobs[iid] = set()
            r.tags[iid] = []
            r.digests[iid] = []
        for iid_s, cid, blob in db.execute("SELECT image_id, chain_id, blob_digest FROM image_layers"
                                           " ORDER BY image_id, idx"):
            iid = Digest.parse(iid_s)
            if iid in r.images:
                r.image_layers[iid].append(Digest.parse(cid))
                r.layer_blobs[iid].add(Digest.parse(blob))
        for cid, short, parent in db.execute("SELECT chain_id, short, parent FROM layers"):
            c = Digest.parse(cid)
            r.layers[c] = short
            r.parents[c] = Digest.parse(parent) if parent else None
        for name, tag, iid_s in db.execute("SELECT name, tag, image_id FROM tags ORDER BY name, tag"):
            r.tags.setdefault(Digest.parse(iid_s), []).append(name_ref(name, tag=tag))
        for name, dg, iid_s in db.execute("SELECT name, digest, image_id FROM repo_digests ORDER BY name, digest"):
            r.digests.setdefault(Digest.parse(iid_s), []).append(name_ref(name, digest=Digest.parse(dg)))
        return r

    def image_blobs(self, image_id: Digest) -> set[Digest]:
        """The config and manifest blobs of an image."""
        return {image_id, self.images[image_id].manifest_digest}

    def used_layers(self, images: Iterable[Digest]) -> set[Digest]:
        out: set[Digest] = set()
        for i in images:
            out.update(self.image_layers.get(i, ()))
        return out

    def used_blobs(self, images: Iterable[Digest]) -> set[Digest]:
        """The blobs of the images: configs, manifests, compressed layers, and the digests they
        were pulled by (an index)."""
        out: set[Digest] = set()
        for i in images:
            if i in self.images:
                out.update(self.image_blobs(i))
            out.update(self.layer_blobs.get(i, ()))
            out.update(r.digest for r in self.digests.get(i, ()) if r.digest is not None)
        return out

    def with_ancestors(self, chain_ids: Iterable[Digest]) -> set[Digest]:
        """The layers and every layer below them (an overlay needs its whole stack)."""
        out: set[Digest] = set()
        for c in chain_ids:
            cur: Digest | None = c
            while cur is not None and cur not in out:
                out.add(cur)
                cur = self.parents.get(cur)
        return out

    def dangling(self) -> set[Digest]:
        """Images nothing names: no tag and no repository digest (docker's ``<none>:<none>``)."""
        return {i for i in self.images if not self.tags.get(i) and not self.digests.get(i)}
