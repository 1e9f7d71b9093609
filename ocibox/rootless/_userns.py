"""User namespaces: writing a process's id maps (as root directly, as a user through the setuid helpers
``newuidmap``/``newgidmap`` of Debian's ``uidmap``, the only privileged programs rootless ocibox uses),
and running ocibox's own work inside one (``enter`` for this process, ``in_userns`` for a function in a
child): where ownership matters (unpacking a layer, removing a tree with files of subordinate owners,
reading every file of a layer), the process must be root of a namespace that maps those owners."""

from __future__ import annotations

import contextlib
import os

from ocibox import errors
from ocibox.ocispec import IdMapping
from ocibox.rootless._ids import IdMaps, current
from ocibox.rootless._mode import in_userns, is_rootless  # noqa: F401 - is_rootless re-exported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    _T = TypeVar("_T")

NEWUIDMAP = "newuidmap"
NEWGIDMAP = "newgidmap"
_HELPER_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin")
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000


def namespace_maps() -> IdMaps:
    """The maps a new user namespace made from here gets: the user's (host ids), or, from inside a
    namespace of ocibox's own, the same ids again (its ids 0..N are the user's already)."""
    maps = current()
    if not in_userns():
        return maps
    from ocibox._record import replace

    # one extent per extent of this namespace's own map: an extent of a child's map must lie inside
    # one extent of its parent's
    return replace(maps, uids=tuple(IdMapping(m.container_id, m.container_id, m.size) for m in maps.uids),
                   gids=tuple(IdMapping(m.container_id, m.container_id, m.size) for m in maps.gids))


def _helper(name: str) -> str:
    for d in _HELPER_DIRS:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    raise errors.RootlessError(f"{name} is not installed: rootless containers with subordinate ids need the "
                               "setuid helpers newuidmap and newgidmap (Debian/Ubuntu: apt-get install uidmap)")


def _triples(maps: tuple[IdMapping, ...]) -> list[str]:
    out = []
    for m in maps:
        out += [str(m.container_id), str(m.host_id), str(m.size)]
    return out


def _text(maps: tuple[IdMapping, ...]) -> str:
    return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def write_maps(pid: int, uids: tuple[IdMapping, ...], gids: tuple[IdMapping, ...]) -> None:
    """Give the new user namespace of process ``pid`` its maps (OCI's linux.uidMappings/gidMappings).

    As the host's root: written to /proc/PID/uid_map and gid_map. As a user mapping only their own ids
    (one id each): written too, with setgroups denied first (the kernel's rule for an unprivileged
    gid_map). Any other map: through newuidmap and newgidmap, which check it against /etc/subuid and
    /etc/subgid (run side by side)."""
    own = (IdMapping(0, os.geteuid(), 1),), (IdMapping(0, os.getegid(), 1),)
    # root of this namespace (the host's, or of a namespace ocibox made: maps then name its own ids)
    root = os.geteuid() == 0
    try:
        if root or (uids == own[0] and gids == own[1]):
            if not root:
                _write(f"/proc/{pid}/setgroups", "deny")
            if uids:
                _write(f"/proc/{pid}/uid_map", _text(uids))
            if gids:
                _write(f"/proc/{pid}/gid_map", _text(gids))
            return
    except OSError as e:
        raise errors.RootlessError(f"cannot write the id maps of the user namespace of process {pid}: "
                                   f"{e.strerror}") from None
    _spawn_helpers(pid, uids, gids)


def _spawn_helpers(pid: int, uids: tuple[IdMapping, ...], gids: tuple[IdMapping, ...]) -> None:
    import fcntl

    running = []
    for name, maps in ((NEWUIDMAP, uids), (NEWGIDMAP, gids)):
        if not maps:
            continue
        r, w = os.pipe2(os.O_CLOEXEC)
        fcntl.fcntl(w, fcntl.F_SETFD, 0)
        try:
            child = os.posix_spawn(_helper(name), [name, str(pid), *_triples(maps)], dict(os.environ),
                                   file_actions=[(os.POSIX_SPAWN_DUP2, w, 2), (os.POSIX_SPAWN_CLOSE, r)])
        finally:
            os.close(w)
        running.append((name, maps, child, r))
    problems = []
    for name, maps, child, r in running:
        err = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(r, 4096):
                err += chunk
        os.close(r)
        _, status = os.waitpid(child, 0)
        if status != 0:
            said = err.decode(errors="replace").strip().splitlines()
            problems.append(f"{name} {' '.join(_triples(maps))}: {said[-1] if said else f'status {status}'}")
    if problems:
        raise errors.RootlessError("cannot map the container's ids: " + "; ".join(problems) + " (the ranges must be "
                                   "the user's own in /etc/subuid and /etc/subgid, and newuidmap/newgidmap setuid root)")


