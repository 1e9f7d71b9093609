"""Raw syscalls: what Python 3.11's ``os`` lacks (mount, pivot_root, openat2, unshare, setns, prctl,
capabilities, close_range, sethostname). Each raises ``OSError`` with errno set.

They reach the kernel through ``_kernel``, a small C extension (``_kernel.c``, built by ``python -m
ocibox.linux``, which scripts/install-deps runs), or, where it is not built or was built from another
version of its source, through ctypes (``_ctypes_kernel``: the same calls, ~2.5 ms more to import).
``OCIBOX_CTYPES=1`` takes the ctypes ones (the tests run both)."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

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

HERE = os.path.dirname(os.path.abspath(__file__))


def source_stamp() -> str:
    """``_kernel.c``'s "mtime_ns size", which a build of it carries as ``STAMP`` ("" if the source is
    not shipped: then any build is taken)."""
    try:
        st = os.stat(os.path.join(HERE, "_kernel.c"))
    except OSError:
        return ""
    return f"{st.st_mtime_ns} {st.st_size}"


def _load() -> ModuleType:
    if not os.environ.get("OCIBOX_CTYPES"):
        try:
            from ocibox.linux import _kernel  # type: ignore[attr-defined]
        except ImportError:
            pass
        else:
            stamp = source_stamp()
            if not stamp or stamp == _kernel.STAMP:
                return _kernel  # type: ignore[no-any-return]
    from ocibox.linux import _ctypes_kernel

    return _ctypes_kernel


#: the raw calls (``_kernel`` or ``_ctypes_kernel``): each returns its result, or -errno
K = _load()


def _check(ret: int, what: str) -> int:
    if ret < 0:
        raise OSError(-ret, f"{what}: {os.strerror(-ret)}")
    return ret


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(K.mount(source, target, fstype, flags, data), f"mount {fstype or ''} {source or ''} on {target}")


def umount(target: str, flags: int = 0) -> None:
    _check(K.umount2(target, flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(K.pivot_root(new_root, put_old), f"pivot_root {new_root}")


def sethostname(name: str) -> None:
    _check(K.sethostname(name), f"sethostname {name}")


def setdomainname(name: str) -> None:
    _check(K.setdomainname(name), f"setdomainname {name}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(K.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def child_subreaper() -> bool:
    """This process is a child subreaper (PR_GET_CHILD_SUBREAPER)."""
    return bool(_check(K.child_subreaper(), "prctl(PR_GET_CHILD_SUBREAPER)"))


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): open ``path`` relative to ``dirfd`` with RESOLVE_* confinement. Returns an fd."""
    return _check(K.openat2(dirfd, path, flags | os.O_CLOEXEC, mode, resolve), f"openat2 {path}")


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    _check(K.close_range(first, last, flags), "close_range")


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """The capability sets of this thread (version 3 of the interface: two 32-bit words per set)."""
    _check(K.capset(effective, permitted, inheritable), "capset")


# ---------------------------------------------------------------- namespaces, prctl
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
PR_GET_CHILD_SUBREAPER = 37
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4


CLONE_NEWUSER = 0x10000000


def personality(persona: int) -> int:
    """personality(2): the execution domain of this process and what it execs."""
    return _check(K.personality(persona), f"personality({persona:#x})")


def unshare(flags: int) -> None:
    """unshare(2) (``os.unshare`` only exists from Python 3.12)."""
    _check(K.unshare(flags), f"unshare({flags:#x})")


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2): join the namespace ``fd`` refers to (``os.setns`` only exists from Python 3.12)."""
    _check(K.setns(fd, nstype), f"setns({nstype:#x})")


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of this thread."""
    ret, eff, perm, inh = K.capget()
    _check(ret, "capget")
    return eff, perm, inh


def socket(domain: int, type_: int, protocol: int = 0) -> int:
    """socket(2) as a bare fd (for ioctls; importing the socket module costs ~5 ms)."""
    return _check(K.socket(domain, type_ | os.O_CLOEXEC, protocol), "socket")


def seccomp_filter(program: bytes) -> None:
    """prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER) with a classic-BPF program (ocibox.linux.seccomp)."""
    _check(K.seccomp_filter(program), "prctl(PR_SET_SECCOMP)")


def libseccomp_version() -> tuple[int, int, int] | None:
    """libseccomp.so.2's version, or None where it cannot be loaded."""
    v = K.libseccomp_version()
    return None if v is None else (int(v[0]), int(v[1]), int(v[2]))


# ---------------------------------------------------------------- what os already has
# The container's init reaches the kernel only through this module (passed to it as ``kernel``), so a
# test double can stand in for it in unit tests of the setup order: these are the ``os`` calls it
# makes that change the process or the mount table, under the same names.
setsid = os.setsid
setresuid = os.setresuid
setresgid = os.setresgid
setgroups = os.setgroups
setgid = os.setgid
setuid = os.setuid
umask = os.umask
chdir = os.chdir
fchdir = os.fchdir
chroot = os.chroot
mknod = os.mknod
symlink = os.symlink
mkdir = os.mkdir
dup2 = os.dup2
execve = os.execve
