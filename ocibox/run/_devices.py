"""Which device nodes a container may use: the default allow list, ``--device``, the v1 ``devices``
cgroup, and what to do on cgroup v2.

A container root can mknod any node (``CAP_MKNOD``) or find one shipped in its image, so the kernel
must refuse opening nodes outside the list. cgroup v1 does it with the ``devices`` controller (deny
``a`` first, then allow the list, as runc's ``AllowedDevices``); cgroup v2 has no such file and needs an
eBPF ``BPF_PROG_TYPE_CGROUP_DEVICE`` program attached to the cgroup, which is what runc and crun do and
what ``attach_v2`` does (the program is generated from the rules like runc's ``devicefilter``: a few
fixed instructions per rule, checked by the kernel's verifier). Where it cannot be attached (no bpf(2),
a kernel without CONFIG_CGROUP_BPF, a seccomp or LSM refusing bpf to ocibox itself), the runner falls
back to ``V2_FALLBACK``: drop ``CAP_MKNOD`` (no new nodes) and mount the image's rootfs ``nodev``
(nodes shipped in the image cannot be opened), /dev being a fresh tmpfs with only the listed nodes.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterable

from ocibox._record import record
from ocibox.errors import CgroupError, UsageError
from ocibox.linux import bpf

ANY = -1  # "*" in a cgroup rule


@record
class Device:
    """One cgroup device rule: type "c", "b" or "a", major/minor (ANY for *), access from "rwm"."""

    type: str
    major: int
    minor: int
    access: str

    def rule(self) -> str:
        def n(x: int) -> str:
            return "*" if x == ANY else str(x)

        return f"{self.type} {n(self.major)}:{n(self.minor)} {self.access}"


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

V2_FALLBACK = ("cgroup v2 without an eBPF device program: drop CAP_MKNOD and mount the rootfs nodev, "
               "so no node can be created and none shipped in the image can be opened")


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


# ------------------------------------------------------------------ cgroup v1 devices controller
def own_v1_devices_cgroup(pid: int | str = "self", parent: str = "") -> str | None:
    """The directory of ``pid``'s cgroup in the v1 devices hierarchy (or of ``parent``, a path from the
    hierarchy's root, as --cgroup-parent), or None when there is none (a pure v2 host)."""
    mount = None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                pre, _, post = line.partition(" - ")
                fields, sfields = pre.split(), post.split()
                if sfields and sfields[0] == "cgroup" and "devices" in sfields[-1].split(","):
                    mount = (fields[3], fields[4])  # (root within the hierarchy, mount point)
                    break
        if mount is None:
            return None
        if parent:
            return os.path.normpath(os.path.join(mount[1], parent.lstrip("/")))
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if "devices" in controllers.split(","):
                    root, point = mount
                    rel = os.path.relpath(path, root) if root != "/" else path.lstrip("/")
                    return os.path.normpath(os.path.join(point, rel))
    except OSError:
        return None
    return None


def write_v1(cgroup_dir: str, rules: Iterable[Device]) -> None:
    """Deny everything, then allow ``rules``, in a v1 devices cgroup directory (one rule per write,
    as the kernel parses them). Done before any container process joins the cgroup."""

    def put(name: str, text: str) -> None:
        path = os.path.join(cgroup_dir, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise CgroupError(f"devices cgroup: writing {text!r} to {path} failed: {e.strerror}; the parent "
                              "cgroup must allow every device given with --device") from None

    put("devices.deny", "a")
    for d in rules:
        put("devices.allow", d.rule())


def read_v1(cgroup_dir: str) -> list[str]:
    """devices.list of a v1 devices cgroup (for --debug and tests)."""
    with open(os.path.join(cgroup_dir, "devices.list"), encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


# ------------------------------------------------------------------ cgroup v2: eBPF device program
# struct bpf_cgroup_dev_ctx { u32 access_type /* ACC << 16 | DEV */; u32 major; u32 minor; }
_DEV_TYPE = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
_ACC = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
_R0, _R1, _R2, _R3, _R4, _R5 = range(6)


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _ldxw(dst: int, src: int, off: int) -> bytes:
    return _insn(0x61, dst, src, off)  # BPF_LDX|BPF_MEM|BPF_W


def _jne_imm(dst: int, imm: int, off: int) -> bytes:
    return _insn(0x55, dst, 0, off, imm)  # BPF_JMP|BPF_JNE|BPF_K


def _mov64_imm(dst: int, imm: int) -> bytes:
    return _insn(0xB7, dst, 0, 0, imm)


_EXIT = _insn(0x95)


def bpf_device_program(rules: Iterable[Device]) -> bytes:
    """eBPF instructions allowing exactly ``rules`` (deny by default), as runc's devicefilter:
    load type, access, major, minor from the context, then per rule compare and return 1 on a match."""
    prog = [
        _ldxw(_R2, _R1, 0),
        _insn(0x54, _R2, imm=0xFFFF),  # and32 r2, 0xffff: the device type
        _ldxw(_R3, _R1, 0),
        _insn(0x74, _R3, imm=16),  # rsh32 r3, 16: the access requested
        _ldxw(_R4, _R1, 4),
        _ldxw(_R5, _R1, 8),
    ]
    for d in rules:
        block: list[bytes | tuple[str, int, int]] = []  # ("jne", reg, imm) are patched below
        if d.type != "a":
            block.append(("jne", _R2, _DEV_TYPE[d.type]))
        acc = sum(_ACC[c] for c in d.access)
        if acc != 7:
            block.append(_insn(0xBC, _R1, _R3))  # mov32 r1, r3
            block.append(_insn(0x54, _R1, imm=acc))  # and32 r1, acc
            block.append(("jner", _R1, _R3))  # the access asked must be within the rule's
        if d.major != ANY:
            block.append(("jne", _R4, d.major))
        if d.minor != ANY:
            block.append(("jne", _R5, d.minor))
        block += [_mov64_imm(_R0, 1), _EXIT]
        n = len(block)
        for i, b in enumerate(block):
            if isinstance(b, tuple):
                kind, reg, val = b
                off = n - i - 1  # to the first instruction of the next rule
                prog.append(_jne_imm(reg, val, off) if kind == "jne" else _insn(0x5D, reg, val, off))
            else:
                prog.append(b)
    prog += [_mov64_imm(_R0, 0), _EXIT]
    return b"".join(prog)


def attach_v2(cgroup_dir: str, rules: Iterable[Device]) -> None:
    """Load the device program for ``rules`` and attach it to a cgroup v2 directory, before any
    container process joins it. Raises CgroupError when it cannot: the caller then applies the
    V2_FALLBACK (and says so with --debug)."""
    insns = bpf_device_program(rules)
    try:
        prog_fd = bpf.prog_load_cgroup_device(insns)
    except OSError as e:
        raise CgroupError(f"devices: loading the eBPF device program failed: {e.strerror}") from None
    try:
        cg_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            bpf.prog_attach(cg_fd, prog_fd)
        finally:
            os.close(cg_fd)
    except OSError as e:
        raise CgroupError(f"devices: attaching the eBPF device program to {cgroup_dir} failed: "
                          f"{e.strerror}") from None
    finally:
        os.close(prog_fd)
