"""The store: database, image records, and the cache verbs (images, rmi, prune, df, inspect, verify)."""

from __future__ import annotations

from ocibox._lazy import lazy_getattr

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (5 ms of ocibox run)

if TYPE_CHECKING:
    from ocibox.cache._containers import (
        ContainerRecord,
        add_container,
        finish_container,
        get_container,
        list_containers,
        live_containers,
        new_container_id,
        set_container_pid,
    )
    from ocibox.cache._images import ImageRecord, LayerRef, find_image, load_image, record_image, touch_image
    from ocibox.cache._listing import complete_images, inspect_image, list_images, render_table
    from ocibox.cache._prune import prune, remove_images
    from ocibox.cache._store import Store, default_root, process_start_time, remove_tree
    from ocibox.cache._usage import disk_usage
    from ocibox.cache._verify import verify

_TABLE = {
    "ContainerRecord": "_containers",
    "add_container": "_containers",
    "finish_container": "_containers",
    "get_container": "_containers",
    "list_containers": "_containers",
    "live_containers": "_containers",
    "new_container_id": "_containers",
    "set_container_pid": "_containers",
    "ImageRecord": "_images",
    "LayerRef": "_images",
    "find_image": "_images",
    "load_image": "_images",
    "record_image": "_images",
    "touch_image": "_images",
    "complete_images": "_listing",
    "inspect_image": "_listing",
    "list_images": "_listing",
    "render_table": "_listing",
    "prune": "_prune",
    "remove_images": "_prune",
    "Store": "_store",
    "default_root": "_store",
    "process_start_time": "_store",
    "remove_tree": "_store",
    "disk_usage": "_usage",
    "verify": "_verify",
}

__getattr__ = lazy_getattr(__name__, _TABLE)


def clean_stale_containers(store: Store) -> list[str]:
    """Clean up containers whose process is gone (a crash): unmount what is left mounted under
    ``containers/<id>``, drop the rows, remove the directories and the cgroups named after them.
    Returns the ids cleaned. Any command may call it; prune and verify --repair do."""
    from ocibox.cache._gc import Trash, remove_containers, stale_containers

    trash = Trash(store)
    try:
        with store.lock("gc"):
            return remove_containers(store, trash, stale_containers(store))
    finally:
        trash.empty()


__all__ = [
    "ContainerRecord",
    "ImageRecord",
    "LayerRef",
    "Store",
    "add_container",
    "clean_stale_containers",
    "complete_images",
    "default_root",
    "disk_usage",
    "find_image",
    "finish_container",
    "get_container",
    "inspect_image",
    "list_containers",
    "list_images",
    "live_containers",
    "load_image",
    "new_container_id",
    "process_start_time",
    "prune",
    "record_image",
    "remove_images",
    "remove_tree",
    "render_table",
    "set_container_pid",
    "touch_image",
    "verify",
]
