"""Stacking layers: overlay options (pure), mounting a rootfs, the copied-rootfs fallback."""

from __future__ import annotations

import os
from pathlib import Path

from ocibox._contextlib import suppress
from ocibox.errors import RuntimeSetupError, StoreError
from ocibox.linux import syscalls
from ocibox.rootless import is_rootless
from ocibox.store import ImageRecord, Store, layer_row, remove_tree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# The legacy mount(2) data argument is one page; the kernel copies at most PAGE_SIZE - 1 bytes.
OPTIONS_LIMIT = 4095


def _escape(path: str) -> str:
    # overlayfs' option parser takes backslash escapes; ':' separates lowers, ',' options.
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def overlay_options(lowers: list[str], upper: str | None = None, work: str | None = None, *,
                    userxattr: bool = False) -> str:
    """Mount data for overlayfs: ``lowerdir=TOP:...:BOTTOM[,upperdir=U,workdir=W][,userxattr]``.

    ``lowers`` are top layer first; ``userxattr``: overlayfs' own xattrs are ``user.overlay.*`` (the
    form a mount in a user namespace reads and writes). Pure: nothing is looked up or checked on disk."""
    if not lowers:
        raise ValueError("overlay needs at least one lower directory")
    if (upper is None) != (work is None):
        raise ValueError("overlay needs both upperdir and workdir, or neither")
    opts = "lowerdir=" + ":".join(_escape(p) for p in lowers)
    if upper is not None and work is not None:
        opts += f",upperdir={_escape(upper)},workdir={_escape(work)}"
    if userxattr:
        opts += ",userxattr"
    return opts


def image_lowerdirs(store: Store, record: ImageRecord) -> list[Path]:
    """The ``diff/`` directories of an image's layers, top layer first."""
    out = []
    for layer in reversed(record.layers):
        d = store.layer_dir(layer.chain_id) / "diff"
        if not d.is_dir():
            raise StoreError(
                f"layer {layer.chain_id} of image {record.id.short} is missing from the store;"
                " pull the image again or run 'ocibox verify --repair'"
            )
        out.append(d)
    return out


def _short_lowers(store: Store, record: ImageRecord) -> list[str]:
    """``l/<short>`` for each layer, top first (relative to ``store.layers``)."""
    out = []
    for layer in reversed(record.layers):
        row = layer_row(store, layer.chain_id)
        if row is None or not (store.links / row[0]).exists():
            raise StoreError(
                f"layer {layer.chain_id} of image {record.id.short} is missing from the store;"
                " pull the image again or run 'ocibox verify --repair'"
            )
        out.append(f"l/{row[0]}")
    return out


_probed: dict[str, bool] = {}  # _overlay_works per tmp dir, once per process (not functools: ~2 ms)


def _overlay_works(tmp: str) -> bool:
    if tmp not in _probed:
        _probed[tmp] = _probe_overlay(tmp)
    return _probed[tmp]


def _probe_overlay(tmp: str) -> bool:
    """Whether overlayfs mounts here: kernel support, and a store filesystem it accepts
    (d_type, xattrs). Probed once per process by a real mount of two tiny lowers, an
    upper and a work dir under the store's ``tmp/``."""
    try:
        with open("/proc/filesystems") as f:
            if not any(line.split()[-1] == "overlay" for line in f if line.strip()):
                return False
    except OSError:
        return False
    import tempfile

    probe = tempfile.mkdtemp(prefix=f"{os.getpid()}.overlay-probe-", dir=tmp)
    try:
        for d in ("l1", "l2", "u", "w", "m"):
            os.mkdir(os.path.join(probe, d))
        opts = overlay_options([f"{probe}/l1", f"{probe}/l2"], f"{probe}/u", f"{probe}/w", userxattr=is_rootless())
        try:
            syscalls.mount("overlay", f"{probe}/m", "overlay", 0, opts)
        except OSError:
            return False
        syscalls.umount(f"{probe}/m", syscalls.MNT_DETACH)
        return True
    finally:
        remove_tree(Path(probe))


def overlay_supported(store: Store) -> bool:
    store.ensure()
    return _overlay_works(str(store.tmp))


def _rel_if_inside(path: str, base: Path) -> str:
    rel = os.path.relpath(path, base)
    return rel if len(rel) < len(path) and not rel.startswith("../../") else path


def _bind(source: str, target: str, readonly: bool) -> None:
    syscalls.mount(source, target, None, syscalls.MS_BIND | syscalls.MS_REC)
    if readonly:
        syscalls.mount(None, target, None, syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY)


def copy_dir_for(target: Path) -> Path:
    """Where the fallback keeps the copied rootfs of a mount without an upper dir."""
    return target.parent / f".{target.name}.rootfs-copy"


