"""The network room's record of each container: ``<store>/networks/containers/<id>.json``.

It is written before anything is made and updated after each step, so that whoever finds it later (the
same process on an error, the next ocibox command after a SIGKILL) can undo exactly what exists:

    {"id", "name", "owner": [pid, start time], "phase": "reserved|netns|attaching|attached|detaching",
     "netns": path, "own_netns": bool, "ports": [PortMapping dicts], "dns": [...], "aliases": [...],
     "networks": [{"name", "ifname", "conflist", "runtime_config", "result", "dns", "bridge", "gateway",
                   "subnet"}]}

``result`` is the CNI result of the ADD so far (after each plugin): DEL's prevResult. Each container's
record has its lock file beside it (``<id>.lock``), removed with the record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ocibox.network._paths import containers_dir, write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from ocibox.settings import Settings


class Handle:
    """A container's record under its lock: ``data`` is None when there is none yet."""

    def __init__(self, path: Path, data: dict[str, Any] | None, fd: int = -1) -> None:
        self.path = path
        self.data = data
        self.fd = fd  # the open lock file: a forked child that keeps it open keeps the lock

    def save(self) -> None:
        assert self.data is not None
        write_atomic(self.path, json.dumps(self.data, separators=(",", ":")))

    def delete(self) -> None:
        self.data = None
        for p in (self.path, self.path.with_suffix(".lock")):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def owner() -> list[int]:
    """This process as a record's owner: [pid, start time in clock ticks since boot]."""
    from ocibox.linux import proc

    pid = os.getpid()
    return [pid, proc.start_time(pid)]


def owner_alive(data: dict[str, Any]) -> bool:
    from ocibox.linux import proc

    o = data.get("owner")
    if not (isinstance(o, list) and len(o) == 2):
        return False
    if o[0] == os.getpid():
        return True
    try:
        return proc.alive(int(o[0]), int(o[1]))
    except (OSError, ValueError):
        return False


def _read(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except FileNotFoundError:
        return None
    except ValueError:
        return {"id": path.stem, "phase": "corrupt", "networks": []}
    return data if isinstance(data, dict) else None


@contextmanager
def locked(settings: Settings, container_id: str) -> Iterator[Handle]:
    """The record of ``container_id`` under its lock (read after the lock is taken)."""
    import fcntl

    d = containers_dir(settings)
    path = d / f"{container_id}.json"
    lock = path.with_suffix(".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        h = Handle(path, _read(path), fd)
        yield h
        if h.data is None:  # no record (any more): no lock file either
            try:
                os.unlink(lock)
            except FileNotFoundError:
                pass
    finally:
        os.close(fd)


def load(settings: Settings, container_id: str) -> dict[str, Any] | None:
    return _read(containers_dir(settings) / f"{container_id}.json")


def load_all(settings: Settings) -> list[dict[str, Any]]:
    """Every container record (read without locks: each file is replaced atomically)."""
    d = containers_dir(settings)
    try:
        names = sorted(os.listdir(d))
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        if n.endswith(".json") and not n.startswith("."):
            data = _read(d / n)
            if data is not None:
                data.setdefault("id", n[:-5])
                out.append(data)
    return out
