"""What holds a container besides namespaces and capabilities: seccomp, device access, rlimits, and
``--privileged``, which lifts them. Glue for the runner, so that its setup sequence gains a few calls:

    parser:       OPTIONS (rows of _flags.OPTIONS)      # --security-opt --device --ulimit --privileged
    edge:         h = from_args(security_opt, device, ulimit, privileged)
    parent:       rules = device_rules(h, tty)          # for the cgroup manager's devices controller
    parent:       prep = prepare(h, spec.caps, cache_dir, echo)   # before fork: seccomp program, host nodes
    producer:     prep.profile, prep.nodes -> config.json's linux.seccomp and linux.devices
    creator:      prep.seccomp                           # the program, loaded by PID 1 right before exec
"""

from __future__ import annotations

from ocibox._record import record
from ocibox.errors import UsageError
from ocibox.linux import proc
from ocibox.run import _devices, _rlimits

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from ocibox.cgroups import Device
    from ocibox.run import _seccomp

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
    """What ``prepare`` made in the parent: the seccomp profile and its program, and the device nodes to
    make (--privileged's copies of the host's, then every --device)."""

    def __init__(self) -> None:
        self.profile: _seccomp.Profile | None = None
        self.seccomp: _seccomp.SeccompFilter | None = None
        self.nodes: tuple[_devices.DeviceSpec, ...] = ()
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
        host = _devices.host_devices()
        p.nodes = host
        p.notes.append(f"--privileged: no seccomp filter, no device restriction, {len(host)} host device nodes")
    else:
        # imported here: what imports this module without calling prepare (PID 1, the runtime) never loads it
        from ocibox.run import _seccomp

        p.profile = _seccomp.profile_from_option(h.seccomp, set(caps))
        if p.profile is not None:
            p.seccomp = _seccomp.compile_filter(p.profile, cache_dir)
            p.notes.append(f"seccomp: {p.profile.source} profile, {len(p.seccomp.program) // 8} BPF instructions")
        else:
            p.notes.append("seccomp: unconfined")
    for d in h.devices:
        if not d.container_path.startswith("/dev/"):
            raise UsageError(f"--device {d.host_path}:{d.container_path}: ocibox creates device nodes under /dev only")
    p.nodes += h.devices
    if echo is not None:
        for n in p.notes:
            echo(n)
    return p


def bounded_caps(cap_number: Mapping[str, int]) -> frozenset[str]:
    """--privileged: every capability this process can pass on (its bounding set). "All" capabilities
    would fail at capset on hosts whose runtime lacks some (CAP_SYS_RESOURCE on these machines)."""
    bnd = proc.capability_set("CapBnd")
    return frozenset(name for name, n in cap_number.items() if bnd >> n & 1)


def all_capabilities() -> tuple[str, ...]:
    """--privileged's capabilities as config.json names them ("CAP_CHOWN", ...): the bounding set's."""
    from ocibox.run._spec import CAP_NUMBER

    return tuple("CAP_" + c for c in sorted(bounded_caps(CAP_NUMBER)))
