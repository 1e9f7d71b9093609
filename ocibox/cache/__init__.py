"""The cache verbs above the store: images, inspect, rmi, prune, system df, verify, and the cleanup of
containers whose process is gone. They return data; the CLI renders it."""

from __future__ import annotations

from ocibox._lazy import lazy_getattr

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (5 ms of ocibox run)

if TYPE_CHECKING:
    from ocibox.cache._listing import complete_images, inspect_image, list_images, render_table
    from ocibox.cache._prune import prune, remove_images
    from ocibox.cache._usage import disk_usage
    from ocibox.cache._verify import verify
    from ocibox.store import Store

_TABLE = {
    "complete_images": "_listing",
    "inspect_image": "_listing",
    "list_images": "_listing",
    "render_table": "_listing",
    "prune": "_prune",
    "remove_images": "_prune",
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
    "clean_stale_containers",
    "complete_images",
    "disk_usage",
    "inspect_image",
    "list_images",
    "prune",
    "remove_images",
    "render_table",
    "verify",
]
