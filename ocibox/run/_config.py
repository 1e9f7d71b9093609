"""``ocibox run`` as a producer of OCI runtime configurations: a RunSpec (the image config and docker's
flags) becomes the config.json that the executor runs, as podman builds one for runc.

Two things of docker's that the runtime spec cannot say travel as annotations, read only by ocibox's
executor (runc ignores them, as the spec requires of unknown annotations):

- ``io.ocibox.user``: the user as docker's ``-u`` gives it (a name, ``uid:gid``, ...), resolved inside
  the container against its own /etc/passwd and /etc/group once its root is set up;
- ``io.ocibox.init``: ``--init``, a reaper as PID 1 with the command as its child.
"""

from __future__ import annotations

from ocibox import ocispec
from ocibox.run._spec import CAPS, RunSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocibox.run._devices import DeviceSpec
    from ocibox.run._seccomp import Profile

USER_ANNOTATION = "io.ocibox.user"
INIT_ANNOTATION = "io.ocibox.init"

# docker's default masked and read-only paths (moby oci/defaults.go)
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
_KERNEL_FS = ("nosuid", "noexec", "nodev")

# docker's default mounts (moby oci/defaults.go), in its order
DEFAULT_MOUNTS = (
    ocispec.Mount("/proc", "proc", "proc", _KERNEL_FS),
    ocispec.Mount("/dev", "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
    ocispec.Mount("/dev/pts", "devpts", "devpts", ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                                                   "gid=5")),
    ocispec.Mount("/dev/shm", "tmpfs", "shm", (*_KERNEL_FS, "mode=1777", "size=65536k")),
    ocispec.Mount("/dev/mqueue", "mqueue", "mqueue", _KERNEL_FS),
    ocispec.Mount("/sys", "sysfs", "sysfs", (*_KERNEL_FS, "ro")),
)
CGROUP_MOUNT = ocispec.Mount("/sys/fs/cgroup", "cgroup", "cgroup", (*_KERNEL_FS, "relatime", "ro"))


def _u64(limit: int) -> int:
    """An rlimit as the runtime spec writes it: unlimited is 2**64-1 (Python's RLIM_INFINITY is -1)."""
    return 2**64 - 1 if limit < 0 else limit


def _cap_names(caps: frozenset[str]) -> tuple[str, ...]:
    return tuple("CAP_" + c for c in CAPS if c in caps)


def _sysctls(spec: RunSpec, id_maps: tuple[tuple[ocispec.IdMapping, ...], tuple[ocispec.IdMapping, ...]] | None
             ) -> dict[str, str]:
    """The sysctls; in a user namespace docker's ping_group_range default covers the gids it maps (the
    kernel refuses gids it cannot map)."""
    from ocibox.run._spec import PING_GROUP_RANGE

    out = dict(spec.sysctls)
    key, value = PING_GROUP_RANGE
    if id_maps is not None and out.get(key) == value:
        out[key] = f"0 {sum(m.size for m in id_maps[1]) - 1}"
    return out


def build(spec: RunSpec, *, rootfs: str, etc_dir: str, cgroups_path: str, seccomp: Profile | None,
          nodes: tuple[DeviceSpec, ...] = (), resources: dict[str, Any] | None = None, netns: str = "",
          id_maps: tuple[tuple[ocispec.IdMapping, ...], tuple[ocispec.IdMapping, ...]] | None = None,
          joined: dict[str, str] | None = None) -> ocispec.Spec:
    """The config.json of ``spec``: its process, docker's mounts and hardening, its cgroup.

    ``etc_dir`` holds the container's hostname, hosts and resolv.conf (bound at /etc); ``seccomp`` is the
    resolved profile (None: unconfined); ``nodes`` the device nodes to make (--privileged's host nodes and
    ``--device``'s); ``resources`` the cgroup section (see ocibox.cgroups.resources_of). ``id_maps``: a new
    user namespace with these uid and gid maps (rootless: container root is the user, 1..N the user's
    subordinate ids; see ocibox.rootless). ``joined``: namespaces joined by path instead of made, by
    type (rootless with fuse-overlayfs: the user and mount namespaces of its holder, then without maps)."""
    from ocibox.run._seccomp import to_oci

    caps = _cap_names(spec.caps)
    process = ocispec.Process(
        args=spec.argv, cwd=spec.cwd, env=spec.env, terminal=spec.tty,
        capabilities=ocispec.Capabilities(bounding=caps, effective=caps, permitted=caps),
        rlimits=tuple(ocispec.Rlimit("RLIMIT_" + u.name.upper(), _u64(u.soft), _u64(u.hard))
                      for u in spec.hardening.ulimits),
        no_new_privileges=True,
    )
    mounts = [*DEFAULT_MOUNTS]
    mounts += [ocispec.Mount(f"/etc/{name}", "bind", f"{etc_dir}/{name}", ("bind",))
               for name in ("hostname", "hosts", "resolv.conf")]
    for m in spec.mounts:
        if m.kind == "bind":
            mounts.append(ocispec.Mount(m.target, "bind", m.source, ("rbind", "ro" if m.readonly else "rw")))
        else:
            opts = (*m.flags, "ro" if m.readonly else "rw", *(o for o in m.data.split(",") if o))
            mounts.append(ocispec.Mount(m.target, "tmpfs", "tmpfs", opts))
    namespaces = [ocispec.Namespace(n) for n in ("pid", "ipc", "uts", "mount")]
    if id_maps is not None or (joined and "user" in joined):
        namespaces.insert(0, ocispec.Namespace("user"))
    sysctl = _sysctls(spec, id_maps)
    if joined:
        namespaces = [ocispec.Namespace(n.type, joined.get(n.type, n.path)) for n in namespaces]
        if "user" in joined:
            id_maps = None  # the namespace joined has its maps
    if spec.network != "host":
        namespaces.append(ocispec.Namespace("network", netns))
    if cgroups_path:
        namespaces.append(ocispec.Namespace("cgroup"))
        mounts.append(CGROUP_MOUNT)  # last: the wait for the cgroup join overlaps every mount before it
    devices = tuple(ocispec.Device(d.type, d.container_path, d.major, d.minor, d.mode & 0o7777, d.uid, d.gid)
                    for d in nodes)
    annotations = {USER_ANNOTATION: spec.user}
    if spec.init:
        annotations[INIT_ANNOTATION] = "true"
    privileged = spec.hardening.privileged
    return ocispec.Spec(
        process=process,
        root=ocispec.Root(rootfs, spec.readonly),
        hostname=spec.hostname,
        mounts=tuple(mounts),
        annotations=annotations,
        linux=ocispec.Linux(
            namespaces=tuple(namespaces), devices=devices, cgroups_path=cgroups_path,
            uid_mappings=id_maps[0] if id_maps is not None else (), gid_mappings=id_maps[1] if id_maps is not None else (),
            resources=resources or {}, rootfs_propagation="rslave",
            seccomp=to_oci(seccomp) if seccomp is not None else None,
            masked_paths=() if privileged else MASKED_PATHS, readonly_paths=() if privileged else READONLY_PATHS,
            sysctl=sysctl,
        ),
    )
