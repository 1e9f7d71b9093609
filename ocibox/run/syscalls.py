"""The one module that talks to libc through ctypes (the syscall seam).

Everything else in ocibox calls these functions; each raises ``OSError`` with
errno set, like the ``os`` module does, so callers handle one kind of error.
Python's ``os`` already covers unshare, setns, sched, mknod, lchown and
friends; only what it lacks is here.
"""

from __future__ import annotations

import ctypes
import os
from functools import cache

# mount(2) flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# openat2(2) resolve flags
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

_SYS = {
    "x86_64": {"pivot_root": 155, "openat2": 437, "capget": 125, "capset": 126, "close_range": 436},
    "aarch64": {"pivot_root": 41, "openat2": 437, "capget": 90, "capset": 91, "close_range": 436},
}


@cache
def _libc() -> ctypes.CDLL:
    # "libc.so.6" directly: ctypes.util.find_library imports subprocess and friends (~10 ms on
    # the warm path of 'ocibox run'); it is only the fallback for a libc of another name.
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        from ctypes.util import find_library

        return ctypes.CDLL(find_library("c") or "libc.so.6", use_errno=True)


@cache
def _nr(name: str) -> int:
    machine = os.uname().machine
    try:
        return _SYS[machine][name]
    except KeyError:
        raise OSError(38, f"{name}: syscall number unknown on {machine}") from None


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    libc = _libc()
    ret = libc.mount(
        source.encode() if source is not None else None,
        target.encode(),
        fstype.encode() if fstype is not None else None,
        ctypes.c_ulong(flags),
        data.encode() if data is not None else None,
    )
    _check(ret, f"mount {fstype or ''} {source or ''} on {target}")


def umount(target: str, flags: int = 0) -> None:
    _check(_libc().umount2(target.encode(), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    ret = _libc().syscall(_nr("pivot_root"), new_root.encode(), put_old.encode())
    _check(ret, f"pivot_root {new_root}")


def sethostname(name: str) -> None:
    b = name.encode()
    _check(_libc().sethostname(b, len(b)), f"sethostname {name}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    libc = _libc()
    return _check(
        libc.prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)),
        f"prctl({option})",
    )


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): open ``path`` relative to ``dirfd`` with RESOLVE_* confinement. Returns an fd."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    ret = _libc().syscall(_nr("openat2"), dirfd, path.encode(), ctypes.byref(how), ctypes.sizeof(how))
    return _check(ret, f"openat2 {path}")


@cache
def has_openat2() -> bool:
    try:
        fd = openat2(-100, "/", os.O_RDONLY | os.O_DIRECTORY, 0, RESOLVE_IN_ROOT)
    except OSError:
        return False
    os.close(fd)
    return True


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    _check(_libc().syscall(_nr("close_range"), first, last, flags), "close_range")


# capabilities (linux/capability.h, version 3: two 32-bit words per set)
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        data[i].effective = (effective >> (32 * i)) & 0xFFFFFFFF
        data[i].permitted = (permitted >> (32 * i)) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> (32 * i)) & 0xFFFFFFFF
    _check(_libc().syscall(_nr("capset"), ctypes.byref(hdr), data), "capset")


# ---------------------------------------------------------------- libseccomp (seccomp.h, libseccomp 2.5)
# The filter is built by the system's libseccomp, never assembled by hand. The library must be opened
# (libseccomp() called) while the host's /usr/lib is still visible, i.e. before pivot_root.
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_ERRNO_BASE = 0x00050000
SCMP_ACT_TRACE_BASE = 0x7FF00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_NOTIFY = 0x7FC00000
# enum scmp_compare
SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_GT, SCMP_CMP_MASKED_EQ = range(1, 8)
# enum scmp_filter_attr
SCMP_FLTATR_ACT_DEFAULT = 1
SCMP_FLTATR_ACT_BADARCH = 2
SCMP_FLTATR_CTL_NNP = 3
SCMP_FLTATR_CTL_TSYNC = 4
SCMP_FLTATR_CTL_LOG = 6
SCMP_FLTATR_CTL_OPTIMIZE = 8
NR_SCMP_ERROR = -1


