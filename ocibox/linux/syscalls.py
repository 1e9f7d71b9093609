"""Raw syscalls through ctypes: what Python 3.11's ``os`` lacks (mount, pivot_root, openat2, unshare,
setns, prctl, capabilities, close_range, sethostname). Each raises ``OSError`` with errno set."""

from __future__ import annotations

import ctypes
import os

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


_opened: list[ctypes.CDLL] = []  # libc, once (a list, not functools.cache: functools costs ~2 ms of a run)


def _libc() -> ctypes.CDLL:
    if _opened:
        return _opened[0]
    # "libc.so.6" directly: ctypes.util.find_library imports subprocess and friends (~10 ms on
    # the warm path of 'ocibox run'); it is only the fallback for a libc of another name.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        from ctypes.util import find_library

        libc = ctypes.CDLL(find_library("c") or "libc.so.6", use_errno=True)
    _opened.append(libc)
    return libc


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


def setdomainname(name: str) -> None:
    b = name.encode()
    _check(_libc().setdomainname(b, len(b)), f"setdomainname {name}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    libc = _libc()
    return _check(
        libc.prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)),
        f"prctl({option})",
    )


def child_subreaper() -> bool:
    """This process is a child subreaper (PR_GET_CHILD_SUBREAPER)."""
    value = ctypes.c_int(0)
    _check(_libc().prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(value), ctypes.c_ulong(0), ctypes.c_ulong(0),
                         ctypes.c_ulong(0)), "prctl(PR_GET_CHILD_SUBREAPER)")
    return bool(value.value)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): open ``path`` relative to ``dirfd`` with RESOLVE_* confinement. Returns an fd."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    ret = _libc().syscall(_nr("openat2"), dirfd, path.encode(), ctypes.byref(how), ctypes.sizeof(how))
    return _check(ret, f"openat2 {path}")


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
    return _check(_libc().personality(ctypes.c_ulong(persona)), f"personality({persona:#x})")


def unshare(flags: int) -> None:
    """unshare(2) (``os.unshare`` only exists from Python 3.12)."""
    _check(_libc().unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2): join the namespace ``fd`` refers to (``os.setns`` only exists from Python 3.12)."""
    _check(_libc().setns(ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns({nstype:#x})")


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of this thread."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc().syscall(_nr("capget"), ctypes.byref(hdr), data), "capget")
    eff = data[0].effective | (data[1].effective << 32)
    perm = data[0].permitted | (data[1].permitted << 32)
    inh = data[0].inheritable | (data[1].inheritable << 32)
    return eff, perm, inh


def socket(domain: int, type_: int, protocol: int = 0) -> int:
    """socket(2) as a bare fd (for ioctls; importing the socket module costs ~5 ms)."""
    return _check(_libc().socket(domain, type_ | os.O_CLOEXEC, protocol), "socket")


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
