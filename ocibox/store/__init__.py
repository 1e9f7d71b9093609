"""The store: paths, the database (every SQL statement of ocibox is in this package), temporary
work, locks, leases, and the records read from it. It imports neither the puller, the layer store
nor the runner: everything else builds on it.

Public surface (loaded lazily: ``ocibox run`` pays only for what it uses)::

    Store(root)                      layout, db (one connection per thread), transaction(), mkdtemp(),
                                     blobs, lock(), lease(), leased(), clean_tmp()
    default_root() remove_tree() disk_error() tmp_owner_alive()
    ImageRecord LayerRef             record_image() load_image() find_image() touch_image()
                                     image_for_manifest()
    has_layer() layer_row() layer_size() record_layer() short_name() SHORT_LEN
    ContainerRecord                  add_container() set_container_pid() finish_container()
                                     get_container() list_containers() live_containers() new_container_id()
"""

from __future__ import annotations

from ocibox._lazy import lazy_getattr

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (5 ms of ocibox run)
if TYPE_CHECKING:
    from ocibox.store._containers import (
        ContainerRecord,
        add_container,
        finish_container,
        get_container,
        list_containers,
        live_containers,
        new_container_id,
        set_container_pid,
    )
    from ocibox.store._images import (
        ImageRecord,
        LayerRef,
        find_image,
        image_for_manifest,
        load_image,
        record_image,
        touch_image,
    )
    from ocibox.store._layers import SHORT_LEN, has_layer, layer_row, layer_size, record_layer, short_name
    from ocibox.store._store import Store, default_root, disk_error, remove_tree, tmp_owner_alive

_TABLE = {
    **dict.fromkeys(("ContainerRecord", "add_container", "finish_container", "get_container", "list_containers",
                     "live_containers", "new_container_id", "set_container_pid"), "_containers"),
    **dict.fromkeys(("ImageRecord", "LayerRef", "find_image", "image_for_manifest", "load_image", "record_image",
                     "touch_image"), "_images"),
    **dict.fromkeys(("SHORT_LEN", "has_layer", "layer_row", "layer_size", "record_layer", "short_name"), "_layers"),
    **dict.fromkeys(("Store", "default_root", "disk_error", "remove_tree", "tmp_owner_alive"), "_store"),
}

__getattr__ = lazy_getattr(__name__, _TABLE)

__all__ = [
    "SHORT_LEN",
    "ContainerRecord",
    "ImageRecord",
    "LayerRef",
    "Store",
    "add_container",
    "default_root",
    "disk_error",
    "find_image",
    "finish_container",
    "get_container",
    "has_layer",
    "image_for_manifest",
    "layer_row",
    "layer_size",
    "list_containers",
    "live_containers",
    "load_image",
    "new_container_id",
    "record_image",
    "record_layer",
    "remove_tree",
    "set_container_pid",
    "short_name",
    "tmp_owner_alive",
    "touch_image",
]
