"""The container's seccomp filter: docker's default profile, docker's JSON profiles, unconfined.

The default is our own table with the semantics of moby's ``profiles/seccomp/default.json``: an
allow-list of syscalls, ``EPERM`` for everything else, ``ENOSYS`` for ``clone3`` (so glibc falls back
to ``clone``, whose namespace flags an argument mask then refuses), ``personality`` only with the
values docker allows, and the capability-gated groups (``mount``, ``unshare``, ``setns``... only when
``CAP_SYS_ADMIN`` is in the container's bounding set, and so on). The filter covers the native arch
and its compat arches (x86_64: i386 and x32), like docker's ``archMap``, so a 32-bit binary cannot
slip past it through the other syscall table.

The default needs no JSON parse: the table below is Python tuples, filtered by the same
include/exclude logic a docker profile file goes through. The filter is built by the system's
libseccomp (ctypes in ``ocibox.linux.seccomp``), never hand-assembled.

Use::

    profile = profile_from_option(opt, caps)   # at the edge: None means unconfined
    flt = compile_filter(profile)              # before pivot_root: libseccomp is on the host's /usr/lib
    ...                                        # mounts, pivot_root, caps, no_new_privs, setuid
    flt.load()                                 # last, right before exec
"""

from __future__ import annotations

import os
from binascii import crc32  # zlib's CRC-32, built into the interpreter (zlib loads libz: ~0.3 ms)

from ocibox import ocispec
from ocibox._record import record
from ocibox.errors import RuntimeSetupError, UsageError
from ocibox.linux import seccomp as scmp

EPERM = 1
ENOSYS = 38
ENOENT = 2

_CLONE_NS_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET

# Go's GOARCH names (docker's includes/excludes "arches" use them) by uname machine.
_GOARCH = {
    "x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "x86", "i386": "x86",
    "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "mips64": "mips64",
}
# libseccomp arch names: the native one and the compat arches a process on it can also use.
_ARCH_MAP = {
    "x86_64": ("x86_64", "x86", "x32"),
    "aarch64": ("aarch64", "arm"),
    "ppc64le": ("ppc64le",),
    "s390x": ("s390x", "s390"),
    "riscv64": ("riscv64",),
    "armv7l": ("arm",),
    "i686": ("x86",),
}


@record
class ArgCmp:
    """One argument comparison: ``args[arg] OP value`` (MASKED_EQ: ``arg & value == value_two``)."""

    arg: int
    op: int
    value: int
    value_two: int = 0


@record
class Rule:
    """Syscalls by name, the action when they are called (and, if ``args``, all comparisons hold)."""

    names: tuple[str, ...]
    action: int
    args: tuple[ArgCmp, ...] = ()


@record
class Profile:
    """A resolved filter: what happens by default, for which arches, and the rules. ``source`` is
    "default" or the profile file, for messages."""

    default_action: int
    arches: tuple[str, ...]
    rules: tuple[Rule, ...]
    source: str = "default"


@record
class _Entry:
    """One entry of a docker profile's ``syscalls`` list, before caps/arch/kernel filtering."""

    names: tuple[str, ...]
    action: int
    args: tuple[ArgCmp, ...] = ()
    inc_caps: tuple[str, ...] = ()
    inc_arches: tuple[str, ...] = ()
    inc_kernel: str = ""
    exc_caps: tuple[str, ...] = ()
    exc_arches: tuple[str, ...] = ()
    exc_kernel: str = ""


_ALLOW = scmp.SCMP_ACT_ALLOW

