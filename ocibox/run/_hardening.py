"""What holds a container besides namespaces and capabilities: seccomp, device access, rlimits, and
``--privileged``, which lifts them. Glue for the runner, so that its setup sequence gains a few calls:

    parser:       OPTIONS (rows of _flags.OPTIONS)      # --security-opt --device --ulimit --privileged
    edge:         h = from_args(security_opt, device, ulimit, privileged)
    parent:       rules = device_rules(h, tty)          # for the cgroup manager's devices controller
    parent:       prep = prepare(h, spec.caps, cache_dir, echo)   # before fork: seccomp program, host nodes
    PID 1 /dev:   make_device_nodes(h, dev_fd, prep)     # after the default nodes
    PID 1, last:  before_exec(h, prep)                   # rlimits, then the seccomp filter
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterable, Mapping

from ocibox._record import record
from ocibox.errors import UsageError
from ocibox.linux import proc
from ocibox.run import _devices, _rlimits, _seccomp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocibox.cgroups import Device

PRIVILEGED_HELP = ("give the container every capability and lift ocibox's defaults: no seccomp filter, "
                   "every device allowed by the devices cgroup, no masked or read-only /proc and /sys "
                   "paths. Only for containers you trust as much as the host")


@record
class Hardening:
    """The flags, parsed at the edge. ``seccomp``: None (docker's default profile), "unconfined",
    or a docker JSON profile path."""

    privileged: bool = False
    seccomp: str | None = None
    devices: tuple[_devices.DeviceSpec, ...] = ()
    ulimits: tuple[_rlimits.Ulimit, ...] = ()


# The flags, as rows of the runner's option table (see _flags.OPTIONS: names, kind, metavar, help).
OPTIONS: tuple[tuple[tuple[str, ...], str, str, str], ...] = (
    (("--security-opt",), "list", "OPT",
     "seccomp=unconfined, seccomp=PROFILE.json (docker's format), no-new-privileges"),
    (("--device",), "list", "HOST[:CTR][:rwm]", "give the container a host device node (r read, w write, m mknod)"),
    (("--ulimit",), "list", "NAME=SOFT[:HARD]", "set an rlimit (nofile, nproc, core, ...); others are inherited, "
     "never raised"),
    (("--privileged",), "bool", "", PRIVILEGED_HELP),
)


def from_args(security_opt: Iterable[str] = (), device: Iterable[str] = (), ulimit: Iterable[str] = (),
              privileged: bool = False) -> Hardening:
    seccomp: str | None = None
    for opt in security_opt:
        key, sep, value = opt.partition("=" if "=" in opt else ":")
        if key == "seccomp" and sep and value:
            seccomp = value
        elif key == "no-new-privileges" and value in ("", "true"):
            pass  # always on in ocibox
        elif f"{key}={value}" in ("label=disable", "apparmor=unconfined"):
            pass  # ocibox applies no LSM profile: nothing to disable
        else:
            raise UsageError(f"--security-opt {opt}: unsupported; use seccomp=unconfined, "
                             "seccomp=PROFILE.json or no-new-privileges")
    ulimits = {u.resource: u for u in map(_rlimits.parse_ulimit, ulimit)}  # the last one per name wins
    return Hardening(privileged, seccomp, tuple(_devices.parse_device_option(d) for d in device),
                     tuple(ulimits.values()))


class Prepared:
    """What ``prepare`` made in the parent: the seccomp program and, with --privileged, the host's device
    nodes to copy."""

    def __init__(self) -> None:
        self.seccomp: _seccomp.SeccompFilter | None = None
        self.host_devices: tuple[_devices.DeviceSpec, ...] = ()  # --privileged: the host's nodes
        self.notes: list[str] = []


def device_rules(h: Hardening, tty: bool) -> tuple[Device, ...] | None:
    """The allow list the cgroup manager enforces: docker's defaults and every --device; None with
    --privileged (every device allowed)."""
    return None if h.privileged else _devices.device_rules(h.devices, tty=tty)


def prepare(h: Hardening, caps: Iterable[str], cache_dir: str | None = None,
            echo: Callable[[str], None] | None = None) -> Prepared:
    """In the parent, before fork: check the rlimits and build the seccomp program (libseccomp is on the
    host's /usr/lib, gone after pivot_root)."""
    p = Prepared()
    _rlimits.check_ulimits(h.ulimits)
    if h.privileged:
        p.host_devices = _devices.host_devices()
        p.notes.append(f"--privileged: no seccomp filter, no device restriction, {len(p.host_devices)} host "
                       "device nodes")
    else:
        profile = _seccomp.profile_from_option(h.seccomp, set(caps))
        if profile is not None:
            p.seccomp = _seccomp.compile_filter(profile, cache_dir)
            p.notes.append(f"seccomp: {profile.source} profile, {len(p.seccomp.program) // 8} BPF instructions")
        else:
            p.notes.append("seccomp: unconfined")
    if echo is not None:
        for n in p.notes:
            echo(n)
    return p


def make_device_nodes(h: Hardening, dev_fd: int, prep: Prepared | None = None) -> None:
    """In the container's fresh /dev (a directory fd): with ``--privileged`` the host's device nodes,
    then the ``--device`` nodes, each with the host node's mode and owner (docker's behaviour)."""
    for d in (*(prep.host_devices if prep is not None else ()), *h.devices):
        rel = os.path.relpath(d.container_path, "/dev") if d.container_path.startswith("/dev/") else None
        if rel is None:
            raise UsageError(f"--device {d.host_path}:{d.container_path}: ocibox creates device nodes "
                             "under /dev only")
        parent = os.path.dirname(rel)
        if parent:
            os.makedirs(f"/proc/self/fd/{dev_fd}/{parent}", mode=0o755, exist_ok=True)
        kind = stat.S_IFCHR if d.type == "c" else stat.S_IFBLK
        with contextlib.suppress(FileNotFoundError):
            os.unlink(rel, dir_fd=dev_fd)
        os.mknod(rel, kind | stat.S_IMODE(d.mode), os.makedev(d.major, d.minor), dir_fd=dev_fd)
        os.chown(rel, d.uid, d.gid, dir_fd=dev_fd, follow_symlinks=False)


def bounded_caps(cap_number: Mapping[str, int]) -> frozenset[str]:
    """--privileged: every capability this process can pass on (its bounding set). "All" capabilities
    would fail at capset on hosts whose runtime lacks some (CAP_SYS_RESOURCE on these machines)."""
    bnd = proc.capability_set("CapBnd")
    return frozenset(name for name, n in cap_number.items() if bnd >> n & 1)


def drop_for_fallback(caps: Iterable[str], devices_fallback: bool) -> frozenset[str]:
    """The capability set to use: without CAP_MKNOD where the fallback holds the devices (no device
    cgroup could be set up: see ocibox.cgroups.V2_FALLBACK)."""
    caps = frozenset(caps)
    return caps - {"MKNOD", "CAP_MKNOD"} if devices_fallback else caps


def apply_ulimits(h: Hardening) -> None:
    """In the container process, after no_new_privs and setuid: the rlimits asked for."""
    _rlimits.apply_ulimits(h.ulimits)


def load_seccomp(prep: Prepared) -> None:
    """The container process's last step before exec: the seccomp filter (nothing but exec may follow)."""
    if prep.seccomp is not None:
        prep.seccomp.load()
