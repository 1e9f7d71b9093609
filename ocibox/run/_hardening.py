"""What holds a container besides namespaces and capabilities: seccomp, device access, rlimits, and
``--privileged``, which lifts them. Glue for the runner, so that its setup sequence gains a few calls:

    parser:       OPTIONS (rows of _flags.OPTIONS)      # --security-opt --device --ulimit --privileged
    edge:         h = from_args(security_opt, device, ulimit, privileged)
    parent:       prep = prepare(h, spec.caps, spec.tty, name, cgroup, cache_dir, echo)   # before fork
    parent:       prep.attach()                          # v2 device program, once the cgroup exists
    parent:       prep.join(c2_pid)                      # with the other cgroup joins
    C2 /dev:      make_device_nodes(h, dev_fd, prep)     # after the default nodes
    C2, last:     before_exec(h, prep)                   # rlimits, then the seccomp filter
    parent, end:  prep.destroy()
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterable, Mapping

from ocibox._record import record
from ocibox.errors import CgroupError, UsageError
from ocibox.run import _devices, _rlimits, _seccomp

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
    """What ``prepare`` made in the parent: the seccomp program, the v1 devices cgroup (if any), and
    whether the v2 fallback (no CAP_MKNOD, rootfs nodev) is needed."""

    def __init__(self) -> None:
        self.seccomp: _seccomp.SeccompFilter | None = None
        self.rules: tuple[_devices.Device, ...] = ()
        self.devices_dir: str | None = None
        self.v2_dir: str | None = None
        self.v2_fallback = False
        self.host_devices: tuple[_devices.DeviceSpec, ...] = ()  # --privileged: the host's nodes
        self.notes: list[str] = []

    def attach(self) -> None:
        """v2, in the parent once the runner made the cgroup and before any process is in it: attach
        the eBPF device program to it. Where it cannot be attached, the V2_FALLBACK holds the devices
        (the container process, forked after this, sees ``v2_fallback`` set)."""
        if self.v2_dir is not None:
            try:
                _devices.attach_v2(self.v2_dir, self.rules)
                self.notes.append(f"devices: eBPF program on {self.v2_dir}")
            except CgroupError as e:
                # runc/crun would fail here; ocibox keeps the container held by other means.
                self.v2_fallback = True
                self.notes.append(f"{e}; {_devices.V2_FALLBACK}")
            self.v2_dir = None

    def join(self, pid: int) -> None:
        """With the runner's own cgroup joins: put ``pid`` in the v1 devices cgroup."""
        if self.devices_dir is not None:
            try:
                with open(os.path.join(self.devices_dir, "cgroup.procs"), "w") as f:
                    f.write(str(pid))
            except OSError as e:
                raise CgroupError(f"joining the devices cgroup {self.devices_dir} failed: {e.strerror}") from None

    def destroy(self) -> list[str]:
        if self.devices_dir is None:
            return []
        try:
            os.rmdir(self.devices_dir)
        except FileNotFoundError:
            pass
        except OSError as e:
            return [f"devices cgroup {self.devices_dir} not removed: {e.strerror}"]
        self.devices_dir = None
        return []


def prepare(h: Hardening, caps: Iterable[str], tty: bool, name: str, cgroup: object | None = None,
            cache_dir: str | None = None, echo: Callable[[str], None] | None = None,
            cgroup_parent: str = "") -> Prepared:
    """In the parent, before fork: check the rlimits, build the seccomp program (libseccomp is on the
    host's /usr/lib, gone after pivot_root), and set up device access for the cgroup named ``name``
    (v1: a devices cgroup of that name below the caller's devices cgroup or ``cgroup_parent``; v2: the
    eBPF program for ``cgroup.dir``, attached by ``attach``)."""
    p = Prepared()
    _rlimits.check_ulimits(h.ulimits)
    if h.privileged:
        p.host_devices = _devices.host_devices()
        p.notes.append(f"--privileged: no seccomp filter, no device restriction, {len(p.host_devices)} host "
                       "device nodes")
        return p
    profile = _seccomp.profile_from_option(h.seccomp, set(caps))
    if profile is not None:
        p.seccomp = _seccomp.compile_filter(profile, cache_dir)
        p.notes.append(f"seccomp: {profile.source} profile, {len(p.seccomp.program) // 8} BPF instructions")
    else:
        p.notes.append("seccomp: unconfined")
    p.rules = _devices.device_rules(h.devices, tty=tty)
    v2_dir = getattr(cgroup, "dir", None) if getattr(cgroup, "version", 0) == 2 else None
    if v2_dir is not None:
        p.v2_dir = str(v2_dir)  # the program is attached by attach(), once the runner made the cgroup
    else:
        base = _devices.own_v1_devices_cgroup(parent=cgroup_parent)
        if base is None:
            p.v2_fallback = True
            p.notes.append(f"devices: no devices controller; {_devices.V2_FALLBACK}")
        else:
            d = os.path.join(base, name)
            try:
                os.makedirs(base, exist_ok=True)
                os.mkdir(d)
            except OSError as e:
                raise CgroupError(f"creating the devices cgroup {d} failed: {e.strerror}") from None
            p.devices_dir = d
            try:
                _devices.write_v1(d, p.rules)
            except BaseException:
                p.destroy()
                raise
            p.notes.append(f"devices: v1 cgroup {d}: deny a, allow {len(p.rules)} rules")
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
    bnd = 0
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                bnd = int(line.split()[1], 16)
    return frozenset(name for name, n in cap_number.items() if bnd >> n & 1)


def drop_for_fallback(caps: Iterable[str], prep: Prepared) -> frozenset[str]:
    """The capability set to use: without CAP_MKNOD where the v2 fallback holds the devices."""
    caps = frozenset(caps)
    return caps - {"MKNOD", "CAP_MKNOD"} if prep.v2_fallback else caps


def before_exec(h: Hardening, prep: Prepared) -> None:
    """Last steps of the container process, after no_new_privs and setuid: the rlimits asked for,
    then the seccomp filter (nothing but exec may follow it)."""
    _rlimits.apply_ulimits(h.ulimits)
    if prep.seccomp is not None:
        prep.seccomp.load()
