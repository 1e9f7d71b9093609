"""The cache verbs above the store: images, inspect, rmi, prune, system df, verify, and the cleanup of
containers whose process is gone. They return data (docker's documents for ``images``, ``inspect`` and
``system df``, records for ``rmi`` and ``prune``, problem descriptions for ``verify``); the CLI renders
it. Every SQL statement they need is in ``ocibox.store``.

Public surface (loaded lazily)::

    list_images(settings, *, all_) -> list[dict]            docker's ``images --format json`` rows
    inspect_image(settings, name) -> dict                    docker's ``inspect``
    remove_images(settings, names, *, force) -> list[Untagged | Deleted]
    prune(settings, *, all_, dry_run, keep_storage=None, until=None, confirm=None) -> PruneResult
    parse_prune_filters(filters) -> until | None             ``--filter until=DURATION``
    disk_usage(settings, *, verbose) -> dict                 ``system df``, adds up to du
    verify(settings, *, repair) -> list[str]                 one line per problem
    clean_stale_containers(store) -> list[str]               containers whose process is gone
"""

from __future__ import annotations

from ocibox._lazy import lazy_getattr

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (5 ms of ocibox run)

if TYPE_CHECKING:
    from ocibox.cache._containers import clean_stale_containers
    from ocibox.cache._listing import inspect_image, list_images
    from ocibox.cache._prune import PrunedImage, PruneResult, parse_prune_filters, prune
    from ocibox.cache._rmi import Deleted, Untagged, remove_images
    from ocibox.cache._usage import disk_usage
    from ocibox.cache._verify import verify

_TABLE = {
    "clean_stale_containers": "_containers",
    **dict.fromkeys(("inspect_image", "list_images"), "_listing"),
    **dict.fromkeys(("PruneResult", "PrunedImage", "parse_prune_filters", "prune"), "_prune"),
    **dict.fromkeys(("Deleted", "Untagged", "remove_images"), "_rmi"),
    "disk_usage": "_usage",
    "verify": "_verify",
}

__getattr__ = lazy_getattr(__name__, _TABLE)

__all__ = [
    "Deleted",
    "PruneResult",
    "PrunedImage",
    "Untagged",
    "clean_stale_containers",
    "disk_usage",
    "inspect_image",
    "list_images",
    "parse_prune_filters",
    "prune",
    "remove_images",
    "verify",
]
