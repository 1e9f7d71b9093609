"""What a sweep of the store needs below the database: the files and directories that are there
(blobs, layer directories, links, container directories, tmp entries), and the trash they are
moved into before they are removed.

Removal order, for a store that survives a crash at any point (rmi, prune and verify --repair):

1. with ``locks/gc`` held exclusively (a pull or run declares what it uses under the same
   lock, shared, before it looks anything up: see ``Store.lease``), decide what is garbage,
   leaving out whatever a live lease names;
2. delete the database rows and commit: from now on nothing lists or reuses the object;
3. rename its directory or file into the trash under ``tmp/`` (one ``rename``: a crash leaves
   garbage in ``tmp/`` that the next command cleans, never a listed-but-broken layer);
4. remove the trash (after the lock is released: nothing can reach it any more).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ocibox._record import record
from ocibox.digest import Digest
from ocibox.errors import UsageError
from ocibox.store._du import DiskUsage
from ocibox.store._store import Store, disk_error, remove_tree

# ----------------------------------------------------------------------------- trash


class Trash:
    """A directory under ``tmp/`` owned by this process, into which objects are renamed before
    removal. If the process dies, the next prune (or ``Store.clean_tmp``) removes it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._dir: Path | None = None
        self._n = 0

    @property
    def dir(self) -> Path:
        if self._dir is None:
            self._dir = self.store.mkdtemp("trash")
        return self._dir

    def take(self, path: Path) -> bool:
        """Move ``path`` into the trash; False if it was not there."""
        if not os.path.lexists(path):
            return False
        self._n += 1
        dest = self.dir / f"{self._n}-{path.name}"
        try:
            os.rename(path, dest)
        except FileNotFoundError:
            return False
        except PermissionError:
            # Renaming a directory to another parent rewrites its '..': it must be writable.
            os.chmod(path, 0o700)
            os.rename(path, dest)
        except OSError as e:
            raise disk_error(e, f"moving {path} out of the store") from None
        return True

    def take_layer(self, chain_id: Digest, short: str | None) -> bool:
        """Move a layer's directory into the trash and drop its link (its row is already deleted)."""
        if short:
            drop_link(self.store, short)
        return self.take(self.store.layer_dir(chain_id))

    def take_blob(self, digest: Digest) -> bool:
        return self.take(self.store.blob_path(digest))

    def measure(self) -> int:
        """Bytes in the trash, as du counts them."""
        return DiskUsage().tree(self._dir) if self._dir is not None else 0

    def empty(self) -> None:
        if self._dir is not None:
            remove_tree(self._dir)
            self._dir = None


# ----------------------------------------------------------------------------- what is on disk


@record
class BlobFile:
    """A file under ``blobs/``: named by a digest, or a stray (``digest`` None)."""

    name: str  # ALGORITHM:NAME
    path: Path
    digest: Digest | None


def blob_files(store: Store) -> list[BlobFile]:
    """Every file under ``blobs/ALGORITHM/``, in directory order."""
    out: list[BlobFile] = []
    try:
        algos = list(os.scandir(store.root / "blobs"))
    except FileNotFoundError:
        return out
    for a in algos:
        if not a.is_dir(follow_symlinks=False):
            continue
        for name in _names(Path(a.path)):
            try:
                digest: Digest | None = Digest.parse(f"{a.name}:{name}")
            except UsageError:
                digest = None
            out.append(BlobFile(f"{a.name}:{name}", Path(a.path) / name, digest))
    return out


def layer_dirs(store: Store) -> list[str]:
    """Names of the entries of ``layers/`` other than the ``l/`` links directory."""
    return [n for n in _names(store.layers) if n != "l"]


def dangling_links(store: Store, shorts: set[str]) -> list[str]:
    """Links in ``layers/l`` that no layer row names."""
    return [n for n in _names(store.links) if n not in shorts]


def link_target(store: Store, short: str) -> str:
    """The name of the layer directory a link in ``layers/l`` points to (``../<hex>/diff``), or ''."""
    try:
        target = os.readlink(store.links / short)
    except OSError:
        return ""
    parts = [p for p in target.split("/") if p and p not in (".", "..", "diff")]
    return parts[-1] if parts else ""


def make_link(store: Store, short: str, chain_id: Digest) -> None:
    """(Re)create the link ``layers/l/<short>`` -> ``../<hex>/diff``."""
    drop_link(store, short)
    os.symlink(f"../{chain_id.hex}/diff", store.links / short)


def drop_link(store: Store, short: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(store.links / short)


def container_dirs(store: Store) -> list[str]:
    """Names of the entries of ``containers/``."""
    return _names(store.containers)


def tmp_entries(store: Store) -> list[str]:
    """Names of the entries of ``tmp/``."""
    return _names(store.tmp)


def _partial_lock_name(name: str) -> str | None:
    """``tmp/partial-<hex>`` is a resumable download kept across processes, used under the
    ``blob-<hex>`` lock (see the puller): in use while that lock is held."""
    if name.startswith("partial-"):
        return "blob-" + name[len("partial-"):]
    return None


def tmp_busy(store: Store, name: str) -> bool:
    """A live process uses the ``tmp/`` entry right now (it holds the entry's lock)."""
    with claim_tmp(store, name) as free:
        return not free


@contextlib.contextmanager
def claim_tmp(store: Store, name: str) -> Iterator[bool]:
    """Take the lock of a ``tmp/`` entry for the block; yields False when a live process holds it
    (the entry is in use: leave it alone)."""
    lock = _partial_lock_name(name)
    if lock is None:
        yield True
        return
    fd = os.open(store.locks / lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _names(path: Path) -> list[str]:
    try:
        with os.scandir(path) as it:
            return [e.name for e in it]
    except (FileNotFoundError, NotADirectoryError):
        return []
