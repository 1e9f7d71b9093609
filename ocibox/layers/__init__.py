"""Layer store: safe unpacking of layer streams, whiteouts, overlay mount options, image mount/export.

Public surface::

    unpack_layer(store, stream, *, compression, diff_id, chain_id, parent, what) -> int
    image_lowerdirs(store, record) -> list[Path]            # top layer first
    overlay_options(lowers, upper=None, work=None) -> str   # pure
    prepare_rootfs(store, record, target, *, upper, work, readonly=False, warn=None) -> mount()
                                                            # the store read now, the mount when called
    mount_rootfs(store, record, target, **same) -> None     # prepare_rootfs(...)() at once
    mount_image(settings, name, *, warn=None) -> Path / umount_image(settings, name)
    export_image(settings, name, output)                    # output: a path or an open binary stream
    rootless_overlay(store) -> "kernel" | "fuse"            # without root: which overlay mounts (probed once)
    FuseRootfs(store, record, target, upper, work)          # its fuse-overlayfs rootfs, held outside the container
"""

from __future__ import annotations

from ocibox._lazy import lazy_getattr

TYPE_CHECKING = False  # typing is not imported on the run path (5 ms)
if TYPE_CHECKING:
    from ocibox.layers._forked import Unpackers
    from ocibox.layers._fuse import FuseRootfs, rootless_overlay
    from ocibox.layers._image import export_image, mount_image, umount_image, write_flat_tar
    from ocibox.layers._merged import copy_merged, walk_merged
    from ocibox.layers._mount import (
        image_lowerdirs,
        mount_rootfs,
        overlay_options,
        overlay_supported,
        prepare_rootfs,
    )
    from ocibox.layers._unpack import unpack_layer

_TABLE = {
    "Unpackers": "_forked",
    "FuseRootfs": "_fuse",
    "rootless_overlay": "_fuse",
    "export_image": "_image",
    "mount_image": "_image",
    "umount_image": "_image",
    "write_flat_tar": "_image",
    "copy_merged": "_merged",
    "walk_merged": "_merged",
    "image_lowerdirs": "_mount",
    "mount_rootfs": "_mount",
    "overlay_options": "_mount",
    "overlay_supported": "_mount",
    "prepare_rootfs": "_mount",
    "unpack_layer": "_unpack",
}

__getattr__ = lazy_getattr(__name__, _TABLE)

__all__ = [
    "FuseRootfs",
    "Unpackers",
    "copy_merged",
    "export_image",
    "image_lowerdirs",
    "mount_image",
    "mount_rootfs",
    "overlay_options",
    "overlay_supported",
    "prepare_rootfs",
    "rootless_overlay",
    "umount_image",
    "unpack_layer",
    "walk_merged",
    "write_flat_tar",
]
