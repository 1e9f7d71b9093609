"""What ``ocibox-runtime`` keeps of a container between its calls: ``<root>/<id>/state.json`` (pid and its
start time, bundle, created, annotations, the cgroup) and ``exec.fifo`` while it is created but not
started. The container's status is read from the kernel each time: its PID 1 (the same process, not a
reused pid), the fifo, the freezer."""

from __future__ import annotations

import json
import os
import re
import time

from ocibox.errors import UsageError
from ocibox.linux import proc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_ID = re.compile(r"^[\w+.-]+$")
FIFO, STATE = "exec.fifo", "state.json"


class NotFound(UsageError):
    """runc's "container does not exist"."""

    exit_code = 1


def default_root() -> str:
    if os.geteuid() == 0:
        return "/run/ocibox-runtime"
    return os.path.join(os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/ocibox-runtime-{os.geteuid()}", "ocibox-runtime")


def check_id(cid: str) -> str:
    if not _ID.match(cid) or cid in (".", ".."):
        raise UsageError(f"invalid container id {cid!r}: use letters, digits, _, +, ., -")
    return cid


class State:
    def __init__(self, root: str, cid: str, data: dict[str, Any]) -> None:
        self.root, self.id, self.data = root, cid, data

    @property
    def dir(self) -> str:
        return os.path.join(self.root, self.id)

    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, FIFO)

    @property
    def pid(self) -> int:
        return int(self.data.get("pid", 0))

    def alive(self) -> bool:
        return proc.alive(self.pid, int(self.data.get("pid_start", 0)))

    def status(self) -> str:
        """created, running, paused or stopped (the OCI state's)."""
        if not self.alive():
            return "stopped"
        if os.path.exists(self.fifo):
            return "created"
        cg = self.cgroup()
        if cg is not None and cg.frozen():
            return "paused"
        return "running"

    def cgroup(self) -> Any:
        from ocibox.cgroups import reopen

        state = self.data.get("cgroup")
        return reopen(state) if state else None

    def oci(self, status: str = "", pid: int = 0) -> dict[str, Any]:
        """The OCI state document (what ``state`` prints, and what hooks get on stdin); ``status`` and
        ``pid`` given for the hooks of create (status creating) and of delete (stopped)."""
        status = status or self.status()
        pid = pid or (self.pid if status != "stopped" else 0)
        return {"ociVersion": "1.1.0", "id": self.id, "status": status, "pid": pid,
                "bundle": self.data.get("bundle", ""), "rootfs": self.data.get("rootfs", ""),
                "created": self.data.get("created", ""), "owner": "", "annotations": self.data.get("annotations", {})}

    def save(self) -> None:
        tmp = os.path.join(self.dir, STATE + ".tmp")
        with open(tmp, "w") as f:
            json.dump(self.data, f)
        os.rename(tmp, os.path.join(self.dir, STATE))


def load(root: str, cid: str) -> State:
    check_id(cid)
    try:
        with open(os.path.join(root, cid, STATE)) as f:
            data = json.load(f)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"container does not exist: {cid}") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"container {cid}: its state cannot be read ({e})") from None
    return State(root, cid, data)


def new(root: str, cid: str) -> State:
    """A new state directory for ``cid``; refused if one exists (runc's "container with id exists")."""
    check_id(cid)
    os.makedirs(root, mode=0o711, exist_ok=True)
    d = os.path.join(root, cid)
    try:
        os.mkdir(d, 0o711)
    except FileExistsError:
        raise UsageError(f"container with id exists: {cid}") from None
    stamp = time.time()
    created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f"{stamp % 1:.9f}"[1:] + "Z"
    return State(root, cid, {"id": cid, "created": created})


def all_ids(root: str) -> list[str]:
    try:
        return sorted(e for e in os.listdir(root) if os.path.isfile(os.path.join(root, e, STATE)))
    except FileNotFoundError:
        return []
