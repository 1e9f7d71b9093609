"""Container records. Every container is recorded while it exists, so prune and rmi know what is in use.

Two kinds share the table:
- a foreground ``ocibox run`` records its container for its life; its writable layer goes when it exits
  and its row (``exited``) is history that ``prune`` and ``container prune`` remove;
- a detached container (``run -d``, ``detached=1``) keeps its row and its writable layer until ``rm``:
  it can be started again, and its image is in use for as long as it exists.

``state``: created (made, never started), running, paused, exited. A row that says running whose process
is gone is stale (a crash, a reboot): ``repair_container`` makes it exited.
"""

from __future__ import annotations

import os
import time

from ocibox import _json as json
from ocibox._record import record
from ocibox.digest import Digest
from ocibox.errors import OciboxError, UsageError
from ocibox.linux.proc import start_time as process_start_time
from ocibox.store._store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class NoSuchContainer(UsageError):
    """docker: 'Error response from daemon: No such container: X' (exit 1 there, 125 here as for every
    ocibox failure before a container runs)."""


@record
class ContainerRecord:
    id: str  # 64 hex digits (not a digest)
    name: str
    image_id: Digest
    pid: int
    pid_start: int
    state: str
    exit_code: int | None
    command: str  # JSON list of the command's argv
    created: float
    image_ref: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    oom_killed: bool = False
    detached: bool = False
    restart_count: int = 0
    stopping: bool = False
    labels: str = "{}"
    settings: str = "{}"
    cgroup: str = ""

    @property
    def alive(self) -> bool:
        """The recorded process still ran (same pid and start time, not a zombie) when this record was
        first asked: a record is a snapshot, and /proc/PID/stat costs ~40 us a read (``ps`` of 100
        containers asked five times each)."""
        known: bool | None = self.__dict__.get("_alive")
        if known is None:
            from ocibox.linux.proc import alive

            known = self.__dict__["_alive"] = alive(self.pid, self.pid_start)
        return known

    @property
    def argv(self) -> list[str]:
        try:
            out = json.loads(self.command)
        except ValueError:
            return [self.command]
        return [str(x) for x in out] if isinstance(out, list) else [str(out)]

    @property
    def label_map(self) -> dict[str, str]:
        try:
            out = json.loads(self.labels)
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in out.items()} if isinstance(out, dict) else {}

    @property
    def setting_map(self) -> dict[str, Any]:
        try:
            out = json.loads(self.settings)
        except ValueError:
            return {}
        return out if isinstance(out, dict) else {}


_COLS = ("id, name, image_id, pid, pid_start, state, exit_code, command, created, image_ref, started_at, "
         "finished_at, oom_killed, detached, restart_count, stopping, labels, settings, cgroup")


def new_container_id() -> str:
    return os.urandom(32).hex()


def add_container(store: Store, cid: str, name: str | None, image_id: Digest | str, command: list[str], *,
                  image_ref: str = "", detached: bool = False, labels: dict[str, str] | None = None,
                  settings: dict[str, Any] | None = None) -> ContainerRecord:
    """Record a container as 'created' by this process (its pid until the container's own is known).
    A name is the container's for as long as it exists (docker); a foreground container whose process
    is gone gives its name up to the new one. (A ``str`` image id is the digest's text.)"""
    pid = os.getpid()
    name = name or f"ocibox_{cid[:12]}"
    with store.transaction() as db:
        row = db.execute("SELECT id, pid, pid_start, detached FROM containers WHERE name=?", (name,)).fetchone()
        if row is not None:
            if row[3] or (row[1] > 0 and process_start_time(row[1]) == row[2]):
                raise UsageError(f"the container name {name!r} is already in use by container {row[0][:12]}; "
                                 "remove (ocibox rm) or rename that container, or choose another --name")
            db.execute("DELETE FROM containers WHERE id=?", (row[0],))
        db.execute(
            f"INSERT INTO containers({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (cid, name, str(image_id), pid, process_start_time(pid), "created", None, json.dumps(command), time.time(),
             image_ref, 0.0, 0.0, 0, int(detached), 0, 0, json.dumps(labels or {}, sort_keys=True),
             json.dumps(settings or {}, sort_keys=True), ""),
        )
    return get_container(store, cid)


def set_container_pid(store: Store, cid: str, pid: int, *, pid_start: int | None = None, cgroup: str = "") -> None:
    """The container runs: its PID 1, when it started, its cgroup (``Cgroup.state()`` as JSON)."""
    with store.transaction() as db:
        # exit_code and finished_at stay those of the last run (docker keeps them; 'wait' reads them)
        db.execute("UPDATE containers SET pid=?, pid_start=?, state='running', started_at=?, cgroup=? WHERE id=?",
                   (pid, process_start_time(pid) if pid_start is None else pid_start, time.time(), cgroup, cid))


