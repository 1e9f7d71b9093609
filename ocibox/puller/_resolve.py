"""The one walk from what a reference names to an image: index(es) -> the platform's manifest ->
its config, against a :class:`Source` (ggcr's ``remote``/``layout`` seam): the registry
(``_client.Repository``), the store (:class:`StoreSource`), or the pull's store-then-registry
source (``_pull``). What a source returns is verified by digest; what it lacks is None.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ocibox._record import record
from ocibox.digest import Digest, verify_bytes
from ocibox.errors import DigestMismatch, ManifestError, StoreError
from ocibox.image import (
    INDEX_TYPES,
    MAX_MANIFEST_BYTES,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    sniff_media_type,
)

if TYPE_CHECKING:
    from ocibox.store import Store

_MAX_NESTING = 4


class Source(Protocol):
    """Where manifests and configs come from. Both return bytes that match the digest asked for
    (and the size, when given), or None when the source does not have them; anything else that
    goes wrong is raised."""

    def manifest(self, digest: Digest, what: str, *, size: int | None = None) -> tuple[bytes, str] | None:
        """The bytes and media type ('' when the source does not say) of a manifest or index."""
        ...

    def blob(self, desc: Descriptor, what: str) -> bytes | None:
        """The bytes of a small blob (a config)."""
        ...


@record
class Resolved:
    """``walked``: every index and the manifest, (digest, verified bytes), from ``pinned`` down."""

    pinned: Digest
    walked: tuple[tuple[Digest, bytes], ...]
    manifest: Manifest
    config: ImageConfig
    config_bytes: bytes
    platform: Platform

    @property
    def manifest_digest(self) -> Digest:
        return self.walked[-1][0]

    @property
    def config_digest(self) -> Digest:
        return self.manifest.config.digest


def resolve(source: Source, name: str, pinned: Digest, data: bytes, media_type: str, want: Platform,
            explicit: bool) -> Resolved | None:
    """Walk from ``data`` (the verified bytes ``pinned`` names; ``media_type`` as its source said)
    to the manifest for ``want`` and its config; None when ``source`` lacks one of them.

    ``name`` is the reference, for messages. ``explicit``: the platform was asked for, so a
    single-platform image for another one is an error (an index selects by platform anyway).
    """
    walked = [(pinned, data)]
    digest, mt = pinned, sniff_media_type(data, media_type, name)
    depth = 0
    while mt in INDEX_TYPES:
        depth += 1
        if depth > _MAX_NESTING:
            raise ManifestError(f"{name}: indexes nested more than {_MAX_NESTING} deep")
        desc = Index.parse(data, f"index {digest}", mt).select(want, name)
        if desc.size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{name}: manifest {desc.digest} is {desc.size} bytes, more than {MAX_MANIFEST_BYTES}")
        what = f"{name}: manifest {desc.digest}"
        got = source.manifest(desc.digest, what, size=desc.size)
        if got is None:
            return None
        data, mtype = got
        digest = desc.digest
        mt = sniff_media_type(data, mtype or desc.media_type, what)
        walked.append((digest, data))
    manifest = Manifest.parse(data, f"manifest {digest}", mt)

    cdesc = manifest.config
    cwhat = f"{name}: config {cdesc.digest}"
    if cdesc.size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{cwhat}: {cdesc.size} bytes is more than the {MAX_MANIFEST_BYTES} bytes allowed")
    cdata = source.blob(cdesc, cwhat)
    if cdata is None:
        return None
    config = ImageConfig.parse(cdata, cwhat)
    if len(config.diff_ids) != len(manifest.layers):
        raise ManifestError(f"{name}: manifest has {len(manifest.layers)} layers but its config lists"
                            f" {len(config.diff_ids)} diff_ids")
    plat = config.platform
    if explicit and depth == 0 and not want.matches(plat.normalized()):
        raise ManifestError(f"{name}: image is for {plat.normalized()}, not the requested {want}")
    plat = plat.normalized() if plat.architecture else want
    return Resolved(pinned, tuple(walked), manifest, config, cdata, plat)


class StoreSource:
    """The store as a :class:`Source`: ``blobs/<algo>/<hex>``, checked against their digest.

    A blob that is not there is None (not here). A blob whose bytes do not match its digest is
    damaged: it is None too, and named in ``damaged``, so that the pull fetches it again from the
    registry and puts the verified bytes in its place (as docker does with an image whose
    content fails verification). Anything else (the store cannot be read) is raised.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.damaged: set[Digest] = set()

    def read(self, digest: Digest, size: int | None, what: str) -> bytes | None:
        try:
            data = self.store.blob_path(digest).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(f"{what}: the store's copy cannot be read ({e.strerror or e});"
                             " run 'ocibox verify --repair'") from None
        try:
            verify_bytes(data, digest, None, what)
        except DigestMismatch:
            self.damaged.add(digest)
            return None
        if size is not None and len(data) != size:  # the bytes are right: the descriptor is not
            raise DigestMismatch(f"{what}: expected {size} bytes, got {len(data)}")
        return data

    def manifest(self, digest: Digest, what: str, *, size: int | None = None) -> tuple[bytes, str] | None:
        data = self.read(digest, size, what)
        return None if data is None else (data, "")

    def blob(self, desc: Descriptor, what: str) -> bytes | None:
        return self.read(desc.digest, desc.size, what)
