"""PID 1 of a new container: everything between the fork into the new namespaces and the exec of the
command, in one function (``init``) that reads top to bottom, each step numbered once and commented
with its reason (the runc or crun behaviour, or the CVE, behind it).

It reaches the kernel through ``args.kernel`` (``ocibox.linux.syscalls`` in real use), so a test double
can stand in for the kernel in unit tests of the order of the steps.

It talks to its creator through three fds:

- ``setup`` (write end, close-on-exec): b"R\\n" once the container is created and PID 1 waits at the
  gate; an error line (``errors.to_wire``) if a step fails; EOF when the command was exec'd.
- ``go`` (read end): b"G" once the creator moved this process into the container's cgroups (the
  mounts below overlap that move), EOF if it could not.
- ``gate`` (read end): the create/start seam. PID 1 blocks on it, created but not started, until the
  creator writes b"S" (``start``); EOF means the container is deleted before it started.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import signal
import stat

from ocibox import errors
from ocibox._record import record
from ocibox.run import _hardening
from ocibox.run._spec import CAP_NUMBER, DEFAULT_PATH, RunSpec, resolve_user

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import ModuleType

# docker's default masked and read-only paths (moby oci/defaults.go)
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
             ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore"), ("ptmx", "pts/ptmx"))
_MAX_ETC_FILE = 4 << 20  # bounded reads of the image's /etc/passwd and /etc/group


@record
class InitArgs:
    """Everything PID 1 needs, made by its creator before the fork."""

    spec: RunSpec
    rootfs: str  # where the rootfs is mounted (or the prepared directory)
    etc_dir: str  # a directory for the container's hostname, hosts, resolv.conf (gets a tmpfs)
    etc: dict[str, str]  # their contents
    setup: int  # pipe write end: R, an error, or EOF at exec
    go: int  # pipe read end: G once in the cgroups
    gate: int  # pipe read end: S to start
    kernel: ModuleType  # ocibox.linux.syscalls, or a test double
    mount_rootfs: Callable[[], None] | None = None  # the overlay; None: bind-mount ``rootfs``
    cgroup_mounts: tuple[tuple[str, str, str], ...] = ()  # Cgroup.container_mounts(); () = no cgroup
    devices_fallback: bool = False  # no device cgroup: rootfs nodev, no CAP_MKNOD
    console: int = -1  # -t: the pty's slave
    prepared: _hardening.Prepared | None = None  # seccomp program, --privileged's host nodes


def init(a: InitArgs) -> None:  # pragma: no cover - runs as PID 1 (the order is unit-tested with a double)
    """Set up the container and exec its command. Never returns; an error is raised to the caller,
    which reports it on ``a.setup``."""
    k, spec = a.kernel, a.spec
    # 1. Until exec this process is the host's Python with the host's files mapped: make it non-dumpable,
    # so nothing in the container can ptrace it or open /proc/1/mem (runc does the same for its init;
    # CVE-2019-5736, CVE-2016-9962). Its own session: the container cannot signal the caller's terminal.
    k.prctl(k.PR_SET_DUMPABLE, 0)
    k.setsid()
    if a.console >= 0:
        import fcntl
        import termios

        fcntl.ioctl(a.console, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            k.dup2(a.console, fd)
    elif not spec.interactive:
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)  # docker without -i: stdin is empty
        k.dup2(null, 0)
        os.close(null)
    # Device nodes and mount points must get exactly the modes asked for.
    k.umask(0)
    if spec.network != "host":
        # docker's "none" network: a fresh namespace with loopback up and nothing else.
        _loopback_up(k)
    with open("/proc/sys/kernel/cap_last_cap") as f:
        cap_last = int(f.read())

    # 2. Mounts made here must not propagate back to the host, while host unmounts still reach us:
    # make the whole tree a recursive slave (runc's rootfsPropagation default).
    k.mount(None, "/", None, k.MS_REC | k.MS_SLAVE)
    # hostname, hosts, resolv.conf live on a small tmpfs seen only in this mount namespace: nothing
    # is written to the host's disk and the container's mountinfo names no host path.
    kernel_fs = k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC
    k.mount("tmpfs", a.etc_dir, "tmpfs", kernel_fs, "mode=755,size=256k")
    for name, text in a.etc.items():
        path = os.path.join(a.etc_dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
    # The rootfs: the overlay of the image's layers, or a prepared directory bound onto itself
    # (pivot_root needs new_root to be a mount point).
    if a.mount_rootfs is not None:
        a.mount_rootfs()
    else:
        k.mount(a.rootfs, a.rootfs, None, k.MS_BIND | k.MS_REC)
    if a.devices_fallback:
        # No device cgroup could be set up (see ocibox.cgroups.V2_FALLBACK): nodes shipped in the image
        # must not open, so the rootfs is nodev (/dev is a separate tmpfs below).
        k.mount(None, a.rootfs, None, k.MS_REMOUNT | k.MS_BIND | k.MS_NODEV)
    m = _Mounter(k, os.open(a.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))

    # 3. Kernel filesystems. An image whose /proc, /sys or /dev is a symlink could point these mounts
    # at host paths (CVE-2019-19921 and kin): refuse it outright.
    for name in ("proc", "sys", "dev"):
        m.refuse_symlink(name)
    m.mount("/proc", "proc", "proc", kernel_fs)
    # /dev is a small tmpfs with only the safe nodes (docker's default device list).
    m.mount("/dev", "tmpfs", "tmpfs", k.MS_NOSUID | k.MS_STRICTATIME, "mode=755,size=65536k")
    dev = m.open("/dev")
    for name, major, minor in DEVICES:
        k.mknod(name, stat.S_IFCHR | 0o666, os.makedev(major, minor), dir_fd=dev)
    for name, target in DEV_LINKS:
        k.symlink(target, name, dir_fd=dev)
    _hardening.make_device_nodes(spec.hardening, dev, a.prepared)  # --device, --privileged's host nodes
    os.close(dev)
    # A private devpts instance: the container cannot see or open the host's terminals.
    m.mount("/dev/pts", "devpts", "devpts", k.MS_NOSUID | k.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")
    m.mount("/dev/shm", "shm", "tmpfs", kernel_fs, "mode=1777,size=65536k")
    m.mount("/dev/mqueue", "mqueue", "mqueue", kernel_fs)
    if a.console >= 0:
        # -t: the pty is the container's console, as runc does with its console socket. By path: the
        # fd belongs to the mount namespace of ocibox, which a bind cannot take from.
        m.mount("/dev/console", os.ttyname(a.console), None, k.MS_BIND, create="file")
    # /sys read-only: the container must not reconfigure host devices or the kernel.
    m.mount("/sys", "sysfs", "sysfs", kernel_fs | k.MS_RDONLY)

    # 4. The container's own hostname, hosts and resolv.conf (docker bind-mounts them), then volumes and
    # tmpfs, every target resolved inside the rootfs like every other mount.
    for name in ("hostname", "hosts", "resolv.conf"):
        m.mount(f"/etc/{name}", os.path.join(a.etc_dir, name), None, k.MS_BIND, create="file")
    for v in spec.mounts:
        with _naming(f"{'volume' if v.kind == 'bind' else 'tmpfs'} target {v.target}",
                     "the target must be a path inside the image that does not leave it through a symlink"):
            if v.kind == "bind":
                if not os.path.exists(v.source):
                    os.makedirs(v.source, 0o755)  # docker creates a missing host directory
                kind = "dir" if os.path.isdir(v.source) else "file"
                m.mount(v.target, v.source, None, k.MS_BIND | k.MS_REC, create=kind)
                if v.readonly:
                    m.remount_ro(v.target)
            else:
                flags = sum(getattr(k, "MS_" + f.upper()) for f in v.flags)
                flags |= k.MS_RDONLY if v.readonly else 0
                m.mount(v.target, "tmpfs", "tmpfs", flags, v.data or None)
    # The working directory is created if missing (docker does), inside the rootfs.
    with _naming(f"working directory {spec.cwd}", "use -w with a directory inside the image"):
        os.close(m.open(spec.cwd, "dir"))

    # 5. pivot_root, never chroot: chroot leaves the host's mounts reachable (runc's pivot_root(".", ".")
    # then a lazy unmount of the old root stacked on top).
    old_root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    k.fchdir(m.root)
    try:
        k.pivot_root(".", ".")
    except OSError as e:
        if e.errno != errno.EINVAL or not _on_initramfs():
            raise
        # The host's / is an initramfs: pivot_root is impossible there. Move the rootfs over / and
        # chroot (what runc's --no-pivot does), and say so.
        os.write(2, b"ocibox: warning: / is an initramfs where pivot_root cannot work; using move-mount and "
                    b"chroot (weaker isolation)\n")
        k.mount(".", "/", None, k.MS_MOVE)
        k.chroot(".")
    else:
        k.fchdir(old_root)
        # The old root must not propagate the unmount to the host: slave it, then detach.
        k.mount(None, ".", None, k.MS_SLAVE | k.MS_REC)
        k.umount(".", k.MNT_DETACH)
    os.close(old_root)
    os.close(m.root)
    k.chdir("/")

    # 6. Mask docker's masked paths (/dev/null over files, an empty read-only tmpfs over directories)
    # and make its read-only paths read-only: they leak host data or let a process reconfigure the
    # host kernel.
    for p in () if spec.hardening.privileged else MASKED_PATHS:
        try:
            is_dir = stat.S_ISDIR(os.stat(p).st_mode)
        except OSError:
            continue
        if is_dir:
            k.mount("tmpfs", p, "tmpfs", k.MS_RDONLY | kernel_fs, "size=0")
        else:
            k.mount("/dev/null", p, None, k.MS_BIND)
    for p in () if spec.hardening.privileged else READONLY_PATHS:
        if not os.path.exists(p):
            continue
        k.mount(p, p, None, k.MS_BIND | k.MS_REC)
        k.mount(None, p, None, k.MS_REMOUNT | k.MS_BIND | k.MS_RDONLY | kernel_fs)

    # 7. The cgroups: wait until the creator has moved this process into the container's cgroups (the
    # mounts above overlapped that wait), then root a cgroup namespace there and mount the container's
    # own cgroup, read-only. Nothing of the command runs before this point.
    if os.read(a.go, 1) != b"G":
        os._exit(125)  # the creator could not move us into the cgroup: it reports why
    os.close(a.go)
    if a.cgroup_mounts:
        k.unshare(k.CLONE_NEWCGROUP)
        m = _Mounter(k, os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        if a.cgroup_mounts[0][0] == "cgroup2":
            m.mount("/sys/fs/cgroup", "cgroup2", "cgroup2", kernel_fs | k.MS_RDONLY)
        else:
            m.mount("/sys/fs/cgroup", "tmpfs", "tmpfs", kernel_fs, "mode=755,size=64k")
            for fstype, sub, opts in a.cgroup_mounts:
                m.mount(f"/sys/fs/cgroup/{sub}", "cgroup", fstype, kernel_fs | k.MS_RDONLY, opts)
                if "," in sub:
                    cg = m.open("/sys/fs/cgroup")
                    for part in sub.split(","):
                        k.symlink(sub, part, dir_fd=cg)
                    os.close(cg)
            m.remount_ro("/sys/fs/cgroup", kernel_fs)
        os.close(m.root)
    if spec.readonly:
        # --read-only: the root mount itself; /dev, /proc, volumes, tmpfs stay as they are.
        k.mount(None, "/", None, k.MS_REMOUNT | k.MS_BIND | k.MS_RDONLY)
    k.sethostname(spec.hostname)

    # 8. The user, from the image's own files (read inside the new root, bounded).
    user = resolve_user(spec.user, _read_in_root(k, "/etc/passwd"), _read_in_root(k, "/etc/group"))
    env = dict(e.partition("=")[::2] for e in spec.env)
    env.setdefault("HOME", user.home)

    # 9. Capabilities: drop everything else from the bounding set (so no exec can regain it), clear
    # ambient (without CAP_MKNOD where the devices fallback holds the devices); permitted and effective
    # are set after the uid change. no_new_privs: setuid binaries and file capabilities cannot raise
    # privileges in the container.
    keep = 0
    for name in _hardening.drop_for_fallback(spec.caps, a.devices_fallback):
        keep |= 1 << CAP_NUMBER[name]
    for cap in range(cap_last + 1):
        if not keep & (1 << cap):
            k.prctl(k.PR_CAPBSET_DROP, cap)
    with contextlib.suppress(OSError):  # kernels before 4.3 have no ambient set
        k.prctl(k.PR_CAP_AMBIENT, k.PR_CAP_AMBIENT_CLEAR_ALL)
    k.prctl(k.PR_SET_NO_NEW_PRIVS, 1)

    # 10. Identity: keep the capability sets across setuid, then set them exactly.
    k.prctl(k.PR_SET_KEEPCAPS, 1)
    k.setgroups(list(user.groups))
    k.setgid(user.gid)
    k.setuid(user.uid)
    k.capset(keep, keep, 0)
    k.prctl(k.PR_SET_KEEPCAPS, 0)
    k.chdir(spec.cwd)
    # The cwd must be inside the container (CVE-2024-21626: a leaked host fd as cwd).
    if not os.getcwd().startswith("/"):
        raise errors.RuntimeSetupError(f"the working directory {spec.cwd} is outside the container")
    k.umask(0o022)
    # Python ignores SIGPIPE and SIGXFSZ; ignored signals survive exec, so restore them.
    for s in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    # Only fds 0-2 reach the command: every other fd is close-on-exec (runc's fix for leaked fds,
    # CVE-2024-21626). The setup pipe stays open until exec, to report exec failures.
    try:
        k.close_range(3, 0xFFFFFFFF, k.CLOSE_RANGE_CLOEXEC)
    except OSError:
        for name in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if int(name) > 2:
                    os.set_inheritable(int(name), False)

    # 11. --ulimit, then find the command (runc looks it up before it waits for start: a command that
    # cannot be executed fails the create, 126 or 127).
    _hardening.apply_ulimits(spec.hardening)
    command = None if spec.init else find_executable(spec.argv[0], env)

    # 12. Created: tell the creator and wait at the gate until it starts the container.
    os.write(a.setup, b"R\n")
    if os.read(a.gate, 1) != b"S":
        os._exit(125)  # deleted before it started
    os.close(a.gate)

    # 13. Last, the seccomp filter (nothing but exec may follow it; the filter was built by the
    # creator while libseccomp was reachable), then exec.
    if a.prepared is not None:
        _hardening.load_seccomp(a.prepared)
    if spec.init:
        _reaper(k, spec, env, a.setup)
    assert command is not None
    try:
        k.execve(command, list(spec.argv), env)
    except OSError as e:
        raise errors.ContainerCommandError(f"cannot execute {spec.argv[0]!r} in the container: {e.strerror}") from None


# ----------------------------------------------------------------------------- helpers of the steps
class _Mounter:
    """Mounts on paths inside a root directory fd, each target resolved safely."""

    def __init__(self, k: ModuleType, root: int) -> None:
        self.k, self.root = k, root
        self.resolve = k.RESOLVE_IN_ROOT | k.RESOLVE_NO_MAGICLINKS

    def open(self, path: str, create: str = "") -> int:
        """An O_PATH fd of ``path`` resolved inside the root (symlinks cannot leave it: RESOLVE_IN_ROOT,
        the fix for CVE-2021-30465's mount-target races). Missing components are created ("dir" or
        "file" for the last one); a dangling symlink is never followed when creating."""
        rel = posixpath.normpath("/" + path).lstrip("/") or "."
        try:
            return int(self.k.openat2(self.root, rel, os.O_PATH, 0, self.resolve))
        except FileNotFoundError:
            if not create:
                raise
        head, _, name = rel.rpartition("/")
        parent = self.open(head, "dir") if head else os.dup(self.root)
        try:
            if create == "dir":
                self.k.mkdir(name, 0o755, dir_fd=parent)
            else:
                os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 0o644, dir_fd=parent))
        except FileExistsError:
            pass
        finally:
            os.close(parent)
        return int(self.k.openat2(self.root, rel, os.O_PATH, 0, self.resolve))

    def mount(self, path: str, source: str | None, fstype: str | None, flags: int = 0, data: str | None = None,
              create: str = "dir") -> None:
        """Mount on ``path`` through /proc/self/fd (the target was resolved safely)."""
        fd = self.open(path, create)
        try:
            self.k.mount(source, f"/proc/self/fd/{fd}", fstype, flags, data)
        finally:
            os.close(fd)

    def remount_ro(self, path: str, flags: int = 0) -> None:
        # Re-open after mounting: the new fd is the new mount's root, not the dentry below it.
        self.mount(path, None, None, self.k.MS_REMOUNT | self.k.MS_BIND | self.k.MS_RDONLY | flags)

    def refuse_symlink(self, name: str) -> None:
        try:
            st = os.stat(name, dir_fd=self.root, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise errors.RuntimeSetupError(f"the image's /{name} is a symlink; a rootfs whose /{name} points "
                                           "elsewhere could steer the container's kernel mounts: refusing to run it")


@contextlib.contextmanager
def _naming(what: str, hint: str) -> Iterator[None]:
    """Turn an OSError of one setup step into one line that names what was wrong and what to do."""
    try:
        yield
    except OSError as e:
        raise errors.RuntimeSetupError(f"{what}: {e.strerror or e}; {hint}") from None


def _read_in_root(k: ModuleType, path: str) -> str:
    """A bounded read of a regular file in the container's root (symlinks resolved inside it)."""
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = k.openat2(root, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY, 0,
                       k.RESOLVE_IN_ROOT | k.RESOLVE_NO_MAGICLINKS)
    except FileNotFoundError:
        return ""
    finally:
        os.close(root)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, _MAX_ETC_FILE).decode(errors="replace")
    finally:
        os.close(fd)


