"""The raw calls of ``_kernel.c`` through ctypes, for an ocibox whose C extension is not built (or is
built from another version of its source): the same functions, arguments and results (the call's
result, or -errno). Slower to import (~2.5 ms here) and to call; otherwise the same."""

from __future__ import annotations

import ctypes
import os

_SYS = {
    "x86_64": {"pivot_root": 155, "capget": 125, "capset": 126},
    "aarch64": {"pivot_root": 41, "capget": 90, "capset": 91},
}
_OPENAT2, _CLOSE_RANGE = 437, 436  # the same on every architecture (Linux 5.6's common table)
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_PR_GET_CHILD_SUBREAPER = 37
_PR_SET_SECCOMP = 22

STAMP = ""
_opened: list[ctypes.CDLL] = []  # libc, once


def libc() -> ctypes.CDLL:
    if _opened:
        return _opened[0]
    # "libc.so.6" directly: ctypes.util.find_library imports subprocess and friends (~10 ms); it is only
    # the fallback for a libc of another name.
    try:
        lib = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        from ctypes.util import find_library

        lib = ctypes.CDLL(find_library("c") or "libc.so.6", use_errno=True)
    _opened.append(lib)
    return lib


def _r(ret: int) -> int:
    return -ctypes.get_errno() if ret < 0 else ret


def _nr(name: str) -> int:
    machine = os.uname().machine
    try:
        return _SYS[machine][name]
    except KeyError:
        raise OSError(38, f"{name}: syscall number unknown on {machine}") from None


def _b(s: str | None) -> bytes | None:
    return s.encode() if s is not None else None


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> int:
    return _r(libc().mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)))


def umount2(target: str, flags: int) -> int:
    return _r(libc().umount2(target.encode(), flags))


def pivot_root(new_root: str, put_old: str) -> int:
    return _r(libc().syscall(_nr("pivot_root"), new_root.encode(), put_old.encode()))


def sethostname(name: str) -> int:
    b = name.encode()
    return _r(libc().sethostname(b, len(b)))


def setdomainname(name: str) -> int:
    b = name.encode()
    return _r(libc().setdomainname(b, len(b)))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _r(libc().prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(arg4),
                           ctypes.c_ulong(arg5)))


def child_subreaper() -> int:
    value = ctypes.c_int(0)
    ret = _r(libc().prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(value), ctypes.c_ulong(0), ctypes.c_ulong(0),
                          ctypes.c_ulong(0)))
    return ret if ret < 0 else value.value


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, mode: int, resolve: int) -> int:
    how = _OpenHow(flags, mode, resolve)
    return _r(libc().syscall(_OPENAT2, dirfd, path.encode(), ctypes.byref(how), ctypes.sizeof(how)))


def close_range(first: int, last: int, flags: int) -> int:
    return _r(libc().syscall(_CLOSE_RANGE, ctypes.c_uint(first), ctypes.c_uint(last), ctypes.c_uint(flags)))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def capset(effective: int, permitted: int, inheritable: int) -> int:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        data[i].effective = (effective >> (32 * i)) & 0xFFFFFFFF
        data[i].permitted = (permitted >> (32 * i)) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> (32 * i)) & 0xFFFFFFFF
    return _r(libc().syscall(_nr("capset"), ctypes.byref(hdr), data))


def capget() -> tuple[int, int, int, int]:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    ret = _r(libc().syscall(_nr("capget"), ctypes.byref(hdr), data))
    if ret < 0:
        return ret, 0, 0, 0
    return (0, data[0].effective | (data[1].effective << 32), data[0].permitted | (data[1].permitted << 32),
            data[0].inheritable | (data[1].inheritable << 32))


def personality(persona: int) -> int:
    return _r(libc().personality(ctypes.c_ulong(persona)))


def unshare(flags: int) -> int:
    return _r(libc().unshare(ctypes.c_int(flags)))


def setns(fd: int, nstype: int) -> int:
    return _r(libc().setns(ctypes.c_int(fd), ctypes.c_int(nstype)))


def socket(domain: int, type_: int, protocol: int) -> int:
    return _r(libc().socket(domain, type_, protocol))


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_filter(program: bytes) -> int:
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    return prctl(_PR_SET_SECCOMP, 2, ctypes.addressof(prog))  # SECCOMP_MODE_FILTER


def libseccomp_version() -> tuple[int, int, int] | None:
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return None
    lib.seccomp_version.restype = ctypes.POINTER(ctypes.c_uint * 3)
    lib.seccomp_version.argtypes = []
    v = lib.seccomp_version().contents
    return v[0], v[1], v[2]