def finish_container(store: Store, cid: str, exit_code: int | None, *, remove: bool, finished_at: float | None = None,
                     oom_killed: bool = False, of_run: float | None = None) -> bool:
    """Record the end of a container's run (or remove its row). ``of_run``: only if the row still
    records the run that started then, running (``stop`` records the exit its monitor wrote while the
    monitor's cleanup may have recorded it already, with what only the cleanup knows, or started a new
    run). False if nothing was changed."""
    with store.transaction() as db:
        if remove:
            return db.execute("DELETE FROM containers WHERE id=?", (cid,)).rowcount > 0
        values = (exit_code, time.time() if finished_at is None else finished_at, int(oom_killed), cid)
        if of_run is None:
            cur = db.execute("UPDATE containers SET state='exited', exit_code=?, pid=0, finished_at=?, oom_killed=? "
                             "WHERE id=?", values)
        else:
            cur = db.execute("UPDATE containers SET state='exited', exit_code=?, pid=0, finished_at=?, oom_killed=? "
                             "WHERE id=? AND started_at=? AND state IN ('running', 'paused')", (*values, of_run))
        return cur.rowcount > 0


_UPDATABLE = {"state", "stopping", "restart_count", "cgroup", "name", "settings", "pid", "pid_start", "exit_code"}


def update_container(store: Store, cid: str, **fields: Any) -> None:
    """Set some columns of one container's row (state, stopping, restart_count, cgroup, name, ...)."""
    if not fields or not set(fields) <= _UPDATABLE:
        raise ValueError(f"cannot update {sorted(set(fields) - _UPDATABLE)}")
    cols = ", ".join(f"{k}=?" for k in fields)
    values = [int(v) if isinstance(v, bool) else v for v in fields.values()]
    try:
        with store.transaction() as db:
            db.execute(f"UPDATE containers SET {cols} WHERE id=?", (*values, cid))
    except OciboxError as e:
        if "UNIQUE" in str(e) and "name" in fields:
            raise UsageError(f"the container name {fields['name']!r} is already in use; choose another") from None
        raise


def get_container(store: Store, cid: str) -> ContainerRecord:
    row = store.db.execute(f"SELECT {_COLS} FROM containers WHERE id=?", (cid,)).fetchone()
    if row is None:
        raise NoSuchContainer(f"no such container: {cid}")
    return _container(row)


def find_container(store: Store, text: str) -> ContainerRecord:
    """A container by full id, name, or unique id prefix (docker's lookup order)."""
    db = store.db
    row = db.execute(f"SELECT {_COLS} FROM containers WHERE id=? OR name=?", (text, text.lstrip("/"))).fetchone()
    if row is not None:
        return _container(row)
    if text and all(c in "0123456789abcdef" for c in text):
        rows = db.execute(f"SELECT {_COLS} FROM containers WHERE id LIKE ?", (text + "%",)).fetchall()
        if len(rows) == 1:
            return _container(rows[0])
        if len(rows) > 1:
            raise UsageError(f"container id prefix {text!r} is ambiguous ({len(rows)} containers); give more digits "
                             "or the name")
    raise NoSuchContainer(f"no such container: {text}")


def list_containers(store: Store) -> list[ContainerRecord]:
    return [_container(r) for r in store.db.execute(f"SELECT {_COLS} FROM containers ORDER BY created")]


def _container(row: tuple[Any, ...]) -> ContainerRecord:
    (cid, name, image_id, pid, pid_start, state, exit_code, command, created, image_ref, started_at, finished_at,
     oom_killed, detached, restart_count, stopping, labels, settings, cgroup) = row
    return ContainerRecord(cid, name, Digest.parse(image_id), pid, pid_start, state, exit_code, command, created,
                           image_ref, started_at, finished_at, bool(oom_killed), bool(detached), restart_count,
                           bool(stopping), labels, settings, cgroup)


def live_containers(store: Store) -> list[ContainerRecord]:
    """Containers whose process still runs. Rows of dead 'running' containers are stale (crash)."""
    return [c for c in list_containers(store) if c.state in ("created", "running", "paused") and c.alive]


def container_live(store: Store, cid: str) -> bool:
    """The container's record, read now, says its process runs (no record: it does not)."""
    try:
        c = get_container(store, cid)
    except NoSuchContainer:
        return False
    return c.state in ("created", "running", "paused") and c.alive


def using_containers(store: Store) -> list[ContainerRecord]:
    """Containers that keep their image in use: the running ones and every detached one (stopped or not:
    it can be started again)."""
    return [c for c in list_containers(store)
            if c.detached or (c.state in ("created", "running", "paused") and c.alive)]


def stale_containers(store: Store) -> list[ContainerRecord]:
    """Foreground containers recorded as created or running whose process is gone (crash leftovers).
    A detached container in that state is repaired (made exited), never taken for garbage."""
    return [c for c in list_containers(store)
            if c.state in ("created", "running", "paused") and not c.alive and not c.detached]


def delete_containers(store: Store, cids: list[str]) -> None:
    """Drop the rows of containers (their directories and cgroups are the caller's to remove)."""
    with store.transaction() as db:
        db.executemany("DELETE FROM containers WHERE id=?", [(c,) for c in cids])
