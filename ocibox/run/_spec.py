"""RunSpec: what a container runs, built from the image config and the flags (pure, no I/O).

``RunSpec.from_image(config, flags)`` follows docker exactly:

- COMMAND replaces the image's Cmd; ``--entrypoint`` replaces its Entrypoint and clears Cmd
  (``--entrypoint ''`` clears the Entrypoint).
- Env: ``PATH`` (docker's default), ``HOSTNAME``, ``TERM=xterm`` with ``-t``; then the image's
  Env, then ``--env-file`` entries, then ``-e``; a later entry replaces an earlier one of the
  same name in place. ``HOME`` is added in the container from the user's passwd entry.
- WorkingDir: ``-w``, else the image's, else ``/``.
- User: ``-u``, else the image's User, else root; resolved inside the rootfs (``resolve_user``).
- Limits: the flags; Docker's legacy config fields (Memory, MemorySwap, CpuShares, Cpuset) are
  the defaults.
"""

from __future__ import annotations

import posixpath

from ocibox._record import field, record
from ocibox.cgroups import Limits
from ocibox.errors import UsageError
from ocibox.run._hardening import Hardening, bounded_caps
from ocibox.run._plain import NetFlags

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    # annotations only: PID 1's code (CAP_NUMBER, resolve_user) needs no image module
    from ocibox.image import ImageConfig

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# linux/capability.h
CAPS = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
CAP_NUMBER = {name: i for i, name in enumerate(CAPS)}

# podman's default_capabilities (containers.conf of podman 4)
DEFAULT_CAPS = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP", "SETGID",
    "SETPCAP", "SETUID", "SYS_CHROOT",
})


@record
class Mount:
    """A volume (``bind``) or ``tmpfs`` mount requested with -v / --tmpfs."""

    kind: str  # "bind" | "tmpfs"
    target: str  # absolute, normalised path inside the container
    source: str = ""  # host path (bind)
    readonly: bool = False
    flags: tuple[str, ...] = ()  # tmpfs: nosuid, nodev, noexec (or their opposites)
    data: str = ""  # tmpfs: size=..., mode=...


@record
class RunFlags:
    """The run flags after parsing at the edge (env files read, sizes converted)."""

    image: str
    command: tuple[str, ...] = ()
    entrypoint: str | None = None
    env: tuple[str, ...] = ()  # --env-file entries first, then -e
    workdir: str = ""
    user: str = ""
    hostname: str = ""
    mounts: tuple[Mount, ...] = ()
    read_only: bool = False
    interactive: bool = False
    tty: bool = False
    rm: bool = False
    name: str = ""
    network: str = "bridge"  # bridge | none | host | container | ns
    net: NetFlags = field(default_factory=NetFlags)
    memory: int = 0
    memory_swap: int = 0
    cpus: float = 0.0
    cpu_shares: int = 0
    pids_limit: int = 0
    cpuset_cpus: str = ""
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    init: bool = False
    platform: str = ""
    pull: str = "missing"
    cgroup_parent: str = ""
    hardening: Hardening = field(default_factory=Hardening)
    detach: bool = False
    restart: tuple[str, int] = ("no", 0)
    stop_signal: str = ""
    stop_timeout: int | None = None
    log_max_size: int = 0
    log_max_file: int = 1
    labels: tuple[tuple[str, str], ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()


@record
class RunSpec:
    argv: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str  # "", "name", "uid", "name:group", "uid:gid" (resolved in the container)
    hostname: str
    mounts: tuple[Mount, ...] = ()
    readonly: bool = False
    tty: bool = False
    interactive: bool = False
    network: str = "bridge"
    net: Any = None  # the network room's NetworkRequest (None: --network none or host alone)
    caps: frozenset[str] = DEFAULT_CAPS
    init: bool = False
    limits: Limits = field(default_factory=Limits)
    warnings: tuple[str, ...] = ()
    hardening: Hardening = field(default_factory=Hardening)
    sysctls: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_image(cls, config: ImageConfig, flags: RunFlags, *, container_id: str = "") -> RunSpec:
        if flags.entrypoint is not None:
            entrypoint: tuple[str, ...] = (flags.entrypoint,) if flags.entrypoint else ()
            cmd = flags.command
        else:
            entrypoint = config.entrypoint or ()
            cmd = flags.command or config.cmd or ()
        argv = entrypoint + cmd
        if not argv:
            raise UsageError(f"no command specified: image {flags.image} has no Entrypoint or Cmd; "
                             "give a COMMAND after the image")
        hostname = flags.hostname or container_id[:12] or "ocibox"
        base = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
        if flags.tty:
            base.append("TERM=xterm")
        env = merge_env(base, config.env, flags.env)
        cwd = flags.workdir or config.working_dir or "/"
        if flags.workdir and not flags.workdir.startswith("/"):
            raise UsageError(f"the working directory {flags.workdir!r} is invalid: it needs to be an absolute path")
        cwd = posixpath.normpath(posixpath.join("/", cwd))
        limits, warnings = _limits(config, flags)
        return cls(
            argv=argv,
            env=env,
            cwd=cwd,
            user=flags.user or config.user,
            hostname=hostname,
            mounts=flags.mounts,
            readonly=flags.read_only,
            tty=flags.tty,
            interactive=flags.interactive,
            network=flags.network,
            net=None if flags.net.plain() else net_request(flags.net, config.exposed_ports, flags.hostname),
            caps=bounded_caps(CAP_NUMBER) if flags.hardening.privileged else capabilities(flags.cap_add, flags.cap_drop),
            init=flags.init,
            limits=limits,
            warnings=warnings,
            hardening=flags.hardening,
            sysctls=sysctls(flags.sysctls, flags.network),
        )


#: docker's default for a container with a network namespace of its own: ICMP echo sockets for every
#: group, so that ping works without CAP_NET_RAW (which the default capabilities leave out)
PING_GROUP_RANGE = ("net.ipv4.ping_group_range", "0 2147483647")
#: the sysctls a container's namespaces own (docker's and runc's list): the rest are the host's
NAMESPACED_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                      "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced", "kernel.domainname")


