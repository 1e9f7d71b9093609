"""``rmi``: untag, then sweep what the images left without a name used (see ``ocibox.store._gc``
for the order of a sweep)."""

from __future__ import annotations

from ocibox._record import record
from ocibox.cache._containers import mounted_images
from ocibox.digest import Digest
from ocibox.errors import ImageNotFound, InUseError, OciboxError, UsageError
from ocibox.reference import Reference
from ocibox.settings import Settings
from ocibox.store import (
    ContainerRecord,
    Refs,
    Store,
    Trash,
    delete_image,
    delete_layers,
    find_image,
    image_digests,
    image_named,
    image_tags,
    remove_name,
    remove_tags,
    using_containers,
)


@record
class Untagged:
    """A name removed: ``repository:tag`` or ``repository@digest``."""

    ref: Reference


@record
class Deleted:
    """An image (``kind`` "image") or a layer ("layer", by chain id) deleted from the store."""

    kind: str
    id: Digest


def remove_images(settings: Settings, names: list[str], *, force: bool) -> list[Untagged | Deleted]:
    """docker's ``rmi``: untag each name; an image none of whose names is left is deleted with
    its layers and blobs that no other image uses. All or nothing: when one name cannot be
    removed (unknown, in use by a running container, ambiguous without ``force``), nothing is.
    Returns what was done, in order."""
    store = Store(settings.root)
    trash = Trash(store)
    out: list[Untagged | Deleted] = []
    try:
        with store.lock("gc"):
            leased = store.leased() | mounted_images(store)
            live = using_containers(store)
            with store.transaction():
                before = Refs.load(store)
                deleted: list[Digest] = []
                for text in names:
                    out += _untag(store, text, force=force, leased=leased, live=live, deleted=deleted)
                gone_layers, gone_blobs = _garbage_of(before, Refs.load(store), deleted, leased)
                delete_layers(store, gone_layers)
            for c in gone_layers:
                trash.take_layer(c, before.layers.get(c))
                out.append(Deleted("layer", c))
            for b in gone_blobs:
                trash.take_blob(b)
    finally:
        trash.empty()
    return out


def _untag(store: Store, text: str, *, force: bool, leased: set[Digest], live: list[ContainerRecord],
           deleted: list[Digest]) -> list[Untagged | Deleted]:
    ref: Reference | None
    try:
        ref = Reference.parse(text)
    except OciboxError:
        ref = None
    done: list[Untagged | Deleted] = []
    iid: Digest | None = None
    if ref is not None and (ref.digest is not None or ref.tag is not None):
        iid = image_named(store, ref)
        if iid is not None:
            name = Reference(ref.registry, ref.repository, None, ref.digest) if ref.digest is not None else ref
            if ref.digest is None and len(image_tags(store, iid)) == 1:
                _check_not_in_use(iid, text, leased, live, force=force)
            remove_name(store, name)
            done.append(Untagged(name))
    if iid is None:
        # An image id (or prefix), or a name@manifest-digest: remove every name of the image.
        try:
            iid = find_image(store, text).id
        except ImageNotFound:
            raise ImageNotFound(f"no such image: {text} (see 'ocibox images')") from None
        tags = image_tags(store, iid)
        repos = {r.name for r in tags} | {r.name for r in image_digests(store, iid)}
        if len(repos) > 1 and not force:
            raise UsageError(f"unable to delete {iid.short} (must be forced): the image is referenced in "
                             f"{len(repos)} repositories; remove it by name, or pass -f to remove every name")
        _check_not_in_use(iid, text, leased, live, force=force)
        done += [Untagged(t) for t in tags]
        remove_tags(store, iid)
    if not image_tags(store, iid):
        # The last tag is gone: the digests go with it (docker), then the image; but an image a stopped
        # container uses stays (untagged only, with -f) for as long as the container exists.
        if not _check_not_in_use(iid, text, leased, live, force=force):
            return done
        done += [Untagged(d) for d in image_digests(store, iid)]
        delete_image(store, iid)
        deleted.append(iid)
        done.append(Deleted("image", iid))
    return done


def _check_not_in_use(iid: Digest, text: str, leased: set[Digest], users: list[ContainerRecord], *,
                      force: bool) -> bool:
    """Refuse when a running container or a live process uses the image; a stopped container too, unless
    ``force`` (docker: rmi -f then untags only). True when the image itself may go."""
    stopped = None
    for c in users:
        if c.image_id == iid:
            if c.alive:
                raise InUseError(f"unable to remove image {text} ({iid.short}): running container {c.id[:12]} uses it; "
                                 "stop the container first")
            stopped = c
    if stopped is not None and not force:
        raise InUseError(f"unable to remove image {text} ({iid.short}): stopped container {stopped.id[:12]} uses it; "
                         "remove the container first (ocibox rm), or pass -f to untag the image only")
    if iid in leased:
        raise InUseError(f"unable to remove image {text} ({iid.short}): it is in use by a running ocibox process "
                         "or mounted by 'ocibox image mount'; wait for it to finish or run 'ocibox image umount'")
    return stopped is None


def _garbage_of(before: Refs, after: Refs, deleted: list[Digest], leased: set[Digest]) -> tuple[list[Digest], list[Digest]]:
    """Layers and blobs of the ``deleted`` images (as ``before`` knew them) that no image left
    (``after``) and no lease uses."""
    if not deleted:
        return [], []
    keep_layers = after.with_ancestors(after.used_layers(after.images) | (leased & set(after.layers)))
    keep_blobs = after.used_blobs(after.images) | leased
    layers = before.with_ancestors(before.used_layers(deleted))
    gone_layers = sorted(c for c in layers if c in after.layers and c not in keep_layers)
    gone_blobs = sorted(b for b in before.used_blobs(deleted) if b not in keep_blobs)
    return gone_layers, gone_blobs