def _loopback_up(k: ModuleType) -> None:
    """ip link set lo up, without an ``ip`` binary: SIOCGIFFLAGS / SIOCSIFFLAGS on a socket."""
    import fcntl
    import struct

    s = k.socket(2, 2)  # AF_INET, SOCK_DGRAM
    try:
        ifr = fcntl.ioctl(s, 0x8913, struct.pack("16sH22x", b"lo", 0))  # SIOCGIFFLAGS
        flags = struct.unpack("16sH", ifr[:18])[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 0x1))  # SIOCSIFFLAGS, IFF_UP
    finally:
        os.close(s)


def _on_initramfs() -> bool:
    from ocibox.linux import proc

    return any(m.mount_point == "/" and m.fstype in ("rootfs", "ramfs") for m in proc.mountinfo())


def find_executable(prog: str, env: dict[str, str]) -> str:
    """The file execve will run for ``prog``, searching the container's PATH like docker (runc's
    LookPath); errors say 126 (not executable) or 127 (not found)."""
    if "/" in prog:
        candidates = [prog]
    else:
        candidates = [posixpath.join(d or ".", prog) for d in env.get("PATH", DEFAULT_PATH).split(":")]
    first: OSError | None = None
    for c in candidates:
        try:
            st = os.stat(c)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR) and first is None:
                first = e
            continue
        if stat.S_ISDIR(st.st_mode):
            if first is None:
                first = OSError(errno.EACCES, os.strerror(errno.EACCES))
            continue
        if not os.access(c, os.X_OK):
            if first is None:
                first = OSError(errno.EACCES, os.strerror(errno.EACCES))
            continue
        return c
    if first is not None:
        raise errors.ContainerCommandError(f"cannot execute {prog!r} in the container: {first.strerror}")
    if "/" in prog:
        raise errors.CommandNotFound(f"{prog}: no such file or directory in the container")
    raise errors.CommandNotFound(f"{prog}: executable file not found in $PATH of the container")