def scmp_act_errno(errno_: int) -> int:
    return SCMP_ACT_ERRNO_BASE | (errno_ & 0xFFFF)


def scmp_act_trace(msg: int) -> int:
    return SCMP_ACT_TRACE_BASE | (msg & 0xFFFF)


class ScmpArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp: argument index, comparison, datum_a (value or mask), datum_b."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


@cache
def libseccomp() -> ctypes.CDLL:
    """Open libseccomp.so.2 (Debian's libseccomp2) and declare the prototypes used here."""
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as e:
        raise OSError(2, f"libseccomp.so.2 cannot be loaded ({e}); install libseccomp2") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.restype = None
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_exist.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_native.restype = ctypes.c_uint32
    lib.seccomp_arch_native.argtypes = []
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ScmpArgCmp),
    ]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_version.restype = ctypes.POINTER(ctypes.c_uint * 3)
    lib.seccomp_version.argtypes = []
    return lib


def _scmp_check(ret: int, what: str) -> int:
    # libseccomp returns -errno instead of setting errno
    if ret < 0:
        raise OSError(-ret, f"{what}: {os.strerror(-ret)}")
    return ret


def seccomp_init(default_action: int) -> int:
    ctx = libseccomp().seccomp_init(default_action)
    if not ctx:
        raise OSError(22, f"seccomp_init({default_action:#x}) failed")
    return int(ctx)


def seccomp_release(ctx: int) -> None:
    libseccomp().seccomp_release(ctx)


def seccomp_arch_native() -> int:
    return int(libseccomp().seccomp_arch_native())


def seccomp_arch_resolve_name(name: str) -> int:
    """libseccomp's arch token (AUDIT_ARCH_*) for a name such as "x86_64", "x32", "x86"; 0 if unknown."""
    return int(libseccomp().seccomp_arch_resolve_name(name.encode()))


def seccomp_arch_add(ctx: int, arch_token: int) -> None:
    ret = libseccomp().seccomp_arch_add(ctx, arch_token)
    if ret != -17:  # -EEXIST: already in the filter (the native arch is there from seccomp_init)
        _scmp_check(ret, f"seccomp_arch_add({arch_token:#x})")


def seccomp_syscall_resolve_name(name: str) -> int:
    """The syscall number for the native arch; a negative pseudo number for a syscall of another arch
    libseccomp knows (it maps it per arch in the filter); NR_SCMP_ERROR if libseccomp does not know it."""
    return int(libseccomp().seccomp_syscall_resolve_name(name.encode()))


def seccomp_rule_add_array(ctx: int, action: int, syscall: int, args: list[tuple[int, int, int, int]]) -> None:
    """Add one rule; ``args`` are (index, op, datum_a, datum_b) comparisons, all of which must hold."""
    arr = (ScmpArgCmp * max(len(args), 1))(*[ScmpArgCmp(i, op, a, b) for i, op, a, b in args])
    ret = libseccomp().seccomp_rule_add_array(ctx, action, syscall, len(args), arr)
    _scmp_check(ret, f"seccomp_rule_add(syscall {syscall}, action {action:#x})")


def seccomp_attr_set(ctx: int, attr: int, value: int) -> None:
    _scmp_check(libseccomp().seccomp_attr_set(ctx, attr, value), f"seccomp_attr_set({attr}, {value})")


def seccomp_load(ctx: int) -> None:
    _scmp_check(libseccomp().seccomp_load(ctx), "seccomp_load")


# ----- added for the runner (namespaces, prctl, capabilities) ---------------------------------
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

CLOSE_RANGE_CLOEXEC = 4

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


