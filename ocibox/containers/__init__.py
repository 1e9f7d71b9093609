"""The container verbs above the lifecycle core: ps, inspect, logs, attach, start, stop, kill, restart, rm,
pause, unpause, wait, rename, top, stats, container prune, and the cleanup a monitor runs when its
container's PID 1 exits. They return data; the CLI renders it.

Public surface (loaded lazily)::

    find(store, text) -> ContainerRecord          by id, name or unique id prefix (repairing a stale record)
    list_containers / inspect / top / stats       (_list)
    start / stop / kill / pause / unpause / wait / rename / remove / cleanup / repair (_lifecycle)
    network_view(store, rec) -> Attachments | None   a running container's networks and ports
    logs (_logs) / attach (_attach) / prune_containers
"""

from __future__ import annotations

from ocibox._lazy import lazy_getattr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocibox.containers._attach import attach
    from ocibox.containers._exec import exec_main
    from ocibox.containers._lifecycle import (
        cleanup,
        kill,
        network_view,
        pause,
        remove,
        rename,
        repair,
        repair_all,
        start,
        stop,
        unpause,
        wait,
    )
    from ocibox.containers._list import inspect, list_containers, parse_filters, stats, top
    from ocibox.containers._logs import logs
    from ocibox.store import ContainerRecord, Store

_TABLE = {
    "attach": "_attach",
    **dict.fromkeys(("cleanup", "kill", "network_view", "pause", "remove", "rename", "repair", "repair_all", "start",
                     "stop", "unpause", "wait"), "_lifecycle"),
    **dict.fromkeys(("inspect", "list_containers", "parse_filters", "stats", "top"), "_list"),
    "logs": "_logs",
    "exec_main": "_exec",
}

__getattr__ = lazy_getattr(__name__, _TABLE)


def find(store: Store, text: str) -> ContainerRecord:
    """The container named ``text`` (id, name or unique id prefix), its record repaired if it went stale."""
    from ocibox import store as st
    from ocibox.containers._lifecycle import repair

    return repair(store, st.find_container(store, text))


def prune_containers(store: Store, until: float | None = None) -> list[str]:
    """docker container prune: remove every stopped container (created before ``until``); the ids."""
    from ocibox.containers._lifecycle import remove, repair_all
    from ocibox.containers._list import state_word

    gone = []
    for rec in repair_all(store)[0]:
        if state_word(rec) in ("exited", "created") and not rec.alive and (until is None or rec.created < until):
            remove(store, rec)
            gone.append(rec.id)
    return gone


__all__ = [
    "attach",
    "cleanup",
    "exec_main",
    "find",
    "inspect",
    "kill",
    "list_containers",
    "logs",
    "network_view",
    "parse_filters",
    "pause",
    "prune_containers",
    "remove",
    "rename",
    "repair",
    "repair_all",
    "start",
    "stats",
    "stop",
    "top",
    "unpause",
    "wait",
]
