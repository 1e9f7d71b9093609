"""Unpack one layer into the store: decompress, extract safely, verify diff_id, publish.

Thread-safe: the puller calls :func:`unpack_layer` from several worker threads
at once (one per layer, each under its ``layer-<chain>`` lock). Nothing here is
shared between calls; the store gives each thread its own database connection.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

from ocibox.digest import Digest, Readable
from ocibox.errors import LayerError, OciboxError, StoreError
from ocibox.store import Store, record_layer, remove_tree, short_name


def unpack_layer(
    store: Store,
    stream: Readable,
    *,
    compression: str,
    diff_id: Digest,
    chain_id: Digest,
    parent: Digest | None,
    what: str,
    before_publish: Callable[[], None] | None = None,
    ignore_chown_errors: bool = False,
) -> int:
    """Decompress ``stream`` (read to EOF), extract it safely, check its diff_id, publish it.

    Returns the unpacked size in bytes (regular file contents). On any error
    nothing of this layer is left in the store; the error names ``what``.
    ``before_publish`` runs after the diff_id check and before anything is visible;
    it raises to stop the publication (a forked unpacker waits there for the parent's
    word that the compressed blob verified). Without root it must run as root of a user
    namespace with the user's ids (``ocibox pull`` enters one); ``ignore_chown_errors``:
    owners outside them become root (else such an entry is an error).
    """
    # here, not at import: 'ocibox run' reads layer rows through this module but never extracts
    from ocibox.layers._decompress import decompressing_reader
    from ocibox.layers._extract import Owners, extract

    if diff_id.algorithm != "sha256":
        raise LayerError(f"{what}: diff_id {diff_id} is not sha256")
    store.ensure()
    tmp = store.mkdtemp("layer")
    try:
        diff = tmp / "diff"
        diff.mkdir(mode=0o755)
        os.chmod(diff, 0o755)
        hashing, applier = extract(decompressing_reader(stream, compression, what), diff, what,
                                   Owners.here(ignore_chown_errors))
        got = hashing.hash.hexdigest()
        if got != diff_id.hex:
            raise LayerError(
                f"{what}: uncompressed content is sha256:{got}, but the image config says {diff_id}"
                " (diff_id mismatch: truncated or altered layer); pull again or report the image"
            )
        if before_publish is not None:
            before_publish()
        _publish(store, tmp, chain_id=chain_id, diff_id=diff_id, parent=parent, size=applier.size, what=what)
    except BaseException:
        if tmp.exists():
            remove_tree(tmp)
        raise
    return applier.size


def _publish(store: Store, tmp: Path, *, chain_id: Digest, diff_id: Digest, parent: Digest | None,
             size: int, what: str) -> None:
    dest = store.layer_dir(chain_id)
    short = short_name(chain_id)
    try:
        if dest.exists() or dest.is_symlink():
            # A published dir without its row (a crash between rename and commit), or a
            # concurrent publisher: replace it with ours, which is complete and verified.
            stale = store.mkdtemp("stale-layer")
            os.rename(dest, stale / "old")
            remove_tree(stale)
        os.rename(tmp, dest)
        link = store.links / short
        tmp_link = store.links / f".{short}.{os.getpid()}.{threading.get_ident()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_link)
        os.symlink(f"../{chain_id.hex}/diff", tmp_link)
        os.rename(tmp_link, link)
    except OSError as e:
        raise StoreError(f"{what}: cannot publish layer {chain_id}: {e.strerror or e}") from None
    try:
        record_layer(store, chain_id=chain_id, diff_id=diff_id, parent=parent, size=size)
    except OciboxError as e:
        # Not recorded: take the directory back out so nothing half-published stays.
        with contextlib.suppress(OSError):
            os.unlink(store.links / short)
        remove_tree(dest)
        raise StoreError(f"{what}: cannot record layer {chain_id}: {e}") from None
