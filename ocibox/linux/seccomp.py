"""libseccomp (seccomp.h, libseccomp 2.5) through ctypes, and installing a BPF program.

The filter is built by the system's libseccomp, never assembled by hand. The library must be opened
(``libseccomp()`` called) while the host's /usr/lib is still visible, i.e. before pivot_root; the
program it exports is installed later with ``seccomp_set_mode_filter``, which needs no library.
ctypes is imported only to build a filter: a warm run reads its program from ocibox's cache and
installs it through ``ocibox.linux.syscalls``.
"""

from __future__ import annotations

import os

from ocibox.linux import syscalls
from ocibox.linux.syscalls import PR_SET_NO_NEW_PRIVS, prctl

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes

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


def _argcmp_type() -> type[ctypes.Structure]:
    """struct scmp_arg_cmp: argument index, comparison, datum_a (value or mask), datum_b."""
    import ctypes

    class ScmpArgCmp(ctypes.Structure):
        _fields_ = [
            ("arg", ctypes.c_uint),
            ("op", ctypes.c_int),
            ("datum_a", ctypes.c_uint64),
            ("datum_b", ctypes.c_uint64),
        ]

    return ScmpArgCmp


_opened: list[ctypes.CDLL] = []  # once (not functools.cache: functools costs ~2 ms of a run)
_arg_cmp: list[type[ctypes.Structure]] = []


def libseccomp() -> ctypes.CDLL:
    """Open libseccomp.so.2 (Debian's libseccomp2) and declare the prototypes used here."""
    if _opened:
        return _opened[0]
    import ctypes

    arg_cmp = _argcmp_type()
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
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(arg_cmp),
    ]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    _opened.append(lib)
    _arg_cmp.append(arg_cmp)
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
    lib = libseccomp()
    arg_cmp = _arg_cmp[0]
    arr = (arg_cmp * max(len(args), 1))(*[arg_cmp(i, op, a, b) for i, op, a, b in args])
    ret = lib.seccomp_rule_add_array(ctx, action, syscall, len(args), arr)
    _scmp_check(ret, f"seccomp_rule_add(syscall {syscall}, action {action:#x})")


def seccomp_attr_set(ctx: int, attr: int, value: int) -> None:
    _scmp_check(libseccomp().seccomp_attr_set(ctx, attr, value), f"seccomp_attr_set({attr}, {value})")


def seccomp_load(ctx: int) -> None:
    _scmp_check(libseccomp().seccomp_load(ctx), "seccomp_load")


def seccomp_version() -> str:
    v = syscalls.libseccomp_version()
    if v is None:
        raise OSError(2, "libseccomp.so.2 cannot be loaded; install libseccomp2")
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


PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def seccomp_set_mode_filter(program: bytes) -> None:
    """Install a BPF program libseccomp generated (seccomp_export_bpf) on the calling thread, the same
    way seccomp_load does: no_new_privs first, then the filter. Needs no library after pivot_root."""
    if not program or len(program) % 8 or len(program) // 8 > 4096:
        raise OSError(22, f"seccomp program of {len(program)} bytes is not a BPF program")
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    syscalls.seccomp_filter(program)  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
