"""bpf(2): load a ``BPF_PROG_TYPE_CGROUP_DEVICE`` program and attach it to a cgroup-v2 directory
(the v2 devices controller; the program itself is generated in ``ocibox.cgroups``)."""

from __future__ import annotations

import ctypes
import os

from ocibox.linux._ctypes_kernel import libc
from ocibox.linux.syscalls import _check

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
    ret = libc().syscall(nr, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    return _check(-ctypes.get_errno() if ret < 0 else ret, what)


def prog_load_cgroup_device(insns: bytes, name: str = "ocibox_dev") -> int:
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


def prog_attach(cgroup_fd: int, prog_fd: int, attach_type: int = BPF_CGROUP_DEVICE,
                    flags: int = BPF_F_ALLOW_MULTI) -> None:
    """Attach a loaded program to a cgroup v2 directory fd; the attachment keeps the program alive
    until the cgroup is removed."""
    _bpf(BPF_PROG_ATTACH, _BpfAttachAttr(cgroup_fd, prog_fd, attach_type, flags), "bpf(BPF_PROG_ATTACH)")
