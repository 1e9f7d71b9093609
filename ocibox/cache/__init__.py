"""The store: database, image records, and the cache verbs (images, rmi, prune, df, inspect, verify)."""

from ocibox.cache._images import ImageRecord, LayerRef, find_image, load_image, record_image, touch_image
from ocibox.cache._store import Store, default_root, process_start_time, remove_tree

__all__ = [
    "ImageRecord",
    "LayerRef",
    "Store",
    "default_root",
    "find_image",
    "load_image",
    "process_start_time",
    "record_image",
    "remove_tree",
    "touch_image",
]