def mount_rootfs(store: Store, record: ImageRecord, target: Path, **how: Any) -> None:
    """Mount the image's rootfs at ``target`` in the caller's mount namespace, now: ``prepare_rootfs``'s
    mount, called at once (``how``: its keywords)."""
    prepare_rootfs(store, record, target, **how)()


def prepare_rootfs(
    store: Store,
    record: ImageRecord,
    target: Path,
    *,
    upper: Path | None,
    work: Path | None,
    readonly: bool = False,
    warn: Callable[[str], None] | None = None,
) -> Callable[[], None]:
    """The image's rootfs, to be mounted at ``target`` by the returned function, in the mount namespace
    of whoever calls it. What reads the store's database (the layers' short links) and checks the
    layers happens now; the mount reads no database: a container's PID 1 calls it, and forked from the
    caller it would open a connection of its own first (one never crosses a fork), a millisecond or
    two on the way to the container's exec.

    Overlay of the layers (short links relative to ``store.layers``, so 128+
    layers fit in one page of options), with ``upper``/``work`` when given. A
    one-layer image without an upper dir is a bind mount. Where overlayfs does
    not work, the merged rootfs is copied (into ``upper`` when given) and bound,
    and ``warn`` is told so (one line, for the user).
    The process's cwd is changed for the mount and restored: call it from a
    single-threaded process (or a child).
    """
    if not record.layers:
        raise StoreError(f"image {record.id.short} has no layers")
    target_s = os.path.abspath(target)
    upper_s = os.path.abspath(upper) if upper is not None else None
    work_s = os.path.abspath(work) if work is not None else None
    if (upper_s is None) != (work_s is None):
        raise RuntimeSetupError("mounting a rootfs needs both an upper and a work directory, or neither")
    diffs = image_lowerdirs(store, record)
    overlay = len(diffs) > 1 or upper_s is not None
    opts: str | BaseException = ""
    if overlay:
        try:
            opts = _overlay_options_of(store, record, upper_s, work_s)
        except (StoreError, RuntimeSetupError) as e:
            opts = e

    def mount() -> None:
        try:
            if overlay:
                # Try the overlay first; probe whether overlayfs works here only when it failed (the
                # probe is a real mount of its own: a warm run should not pay for it every time).
                try:
                    if isinstance(opts, BaseException):
                        raise opts
                    _mount_overlay(store, target_s, opts, readonly)
                    return
                except (OSError, StoreError, RuntimeSetupError):
                    if overlay_supported(store):
                        raise  # an OSError is named by the handler below
            if not overlay_supported(store):
                if warn is not None:
                    warn(f"overlayfs is not usable for the store {store.root}; using a copied rootfs (slower)")
                dest = Path(upper_s) if upper_s is not None else copy_dir_for(Path(target_s))
                dest.mkdir(parents=True, exist_ok=True)
                if not any(dest.iterdir()):
                    # the extraction modules (tarfile, ...) load only for this fallback, not on a warm run
                    from ocibox.layers._merged import copy_merged

                    copy_merged(diffs, dest)
                _bind(str(dest), target_s, readonly or upper_s is None)
                return
            _bind(str(diffs[0]), target_s, True)  # one layer, no upper: a read-only bind
        except OSError as e:
            raise RuntimeSetupError(
                f"cannot mount the rootfs of image {record.id.short} at {target_s}: {e.strerror or e}") from None

    return mount


def _overlay_options_of(store: Store, record: ImageRecord, upper_s: str | None, work_s: str | None) -> str:
    """The overlay's options for an image's layers (relative to ``store.layers``)."""
    lowers = _short_lowers(store, record)
    if upper_s is not None and work_s is not None:
        upper_s, work_s = _rel_if_inside(upper_s, store.layers), _rel_if_inside(work_s, store.layers)
    opts = overlay_options(lowers, upper_s, work_s, userxattr=is_rootless())
    if len(opts.encode()) > OPTIONS_LIMIT:
        raise RuntimeSetupError(
            f"image {record.id.short} has too many layers ({len(lowers)}) for one page of overlay options"
        )
    return opts


def _mount_overlay(store: Store, target_s: str, opts: str, readonly: bool) -> None:
    try:
        cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        cwd = -1  # the cwd was removed: go back to /
    try:
        os.chdir(store.layers)
        syscalls.mount("overlay", target_s, "overlay", syscalls.MS_RDONLY if readonly else 0, opts)
    finally:
        with suppress(OSError):
            if cwd >= 0:
                os.fchdir(cwd)
                os.close(cwd)
            else:
                os.chdir("/")