def _become_root() -> None:
    """In a new user namespace whose maps are written: uid and gid 0 (the host root's own ids, if it
    made the namespace, are not mapped there)."""
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def enter(maps: IdMaps | None = None, *, mount: bool = True) -> None:
    """Make this process root of a new user namespace with ``maps`` (the user's, by default), and
    (``mount``) of a new mount namespace owned by it. Must be called while the process has one
    thread (the kernel refuses unshare(CLONE_NEWUSER) otherwise). The maps are written by a forked
    helper that stays outside the new namespace (a setuid helper run from inside it would not be)."""
    maps = maps or namespace_maps()
    flags = CLONE_NEWUSER | (CLONE_NEWNS if mount else 0)
    from ocibox.linux import syscalls

    if maps.single and os.geteuid() != 0:
        try:
            syscalls.unshare(flags)
            # Only the user's own ids: the namespace's creator may write them itself.
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"0 {maps.uid} 1\n")
            _write("/proc/self/gid_map", f"0 {maps.gid} 1\n")
        except OSError as e:
            raise errors.RootlessError(f"cannot make a user namespace: {e.strerror} (is "
                                       "/proc/sys/user/max_user_namespaces 0?)") from None
        _become_root()
        _private_mounts(mount)
        return
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    me = os.getpid()
    helper = os.fork()
    if helper == 0:  # pragma: no cover - the helper outside
        code = 1
        try:
            os.close(go_w)
            os.close(done_r)
            if os.read(go_r, 1) == b"U":
                write_maps(me, maps.uids, maps.gids)
                os.write(done_w, b"M")
                code = 0
        except BaseException as e:
            line, _ = errors.to_wire(e)
            with contextlib.suppress(OSError):
                os.write(done_w, line)
        os._exit(code)
    os.close(go_r)
    os.close(done_w)
    try:
        try:
            syscalls.unshare(flags)
        except OSError as e:
            raise errors.RootlessError(f"cannot make a user namespace: {e.strerror} (is "
                                       "/proc/sys/user/max_user_namespaces 0?)") from None
        os.write(go_w, b"U")
        answer = b""
        while chunk := os.read(done_r, 4096):
            answer += chunk
        if answer != b"M":
            raise errors.from_wire(answer, errors.RootlessError) or errors.RootlessError(
                "the helper that writes the id maps died")
    finally:
        os.close(go_w)
        os.close(done_r)
        os.waitpid(helper, 0)
    _become_root()
    _private_mounts(mount)


def _private_mounts(mount: bool) -> None:
    if mount:
        from ocibox.linux import syscalls

        # Nothing mounted here reaches the host's namespace (it could not anyway: the copies of its
        # mounts are locked and slaved), and nothing of the host's later mounts needs to reach us.
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)


def in_userns_call(fn: Callable[..., _T], *args: Any, maps: IdMaps | None = None, mount: bool = True,
                   error: type[errors.OciboxError] = errors.RootlessError) -> _T:
    """``fn(*args)`` run in a forked child that is root of a new user namespace with the user's maps
    (and a mount namespace of its own); its result (pickled) or its error comes back (an error that is
    no OciboxError as ``error``). The calling process may have threads: the child has one."""
    import pickle

    maps = maps or namespace_maps()
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(r)
            enter(maps, mount=mount)
            data = b"R" + pickle.dumps(fn(*args))
        except BaseException as e:
            data, code = errors.to_wire(e, "in the user namespace: ")
        with contextlib.suppress(OSError):
            view = memoryview(data)
            while view:
                view = view[os.write(w, view):]
        os._exit(code)
    os.close(w)
    data = b""
    try:
        while chunk := os.read(r, 1 << 16):
            data += chunk
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    if data.startswith(b"R"):
        return pickle.loads(data[1:])  # type: ignore[no-any-return]
    raise errors.from_wire(data, error) or error("the process working in the user namespace died")