def unshare(flags: int) -> None:
    """unshare(2) (``os.unshare`` only exists from Python 3.12)."""
    _check(_libc().unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def chroot(path: str) -> None:
    os.chroot(path)


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of this thread."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc().syscall(_nr("capget"), ctypes.byref(hdr), data), "capget")
    eff = data[0].effective | (data[1].effective << 32)
    perm = data[0].permitted | (data[1].permitted << 32)
    inh = data[0].inheritable | (data[1].inheritable << 32)
    return eff, perm, inh


def seccomp_version() -> str:
    v = libseccomp().seccomp_version().contents
    return f"{v[0]}.{v[1]}.{v[2]}"


def seccomp_export_bpf(ctx: int) -> bytes:
    """The classic-BPF program libseccomp generates for ``ctx`` (an array of struct sock_filter)."""
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        _scmp_check(libseccomp().seccomp_export_bpf(ctx, fd), "seccomp_export_bpf")
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def seccomp_set_mode_filter(program: bytes) -> None:
    """Install a BPF program libseccomp generated (seccomp_export_bpf) on the calling thread, the same
    way seccomp_load does: no_new_privs first, then the filter. Needs no library after pivot_root."""
    if not program or len(program) % 8 or len(program) // 8 > 4096:
        raise OSError(22, f"seccomp program of {len(program)} bytes is not a BPF program")
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))


# ---------------------------------------------------------------- bpf(2): cgroup device programs
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
_SYS_BPF = {"x86_64": 321, "aarch64": 280}


class _BpfProgLoadAttr(ctypes.Structure):
    _fields_ = [
        ("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32), ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64), ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32), ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16), ("prog_ifindex", ctypes.c_uint32),
        ("expected_attach_type", ctypes.c_uint32),
    ]


class _BpfAttachAttr(ctypes.Structure):
    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_bpf_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32)]


def _bpf(cmd: int, attr: ctypes.Structure, what: str) -> int:
    nr = _SYS_BPF.get(os.uname().machine)
    if nr is None:
        raise OSError(38, f"bpf: syscall number unknown on {os.uname().machine}")
    return _check(_libc().syscall(nr, cmd, ctypes.byref(attr), ctypes.sizeof(attr)), what)


def bpf_prog_load_cgroup_device(insns: bytes, name: str = "ocibox_dev") -> int:
    """Load an eBPF BPF_PROG_TYPE_CGROUP_DEVICE program (``insns``: struct bpf_insn array). Returns its
    fd; a verifier refusal raises OSError whose message carries the verifier's log."""
    buf = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"Apache-2.0")  # any string: the program calls no GPL helper
    log = ctypes.create_string_buffer(1 << 16)
    attr = _BpfProgLoadAttr(BPF_PROG_TYPE_CGROUP_DEVICE, len(insns) // 8, ctypes.addressof(buf),
                            ctypes.addressof(lic), 1, len(log), ctypes.addressof(log), 0, 0, name.encode()[:15])
    try:
        return _bpf(BPF_PROG_LOAD, attr, "bpf(BPF_PROG_LOAD, cgroup device)")
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror}: {log.value.decode(errors='replace').strip()[-400:]}") from None


def bpf_prog_attach(cgroup_fd: int, prog_fd: int, attach_type: int = BPF_CGROUP_DEVICE,
                    flags: int = BPF_F_ALLOW_MULTI) -> None:
    """Attach a loaded program to a cgroup v2 directory fd; the attachment keeps the program alive
    until the cgroup is removed."""
    _bpf(BPF_PROG_ATTACH, _BpfAttachAttr(cgroup_fd, prog_fd, attach_type, flags), "bpf(BPF_PROG_ATTACH)")


def socket(domain: int, type_: int, protocol: int = 0) -> int:
    """socket(2) as a bare fd (for ioctls; importing the socket module costs ~5 ms)."""
    return _check(_libc().socket(domain, type_ | os.O_CLOEXEC, protocol), "socket")
