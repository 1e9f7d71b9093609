"""``pull()``: reference -> verified manifest and config -> layers unpacked once -> image record."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ocibox.digest import Digest, VerifyingReader, verify_bytes
from ocibox.errors import (
    DigestMismatch,
    LayerError,
    ManifestError,
    OciboxError,
    RegistryError,
)
from ocibox.image import (
    INDEX_TYPES,
    MAX_MANIFEST_BYTES,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    chain_ids,
    sniff_media_type,
)
from ocibox.puller._client import RegistryClient
from ocibox.puller._progress import Progress, make_progress
from ocibox.reference import Reference
from ocibox.settings import Settings
from ocibox.store import ImageRecord, Store, has_layer, image_for_manifest, layer_size, record_image

if TYPE_CHECKING:
    from ocibox.layers import Unpackers

_MAX_NESTING = 4
#: layers of one pull unpacked in forked children at most (the rest in their download thread)
_MAX_FORKED = 16


@dataclass(frozen=True)
class PullResult:
    """``pinned`` is the digest the reference resolved to: the index's or the manifest's."""

    reference: Reference
    pinned: Digest
    image: ImageRecord
    up_to_date: bool


def _endpoints(settings: Settings, ref: Reference) -> list[str]:
    """Mirrors of the registry, in order, then the origin."""
    rc = settings.config.registry(ref.registry) or settings.config.registry(ref.api_host)
    mirrors = list(rc.mirrors) if rc else []
    return [*mirrors, ref.api_host]


def _wrap(e: RegistryError, prefix: str) -> RegistryError:
    """The same kind of error, with what was being pulled in front."""
    cls = type(e)
    return cls(f"{prefix}: {e.message}", status=e.status, code=e.code, temporary=e.temporary)


def _verify_manifest(data: bytes, ref: Reference, identifier: str, header_digest: str, host: str) -> Digest:
    """The digest of the manifest bytes; checked against the reference's digest and the header."""
    want = ref.digest if identifier == (str(ref.digest) if ref.digest else None) else None
    algo = want.algorithm if want else "sha256"
    got = Digest.of_bytes(data, algo)
    if want is not None and got != want:
        raise DigestMismatch(f"{ref}: {host} served a manifest whose digest is {got}, not the {want} asked for")
    if header_digest:
        try:
            hd = Digest.parse(header_digest.strip())
        except OciboxError:
            raise DigestMismatch(f"{ref}: {host} sent an invalid Docker-Content-Digest {header_digest!r}") from None
        if Digest.of_bytes(data, hd.algorithm) != hd:
            raise DigestMismatch(f"{ref}: {host} says the manifest is {hd} (Docker-Content-Digest) but its bytes"
                                 f" hash to {Digest.of_bytes(data, hd.algorithm)}; refusing it")
    return got


def _local_image(store: Store, ref: Reference, pinned: Digest, data: bytes | None, want: Platform,
                 explicit: bool) -> ImageRecord | None:
    """The image ``pinned`` resolves to for ``want``, if it is completely in the store."""
    try:
        if data is None:
            if not store.has_blob(pinned):
                return None
            data = store.read_blob(pinned)
        digest = pinned
        for _ in range(_MAX_NESTING + 1):
            mt = sniff_media_type(data, "", f"{ref}")
            if mt not in INDEX_TYPES:
                break
            desc = Index.parse(data, str(ref), mt).select(want, str(ref))
            if not store.has_blob(desc.digest):
                return None
            digest, data = desc.digest, store.read_blob(desc.digest)
        else:
            return None
        rec = image_for_manifest(store, digest)
        if rec is None:
            return None
        if explicit and not want.matches(Platform.parse(rec.platform)):
            return None
        if not store.has_blob(rec.id) or not store.has_blob(rec.manifest_digest):
            return None
        if not all(has_layer(store, layer.chain_id) for layer in rec.layers):
            return None
        return rec
    except OciboxError:
        return None


def _rerecord(store: Store, ref: Reference, pinned: Digest, rec: ImageRecord) -> ImageRecord:
    return record_image(store, ref, pinned=pinned, manifest_digest=rec.manifest_digest,
                        manifest=rec.manifest(store), config_digest=rec.id, config=rec.config(store),
                        platform=Platform.parse(rec.platform), size=rec.size)


