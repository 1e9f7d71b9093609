"""The intermediate process between the creator and the container's PID 1: it joins the namespaces the
config names by path, unshares the new ones, forks PID 1 into them (CLONE_NEWPID applies to children
only), reports its pid and exits, so that PID 1 is reparented to the creator, a subreaper (or, under a
shim or a monitor, to them)."""

from __future__ import annotations

import os

from ocibox import errors
from ocibox._contextlib import suppress
from ocibox.run._init import InitArgs, init

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

# setns/unshare flag per namespace type; joined in this order (runc's nsexec: user first, mount late)
NS_FLAGS = {"user": 0x10000000, "ipc": 0x08000000, "uts": 0x04000000, "network": 0x40000000,
            "pid": 0x20000000, "cgroup": 0x02000000, "mount": 0x00020000, "time": 0x00000080}
_JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


def report(fd: int, e: BaseException) -> int:
    """Send ``e`` to the creator on the setup pipe; return the exit code for this process."""
    line, code = errors.to_wire(e, "container setup failed: ")
    with suppress(OSError):
        os.write(fd, line)
    return code


def enter_namespaces(args: InitArgs) -> None:
    """Join the namespaces given by path, then unshare the new ones. The cgroup namespace is unshared
    later, by PID 1, once the creator has moved it into its cgroup: the new namespace is rooted at the
    cgroup the process is in when it unshares."""
    k = args.kernel
    by_type = {n.type: n for n in args.config.linux.namespaces}
    user = by_type.get("user")
    if user is not None and not user.path:
        new_userns(args)  # first: every namespace made after it is owned by it
    for kind in _JOIN_ORDER:
        ns = by_type.get(kind)
        if ns is None or not ns.path:
            continue
        try:
            fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise errors.RuntimeSetupError(f"cannot open the {kind} namespace {ns.path}: {e.strerror}; "
                                           "is the process that owned it gone?") from None
        try:
            k.setns(fd, NS_FLAGS[kind])
        except OSError as e:
            raise errors.RuntimeSetupError(f"cannot join the {kind} namespace {ns.path}: {e.strerror}") from None
        finally:
            os.close(fd)
        if kind == "user":
            become_root(k)
    flags = 0
    for kind, ns in by_type.items():
        if not ns.path and kind not in ("cgroup", "user"):
            flags |= NS_FLAGS[kind]
    if flags:
        k.unshare(flags)
    offsets = args.config.linux.time_offsets
    if offsets:
        # A new time namespace takes its clock offsets before its first process (our child) exists.
        if "time" not in by_type or by_type["time"].path:
            raise errors.RuntimeSetupError("linux.timeOffsets needs a new time namespace (linux.namespaces type time)")
        lines = []
        for clock in ("monotonic", "boottime"):
            o = offsets.get(clock)
            if o:
                lines.append(f"{clock} {int(o.get('secs', 0))} {int(o.get('nanosecs', 0))}\n")
        with open("/proc/self/timens_offsets", "w") as f:
            f.write("".join(lines))


def new_userns(args: InitArgs) -> None:
    """A new user namespace (runc's nsexec): unshare it, ask the creator on the setup pipe (b"U") to write
    its maps (linux.uidMappings/gidMappings: it stays outside, where writing them is allowed: directly
    as root, through newuidmap/newgidmap as a user), wait for its b"M" on the go pipe, then become root
    in it. The namespaces unshared after this (and PID 1's mounts) are owned by it."""
    k = args.kernel
    k.unshare(NS_FLAGS["user"])
    os.write(args.setup, b"U\n")
    if os.read(args.go, 1) != b"M":
        os._exit(125)  # the creator could not write the maps: it reports why
    become_root(k)


def become_root(k: ModuleType) -> None:
    """uid and gid 0 of the user namespace just made or joined (the caller's own ids may be unmapped
    there: the host's root in a namespace whose 0 is a subordinate id)."""
    k.setresgid(0, 0, 0)
    k.setresuid(0, 0, 0)


def intermediate(args: InitArgs) -> None:  # pragma: no cover - runs in the forked child
    """Never returns."""
    code = 125
    try:
        enter_namespaces(args)
        pid = os.fork()
        if pid == 0:
            try:
                init(args)
            except BaseException as e:
                code = report(args.setup, e)
            os._exit(code)
        os.write(args.setup, f"P{pid}\n".encode())
        if args.hold >= 0:
            # Held in the container's namespaces until the creator opened what it needs of them.
            os.read(args.hold, 1)
        os._exit(0)
    except BaseException as e:
        code = report(args.setup, e)
    os._exit(code)
