"""The id maps of a user without root, as podman makes them: container id 0 is the user's own id, and
container ids 1..N are the user's subordinate ids from /etc/subuid and /etc/subgid (shadow's format,
``NAME_OR_UID:START:COUNT``, one range a line; several ranges of a user follow each other in the
container). Without a subordinate range the map has one id: the user is root inside, nobody else exists.

Pure parsers and builders (``parse_subids``, ``maps_for``) are apart from the readers (``current``,
``of_process``)."""

from __future__ import annotations

import os

from ocibox._record import record
from ocibox.ocispec import IdMapping

SUBUID = "/etc/subuid"
SUBGID = "/etc/subgid"
#: what a container id outside every map becomes on disk and in stat(2): the kernel's overflow id
OVERFLOW_ID = 65534


def parse_subids(text: str, name: str, uid: int) -> list[tuple[int, int]]:
    """The ``(start, count)`` ranges of the user ``name`` (or of ``uid``: shadow accepts either in the
    first field), in the file's order; malformed lines and empty ranges are skipped, as shadow does."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3 or parts[0] not in (name, str(uid)):
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if start >= 0 and count > 0:
            out.append((start, count))
    return out


def build(own: int, ranges: list[tuple[int, int]]) -> tuple[IdMapping, ...]:
    """Container 0 -> ``own``; container 1.. -> the ranges one after another. A range that holds
    ``own`` itself keeps it out (the kernel refuses overlapping maps)."""
    maps = [IdMapping(0, own, 1)]
    inside = 1
    for start, count in ranges:
        pieces = [(start, count)]
        if start <= own < start + count:  # split around the user's own id
            pieces = [(start, own - start), (own + 1, start + count - own - 1)]
        for s, c in pieces:
            if c > 0:
                maps.append(IdMapping(inside, s, c))
                inside += c
    return tuple(maps)


@record
class IdMaps:
    """The maps of one user: ``uids`` and ``gids`` as OCI's linux.uidMappings/gidMappings."""

    uid: int
    gid: int
    user: str
    uids: tuple[IdMapping, ...]
    gids: tuple[IdMapping, ...]

    @property
    def single(self) -> bool:
        """No subordinate range (of uids or of gids): only container id 0 exists."""
        return len(self.uids) == 1 or len(self.gids) == 1

    @property
    def uid_count(self) -> int:
        return sum(m.size for m in self.uids)

    @property
    def gid_count(self) -> int:
        return sum(m.size for m in self.gids)

    def uid_range(self) -> str:
        """The container uids that exist, as text (``0-65536``, ``0`` for a single map)."""
        return _text(self.uid_count)

    def gid_range(self) -> str:
        return _text(self.gid_count)

    def host_uid(self, cid: int) -> int:
        """The host uid of container uid ``cid`` (the overflow id when it is not mapped)."""
        return to_host(self.uids, cid)

    def host_gid(self, cid: int) -> int:
        return to_host(self.gids, cid)


def _text(count: int) -> str:
    return "0" if count == 1 else f"0-{count - 1}"


def to_host(maps: tuple[IdMapping, ...], cid: int) -> int:
    for m in maps:
        if m.container_id <= cid < m.container_id + m.size:
            return m.host_id + cid - m.container_id
    return OVERFLOW_ID


def maps_for(uid: int, gid: int, user: str, subuid: str, subgid: str) -> IdMaps:
    """The maps of ``user`` (``uid``/``gid``) from the texts of /etc/subuid and /etc/subgid."""
    return IdMaps(uid, gid, user, build(uid, parse_subids(subuid, user, uid)),
                  build(gid, parse_subids(subgid, user, uid)))


def parse_map(text: str) -> tuple[IdMapping, ...]:
    """/proc/PID/uid_map (or gid_map): ``inside outside count`` lines."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            out.append(IdMapping(int(parts[0]), int(parts[1]), int(parts[2])))
    return tuple(out)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def of_process(pid: int | str = "self") -> tuple[tuple[IdMapping, ...], tuple[IdMapping, ...]]:
    """The uid and gid maps of a process's user namespace, as its own /proc files show them."""
    return parse_map(_read(f"/proc/{pid}/uid_map")), parse_map(_read(f"/proc/{pid}/gid_map"))


def initial_userns() -> bool:
    """Whether this process is in the host's (initial) user namespace."""
    from ocibox.linux.proc import initial_userns as initial

    return initial()


def current() -> IdMaps:
    """The maps of the user running ocibox. In a user namespace ocibox made (``ocibox unshare``, a
    command that entered one), the maps it was made with: container id 0 is then the host user."""
    if os.geteuid() == 0 and not initial_userns():
        uids, gids = of_process()
        return IdMaps(uids[0].host_id if uids else 0, gids[0].host_id if gids else 0, _name(uids[0].host_id if uids
                                                                                             else 0), uids, gids)
    uid, gid = os.geteuid(), os.getegid()
    name = _name(uid)
    return maps_for(uid, gid, name, _read(SUBUID), _read(SUBGID))


def _name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