# ------------------------------------------------------------------ docker's default, as a table
# Always allowed: ordinary process life (files, memory, signals, time, sockets, ipc, ids).
_BASE = (
    # files and directories
    "access", "chdir", "chmod", "chown", "chown32", "close", "close_range", "copy_file_range", "creat",
    "dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
    "fchdir", "fchmod", "fchmodat", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync",
    "fgetxattr", "flistxattr", "flock", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64",
    "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futimesat", "getcwd", "getdents",
    "getdents64", "getxattr", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listxattr",
    "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "mkdir", "mkdirat",
    "mknod", "mknodat", "name_to_handle_at", "newfstatat", "open", "openat", "openat2", "pread64",
    "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat",
    "readv", "removexattr", "rename", "renameat", "renameat2", "rmdir", "sendfile", "sendfile64",
    "setxattr", "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "tee", "truncate", "truncate64", "umask", "unlink", "unlinkat", "utime",
    "utimensat", "utimensat_time64", "utimes", "vmsplice", "write", "writev",
    # polling, events, async io
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
    "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "fanotify_mark", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents",
    "io_pgetevents", "io_pgetevents_time64", "io_setup", "io_submit", "io_uring_enter",
    "io_uring_register", "io_uring_setup", "ioctl", "_newselect", "pause", "pipe", "pipe2", "poll", "ppoll",
    "ppoll_time64", "pselect6", "pselect6_time64", "select", "signalfd", "signalfd4", "timerfd_create",
    "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64",
    # memory
    "brk", "madvise", "membarrier", "memfd_create", "memfd_secret", "mincore", "mlock", "mlock2",
    "mlockall", "mmap", "mmap2", "mprotect", "mremap", "msync", "munlock", "munlockall", "munmap",
    "pkey_alloc", "pkey_free", "pkey_mprotect", "remap_file_pages",
    # processes, threads, signals, scheduling
    "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "futex", "futex_time64",
    "futex_waitv", "get_robust_list", "get_thread_area", "getcpu", "getpgid", "getpgrp", "getpid",
    "getppid", "getpriority", "getrandom", "getrlimit", "getrusage", "getsid", "gettid", "ioprio_get",
    "ioprio_set", "kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
    "pidfd_open", "pidfd_send_signal", "prctl", "prlimit64", "process_mrelease", "restart_syscall",
    "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
    "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
    "sched_get_priority_max", "sched_get_priority_min", "sched_getaffinity", "sched_getattr",
    "sched_getparam", "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp",
    "set_robust_list", "set_thread_area", "set_tid_address", "setpgid", "setpriority", "setrlimit",
    "setsid", "sigaltstack", "sigprocmask", "sigreturn", "tgkill", "tkill", "ugetrlimit", "vfork", "wait4",
    "waitid", "waitpid",
    # identities
    "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32",
    "getresgid", "getresgid32", "getresuid", "getresuid32", "getuid", "getuid32", "setfsgid", "setfsgid32",
    "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setregid", "setregid32",
    "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setuid", "setuid32",
    # time
    "adjtimex", "alarm", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
    "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "getitimer",
    "gettimeofday", "nanosleep", "setitimer", "time", "timer_create", "timer_delete", "timer_getoverrun",
    "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "times",
    # sockets (socket itself is below, without AF_VSOCK)
    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen", "recv",
    "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg", "sendmsg", "sendto",
    "setsockopt", "shutdown", "socketcall", "socketpair",
    # System V and POSIX ipc (the container has its own ipc namespace)
    "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd", "semctl",
    "semget", "semop", "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget",
    # system information
    "sysinfo", "uname",
)


def _eq0(value: int) -> tuple[ArgCmp, ...]:
    return (ArgCmp(0, scmp.SCMP_CMP_EQ, value),)


