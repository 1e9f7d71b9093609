"""The cache verbs: ``images``, ``rmi``, ``inspect``, ``prune``, ``verify``, ``system df``. Each parses
its options, calls one function of ``ocibox.cache`` and prints what ``_render`` makes of the result."""

from __future__ import annotations

import json
import sys

from ocibox.cli import _out
from ocibox.errors import UsageError
from ocibox.options import Parser

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ocibox.settings import Settings

IMAGES = (("image", "IMAGE...", ""),)
FORMAT = (("--format",), "str", "FORMAT", "table or json (default: table)")


def images(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, (
        FORMAT,
        (("--digests",), "bool", "", "show digests"),
        (("-a", "--all"), "bool", "", "show all images (also untagged)"),
        (("-q", "--quiet"), "bool", "", "only image ids"),
        (("--no-trunc",), "bool", "", "full ids"),
    ), description="List images in the store.", defaults={"format": "table"}).parse(argv)
    from ocibox import cache
    from ocibox.cli import _render

    rows = cache.list_images(settings, all_=ns["all"])
    _print(rows, ns["format"], lambda: _render.images_table(rows, digests=ns["digests"], quiet=ns["quiet"],
                                                            no_trunc=ns["no_trunc"]))


def rmi(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, ((("-f", "--force"), "bool", "", "remove all tags of the image"),), IMAGES,
                description="Remove images (untag; delete what nothing else uses).").parse(argv)
    from ocibox import cache
    from ocibox.cli import _render

    for line in _render.rmi_lines(cache.remove_images(settings, ns["image"], force=ns["force"])):
        _out(line)


def inspect(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, (), IMAGES, description="Show an image's manifest, config and layers as JSON.").parse(argv)
    from ocibox import cache

    _out(json.dumps([cache.inspect_image(settings, i) for i in ns["image"]], indent=4))


def prune(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, (
        (("-a", "--all"), "bool", "", "also remove images no running container uses"),
        (("--dry-run",), "bool", "", "print what would be removed"),
        (("--keep-storage",), "str", "SIZE", "evict least recently used images to fit SIZE"),
        (("--filter",), "list", "until=DURATION", "only what is older than DURATION (e.g. until=24h)"),
        (("-f", "--force"), "bool", "", "do not ask"),
    ), description="Remove dangling images, unused layers and blobs, leftovers of crashed work.",
        defaults={"keep_storage": None}).parse(argv)
    from ocibox import cache
    from ocibox.cli import _render
    from ocibox.units import parse_size

    all_ = ns["all"]
    until = cache.parse_prune_filters(ns["filter"])
    budget = parse_size(ns["keep_storage"], unlimited=False) if ns["keep_storage"] is not None else None
    ask = not ns["force"] and sys.stdin.isatty()
    if not ns["dry_run"]:
        _repair_containers(settings)
    result = cache.prune(settings, all_=all_, dry_run=ns["dry_run"], keep_storage=budget, until=until,
                         confirm=(lambda: _render.confirm_prune(all_)) if ask else None)
    for line in _render.prune_lines(result):
        _out(line)


def _repair_containers(settings: Settings) -> None:
    """Containers that died with nobody to record it: their records repaired, their networks torn down."""
    from ocibox import containers
    from ocibox.store import Store

    containers.repair_all(Store(settings.root))


def system_prune(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, (
        (("-a", "--all"), "bool", "", "also remove images no container uses (not only dangling ones)"),
        (("-f", "--force"), "bool", "", "do not ask"),
    ), description="Remove stopped containers, unused networks, dangling images and leftovers.").parse(argv)
    if not ns["force"] and sys.stdin.isatty():
        sys.stderr.write("WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at "
                         "least one container\n  - all " + ("images without at least one container associated to "
                         "them" if ns["all"] else "dangling images") + "\nAre you sure you want to continue? [y/N] ")
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return
    from ocibox import cache, containers, network
    from ocibox.cli import _render
    from ocibox.store import Store

    gone = containers.prune_containers(Store(settings.root))
    if gone:
        _out("Deleted Containers:")
        for cid in gone:
            _out(cid)
        _out()
    nets = network.prune(settings)
    if nets:
        _out("Deleted Networks:")
        for name in nets:
            _out(name)
        _out()
    result = cache.prune(settings, all_=ns["all"], dry_run=False, keep_storage=None, until=None, confirm=None)
    for line in _render.prune_lines(result):
        _out(line)


def verify(settings: Settings, argv: list[str], prog: str) -> int:
    ns = Parser(prog, ((("--repair",), "bool", "", "drop what is broken so the next pull fetches it"),),
                description="Re-hash blobs and check layer directories against the database.").parse(argv)
    from ocibox import cache

    if ns["repair"]:
        _repair_containers(settings)
    problems = cache.verify(settings, repair=ns["repair"])
    for line in problems:
        _out(line)
    return 1 if problems and not ns["repair"] else 0


def system_df(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, (
        (("-v", "--verbose"), "bool", "", "also list images, layers and containers"),
        FORMAT,
    ), description="Show disk usage of the store.", defaults={"format": "table"}).parse(argv)
    from ocibox import cache
    from ocibox.cli import _render

    data = cache.disk_usage(settings, verbose=ns["verbose"])
    _print(data, ns["format"], lambda: _render.df_table(data))


def _print(data: Any, format: str, table: Callable[[], list[str]]) -> None:
    """Tables for people, JSON for scripts (``data`` as the cache verb returned it)."""
    if format == "json":
        _out(json.dumps(data, indent=4, default=str))
        return
    if format != "table":
        raise UsageError(f"invalid --format {format!r}: use table or json")
    for line in table():
        _out(line)