def exec_command(k: ModuleType, argv: tuple[str, ...], env: dict[str, str]) -> None:
    """Find the command and exec it (errors as find_executable's, or the exec's own)."""
    path = find_executable(argv[0], env)
    try:
        k.execve(path, list(argv), env)
    except OSError as e:
        raise errors.ContainerCommandError(f"cannot execute {argv[0]!r} in the container: {e.strerror}") from None


def exit_status(status: int) -> int:
    """A wait status as docker reports it: the exit code, or 128+N for a signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _reaper(k: ModuleType, spec: RunSpec, env: dict[str, str], setup: int) -> None:  # pragma: no cover - PID 1
    """--init: stay PID 1 (already-loaded Python, no exec: the container may have no python),
    forward signals to the command (PID 2) and reap every orphan; exit with the command's status."""
    pid = os.fork()
    if pid == 0:
        try:
            exec_command(k, spec.argv, env)
        except BaseException as e:
            line, code = errors.to_wire(e, "container setup failed: ")
            with contextlib.suppress(OSError):
                os.write(setup, line)
            os._exit(code)
    os.close(setup)

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for s in FORWARDED_SIGNALS:
        signal.signal(s, forward)
    while True:
        try:
            child, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(125)
        if child == pid:
            os._exit(exit_status(status))


FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                     signal.SIGUSR2, signal.SIGCONT)