_DEFAULT: tuple[_Entry, ...] = (
    _Entry(_BASE, _ALLOW),
    # ptrace is safe from kernel 4.8 on (seccomp is re-checked after a tracer changes a syscall)
    _Entry(("process_vm_readv", "process_vm_writev", "ptrace"), _ALLOW, inc_kernel="4.8"),
    # AF_VSOCK (40) reaches the hypervisor's host
    _Entry(("socket",), _ALLOW, (ArgCmp(0, scmp.SCMP_CMP_NE, 40),)),
    # personality: only PER_LINUX, PER_LINUX32, UNAME26 variants and the query (0xffffffff)
    *(_Entry(("personality",), _ALLOW, _eq0(v)) for v in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)),
    _Entry(("sync_file_range2", "swapcontext"), _ALLOW, inc_arches=("ppc64le",)),
    _Entry(("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush",
            "set_tls"), _ALLOW, inc_arches=("arm", "arm64")),
    _Entry(("arch_prctl",), _ALLOW, inc_arches=("amd64", "x32")),
    _Entry(("modify_ldt",), _ALLOW, inc_arches=("amd64", "x32", "x86")),
    _Entry(("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"), _ALLOW,
           inc_arches=("s390", "s390x")),
    _Entry(("riscv_flush_icache",), _ALLOW, inc_arches=("riscv64",)),
    # capability-gated groups: allowed only when the container holds the capability
    _Entry(("open_by_handle_at",), _ALLOW, inc_caps=("CAP_DAC_READ_SEARCH",)),
    _Entry(("bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
            "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
            "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
            "umount2", "unshare"), _ALLOW, inc_caps=("CAP_SYS_ADMIN",)),
    # without CAP_SYS_ADMIN: clone only without namespace flags (flags are arg 1 on s390)...
    _Entry(("clone",), _ALLOW, (ArgCmp(0, scmp.SCMP_CMP_MASKED_EQ, _CLONE_NS_FLAGS, 0),),
           exc_caps=("CAP_SYS_ADMIN",), exc_arches=("s390", "s390x")),
    _Entry(("clone",), _ALLOW, (ArgCmp(1, scmp.SCMP_CMP_MASKED_EQ, _CLONE_NS_FLAGS, 0),),
           inc_arches=("s390", "s390x"), exc_caps=("CAP_SYS_ADMIN",)),
    # ...and clone3, whose flags live in memory a filter cannot read, says ENOSYS so libc uses clone
    _Entry(("clone3",), scmp.scmp_act_errno(ENOSYS), exc_caps=("CAP_SYS_ADMIN",)),
    _Entry(("reboot",), _ALLOW, inc_caps=("CAP_SYS_BOOT",)),
    _Entry(("chroot",), _ALLOW, inc_caps=("CAP_SYS_CHROOT",)),
    _Entry(("delete_module", "init_module", "finit_module"), _ALLOW, inc_caps=("CAP_SYS_MODULE",)),
    _Entry(("acct",), _ALLOW, inc_caps=("CAP_SYS_PACCT",)),
    _Entry(("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"),
           _ALLOW, inc_caps=("CAP_SYS_PTRACE",)),
    _Entry(("iopl", "ioperm"), _ALLOW, inc_caps=("CAP_SYS_RAWIO",)),
    _Entry(("settimeofday", "stime", "clock_settime", "clock_settime64"), _ALLOW, inc_caps=("CAP_SYS_TIME",)),
    _Entry(("vhangup",), _ALLOW, inc_caps=("CAP_SYS_TTY_CONFIG",)),
    _Entry(("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"), _ALLOW,
           inc_caps=("CAP_SYS_NICE",)),
    _Entry(("syslog",), _ALLOW, inc_caps=("CAP_SYSLOG",)),
    _Entry(("bpf",), _ALLOW, inc_caps=("CAP_BPF",)),
    _Entry(("perf_event_open",), _ALLOW, inc_caps=("CAP_PERFMON",)),
)


# ------------------------------------------------------------------ resolving entries for this host
def _kernel_at_least(want: str, release: str) -> bool:
    def nums(s: str) -> tuple[int, ...]:
        out = []
        for part in s.split("-")[0].split(".")[:3]:
            digits = "".join(c for c in part if c.isdigit()) if part else ""
            out.append(int(digits) if digits else 0)
        return tuple(out)

    return nums(release) >= nums(want)


def _norm_cap(cap: str) -> str:
    cap = cap.strip().upper()
    return cap if cap.startswith("CAP_") else "CAP_" + cap


def _resolve(entries: tuple[_Entry, ...] | list[_Entry], caps: set[str], goarch: str, release: str) -> list[Rule]:
    """docker's filter over a profile's entries (moby ``setupSeccomp``): excludes first, then includes."""
    rules: list[Rule] = []
    for e in entries:
        if e.exc_arches and goarch in e.exc_arches:
            continue
        if e.exc_caps and any(c in caps for c in e.exc_caps):
            continue
        if e.exc_kernel and _kernel_at_least(e.exc_kernel, release):
            continue
        if e.inc_arches and goarch not in e.inc_arches:
            continue
        if e.inc_caps and not all(c in caps for c in e.inc_caps):
            continue
        if e.inc_kernel and not _kernel_at_least(e.inc_kernel, release):
            continue
        rules.append(Rule(e.names, e.action, e.args))
    return rules


def default_profile(caps: set[str], *, machine: str | None = None, release: str | None = None) -> Profile:
    """docker's default profile for a container whose bounding set is ``caps`` ("CAP_SYS_ADMIN" or
    "SYS_ADMIN")."""
    machine = machine or os.uname().machine
    release = release or os.uname().release
    norm = {_norm_cap(c) for c in caps}
    rules = _resolve(_DEFAULT, norm, _GOARCH.get(machine, machine), release)
    return Profile(scmp.scmp_act_errno(EPERM), _ARCH_MAP.get(machine, ()), tuple(rules), "default")