def _reuse_local(store: Store, ref: Reference, pinned: Digest, data: bytes | None, want: Platform,
                 explicit: bool) -> ImageRecord | None:
    """Re-record an image that is completely in the store, under a lease.

    The lease names the image and its layers before the second check, so a concurrent
    prune either ran before it (and the second check sees what it removed) or keeps them.
    """
    with store.lease("pull", [str(pinned)]) as lease:
        rec = _local_image(store, ref, pinned, data, want, explicit)
        if rec is None:
            return None
        store.extend_lease(lease, [str(rec.id), str(rec.manifest_digest)] + [str(x.chain_id) for x in rec.layers])
        rec = _local_image(store, ref, pinned, data, want, explicit)
        if rec is None:
            return None
        if data is not None:
            store.write_blob(pinned, data)
        return _rerecord(store, ref, pinned, rec)


def pull(settings: Settings, ref: Reference, *, platform: Platform | None = None,
         progress: Progress | None = None) -> PullResult:
    store = Store(settings.root).ensure()
    want = platform or Platform.host()
    explicit = platform is not None
    progress = progress or make_progress(settings.quiet)
    try:
        return _pull(settings, store, ref, want, explicit, progress)
    finally:
        progress.close()


def _done(progress: Progress, ref: Reference, pinned: Digest, fresh: bool) -> None:
    progress.line(f"Digest: {pinned}")
    name = str(Reference(ref.registry, ref.repository, ref.tag, None if ref.tag else ref.digest))
    progress.line(f"Status: {'Downloaded newer image' if fresh else 'Image is up to date'} for {name}")


def _pull(settings: Settings, store: Store, ref: Reference, want: Platform, explicit: bool,
          progress: Progress) -> PullResult:
    # A digest names content: if it is all here, no request is needed at all.
    if ref.digest is not None:
        rec = _reuse_local(store, ref, ref.digest, None, want, explicit)
        if rec is not None:
            _done(progress, ref, ref.digest, False)
            return PullResult(ref, ref.digest, rec, True)

    # One manifest request: from the first mirror that has it, else the origin.
    failures: list[str] = []
    client: RegistryClient | None = None
    data = b""
    ctype = ""
    pinned: Digest | None = None
    hosts = _endpoints(settings, ref)
    for i, host in enumerate(hosts):
        c = RegistryClient(settings, host)
        try:
            data, ctype, hdr = c.get_manifest(ref.repository, ref.identifier, f"{ref}")
            pinned = _verify_manifest(data, ref, ref.identifier, hdr, host)
        except (RegistryError, DigestMismatch, ManifestError) as e:
            c.close()
            if i == len(hosts) - 1:
                if failures and isinstance(e, RegistryError):
                    raise _wrap(e, f"mirrors failed ({'; '.join(failures)}); origin") from None
                raise
            failures.append(f"{host}: {e}")
            continue
        client = c
        break
    assert client is not None and pinned is not None
    try:
        return _pull_from(settings, store, client, ref, pinned, data, ctype, want, explicit, progress)
    finally:
        client.close()


