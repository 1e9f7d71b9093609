"""The devices controller: which device nodes a container may open.

A container root can mknod any node (``CAP_MKNOD``) or find one shipped in its image, so the kernel
must refuse opening nodes outside the allow list. cgroup v1 does it with the ``devices`` hierarchy (deny
``a`` first, then allow the list, as runc's ``AllowedDevices``): ``write_v1``; cgroup v2 has no such file
and needs an eBPF ``BPF_PROG_TYPE_CGROUP_DEVICE`` program attached to the cgroup, which is what runc and
crun do and what ``attach_v2`` does (the program is generated from the rules like runc's
``devicefilter``: a few fixed instructions per rule, checked by the kernel's verifier). Where it cannot
be attached (no bpf(2), a kernel without CONFIG_CGROUP_BPF, a seccomp or LSM refusing bpf to ocibox
itself), the manager says so (``Cgroup.devices_fallback``) and the runner applies ``V2_FALLBACK``.
"""

from __future__ import annotations

import os
import struct

from ocibox._record import record
from ocibox.errors import CgroupError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable

ANY = -1  # "*" in a cgroup rule

V2_FALLBACK = ("cgroup v2 without an eBPF device program: drop CAP_MKNOD and mount the rootfs nodev, "
               "so no node can be created and none shipped in the image can be opened")


@record
class Device:
    """One cgroup device rule: type "c", "b" or "a", major/minor (ANY for *), access from "rwm"; an allow
    rule, or a deny rule (``allow=False``). A list of rules is applied after "deny everything", in order."""

    type: str
    major: int
    minor: int
    access: str
    allow: bool = True

    def rule(self) -> str:
        def n(x: int) -> str:
            return "*" if x == ANY else str(x)

        return f"{self.type} {n(self.major)}:{n(self.minor)} {self.access}"


# ------------------------------------------------------------------ cgroup v1 devices controller
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
        put("devices.allow" if d.allow else "devices.deny", d.rule())


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
    load type, access, major, minor from the context, then per rule compare and return 1 (allow) or 0
    (deny) on a match. An allow rule matches a request whose access is within the rule's; a deny rule
    one that asks for any of the rule's access. With deny rules, the last matching rule decides (the
    rules are checked last first), as writes to a v1 devices cgroup do."""
    rules = list(rules)
    if not all(d.allow for d in rules):
        rules.reverse()
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
        if not d.allow:
            block.append(_insn(0xBC, _R1, _R3))  # mov32 r1, r3
            block.append(_insn(0x54, _R1, imm=acc))  # and32 r1, acc
            block.append(("jeq", _R1, 0))  # the access asked must touch the rule's
        elif acc != 7:
            block.append(_insn(0xBC, _R1, _R3))  # mov32 r1, r3
            block.append(_insn(0x54, _R1, imm=acc))  # and32 r1, acc
            block.append(("jner", _R1, _R3))  # the access asked must be within the rule's
        if d.major != ANY:
            block.append(("jne", _R4, d.major))
        if d.minor != ANY:
            block.append(("jne", _R5, d.minor))
        block += [_mov64_imm(_R0, 1 if d.allow else 0), _EXIT]
        n = len(block)
        for i, b in enumerate(block):
            if isinstance(b, tuple):
                kind, reg, val = b
                off = n - i - 1  # to the first instruction of the next rule
                if kind == "jne":
                    prog.append(_jne_imm(reg, val, off))
                elif kind == "jeq":
                    prog.append(_insn(0x15, reg, 0, off, val))  # BPF_JMP|BPF_JEQ|BPF_K
                else:
                    prog.append(_insn(0x5D, reg, val, off))  # BPF_JMP|BPF_JNE|BPF_X
            else:
                prog.append(b)
    prog += [_mov64_imm(_R0, 0), _EXIT]
    return b"".join(prog)


def attach_v2(cgroup_dir: str, rules: Iterable[Device]) -> None:
    """Load the device program for ``rules`` and attach it to a cgroup v2 directory, before any
    container process joins it. Raises CgroupError when it cannot: the caller then applies the
    V2_FALLBACK (and says so with --debug)."""
    from ocibox.linux import bpf

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