# ------------------------------------------------------------------ docker's JSON profile format
_ACTIONS = {
    "SCMP_ACT_KILL": scmp.SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": scmp.SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": scmp.SCMP_ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": scmp.SCMP_ACT_TRAP,
    "SCMP_ACT_ALLOW": scmp.SCMP_ACT_ALLOW,
    "SCMP_ACT_LOG": scmp.SCMP_ACT_LOG,
}
_OPS = {
    "SCMP_CMP_NE": scmp.SCMP_CMP_NE, "SCMP_CMP_LT": scmp.SCMP_CMP_LT,
    "SCMP_CMP_LE": scmp.SCMP_CMP_LE, "SCMP_CMP_EQ": scmp.SCMP_CMP_EQ,
    "SCMP_CMP_GE": scmp.SCMP_CMP_GE, "SCMP_CMP_GT": scmp.SCMP_CMP_GT,
    "SCMP_CMP_MASKED_EQ": scmp.SCMP_CMP_MASKED_EQ,
}


def _action(name: object, errno_ret: object, where: str) -> int:
    if not isinstance(name, str):
        raise ValueError(f"{where}: action must be a string")
    if errno_ret is not None and (not isinstance(errno_ret, int) or not 0 <= errno_ret <= 0xFFFF):
        raise ValueError(f"{where}: errnoRet must be an integer 0..65535")
    if name == "SCMP_ACT_ERRNO":
        return scmp.scmp_act_errno(EPERM if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_TRACE":
        return scmp.scmp_act_trace(EPERM if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_NOTIFY":
        raise ValueError(f"{where}: SCMP_ACT_NOTIFY needs a listener, which ocibox does not run")
    if name not in _ACTIONS:
        raise ValueError(f"{where}: unknown action {name!r}")
    return _ACTIONS[name]


def _arch_name(scmp: object, where: str) -> str:
    if not isinstance(scmp, str) or not scmp.startswith("SCMP_ARCH_"):
        raise ValueError(f"{where}: architecture {scmp!r} is not SCMP_ARCH_*")
    return scmp.removeprefix("SCMP_ARCH_").lower()


def _strs(obj: dict[str, object], key: str, where: str) -> tuple[str, ...]:
    v = obj.get(key)
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"{where}: {key} must be a list of strings")
    return tuple(v)


def _filter_part(obj: object, where: str) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    if obj is None:
        return (), (), ""
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must be an object")
    kern = obj.get("minKernel") or ""
    if not isinstance(kern, str):
        raise ValueError(f"{where}.minKernel must be a string like \"4.8\"")
    caps = tuple(_norm_cap(c) for c in _strs(obj, "caps", where))
    return caps, _strs(obj, "arches", where), kern


def _parse_entry(i: int, s: object) -> _Entry:
    where = f"syscalls[{i}]"
    if not isinstance(s, dict):
        raise ValueError(f"{where} must be an object")
    names = _strs(s, "names", where)
    if s.get("name"):
        if names:
            raise ValueError(f"{where}: both 'name' and 'names' are given; use one")
        if not isinstance(s["name"], str):
            raise ValueError(f"{where}: name must be a string")
        names = (s["name"],)
    if not names:
        raise ValueError(f"{where}: no syscall names")
    action = _action(s.get("action"), s.get("errnoRet"), where)
    args: list[ArgCmp] = []
    for j, a in enumerate(s.get("args") or []):
        aw = f"{where}.args[{j}]"
        if not isinstance(a, dict):
            raise ValueError(f"{aw} must be an object")
        idx, val, val2, op = a.get("index"), a.get("value", 0), a.get("valueTwo", 0), a.get("op")
        if not isinstance(idx, int) or not 0 <= idx <= 5:
            raise ValueError(f"{aw}: index must be 0..5")
        if not isinstance(val, int) or not isinstance(val2, int) or val < 0 or val2 < 0:
            raise ValueError(f"{aw}: value and valueTwo must be unsigned integers")
        if op not in _OPS:
            raise ValueError(f"{aw}: unknown op {op!r}")
        args.append(ArgCmp(idx, _OPS[op], val, val2))
    ic, ia, ik = _filter_part(s.get("includes"), f"{where}.includes")
    ec, ea, ek = _filter_part(s.get("excludes"), f"{where}.excludes")
    return _Entry(names, action, tuple(args), ic, ia, ik, ec, ea, ek)


def parse_profile(text: str, caps: set[str], *, source: str = "profile", machine: str | None = None,
                  release: str | None = None) -> Profile:
    """Parse a docker seccomp profile (JSON) and resolve it for ``caps`` on this machine.

    Raises UsageError naming the file and the offending field.
    """
    import json  # only for profile files: the default path stays free of it

    machine = machine or os.uname().machine
    release = release or os.uname().release
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("the profile must be a JSON object")
        default = _action(doc.get("defaultAction"), doc.get("defaultErrnoRet"), "defaultAction")
        arches = [_arch_name(a, "architectures") for a in doc.get("architectures") or []]
        arch_map = doc.get("archMap") or []
        if arches and arch_map:
            raise ValueError("both 'architectures' and 'archMap' are given; use one")
        native = _ARCH_MAP.get(machine, (machine,))[0]
        for m in arch_map:
            if not isinstance(m, dict):
                raise ValueError("archMap entries must be objects")
            if _arch_name(m.get("architecture"), "archMap") == native:
                arches.append(native)
                arches += [_arch_name(a, "archMap.subArchitectures") for a in m.get("subArchitectures") or []]
        entries = [_parse_entry(i, s) for i, s in enumerate(doc.get("syscalls") or [])]
    except (ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
        raise UsageError(f"seccomp profile {source}: {e}; fix the profile (docker's JSON format)") from None
    norm = {_norm_cap(c) for c in caps}
    rules = _resolve(entries, norm, _GOARCH.get(machine, machine), release)
    return Profile(default, tuple(dict.fromkeys(arches)), tuple(rules), source)


def profile_from_option(value: str | None, caps: set[str]) -> Profile | None:
    """``--security-opt seccomp=VALUE``: None (flag absent) gives docker's default for ``caps``,
    "unconfined" gives None (no filter), anything else is a docker JSON profile file."""
    if value is None:
        return default_profile(caps)
    if value == "unconfined":
        return None
    try:
        with open(value, encoding="utf-8") as f:
            text = f.read(4 << 20)
    except OSError as e:
        raise UsageError(f"seccomp profile {value}: {e.strerror}; give a readable docker JSON profile "
                         "or seccomp=unconfined") from None
    return parse_profile(text, caps, source=value)


# ------------------------------------------------------------------ building and loading the filter
class SeccompFilter:
    """A BPF program libseccomp generated for a profile, ready to install. ``skipped``: syscall names
    libseccomp does not know (ignored, as runc does)."""

    def __init__(self, program: bytes, source: str, skipped: tuple[str, ...] = ()) -> None:
        self.program = program
        self.source = source
        self.skipped = skipped

    def load(self) -> None:
        """Install the filter on the calling thread (no_new_privs is set first, as libseccomp does).
        Needs no library: it works after pivot_root."""
        try:
            scmp.seccomp_set_mode_filter(self.program)
        except OSError as e:
            raise RuntimeSetupError(f"loading the seccomp filter ({self.source}) failed: {e.strerror}; "
                                    "use --security-opt seccomp=unconfined to run without one") from None


def _build(profile: Profile) -> tuple[bytes, tuple[str, ...]]:
    try:
        ctx = scmp.seccomp_init(profile.default_action)
    except OSError as e:
        raise RuntimeSetupError(f"seccomp filter ({profile.source}): {e}") from None
    skipped: list[str] = []
    try:
        for arch in profile.arches:
            token = scmp.seccomp_arch_resolve_name(arch)
            if not token:
                raise RuntimeSetupError(f"seccomp profile {profile.source}: libseccomp does not know "
                                        f"architecture {arch!r}; remove it from the profile")
            scmp.seccomp_arch_add(ctx, token)
        for rule in profile.rules:
            if rule.action == profile.default_action:
                continue  # libseccomp refuses a rule equal to the default (runc skips them too)
            by_index: dict[int, int] = {}
            for a in rule.args:
                by_index[a.arg] = by_index.get(a.arg, 0) + 1
            # libseccomp cannot compare one argument twice in a rule: then each comparison is its
            # own rule (an OR), as runc does.
            groups = [rule.args] if max(by_index.values(), default=0) <= 1 else [(a,) for a in rule.args]
            for name in rule.names:
                nr = scmp.seccomp_syscall_resolve_name(name)
                if nr == scmp.NR_SCMP_ERROR:
                    skipped.append(name)
                    continue
                for g in groups:
                    cmps = [(a.arg, a.op, a.value, a.value_two) for a in g]
                    try:
                        scmp.seccomp_rule_add_array(ctx, rule.action, nr, cmps)
                    except OSError as e:
                        if nr < 0:  # a syscall only of arches this filter does not cover
                            continue
                        raise RuntimeSetupError(f"seccomp profile {profile.source}: rule for {name} "
                                                f"refused by libseccomp: {e.strerror}") from None
        return scmp.seccomp_export_bpf(ctx), tuple(skipped)
    except OSError as e:
        raise RuntimeSetupError(f"seccomp filter ({profile.source}): {e}") from None
    finally:
        scmp.seccomp_release(ctx)


def compile_filter(profile: Profile, cache_dir: str | None = None) -> SeccompFilter:
    """libseccomp's BPF program for ``profile``. Call it while the host's libseccomp is reachable
    (before pivot_root); ``load()`` it last, right before exec.

    Generating the program costs ~15 ms (libseccomp's BPF generation for ~400 rules x 3 arches), so
    with ``cache_dir`` the program is kept in a file named by a checksum whose first line is the exact
    profile and libseccomp version it was made from: a hit is read back only if that line matches.
    Files are written under a temporary name and published by rename.
    """
    if cache_dir is None:
        program, skipped = _build(profile)
        return SeccompFilter(program, profile.source, skipped)
    key = f"{scmp.seccomp_version()} {os.uname().machine} {profile!r}\n".encode()
    path = os.path.join(cache_dir, f"seccomp-{crc32(key):08x}-{len(key)}.bpf")
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data.startswith(key) and len(data) > len(key) and (len(data) - len(key)) % 8 == 0:
            return SeccompFilter(data[len(key):], profile.source)
    except OSError:
        pass
    program, skipped = _build(profile)
    try:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(key + program)
        os.rename(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs time
    return SeccompFilter(program, profile.source, skipped)


# ------------------------------------------------------------------ the runtime spec's seccomp section
SECCOMP_ACTIONS = (*_ACTIONS, "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
SECCOMP_OPS = tuple(_OPS)

_ACTION_NAMES = {v: k for k, v in _ACTIONS.items() if k != "SCMP_ACT_KILL"}
_OP_NAMES = {v: k for k, v in _OPS.items()}


def _oci_action(action: int) -> tuple[str, int | None]:
    if action & 0xFFFF0000 == scmp.SCMP_ACT_ERRNO_BASE:
        return "SCMP_ACT_ERRNO", action & 0xFFFF
    if action & 0xFFFF0000 == scmp.SCMP_ACT_TRACE_BASE:
        return "SCMP_ACT_TRACE", action & 0xFFFF
    return _ACTION_NAMES[action], None


def to_oci(profile: Profile) -> ocispec.Seccomp:
    """A resolved profile as config.json's ``linux.seccomp`` (what runc and crun take)."""
    default, default_errno = _oci_action(profile.default_action)
    rules = []
    for r in profile.rules:
        action, errno_ret = _oci_action(r.action)
        rules.append(ocispec.SeccompRule(r.names, action, errno_ret, tuple(
            ocispec.SeccompArg(a.arg, a.value, _OP_NAMES[a.op], a.value_two) for a in r.args)))
    return ocispec.Seccomp(default, default_errno, tuple("SCMP_ARCH_" + a.upper() for a in profile.arches),
                           syscalls=tuple(rules))


def from_oci(s: ocispec.Seccomp, source: str = "config.json") -> Profile:
    """config.json's ``linux.seccomp`` as a profile to compile; a bad action, op or architecture is a
    SpecError naming it."""
    try:
        default = _action(s.default_action, s.default_errno_ret, "linux.seccomp.defaultAction")
        rules = []
        for i, r in enumerate(s.syscalls):
            where = f"linux.seccomp.syscalls[{i}]"
            args = []
            for a in r.args:
                if a.op not in _OPS:
                    raise ValueError(f"{where}: unknown op {a.op!r}")
                args.append(ArgCmp(a.index, _OPS[a.op], a.value, a.value_two))
            rules.append(Rule(r.names, _action(r.action, r.errno_ret, where), tuple(args)))
        arches = tuple(_arch_name(a, "linux.seccomp.architectures") for a in s.architectures)
    except ValueError as e:
        raise ocispec.SpecError(f"config.json: {e}") from None
    for flag in s.flags:
        if flag not in ("SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"):
            raise ocispec.SpecError(f"config.json: linux.seccomp.flags: {flag!r} is not supported")
    if s.listener_path:
        raise ocispec.SpecError("config.json: linux.seccomp.listenerPath: seccomp notification is not supported")
    return Profile(default, arches, tuple(rules), source)


def seccomp_filter_of(s: ocispec.Seccomp, cache_dir: str | None = None) -> SeccompFilter:
    """The program of config.json's ``linux.seccomp`` (built once, then from the cache)."""
    return compile_filter(from_oci(s), cache_dir)
