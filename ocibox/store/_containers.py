"""Container records: running containers are recorded, so prune and rmi know what is in use."""

from __future__ import annotations

import json
import os
import time

from ocibox._record import record
from ocibox.digest import Digest
from ocibox.errors import UsageError
from ocibox.linux.proc import start_time as process_start_time
from ocibox.store._store import Store


@record
class ContainerRecord:
    id: str  # 64 hex digits (not a digest)
    name: str
    image_id: Digest
    pid: int
    pid_start: int
    state: str
    exit_code: int | None
    command: str
    created: float

    @property
    def alive(self) -> bool:
        """The recorded process still runs (same pid and start time)."""
        return self.pid > 0 and process_start_time(self.pid) == self.pid_start


_COLS = "id, name, image_id, pid, pid_start, state, exit_code, command, created"


def new_container_id() -> str:
    return os.urandom(32).hex()


def add_container(store: Store, cid: str, name: str | None, image_id: Digest | str,
                  command: list[str]) -> ContainerRecord:
    """Record a container as 'created' by this process (its pid until the container's own is known).
    (A ``str`` image id is the digest's text, accepted until every caller passes a ``Digest``.)"""
    pid = os.getpid()
    name = name or f"ocibox_{cid[:12]}"
    with store.transaction() as db:
        row = db.execute("SELECT id, pid, pid_start FROM containers WHERE name=?", (name,)).fetchone()
        if row is not None:
            if process_start_time(row[1]) == row[2] and row[1] > 0:
                raise UsageError(f"the container name {name!r} is already in use by container {row[0][:12]}; "
                                 "choose another --name")
            db.execute("DELETE FROM containers WHERE id=?", (row[0],))
        db.execute(
            f"INSERT INTO containers({_COLS}) VALUES (?,?,?,?,?,?,?,?,?)",
            (cid, name, str(image_id), pid, process_start_time(pid), "created", None, json.dumps(command), time.time()),
        )
    return get_container(store, cid)


def set_container_pid(store: Store, cid: str, pid: int) -> None:
    with store.transaction() as db:
        db.execute("UPDATE containers SET pid=?, pid_start=?, state='running' WHERE id=?",
                   (pid, process_start_time(pid), cid))


def finish_container(store: Store, cid: str, exit_code: int | None, *, remove: bool) -> None:
    with store.transaction() as db:
        if remove:
            db.execute("DELETE FROM containers WHERE id=?", (cid,))
        else:
            db.execute("UPDATE containers SET state='exited', exit_code=?, pid=0 WHERE id=?", (exit_code, cid))


def get_container(store: Store, cid: str) -> ContainerRecord:
    row = store.db.execute(f"SELECT {_COLS} FROM containers WHERE id=?", (cid,)).fetchone()
    if row is None:
        raise UsageError(f"no such container: {cid}")
    return _container(row)


def list_containers(store: Store) -> list[ContainerRecord]:
    return [_container(r) for r in store.db.execute(f"SELECT {_COLS} FROM containers ORDER BY created")]


def _container(row: tuple[str, str, str, int, int, str, int | None, str, float]) -> ContainerRecord:
    cid, name, image_id, pid, pid_start, state, exit_code, command, created = row
    return ContainerRecord(cid, name, Digest.parse(image_id), pid, pid_start, state, exit_code, command, created)


def live_containers(store: Store) -> list[ContainerRecord]:
    """Containers whose process still runs. Rows of dead 'running' containers are stale (crash)."""
    return [c for c in list_containers(store) if c.state in ("created", "running") and c.alive]


def stale_containers(store: Store) -> list[ContainerRecord]:
    """Containers recorded as created or running whose process is gone (crash leftovers)."""
    return [c for c in list_containers(store) if c.state in ("created", "running") and not c.alive]


def delete_containers(store: Store, cids: list[str]) -> None:
    """Drop the rows of containers (their directories and cgroups are the caller's to remove)."""
    with store.transaction() as db:
        db.executemany("DELETE FROM containers WHERE id=?", [(c,) for c in cids])
