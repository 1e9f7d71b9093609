"""The store: database, image records, and the cache verbs (images, rmi, prune, df, inspect, verify)."""

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
from ocibox.cache._store import Store, default_root, process_start_time, remove_tree

__all__ = [
    "ContainerRecord",
    "ImageRecord",
    "LayerRef",
    "Store",
    "add_container",
    "default_root",
    "find_image",
    "finish_container",
    "get_container",
    "list_containers",
    "live_containers",
    "load_image",
    "new_container_id",
    "process_start_time",
    "record_image",
    "remove_tree",
    "set_container_pid",
    "touch_image",
]
