"""Rootless mode: ocibox for a user without root, in user namespaces.

A mode, not a fork: the same store, layer and runner code runs; what changes is who owns what. The
user's containers get a user namespace in their OCI config (container root = the user, container ids
1..N = the user's subordinate ids, written by the lifecycle core through newuidmap/newgidmap), layers
are unpacked in a user namespace with the same maps (so files land with the mapped owners on disk),
overlay is mounted inside the container's namespaces with ``userxattr``, the network is a user-mode
stack (slirp4netns or pasta) and cgroups are used only where the user has a delegated cgroup v2 subtree.
What cannot be had without root is one line (``RootlessError``) saying why and what to do.

Public surface (loaded lazily)::

    is_rootless() / in_userns()            the mode; already root of a namespace of our own
    IdMaps current() maps_for() parse_subids() of_process() initial_userns() OVERFLOW_ID
    write_maps(pid, uids, gids)            a new user namespace's maps (root: direct; user: newuidmap)
    enter(maps=None, mount=True)           this process into a new user (and mount) namespace
    in_userns_call(fn, *args)              fn in a forked child inside one, its result back
    namespace_maps()                       the maps of a new namespace made from here (host ids, or the
                                           identity inside a namespace of ocibox's own)
    runtime_dir() config_file() config_home()
    warn_single(maps, root) howto(maps)    the one-time warning of a user without subordinate ids; the fix
"""

from __future__ import annotations

from ocibox._lazy import lazy_getattr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocibox.rootless._ids import (
        OVERFLOW_ID,
        IdMaps,
        current,
        initial_userns,
        maps_for,
        of_process,
        parse_subids,
    )
    from ocibox.rootless._mode import in_userns, is_rootless
    from ocibox.rootless._paths import config_file, config_home, runtime_dir
    from ocibox.rootless._userns import (
        enter,
        in_userns_call,
        namespace_maps,
        write_maps,
    )
    from ocibox.rootless._warn import howto, warn_single

_TABLE = {
    **dict.fromkeys(("OVERFLOW_ID", "IdMaps", "current", "initial_userns", "maps_for", "of_process",
                     "parse_subids"), "_ids"),
    **dict.fromkeys(("config_file", "config_home", "runtime_dir"), "_paths"),
    **dict.fromkeys(("in_userns", "is_rootless"), "_mode"),
    **dict.fromkeys(("enter", "in_userns_call", "namespace_maps", "write_maps"), "_userns"),
    **dict.fromkeys(("howto", "warn_single"), "_warn"),
}

__getattr__ = lazy_getattr(__name__, _TABLE)

__all__ = ["OVERFLOW_ID", "IdMaps", "config_file", "config_home", "current", "enter", "howto", "in_userns", "in_userns_call",
           "initial_userns", "is_rootless", "maps_for", "namespace_maps", "of_process", "parse_subids", "runtime_dir", "warn_single",
           "write_maps"]