def sysctls(given: tuple[tuple[str, str], ...], network: str) -> tuple[tuple[str, str], ...]:
    """--sysctl checked as docker does (only namespaced keys; net.* not with --network host, whose
    namespace is the host's; kernel.domainname is the UTS namespace's), plus docker's ping_group_range
    for a network namespace of the container's own."""
    out = dict(given)
    for key in out:
        if key.startswith("net."):
            if network in ("host", "container", "ns"):
                raise UsageError(f"--sysctl {key}: not allowed with --network {network} (the network namespace is "
                                 "not the container's own)")
        elif not (key in NAMESPACED_SYSCTLS or key.startswith("fs.mqueue.")):
            raise UsageError(f"--sysctl {key}: not a namespaced sysctl (only net.*, fs.mqueue.*, kernel.shm*, "
                             "kernel.msg*, kernel.sem and kernel.domainname are the container's own)")
    if network in ("bridge", "none"):
        out.setdefault(*PING_GROUP_RANGE)
    return tuple(out.items())


def net_request(n: NetFlags, exposed_ports: tuple[str, ...] | list[str], hostname: str = "") -> Any:
    """The network room's request for the flags (the image's ExposedPorts for -P; ``hostname``: the
    --hostname given, refused with --network container:X)."""
    from ocibox import network

    return network.build_request(
        network=n.network, publish=n.publish, publish_all_ports=n.publish_all, exposed_ports=exposed_ports,
        dns=n.dns, dns_search=n.dns_search, dns_options=n.dns_option, add_host=n.add_host, ip=n.ip, mac=n.mac,
        hostname=hostname, aliases=n.aliases, warn=_warn)


def _warn(line: str) -> None:
    import sys

    sys.stderr.write(f"ocibox: warning: {line}\n")


