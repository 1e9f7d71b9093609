"""What ``ocibox-runtime`` keeps of a container between its calls, in ``<root>/<id>/``:

- ``state.json``: the document (pid and its start time, bundle, created, annotations, hooks, the cgroup's
  state for ``ocibox.cgroups.reopen``);
- ``brief``: what ``start`` and ``delete`` read, so that they import no json (nor the re and enum it
  brings: a third of their time): ``name=value`` records ended by NUL (no path holds one): ``pid``,
  ``pid_start``, ``hooks`` (the runtime's own, poststart and poststop, space-separated) and one ``rmdir``
  per directory of the container's cgroup, in the order they are removed. A state dir without it
  (written before it existed) is read from state.json;
- ``exec.fifo`` while the container is created but not started.

The container's status is read from the kernel each time: its PID 1 (the same process, not a reused
pid), the fifo, the freezer."""

from __future__ import annotations

import os

from ocibox.errors import UsageError
from ocibox.linux import proc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FIFO, STATE, BRIEF = "exec.fifo", "state.json", "brief"


class NotFound(UsageError):
    """runc's "container does not exist"."""

    exit_code = 1


def default_root() -> str:
    if os.geteuid() == 0:
        return "/run/ocibox-runtime"
    return os.path.join(os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/ocibox-runtime-{os.geteuid()}", "ocibox-runtime")


def check_id(cid: str) -> str:
    # [\w+.-]+ (str.isalnum is re's \w without the underscore), without importing re
    if not cid or not all(c.isalnum() or c in "_+.-" for c in cid) or cid in (".", ".."):
        raise UsageError(f"invalid container id {cid!r}: use letters, digits, _, +, ., -")
    return cid


def cgroup_dirs(cgroup: dict[str, Any]) -> list[str]:
    """The directories ``reopen(cgroup).destroy()`` removes, in its order (``Cgroup.state()``'s shapes:
    v1 a dir per controller, deepest first; v2 one dir; 0, no cgroup of its own: none)."""
    if cgroup.get("version") == 2:
        return [str(cgroup["dir"])]
    if cgroup.get("version") == 1:
        return list(dict.fromkeys(str(d) for d in reversed(list(cgroup.get("dirs", {}).values()))))
    return []


class State:
    """One container's state. ``data`` (state.json) is read when first used; ``start`` and ``delete``
    of a stopped container use only the brief."""

    def __init__(self, root: str, cid: str, data: dict[str, Any] | None = None,
                 brief: dict[str, list[str]] | None = None) -> None:
        self.root, self.id = root, cid
        self._data, self.brief = data, brief

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = _read_json(self.root, self.id)
        return self._data

    @property
    def dir(self) -> str:
        return os.path.join(self.root, self.id)

    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, FIFO)

    def _int(self, name: str) -> int:
        if self.brief is not None and name in self.brief:
            return int(self.brief[name][0])
        return int(self.data.get(name, 0))

    @property
    def pid(self) -> int:
        return self._int("pid")

    @property
    def pid_start(self) -> int:
        return self._int("pid_start")

    @property
    def hooks(self) -> list[str]:
        """Which of the runtime's own hooks (poststart, poststop) config.json has (both when unknown)."""
        if self.brief is not None and "hooks" in self.brief:
            return self.brief["hooks"][0].split()
        return list(self.data.get("hooks", ["poststart", "poststop"]))

    def rmdirs(self) -> list[str]:
        """The cgroup's directories, in the order to remove them."""
        if self.brief is not None:
            return self.brief.get("rmdir", [])
        return cgroup_dirs(self.data.get("cgroup") or {})

    def alive(self) -> bool:
        return proc.alive(self.pid, self.pid_start)

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
        """state.json, then the brief made from it; each published by rename."""
        import json

        data = self.data
        _publish(os.path.join(self.dir, STATE), json.dumps(data).encode())
        records = [("pid", str(data.get("pid", 0))), ("pid_start", str(data.get("pid_start", 0))),
                   ("hooks", " ".join(data.get("hooks", ()))),
                   *(("rmdir", d) for d in cgroup_dirs(data.get("cgroup") or {}))]
        _publish(os.path.join(self.dir, BRIEF),
                 b"".join(f"{k}={v}\0".encode("utf-8", "surrogateescape") for k, v in records))
        self.brief = None


def _publish(path: str, content: bytes) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def _read_json(root: str, cid: str) -> dict[str, Any]:
    import json

    try:
        with open(os.path.join(root, cid, STATE)) as f:
            data: dict[str, Any] = json.load(f)
            return data
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"container does not exist: {cid}") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"container {cid}: its state cannot be read ({e})") from None


def load(root: str, cid: str) -> State:
    """A container's state from its state.json."""
    check_id(cid)
    return State(root, cid, _read_json(root, cid))


def load_brief(root: str, cid: str) -> State:
    """A container's state for start and delete: its brief; state.json only for what that lacks."""
    check_id(cid)
    try:
        with open(os.path.join(root, cid, BRIEF), "rb") as f:
            raw = f.read()
    except (FileNotFoundError, NotADirectoryError):
        if not os.path.exists(os.path.join(root, cid, STATE)):  # not a json import for delete --force's gone id
            raise NotFound(f"container does not exist: {cid}") from None
        return load(root, cid)  # a state dir written before the brief existed
    except OSError as e:
        raise UsageError(f"container {cid}: its state cannot be read ({e})") from None
    brief: dict[str, list[str]] = {}
    for record in raw.decode("utf-8", "surrogateescape").split("\0")[:-1]:
        name, sep, value = record.partition("=")
        if not sep:
            raise UsageError(f"container {cid}: its state cannot be read (a brief record without '=')")
        brief.setdefault(name, []).append(value)
    return State(root, cid, brief=brief)


def new(root: str, cid: str) -> State:
    """A new state directory for ``cid``; refused if one exists (runc's "container with id exists")."""
    import time

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