def _pull_from(settings: Settings, store: Store, client: RegistryClient, ref: Reference, pinned: Digest,
               data: bytes, ctype: str, want: Platform, explicit: bool, progress: Progress) -> PullResult:
    rec = _reuse_local(store, ref, pinned, data, want, explicit)
    if rec is not None:
        _done(progress, ref, pinned, False)
        return PullResult(ref, pinned, rec, True)

    # Index(es) -> the platform's manifest.
    progress.begin(ref.tag or str(ref.digest), ref.repository)
    mdigest, mdata = pinned, data
    mt = sniff_media_type(data, ctype, str(ref))
    blobs: list[tuple[Digest, bytes]] = []
    depth = 0
    while mt in INDEX_TYPES:
        depth += 1
        if depth > _MAX_NESTING:
            raise ManifestError(f"{ref}: indexes nested more than {_MAX_NESTING} deep")
        blobs.append((mdigest, mdata))
        desc = Index.parse(mdata, f"index {mdigest}", mt).select(want, str(ref))
        if desc.size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{ref}: manifest {desc.digest} is {desc.size} bytes, more than {MAX_MANIFEST_BYTES}")
        what = f"{ref}: manifest {desc.digest}"
        mdata, mtype, _hdr = client.get_manifest(ref.repository, str(desc.digest), what, limit=desc.size)
        verify_bytes(mdata, desc.digest, desc.size, what)
        mdigest = desc.digest
        mt = sniff_media_type(mdata, mtype or desc.media_type, what)
    manifest = Manifest.parse(mdata, f"manifest {mdigest}", mt)

    # Config: small, verified, parsed.
    cdesc = manifest.config
    cwhat = f"{ref}: config {cdesc.digest}"
    cdata = client.get_blob_bytes(ref.repository, cdesc, cwhat)
    verify_bytes(cdata, cdesc.digest, cdesc.size, cwhat)
    config = ImageConfig.parse(cdata, cwhat)
    if len(config.diff_ids) != len(manifest.layers):
        raise ManifestError(f"{ref}: manifest has {len(manifest.layers)} layers but its config lists"
                            f" {len(config.diff_ids)} diff_ids")
    plat = config.platform
    if explicit and depth == 0 and not want.matches(plat.normalized()):
        raise ManifestError(f"{ref}: image is for {plat.normalized()}, not the requested {want}")
    plat = plat.normalized() if plat.architecture else want

    cids = chain_ids(config.diff_ids)
    lease_items = [str(c) for c in cids] + [str(pinned), str(mdigest), str(cdesc.digest)]
    with store.lease("pull", lease_items):
        size = _pull_layers(settings, store, client, ref, manifest, config, cids, progress)
        for d, b in blobs:
            store.write_blob(d, b)
        store.write_blob(mdigest, mdata)
        store.write_blob(cdesc.digest, cdata)
        rec = record_image(store, ref, pinned=pinned, manifest_digest=mdigest, manifest=manifest,
                           config_digest=cdesc.digest, config=config, platform=plat, size=size)
    _done(progress, ref, pinned, True)
    return PullResult(ref, pinned, rec, False)


def _pull_layers(settings: Settings, store: Store, client: RegistryClient, ref: Reference, manifest: Manifest,
                 config: ImageConfig, cids: list[Digest], progress: Progress) -> int:
    present = [has_layer(store, c) for c in cids]
    progress.layers([(d.digest.short, d.size, p) for d, p in zip(manifest.layers, present, strict=True)])
    todo = [i for i, p in enumerate(present) if not p]
    sizes = {i: layer_size(store, cids[i]) for i, p in enumerate(present) if p}
    if todo:
        from ocibox.layers import Unpackers

        workers = max(1, min(settings.config.concurrency, len(todo)))
        # Extraction is GIL-bound: each layer unpacks in a child process of its own (see
        # layers/_forked.py), forked here, in the main thread, before any download thread
        # starts. Layers past the first _MAX_FORKED unpack in their download thread.
        unpackers = Unpackers()
        try:
            for i in todo[:_MAX_FORKED]:
                unpackers.start(i, store, compression=manifest.layers[i].compression, diff_id=config.diff_ids[i],
                                chain_id=cids[i], parent=cids[i - 1] if i else None,
                                what=f"{ref}: layer {manifest.layers[i].digest}")
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="layer") as pool:
                futures: dict[Future[int], int] = {}
                for i in todo:
                    parent = cids[i - 1] if i else None
                    fut = pool.submit(_pull_layer, store, client, ref, manifest.layers[i], config.diff_ids[i],
                                      cids[i], parent, progress, unpackers, i)
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


def _pull_layer(store: Store, client: RegistryClient, ref: Reference, desc: Descriptor, diff_id: Digest,
                cid: Digest, parent: Digest | None, progress: Progress, unpackers: Unpackers | None = None,
                index: int = -1) -> int:
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
                stream = client.open_blob(ref.repository, desc, what, partial=partial, on_bytes=counted)
                reader = VerifyingReader(stream, desc.digest, desc.size, what)
                child = unpackers.take(index) if unpackers is not None and attempt == 1 else None
                try:
                    if child is not None:
                        size = child.run(reader)
                    else:
                        size = unpack_layer(store, reader, compression=desc.compression, diff_id=diff_id,
                                            chain_id=cid, parent=parent, what=what)
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