def merge_env(*groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Docker's ReplaceOrAppendEnvValues over the groups in order."""
    out: list[str] = []
    index: dict[str, int] = {}
    for group in groups:
        for entry in group:
            key = entry.partition("=")[0]
            if key in index:
                out[index[key]] = entry
            else:
                index[key] = len(out)
                out.append(entry)
    return tuple(out)


def _cap_name(text: str) -> str:
    name = text.upper()
    if name.startswith("CAP_"):
        name = name[4:]
    if name != "ALL" and name not in CAP_NUMBER:
        raise UsageError(f"unknown capability {text!r}: use a name like NET_ADMIN or CAP_NET_ADMIN, or ALL")
    return name


def capabilities(add: tuple[str, ...], drop: tuple[str, ...]) -> frozenset[str]:
    """podman's default set adjusted by --cap-add/--cap-drop (ALL allowed on either side)."""
    adds = {_cap_name(c) for c in add}
    drops = {_cap_name(c) for c in drop}
    if "ALL" in adds:
        return frozenset(set(CAPS) - (drops - {"ALL"}))
    if "ALL" in drops:
        return frozenset(adds)
    return frozenset((DEFAULT_CAPS | adds) - drops)


def _limits(config: ImageConfig, flags: RunFlags) -> tuple[Limits, tuple[str, ...]]:
    memory = flags.memory or config.memory
    swap = flags.memory_swap or config.memory_swap
    if swap and swap != -1:
        if not memory:
            raise UsageError("--memory-swap needs --memory: set the memory limit too")
        if swap < memory:
            raise UsageError("--memory-swap must be at least --memory (it is memory plus swap); "
                             "use -1 for unlimited swap")
    quota = round(flags.cpus * 100_000) if flags.cpus else 0
    limits = Limits(
        memory=memory,
        memory_swap=swap,
        cpu_quota=quota,
        cpu_shares=flags.cpu_shares or config.cpu_shares,
        pids=flags.pids_limit,
        cpuset=flags.cpuset_cpus or config.cpuset,
    )
    warnings = []
    labels = dict(config.labels)
    min_mem = labels.get("io.openshift.min-memory")
    if min_mem and memory:
        want = parse_quantity(min_mem)
        if want is not None and memory < want:
            warnings.append(f"the image asks for at least {min_mem} of memory (io.openshift.min-memory); "
                            f"the limit is {memory} bytes")
    min_cpu = labels.get("io.openshift.min-cpu")
    if min_cpu and quota:
        want = parse_quantity(min_cpu)
        if want is not None and quota / 100_000 < want:
            warnings.append(f"the image asks for at least {min_cpu} cpus (io.openshift.min-cpu); "
                            f"the limit is {flags.cpus:g}")
    return limits, tuple(warnings)


_K8S_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9,
               "T": 10**12, "m": 10**-3}


def parse_quantity(text: str) -> float | None:
    """A Kubernetes quantity ("512Mi", "2", "500m"); None if it is not one."""
    text = text.strip()
    for suffix in sorted(_K8S_SUFFIX, key=len, reverse=True):
        if text.endswith(suffix):
            try:
                return float(text[: -len(suffix)]) * _K8S_SUFFIX[suffix]
            except ValueError:
                return None
    try:
        return float(text)
    except ValueError:
        return None


# ----- user resolution (docker/runc's GetExecUser), on the text of the image's own files -----

@record
class ExecUser:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def _passwd_entries(text: str) -> list[list[str]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) >= 3:
            out.append(parts)
    return out


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def resolve_user(spec: str, passwd: str, group: str) -> ExecUser:
    """Resolve ``user[:group]`` against passwd/group texts, as runc does.

    A numeric uid or gid need not exist in the files; a name must. HOME is the passwd entry's
    home, else ``/``. Supplementary groups are the groups that list the user's name as a member
    (not with an explicit numeric ``uid:gid`` whose uid is not in passwd).
    """
    user, _, grp = spec.partition(":")
    uid, gid, home, name = 0, 0, "/", ""
    pw = _passwd_entries(passwd)
    if user:
        match = None
        for e in pw:
            if e[0] == user or (_int(user) is not None and _int(e[2]) == _int(user)):
                match = e
                if e[0] == user:
                    break
        if match is not None:
            name = match[0]
            uid = _int(match[2]) or 0
            gid = _int(match[3]) or 0 if len(match) > 3 else 0
            home = match[5] if len(match) > 5 and match[5] else "/"
        elif _int(user) is not None:
            uid = int(user)
        else:
            raise UsageError(f"unable to find user {user}: no matching entries in the image's /etc/passwd")
    else:
        for e in pw:
            if _int(e[2]) == 0:
                name, home = e[0], (e[5] if len(e) > 5 and e[5] else "/")
                break
    gr = _passwd_entries(group)
    if grp:
        found = None
        for e in gr:
            if e[0] == grp or (_int(grp) is not None and _int(e[2]) == _int(grp)):
                found = _int(e[2])
                if e[0] == grp:
                    break
        if found is not None:
            gid = found
        elif _int(grp) is not None:
            gid = int(grp)
        else:
            raise UsageError(f"unable to find group {grp}: no matching entries in the image's /etc/group")
    groups: list[int] = []
    if name:
        for e in gr:
            members = e[3].split(",") if len(e) > 3 else []
            g = _int(e[2])
            if name in members and g is not None and g != gid and g not in groups:
                groups.append(g)
    return ExecUser(uid, gid, tuple(groups), home)
