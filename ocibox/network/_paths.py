"""Where the network room keeps things, and its locks.

- conflists: ``config_dir()`` = ``$OCIBOX_CONFIG_DIR/networks`` if set, else ``/etc/ocibox/networks`` as
  root, else ``$XDG_CONFIG_HOME/ocibox/networks`` (``~/.config/ocibox/networks``); one ``NAME.conflist``
  per network and the lock ``.lock`` that serialises create/rm/the default's first write.
- state: ``<store root>/networks/``: ``ipam/`` (host-local's dataDir, one directory of leases per
  network), ``containers/<id>.json`` (what each container asked and what ADD returned: the saved
  configuration that DEL needs after a crash), ``aardvark/`` (the DNS server's configuration and pid
  file), ``ports.lock``.
- ``/run/netns/ocibox-<id>``: the containers' network namespaces (``ip netns`` lists them).
- ``/run/lock/ocibox-cni.lock``: a host-wide lock around every CNI ADD and DEL. The plugins' iptables
  chains (CNI-HOSTPORT-*, CNI-ISOLATION-*, CNI-FORWARD) are shared by all networks and the plugins
  create them with check-then-create races, so an ADD that may create them (the first of this boot
  for its bridge, or for published ports) takes it exclusively; the others, and every DEL, share it
  and run side by side. ``ocibox-cni.lock.ready`` records what this boot's ADDs have made.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ocibox._contextlib import contextmanager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from ocibox.settings import Settings

NETNS_DIR = "/run/netns"
NETNS_PREFIX = "ocibox-"
CNI_LOCK = "/run/lock/ocibox-cni.lock"


def config_dir() -> Path:
    env = os.environ.get("OCIBOX_CONFIG_DIR")
    if env:
        return Path(env) / "networks"
    if os.geteuid() == 0:
        from ocibox.rootless import is_rootless

        if not is_rootless():
            return Path("/etc/ocibox/networks")
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(xdg) / "ocibox" / "networks"


def state_dir(settings: Settings) -> Path:
    return Path(settings.root) / "networks"


def ipam_dir(settings: Settings) -> Path:
    return state_dir(settings) / "ipam"


def containers_dir(settings: Settings) -> Path:
    return state_dir(settings) / "containers"


def aardvark_dir(settings: Settings) -> Path:
    return state_dir(settings) / "aardvark"


def netns_path(container_id: str) -> str:
    return f"{NETNS_DIR}/{NETNS_PREFIX}{container_id}"


def recorded(settings: Settings) -> set[str]:
    """The ids of the containers the network room keeps a record of (a directory listing: cheap enough
    for every ``ps`` and ``run`` to ask whether a repair has anything to do)."""
    try:
        names = os.listdir(containers_dir(settings))
    except OSError:
        return set()
    return {n[:-5] for n in names if n.endswith(".json") and not n.startswith(".")}


@contextmanager
def flock(path: str | os.PathLike[str], shared: bool = False) -> Iterator[int]:
    """An exclusive (or shared) flock on ``path``, created if missing with its directory."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def cni_lock(settings: Settings) -> str:
    """The host-wide CNI lock, or the store's own when /run/lock cannot be written (not root)."""
    if os.access(os.path.dirname(CNI_LOCK), os.W_OK):
        return CNI_LOCK
    return str(state_dir(settings) / "cni.lock")


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def cni_ready(lock: str, keys: list[str]) -> bool:
    """Whether ADDs of this boot have already made the shared iptables chains and rules ``keys`` stand
    for ("portmap", "bridge:NAME"): then ADDs and DELs may run side by side (a shared lock); else the
    ADD runs alone (the plugins create shared chains with check-then-create races)."""
    try:
        with open(lock + ".ready") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    if not lines or lines[0] != _boot_id() or not set(keys) <= set(lines[1:]):
        return False
    # a bridge deleted behind ocibox's back takes its isolation rules with it (or not): start over
    return all(os.path.exists(f"/sys/class/net/{k[7:]}") for k in keys if k.startswith("bridge:"))


def cni_mark_ready(lock: str, keys: list[str]) -> None:
    """Record ``keys`` as made in this boot (called under the exclusive lock, after a good ADD)."""
    boot = _boot_id()
    try:
        with open(lock + ".ready") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    if not lines or lines[0] != boot:
        lines = [boot]
    lines += [k for k in keys if k not in lines[1:]]
    try:
        write_atomic(Path(lock + ".ready"), "\n".join(lines) + "\n", mode=0o644)
    except OSError:
        pass


def write_atomic(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """``path`` replaced by ``data`` in one rename (a reader sees the old file or the new one)."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(tmp, path)


def cni_forget(lock: str, key: str) -> None:
    """Drop ``key`` from the record of what this boot's ADDs made (its network was removed)."""
    try:
        with open(lock + ".ready") as f:
            lines = f.read().splitlines()
    except OSError:
        return
    if key in lines[1:]:
        write_atomic(Path(lock + ".ready"), "\n".join(x for x in lines if x != key) + "\n", mode=0o644)
