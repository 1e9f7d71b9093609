"""Parsers of ``/proc``: one each for mountinfo, a process's cgroups, its start time and its
capability sets. Everything else in ocibox reads /proc through these.

Pure parsers (``parse_*``) take the text, for unit tests; the readers take a pid (``"self"`` by
default) and return what the parser makes of the file, or an empty result when it is gone.
"""

from __future__ import annotations

import os


class MountEntry:
    """One line of ``/proc/PID/mountinfo`` (proc(5)); paths unescaped."""

    __slots__ = ("fstype", "mount_id", "mount_point", "options", "parent_id", "root", "source", "super_options")

    def __init__(self, mount_id: int, parent_id: int, root: str, mount_point: str, options: str, fstype: str,
                 source: str, super_options: str) -> None:
        self.mount_id, self.parent_id = mount_id, parent_id
        self.root, self.mount_point, self.options = root, mount_point, options
        self.fstype, self.source, self.super_options = fstype, source, super_options

    def __repr__(self) -> str:
        return f"MountEntry({self.mount_point!r}, {self.fstype!r}, root={self.root!r})"


def unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo``."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and len(field[i + 1 : i + 4]) == 3:
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountEntry]:
    out = []
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        fields, sfields = pre.split(" "), post.split(" ")
        if not sep or len(fields) < 6 or len(sfields) < 2:
            continue
        out.append(MountEntry(int(fields[0]), int(fields[1]), unescape(fields[3]), unescape(fields[4]), fields[5],
                              sfields[0], unescape(sfields[1]), sfields[2] if len(sfields) > 2 else ""))
    return out


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError:
        return ""


def mountinfo(pid: int | str = "self") -> list[MountEntry]:
    return parse_mountinfo(_read(f"/proc/{pid}/mountinfo"))


def mount_points_under(path: str | os.PathLike[str], pid: int | str = "self") -> list[str]:
    """Mount points at or below ``path``, deepest first (the order to unmount them in)."""
    base = os.path.realpath(path)
    points = {m.mount_point for m in mountinfo(pid)
              if m.mount_point == base or m.mount_point.startswith(base.rstrip("/") + "/")}
    return sorted(points, key=lambda p: p.count("/"), reverse=True)


def is_mount_point(path: str | os.PathLike[str], pid: int | str = "self") -> bool:
    p = os.path.abspath(path)
    return any(m.mount_point == p for m in mountinfo(pid))


class CgroupMembership:
    """``/proc/PID/cgroup``: the v2 path (``unified``, None without a v2 entry), and per v1
    controller its path and the name of the hierarchy it is mounted in ("cpu,cpuacct")."""

    __slots__ = ("hierarchies", "paths", "unified")

    def __init__(self) -> None:
        self.unified: str | None = None
        self.paths: dict[str, str] = {}
        self.hierarchies: dict[str, str] = {}

    def path(self, controller: str) -> str | None:
        """The path of a v1 controller ("" or None for the unified hierarchy)."""
        return self.unified if not controller else self.paths.get(controller)


def parse_cgroup(text: str) -> CgroupMembership:
    out = CgroupMembership()
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, ctrls, path = parts
        if not ctrls:
            out.unified = path
            continue
        for c in ctrls.split(","):
            c = c.removeprefix("name=")
            if c:
                out.paths[c] = path
                out.hierarchies[c] = ctrls
    return out


def cgroup(pid: int | str = "self") -> CgroupMembership:
    return parse_cgroup(_read(f"/proc/{pid}/cgroup"))


def parse_start_time(stat: bytes) -> int:
    """Field 22 of /proc/PID/stat; comm may hold spaces and parentheses, so split after the last ')'."""
    rest = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return 0


def start_time(pid: int) -> int:
    """The start time of ``pid`` in clock ticks since boot, 0 if the process is gone. With the pid it
    names one process for good: a pid reused after a crash has another start time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return parse_start_time(f.read())
    except OSError:
        return 0


def alive(pid: int, start: int) -> bool:
    """The process ``pid`` that started at ``start`` still runs (not a reuse of its pid, not a zombie)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    rest = stat[stat.rfind(b")") + 2 :]
    return rest[:1] not in (b"Z", b"X") and parse_start_time(stat) == start


def status_field(name: str, pid: int | str = "self") -> str:
    """A field of /proc/PID/status ("CapBnd", "NoNewPrivs", ...), '' if absent."""
    for line in _read(f"/proc/{pid}/status").splitlines():
        key, sep, value = line.partition(":")
        if sep and key == name:
            return value.strip()
    return ""


def capability_set(name: str = "CapBnd", pid: int | str = "self") -> int:
    """A capability mask of /proc/PID/status (CapBnd, CapEff, CapPrm, CapInh, CapAmb)."""
    value = status_field(name, pid)
    return int(value, 16) if value else 0


def cgroup_text(pid: int | str = "self") -> str:
    """The text of /proc/PID/cgroup ('' if the process is gone)."""
    return _read(f"/proc/{pid}/cgroup")


def initial_userns(pid: int | str = "self") -> bool:
    """The process is in the host's (initial) user namespace: its uid_map is the identity of all 2^32-1
    ids (a test as cheap as one read, for every command that asks whether it runs rootless)."""
    return _read(f"/proc/{pid}/uid_map").split() == ["0", "0", "4294967295"]
