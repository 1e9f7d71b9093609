"""Which device nodes a container gets and may use: docker's default allow list, ``--device``, and the
host's nodes for ``--privileged``. The rules are enforced by the cgroup manager's devices controller
(``ocibox.cgroups``); the nodes are made in the container's /dev by the init."""

from __future__ import annotations

import os
import stat

from ocibox import ocispec
from ocibox._record import record
from ocibox.cgroups import ANY, Device
from ocibox.errors import UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable


@record
class DeviceSpec:
    """``--device HOST[:CTR][:rwm]``: the host node, where it appears in the container, its type and
    numbers (from stat of the host node), the access granted and the node's mode and owner to mknod."""

    host_path: str
    container_path: str
    type: str
    major: int
    minor: int
    access: str
    mode: int
    uid: int
    gid: int

    @property
    def device(self) -> Device:
        return Device(self.type, self.major, self.minor, self.access)


# runc's AllowedDevices (libcontainer/specconv), which docker and podman use: mknod of any node is
# allowed (opening is what is refused), then the nodes every container gets in /dev.
_MKNOD_ANY = (Device("c", ANY, ANY, "m"), Device("b", ANY, ANY, "m"))
_DEFAULT_NODES = (
    ("/dev/null", Device("c", 1, 3, "rwm")),
    ("/dev/zero", Device("c", 1, 5, "rwm")),
    ("/dev/full", Device("c", 1, 7, "rwm")),
    ("/dev/random", Device("c", 1, 8, "rwm")),
    ("/dev/urandom", Device("c", 1, 9, "rwm")),
    ("/dev/tty", Device("c", 5, 0, "rwm")),
    ("/dev/ptmx", Device("c", 5, 2, "rwm")),
    ("/dev/pts/*", Device("c", 136, ANY, "rwm")),  # the container's own devpts instance
)
_CONSOLE = ("/dev/console", Device("c", 5, 1, "rwm"))  # with -t: the pty is bind-mounted there


def default_devices(tty: bool = False) -> tuple[Device, ...]:
    """The default allow list (``-t`` adds /dev/console)."""
    nodes = (*_DEFAULT_NODES, _CONSOLE) if tty else _DEFAULT_NODES
    return (*_MKNOD_ANY, *(d for _, d in nodes))


def device_rules(specs: Iterable[DeviceSpec] = (), *, tty: bool = False) -> tuple[Device, ...]:
    """The full allow list: defaults, then every ``--device``."""
    return (*default_devices(tty), *(s.device for s in specs))


def _valid_access(s: str) -> bool:
    return bool(s) and all(c in "rwm" for c in s) and len(set(s)) == len(s)


# runc's HostDevices (libcontainer/devices), which docker and podman use for --privileged: these
# directories of /dev are the container's own (pts, shm, mqueue) or state, never devices to copy.
_HOST_DEV_SKIP_DIRS = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})
# /dev/console is the container's terminal (-t) or absent; /dev/ptmx stays the link to its own devpts.
_HOST_DEV_SKIP = frozenset({"console", "ptmx"})


def host_devices(root: str = "/dev") -> tuple[DeviceSpec, ...]:
    """``--privileged``: every character and block node under the host's /dev (``root``), to be made
    at the same path below the container's /dev with the host node's mode and owner (docker's and
    podman's behaviour). Symlinks are not followed (lstat); sockets and fifos are no devices."""
    out: list[DeviceSpec] = []

    def walk(d: str, rel: str) -> None:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if e.name not in _HOST_DEV_SKIP_DIRS:
                    walk(e.path, f"{rel}/{e.name}")
                continue
            kind = "c" if stat.S_ISCHR(st.st_mode) else "b" if stat.S_ISBLK(st.st_mode) else ""
            if kind and not (rel == "/dev" and e.name in _HOST_DEV_SKIP):
                out.append(DeviceSpec(e.path, f"{rel}/{e.name}", kind, os.major(st.st_rdev), os.minor(st.st_rdev),
                                      "rwm", st.st_mode, st.st_uid, st.st_gid))

    walk(root, "/dev")
    return tuple(out)


def parse_device_option(value: str) -> DeviceSpec:
    """Parse docker's ``--device HOST[:CTR][:PERMS]`` and stat the host node (symlinks followed, as
    docker does). PERMS is a combination of r, w, m (default rwm); CTR defaults to HOST."""
    parts = value.split(":")
    if not 1 <= len(parts) <= 3 or not parts[0]:
        raise UsageError(f"--device {value}: expected HOST[:CONTAINER][:PERMISSIONS]")
    host, ctr, access = parts[0], parts[0], "rwm"
    if len(parts) == 2:
        if _valid_access(parts[1]):
            access = parts[1]
        else:
            ctr = parts[1]
    elif len(parts) == 3:
        ctr, access = parts[1], parts[2]
    if not _valid_access(access):
        raise UsageError(f"--device {value}: permissions {access!r} must be a combination of r, w and m")
    if not host.startswith("/") or not ctr.startswith("/"):
        raise UsageError(f"--device {value}: host and container paths must be absolute")
    if os.path.normpath(ctr) in ("/", "/dev") or ".." in ctr.split("/"):
        raise UsageError(f"--device {value}: {ctr} cannot be a device path in the container")
    try:
        st = os.stat(host)
    except OSError as e:
        raise UsageError(f"--device {value}: {host}: {e.strerror}; give an existing device node") from None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise UsageError(f"--device {value}: {host} is not a character or block device node")
    return DeviceSpec(host, os.path.normpath(ctr), kind, os.major(st.st_rdev), os.minor(st.st_rdev), access,
                      st.st_mode, st.st_uid, st.st_gid)


def config_rules(config: ocispec.Spec, rules: tuple[Device, ...] | None) -> tuple[Device, ...] | None:
    """The rules to enforce for a config.json, as runc makes them: its linux.resources.devices (``rules``,
    None: no restriction), then the nodes every container gets (runc's AllowedDevices) and every node
    of its linux.devices, so that a config that only says "deny everything" still has /dev/null."""
    if rules is None:
        return None
    tty = bool(config.process and config.process.terminal)
    nodes = tuple(Device("c" if d.type in ("c", "u") else d.type, d.major, d.minor, "rwm")
                  for d in config.linux.devices if d.type in ("c", "u", "b"))
    return (*rules, *(d for d in default_devices(tty) if d not in rules), *nodes)
