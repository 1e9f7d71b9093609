"""``pull()``: reference -> verified manifest and config -> layers unpacked once -> image record.

One lease names what the pull uses, so that a concurrent prune keeps it: taken first, extended
once the walk knows every digest. Then:

1. The manifest (or index) the reference names: by digest from the store when it is there, else
   from the first mirror that has it, else the origin (``_upstream.Upstream``).
2. ``resolve()``: index -> the platform's manifest -> its config, the store first and the registry
   second (:class:`_PullSource`). The config is fetched under its ``blob-<hex>`` lock, the one the
   layers use, and written to the store inside it: of concurrent pulls of one image, one fetches
   it and the others find it in the store.
3. Complete in the store (its image row, every layer)? Recorded again: "up to date". Else the
   missing layers are pulled (each under its layer and blob locks), the manifests written, the
   image recorded. A pull that fails removes the config it wrote, unless something else uses it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING

from ocibox._record import record
from ocibox.digest import Digest, VerifyingReader
from ocibox.errors import (
    DigestMismatch,
    ImageNotFound,
    LayerError,
    OciboxError,
    RegistryError,
)
from ocibox.image import Descriptor, ImageConfig, Manifest, Platform, chain_ids
from ocibox.puller._progress import Progress, make_progress
from ocibox.puller._resolve import Resolved, StoreSource, resolve
from ocibox.puller._upstream import Upstream
from ocibox.reference import Reference
from ocibox.settings import Settings
from ocibox.store import (
    ImageRecord,
    Store,
    has_layer,
    image_for_manifest,
    layer_size,
    load_image,
    record_image,
)

if TYPE_CHECKING:
    from ocibox.layers import Unpackers
    from ocibox.puller._client import Repository

#: layers of one pull unpacked in forked children at most (the rest in their download thread)
_MAX_FORKED = 16


@record
class PullResult:
    """``pinned`` is the digest the reference resolved to: the index's or the manifest's."""

    reference: Reference
    pinned: Digest
    image: ImageRecord
    up_to_date: bool


class _PullSource:
    """The store first, the registry second (a ``Source``).

    Manifests taken from the registry stay in memory until the image is recorded. A config
    missing from the store is fetched under its ``blob-<hex>`` lock and written to the store
    inside it, so that concurrent pulls of one image fetch it once. Whatever the walk read stays
    in memory and is published again once the lease names it (a no-op when it is there), so a
    prune or a failing pull's cleanup that removed it meanwhile costs nothing. A blob the store
    holds with the wrong bytes is fetched again and replaced (see ``StoreSource``).
    """

    def __init__(self, store: Store, upstream: Upstream) -> None:
        self.store = store
        self.upstream = upstream
        self.local = StoreSource(store)
        self.wrote: list[Digest] = []  # blobs this pull published before its image was recorded
        self.fetched = False  # something below the top manifest came from the registry
        self._warned: set[Digest] = set()

    def note_damaged(self, digest: Digest, what: str) -> None:
        if digest in self.local.damaged and digest not in self._warned:
            self._warned.add(digest)
            sys.stderr.write(f"ocibox: warning: {what}: the store's copy does not match its digest (damaged);"
                             " fetching it again\n")

    def manifest(self, digest: Digest, what: str, *, size: int | None = None) -> tuple[bytes, str]:
        got = self.local.manifest(digest, what, size=size)
        if got is not None:
            return got
        self.note_damaged(digest, what)
        self.fetched = True
        return self.upstream.repository().manifest(digest, what, size=size)

    def blob(self, desc: Descriptor, what: str) -> bytes:
        data = self.local.blob(desc, what)
        if data is not None:
            return data
        with self.store.lock(f"blob-{desc.digest.hex}"):
            data = self.local.blob(desc, what)  # fetched by a concurrent pull while we waited
            if data is not None:
                return data
            self.note_damaged(desc.digest, what)
            self.fetched = True
            data = self.upstream.repository().blob(desc, what)
            self.publish(desc.digest, data)
            self.wrote.append(desc.digest)
        return data

    def publish(self, digest: Digest, data: bytes) -> None:
        """Write verified bytes to the store (a no-op when they are there), replacing a damaged copy."""
        if digest in self.local.damaged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.store.blob_path(digest))
            self.local.damaged.discard(digest)
        self.store.write_blob(digest, data)


def _forget(store: Store, digests: list[Digest]) -> None:
    """After a failed pull: the blobs it wrote go, unless an image or a live lease (another pull
    of the same image) uses them. Under the exclusive ``gc`` lock, as prune decides."""
    with contextlib.suppress(OciboxError, OSError), store.lock("gc"):
        leased = store.leased()
        for d in digests:
            if d in leased:
                continue
            try:
                load_image(store, d)
                continue  # an image with this config: recorded meanwhile by another pull
            except ImageNotFound:
                pass
            with contextlib.suppress(FileNotFoundError):
                os.unlink(store.blob_path(d))


def _open_db(store: Store) -> None:
    """Open this process's database connection under a store lock. SQLite answers "database is
    locked" at once, without waiting, to a connection that switches a new database to WAL while
    another does the same; Store._connect does not retry that yet, so two first pulls into a new
    store would fail one of them (the walk through the store used to swallow the error)."""
    with store.lock("db-open"):
        store.db  # noqa: B018 - connects


def pull(settings: Settings, ref: Reference, *, platform: Platform | None = None,
         progress: Progress | None = None) -> PullResult:
    store = Store(settings.root).ensure()
    _open_db(store)
    want = platform or Platform.host()
    explicit = platform is not None
    progress = progress or make_progress(settings.quiet)
    upstream = Upstream(settings, ref)
    try:
        return _pull(settings, store, upstream, ref, want, explicit, progress)
    finally:
        upstream.close()
        progress.close()


def _done(progress: Progress, ref: Reference, pinned: Digest, fresh: bool) -> None:
    progress.line(f"Digest: {pinned}")
    name = str(Reference(ref.registry, ref.repository, ref.tag, None if ref.tag else ref.digest))
    progress.line(f"Status: {'Downloaded newer image' if fresh else 'Image is up to date'} for {name}")


def _pull(settings: Settings, store: Store, upstream: Upstream, ref: Reference, want: Platform, explicit: bool,
          progress: Progress) -> PullResult:
    source: _PullSource | None = None
    try:
        with store.lease("pull", [ref.digest] if ref.digest else []) as lease:
            source = _PullSource(store, upstream)
            return _pull_leased(settings, store, lease, upstream, source, ref, want, explicit, progress)
    except BaseException:
        if source is not None and source.wrote:
            _forget(store, source.wrote)
        raise


def _pull_leased(settings: Settings, store: Store, lease: Path, upstream: Upstream, source: _PullSource,
                 ref: Reference, want: Platform, explicit: bool, progress: Progress) -> PullResult:
    # A digest names content: when it is all here, no request is made at all.
    local = source.local.manifest(ref.digest, f"{ref}") if ref.digest is not None else None
    if ref.digest is not None and local is not None:
        pinned, (data, ctype) = ref.digest, local
    else:
        if ref.digest is not None:
            source.note_damaged(ref.digest, f"{ref}")
        pinned, data, ctype = upstream.fetch_top()

    try:
        res = resolve(source, str(ref), pinned, data, ctype, want, explicit)
    except OciboxError:
        progress.begin(ref.tag or str(ref.digest), ref.repository)
        raise
    assert res is not None  # the registry has it all, or raises
    cids = chain_ids(res.config.diff_ids)
    mdigest, cdigest = res.manifest_digest, res.config_digest
    # From here on a prune keeps all of it (and the blobs are published again under the lease).
    store.extend_lease(lease, [d for d, _ in res.walked] + [cdigest, *cids])
    present = [has_layer(store, c) for c in cids]

    # Up to date: recorded, every layer here, and nothing but the top manifest was asked for.
    rec = image_for_manifest(store, mdigest)
    if rec is not None and rec.id == cdigest and all(present) and not source.fetched:
        _publish(source, res)
        rec = record_image(store, ref, pinned=pinned, manifest_digest=mdigest, manifest=res.manifest,
                           config_digest=cdigest, config=res.config, platform=Platform.parse(rec.platform),
                           size=rec.size)
        _done(progress, ref, pinned, False)
        return PullResult(ref, pinned, rec, True)

    progress.begin(ref.tag or str(ref.digest), ref.repository)
    size = _pull_layers(settings, store, upstream, ref, res.manifest, res.config, cids, present, progress)
    _publish(source, res)
    rec = record_image(store, ref, pinned=pinned, manifest_digest=mdigest, manifest=res.manifest,
                       config_digest=cdigest, config=res.config, platform=res.platform, size=size)
    _done(progress, ref, pinned, True)
    return PullResult(ref, pinned, rec, False)


def _publish(source: _PullSource, res: Resolved) -> None:
    """The index(es), the manifest and the config in the store, before the image row names them."""
    for d, b in res.walked:
        source.publish(d, b)
    source.publish(res.config_digest, res.config_bytes)


def _pull_layers(settings: Settings, store: Store, upstream: Upstream, ref: Reference, manifest: Manifest,
                 config: ImageConfig, cids: list[Digest], present: list[bool], progress: Progress) -> int:
    progress.layers([(d.digest.short, d.size, p) for d, p in zip(manifest.layers, present, strict=True)])
    todo = [i for i, p in enumerate(present) if not p]
    sizes = {i: layer_size(store, cids[i]) for i, p in enumerate(present) if p}
    if todo:
        from ocibox.layers import Unpackers

        repo = upstream.repository()
        workers = max(1, min(settings.config.concurrency, len(todo)))
        # Extraction is GIL-bound: each layer unpacks in a child process of its own (see
        # layers/_forked.py), forked here, in the main thread, before any download thread
        # starts. Layers past the first _MAX_FORKED unpack in their download thread.
        unpackers = Unpackers()
        try:
            for i in todo[:_MAX_FORKED]:
                unpackers.start(i, store, compression=manifest.layers[i].compression, diff_id=config.diff_ids[i],
                                chain_id=cids[i], parent=cids[i - 1] if i else None,
                                what=f"{ref}: layer {manifest.layers[i].digest}",
                                ignore_chown_errors=settings.ignore_chown_errors)
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="layer") as pool:
                futures: dict[Future[int], int] = {}
                for i in todo:
                    parent = cids[i - 1] if i else None
                    fut = pool.submit(_pull_layer, store, repo, ref, manifest.layers[i], config.diff_ids[i],
                                      cids[i], parent, progress, unpackers, i, settings.ignore_chown_errors)
                    futures[fut] = i
                finished, _pending = wait(futures, return_when=FIRST_EXCEPTION)
                for fut in finished:
                    if fut.exception() is not None:
                        for other in futures:
                            other.cancel()
                        raise fut.exception()  # type: ignore[misc]
                for fut, i in futures.items():
                    sizes[i] = fut.result()
        finally:
            unpackers.close()
    return sum(sizes.values())


def _pull_layer(store: Store, repo: Repository, ref: Reference, desc: Descriptor, diff_id: Digest,
                cid: Digest, parent: Digest | None, progress: Progress, unpackers: Unpackers | None = None,
                index: int = -1, ignore_chown_errors: bool = False) -> int:
    from ocibox.layers import unpack_layer

    short = desc.digest.short
    what = f"{ref}: layer {desc.digest}"
    with store.lock(f"layer-{cid.hex}"):
        if has_layer(store, cid):  # another process published it while we waited
            progress.layer_exists(short)
            return layer_size(store, cid)
        with store.lock(f"blob-{desc.digest.hex}"):
            partial = store.tmp / f"partial-{desc.digest.hex}"
            for attempt in (1, 2):
                resumed = partial.exists() and partial.stat().st_size > 0
                counted: Callable[[int], None] = lambda n: progress.layer_bytes(short, n)  # noqa: E731
                stream = repo.open_blob(desc, what, partial=partial, on_bytes=counted)
                reader = VerifyingReader(stream, desc.digest, desc.size, what)
                child = unpackers.take(index) if unpackers is not None and attempt == 1 else None
                try:
                    if child is not None:
                        size = child.run(reader)
                    else:
                        size = unpack_layer(store, reader, compression=desc.compression, diff_id=diff_id,
                                            chain_id=cid, parent=parent, what=what,
                                            ignore_chown_errors=ignore_chown_errors)
                except (RegistryError, KeyboardInterrupt):
                    stream.close()  # keep the partial file: the next try resumes from it
                    raise
                except BaseException as e:
                    err: BaseException = e
                    if isinstance(e, LayerError) and not reader.verified:
                        # Bytes changed in transit usually break the decompressor before the
                        # digest is checked at EOF: read the rest (at most the descriptor's size)
                        # to tell "the blob does not match its digest" from "the layer is corrupt".
                        try:
                            reader.verify_to_end()
                        except DigestMismatch as mismatch:
                            err = mismatch
                        except (OciboxError, OSError):
                            pass
                    stream.close()
                    with contextlib.suppress(FileNotFoundError):
                        partial.unlink()
                    if resumed and attempt == 1 and isinstance(err, OciboxError):
                        continue  # the partial file from an earlier process was bad: start over
                    if err is not e:
                        raise err from None
                    raise
                stream.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(partial)
                progress.layer_done(short)
                return size
    raise AssertionError("unreachable")
