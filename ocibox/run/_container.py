"""Start a container: cgroup, namespaces, mounts, pivot_root, privileges, exec; then supervise it.

``run_container`` is the whole life of one container from the host's side. The setup that runs
inside the new namespaces is ``_container_init``: one function, read top to bottom, each step
commented with its reason (the runc/crun behaviour or the CVE behind it).

Processes::

    ocibox (P, subreaper) ──fork──> C1: unshares the namespaces, forks, exits
                                    └──fork──> C2 = PID 1 of the new pid namespace (reparented to P):
                                               sets up the rootfs, drops privileges, execs the command
                                               (with --init: stays as a reaper; the command is PID 2)

A pipe with O_CLOEXEC carries C2's pid (written by C1) and, if setup or exec fails, the error:
EOF on it means the command was exec'd. P moves C2 into the container's cgroups while C2 mounts
its rootfs (a cgroup migration waits for an RCU grace period, 6 to 30 ms here: overlapped, not
added), then sends "G" on a second pipe; C2 waits for it before it unshares its cgroup namespace,
mounts /sys/fs/cgroup and, long before, execs anything.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import signal
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from ocibox import errors
from ocibox.linux import syscalls as sc
from ocibox.run import _hardening
from ocibox.run._cgroup import CgroupV1, CgroupV2
from ocibox.run._spec import CAP_NUMBER, DEFAULT_PATH, RunSpec, resolve_user

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
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                     signal.SIGUSR2, signal.SIGCONT)
_RESOLVE = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS
_KERNEL_FS = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
_MAX_ETC_FILE = 4 << 20  # bounded reads of the image's /etc/passwd and /etc/group

Cgroup = CgroupV1 | CgroupV2


def run_container(
    spec: RunSpec,
    rootfs: Path,
    state_dir: Path,
    *,
    mount_rootfs: Callable[[], None] | None = None,
    cgroup: Cgroup | None = None,
    on_start: Callable[[int], None] | None = None,
    echo: Callable[[str], None] | None = None,
    hardening: _hardening.Prepared | None = None,
) -> int:
    """Run ``spec`` with ``rootfs`` as its root; return the exit status (docker's convention).

    ``mount_rootfs`` mounts the rootfs at ``rootfs`` inside the container's mount namespace
    (the overlay of the image's layers); without it ``rootfs`` is a prepared directory that is
    bind-mounted. ``state_dir/etc`` gets a tmpfs, in the container's mount namespace only, holding
    its hostname, hosts and resolv.conf. Setup failures raise
    the matching OciboxError (125; 126/127 when the command cannot be executed).
    """
    (state_dir / "etc").mkdir(parents=True, exist_ok=True)
    etc = _etc_files(spec)
    master = slave = -1
    c2 = 0
    reaped = False
    try:
        # 1. The cgroup first, with its limits, so the container never runs unlimited.
        if cgroup is not None:
            cgroup.create()
            cgroup.apply(spec.limits)
        if spec.tty:
            master, slave = os.openpty()
            _copy_winsize(master)
        if hardening is not None:
            hardening.attach()  # v2: the device program on the new cgroup, before anything is in it
        # C2 is a grandchild: as subreaper, P inherits it when C1 exits and can wait for it.
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        r, w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        c1 = os.fork()
        if c1 == 0:  # pragma: no cover - child
            os.close(r)
            os.close(go_w)
            _stage1(spec, rootfs, state_dir, etc, mount_rootfs, cgroup, slave, w, go_r, hardening)
        os.close(w)
        os.close(go_r)
        if slave >= 0:
            os.close(slave)

        join_error: list[BaseException] = []

        def started(pid: int) -> None:
            nonlocal c2, go_w
            c2 = pid
            try:
                # 1b. C2 into the cgroups (where the limits already are), while it mounts its rootfs.
                if cgroup is not None:
                    cgroup.join(pid)
                if hardening is not None:
                    hardening.join(pid)  # the v1 devices cgroup
                os.write(go_w, b"G")
            except (OSError, errors.OciboxError) as e:
                # A join failed, or C2 already died of its own setup error (which follows on the
                # pipe and is the one reported). EOF on its pipe tells a waiting C2 to give up.
                join_error.append(e)
                os.close(go_w)
                go_w = -1
                return
            if on_start:
                on_start(pid)

        try:
            msg = _read_setup(r, c1, started)
        finally:
            if go_w >= 0:
                os.close(go_w)
        if msg.error is None and join_error:
            msg.error = join_error[0] if isinstance(join_error[0], errors.OciboxError) else \
                errors.CgroupError(f"moving the container into its cgroup failed: {join_error[0]}")
        c2 = msg.pid
        if msg.error is not None:
            if c2:
                os.waitpid(c2, 0)
                reaped = True
            raise msg.error
        status = _supervise(c2, master, spec.interactive)
        reaped = True
        if cgroup is not None and cgroup.oom_kills():
            limit = spec.limits.memory
            what = f"memory limit {_human(limit)}" if limit else "the host ran out of memory"
            sys.stderr.write(f"ocibox: the container was killed by the OOM killer ({what}); "
                             f"exit status {status}\n")
        return status
    finally:
        if c2 and not reaped:
            with contextlib.suppress(OSError):
                os.kill(c2, signal.SIGKILL)
                os.waitpid(c2, 0)
        if master >= 0:
            os.close(master)
        if cgroup is not None:
            for problem in cgroup.destroy():
                sys.stderr.write(f"ocibox: warning: {problem}\n")


# ====================================================================== parent side
class _SetupResult:
    def __init__(self) -> None:
        self.pid = 0
        self.error: errors.OciboxError | None = None


def _read_setup(r: int, c1: int, started: Callable[[int], None]) -> _SetupResult:
    """Read C2's pid (then record it and forward signals), then an error or EOF (exec done)."""
    res = _SetupResult()
    buf = b""
    try:
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            buf += chunk
            if not res.pid and buf.startswith(b"P") and b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                res.pid = int(line[1:])
                _forward_signals(res.pid)
                started(res.pid)
    finally:
        os.close(r)
        os.waitpid(c1, 0)
    text = buf.decode(errors="replace")
    if text.startswith("E"):
        kind, _, message = text[1:].partition("\t")
        cls = getattr(errors, kind, errors.RuntimeSetupError)
        if not (isinstance(cls, type) and issubclass(cls, errors.OciboxError)):
            cls = errors.RuntimeSetupError
        res.error = cls(message.strip())
    elif not res.pid:
        res.error = errors.RuntimeSetupError("the container's setup process died before starting it")
    return res


def _forward_signals(pid: int) -> None:
    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for s in FORWARDED_SIGNALS:
        signal.signal(s, forward)


def _exit_status(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _supervise(pid: int, master: int, interactive: bool) -> int:
    if master < 0:
        _, status = os.waitpid(pid, 0)
        return _exit_status(status)
    return _relay_tty(pid, master, interactive)


def _copy_winsize(master: int) -> None:
    import fcntl
    import termios

    for fd in (1, 0, 2):
        try:
            size = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
        except OSError:
            continue
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)
        return


def _relay_tty(pid: int, master: int, interactive: bool) -> int:
    """-t: copy stdin to the pty and the pty to stdout, in raw mode; the size follows SIGWINCH."""
    import select
    import termios
    import tty

    restore = None
    if interactive and os.isatty(0):
        restore = termios.tcgetattr(0)
        tty.setraw(0)
    signal.signal(signal.SIGWINCH, lambda s, f: _copy_winsize(master))
    pidfd = os.pidfd_open(pid)
    inputs = [master, pidfd] + ([0] if interactive else [])
    try:
        while True:
            ready, _, _ = select.select(inputs, [], [])
            if master in ready and not _pump(master, 1):
                inputs.remove(master)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    _write_all(master, data)
                else:
                    inputs.remove(0)
                    _write_all(master, b"\x04")  # EOF on our stdin: ^D to the terminal
            if pidfd in ready:
                os.set_blocking(master, False)
                while master in inputs and _pump(master, 1):
                    pass
                break
    finally:
        os.close(pidfd)
        if restore is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, restore)
    _, status = os.waitpid(pid, 0)
    return _exit_status(status)


def _pump(src: int, dst: int) -> bool:
    try:
        data = os.read(src, 65536)
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno == errno.EIO:  # every slave fd is closed
            return False
        raise
    if not data:
        return False
    _write_all(dst, data)
    return True


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _human(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size and n % (size // 16 or 1) == 0:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


def _etc_files(spec: RunSpec) -> dict[str, str]:
    """hostname, hosts and resolv.conf of the container (docker keeps them per container)."""
    if spec.network == "host":
        hosts = _read_host_file("/etc/hosts")
    else:
        hosts = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
                 "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
                 f"127.0.1.1\t{spec.hostname}\n")
    return {"hostname": spec.hostname + "\n", "hosts": hosts, "resolv.conf": _read_host_file("/etc/resolv.conf")}


def _read_host_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return ""


# ====================================================================== child side
def _report(w: int, e: BaseException) -> int:
    """Send an error to the parent through the pipe; return the exit code for the child."""
    if isinstance(e, errors.OciboxError):
        kind, message, code = type(e).__name__, str(e), e.exit_code
    elif isinstance(e, OSError):
        where = f" ({e.filename})" if e.filename else ""
        kind, message, code = "RuntimeSetupError", f"container setup failed: {e.strerror or e}{where}", 125
    else:
        kind, message, code = "RuntimeSetupError", f"container setup failed: {type(e).__name__}: {e}", 125
    with contextlib.suppress(OSError):
        os.write(w, f"E{kind}\t{message}\n".encode(errors="replace"))
    return code


def _stage1(spec: RunSpec, rootfs: Path, state_dir: Path, etc: dict[str, str], mount_rootfs: Callable[[], None] | None,
            cgroup: Cgroup | None, slave: int, w: int, go: int,
            hardening: _hardening.Prepared | None = None) -> None:  # pragma: no cover - runs in C1
    code = 125
    try:
        # The cgroup namespace is unshared later, by C2, once P has moved it into its cgroup: the
        # new namespace is rooted at the cgroup the process is in when it unshares.
        flags = sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWPID
        if spec.network != "host":
            flags |= sc.CLONE_NEWNET
        sc.unshare(flags)
        # CLONE_NEWPID applies to children only: fork so that the container's init is PID 1.
        pid = os.fork()
        if pid == 0:
            try:
                _container_init(spec, rootfs, state_dir, etc, mount_rootfs, cgroup, slave, w, go, hardening)
            except BaseException as e:
                code = _report(w, e)
            os._exit(code)
        os.write(w, f"P{pid}\n".encode())
        os._exit(0)
    except BaseException as e:
        code = _report(w, e)
    os._exit(code)


def _open_in(root: int, path: str, create: str = "") -> int:
    """An O_PATH fd of ``path`` resolved inside ``root`` (symlinks cannot leave it: RESOLVE_IN_ROOT,
    the fix for CVE-2021-30465's mount-target races). Missing components are created ("dir" or
    "file" for the last one); a dangling symlink is never followed when creating."""
    rel = posixpath.normpath("/" + path).lstrip("/") or "."
    try:
        return sc.openat2(root, rel, os.O_PATH, 0, _RESOLVE)
    except FileNotFoundError:
        if not create:
            raise
    head, _, name = rel.rpartition("/")
    parent = _open_in(root, head, "dir") if head else os.dup(root)
    try:
        if create == "dir":
            os.mkdir(name, 0o755, dir_fd=parent)
        else:
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o644, dir_fd=parent))
    except FileExistsError:
        pass
    finally:
        os.close(parent)
    return sc.openat2(root, rel, os.O_PATH, 0, _RESOLVE)


@contextlib.contextmanager
def _naming(what: str, hint: str) -> Iterator[None]:
    """Turn an OSError of one setup step into one line that names what was wrong and what to do."""
    try:
        yield
    except OSError as e:
        raise errors.RuntimeSetupError(f"{what}: {e.strerror or e}; {hint}") from None


def _mount_in(root: int, path: str, source: str | None, fstype: str | None, flags: int = 0,
              data: str | None = None, create: str = "dir") -> None:
    """Mount on ``path`` inside the rootfs through /proc/self/fd (the target was resolved safely)."""
    fd = _open_in(root, path, create)
    try:
        sc.mount(source, f"/proc/self/fd/{fd}", fstype, flags, data)
    finally:
        os.close(fd)


def _remount_ro_in(root: int, path: str, flags: int = 0) -> None:
    # Re-open after mounting: the new fd is the new mount's root, not the dentry below it.
    _mount_in(root, path, None, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | flags)


def _refuse_symlink(root: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=root, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise errors.RuntimeSetupError(f"the image's /{name} is a symlink; a rootfs whose /{name} points "
                                       "elsewhere could steer the container's kernel mounts: refusing to run it")


def _read_in_root(path: str) -> str:
    """A bounded read of a regular file in the container's root (symlinks resolved inside it)."""
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = sc.openat2(root, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY, 0, _RESOLVE)
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


def _loopback_up() -> None:
    """ip link set lo up, without an ``ip`` binary: SIOCGIFFLAGS / SIOCSIFFLAGS on a socket."""
    import fcntl
    import struct

    s = sc.socket(2, 2)  # AF_INET, SOCK_DGRAM
    try:
        ifr = fcntl.ioctl(s, 0x8913, struct.pack("16sH22x", b"lo", 0))  # SIOCGIFFLAGS
        flags = struct.unpack("16sH", ifr[:18])[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 0x1))  # SIOCSIFFLAGS, IFF_UP
    finally:
        os.close(s)


def _on_initramfs() -> bool:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4] == "/":
                fstype = fields[fields.index("-") + 1]
                return fstype in ("rootfs", "ramfs")
    return False


def _container_init(spec: RunSpec, rootfs: Path, state_dir: Path, etc: dict[str, str], mount_rootfs: Callable[[], None] | None,
                    cgroup: Cgroup | None, slave: int, w: int, go: int,
                    hardening: _hardening.Prepared | None = None) -> None:  # pragma: no cover - runs as PID 1
    """PID 1 of the new namespaces: set up the container and exec its command. Never returns."""
    # Until exec this process is the host's Python with the host's files mapped: make it
    # non-dumpable so nothing in the container can ptrace it or open /proc/1/mem (runc does the
    # same for its init; see CVE-2019-5736, CVE-2016-9962).
    sc.prctl(sc.PR_SET_DUMPABLE, 0)
    # Own session: the container's processes cannot signal the caller's terminal job.
    os.setsid()
    if slave >= 0:
        import fcntl
        import termios

        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
    elif not spec.interactive:
        null = os.open("/dev/null", os.O_RDONLY)  # docker without -i: stdin is empty
        os.dup2(null, 0)
        os.close(null)
    # Device nodes and mount points must get exactly the modes asked for.
    os.umask(0)
    if spec.network != "host":
        # docker's "none" network: a fresh namespace with loopback up and nothing else.
        _loopback_up()
    with open("/proc/sys/kernel/cap_last_cap") as f:
        cap_last = int(f.read())

    # 3. Mounts made here must not propagate back to the host, while host unmounts still
    # reach us: make the whole tree a recursive slave (runc's rootfsPropagation default).
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_SLAVE)
    # hostname, hosts, resolv.conf live on a small tmpfs seen only in this mount namespace:
    # nothing is written to the host's disk and the container's mountinfo names no host path.
    state = str(state_dir / "etc")
    sc.mount("tmpfs", state, "tmpfs", _KERNEL_FS, "mode=755,size=256k")
    for name, text in etc.items():
        with open(os.path.join(state, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(state, name), 0o644)
    # The rootfs: the overlay of the image's layers, or a prepared directory bound onto itself
    # (pivot_root needs new_root to be a mount point).
    rootfs_s = str(rootfs)
    if mount_rootfs is not None:
        mount_rootfs()
    else:
        sc.mount(rootfs_s, rootfs_s, None, sc.MS_BIND | sc.MS_REC)
    if hardening is not None and hardening.v2_fallback:
        # No device cgroup could be set up (see _devices.V2_FALLBACK): nodes shipped in the image
        # must not open, so the rootfs is nodev (/dev is a separate tmpfs below).
        sc.mount(None, rootfs_s, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_NODEV)
    root = os.open(rootfs_s, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    # 4. Kernel filesystems. An image whose /proc, /sys or /dev is a symlink could point these
    # mounts at host paths (CVE-2019-19921 and kin): refuse it outright.
    for name in ("proc", "sys", "dev"):
        _refuse_symlink(root, name)
    _mount_in(root, "/proc", "proc", "proc", _KERNEL_FS)
    # /dev is a small tmpfs with only the safe nodes (docker's default device list).
    _mount_in(root, "/dev", "tmpfs", "tmpfs", sc.MS_NOSUID | sc.MS_STRICTATIME, "mode=755,size=65536k")
    dev = _open_in(root, "/dev")
    for name, major, minor in DEVICES:
        os.mknod(name, stat.S_IFCHR | 0o666, os.makedev(major, minor), dir_fd=dev)
    for name, target in DEV_LINKS:
        os.symlink(target, name, dir_fd=dev)
    _hardening.make_device_nodes(spec.hardening, dev, hardening)  # --device, --privileged's host nodes
    os.close(dev)
    # A private devpts instance: the container cannot see or open the host's terminals.
    _mount_in(root, "/dev/pts", "devpts", "devpts", sc.MS_NOSUID | sc.MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620,gid=5")
    _mount_in(root, "/dev/shm", "shm", "tmpfs", _KERNEL_FS, "mode=1777,size=65536k")
    _mount_in(root, "/dev/mqueue", "mqueue", "mqueue", _KERNEL_FS)
    if slave >= 0:
        # -t: the pty is the container's console, as runc does with its console socket.
        # By path: the fd belongs to the mount namespace of ocibox, which a bind cannot take from.
        _mount_in(root, "/dev/console", os.ttyname(slave), None, sc.MS_BIND, create="file")
    # /sys read-only: the container must not reconfigure host devices or the kernel.
    _mount_in(root, "/sys", "sysfs", "sysfs", _KERNEL_FS | sc.MS_RDONLY)
    # The container's own hostname, hosts and resolv.conf (docker bind-mounts them).
    for name in ("hostname", "hosts", "resolv.conf"):
        _mount_in(root, f"/etc/{name}", os.path.join(state, name), None, sc.MS_BIND, create="file")
    # Volumes and tmpfs, targets resolved inside the rootfs like every other mount.
    for m in spec.mounts:
        with _naming(f"{'volume' if m.kind == 'bind' else 'tmpfs'} target {m.target}",
                     "the target must be a path inside the image that does not leave it through a symlink"):
            if m.kind == "bind":
                if not os.path.exists(m.source):
                    os.makedirs(m.source, 0o755)  # docker creates a missing host directory
                kind = "dir" if os.path.isdir(m.source) else "file"
                _mount_in(root, m.target, m.source, None, sc.MS_BIND | sc.MS_REC, create=kind)
                if m.readonly:
                    _remount_ro_in(root, m.target)
            else:
                flags = sum(getattr(sc, "MS_" + f.upper()) for f in m.flags)
                flags |= sc.MS_RDONLY if m.readonly else 0
                _mount_in(root, m.target, "tmpfs", "tmpfs", flags, m.data or None)
    # The working directory is created if missing (docker does), inside the rootfs.
    with _naming(f"working directory {spec.cwd}", "use -w with a directory inside the image"):
        os.close(_open_in(root, spec.cwd, "dir"))

    # 5. pivot_root, never chroot: chroot leaves the host's mounts reachable (runc's
    # pivot_root(".", ".") then a lazy unmount of the old root stacked on top).
    old_root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    os.fchdir(root)
    try:
        sc.pivot_root(".", ".")
    except OSError as e:
        if e.errno != errno.EINVAL or not _on_initramfs():
            raise
        # The host's / is an initramfs: pivot_root is impossible there. Move the rootfs over /
        # and chroot (what runc's --no-pivot does), and say so.
        sys.stderr.write("ocibox: warning: / is an initramfs where pivot_root cannot work; using "
                         "move-mount and chroot (weaker isolation)\n")
        sc.mount(".", "/", None, sc.MS_MOVE)
        os.chroot(".")
    else:
        os.fchdir(old_root)
        # The old root must not propagate the unmount to the host: slave it, then detach.
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        sc.umount(".", sc.MNT_DETACH)
    os.close(old_root)
    os.close(root)
    os.chdir("/")

    # 6. Mask docker's masked paths (/dev/null over files, an empty read-only tmpfs over
    # directories) and make its read-only paths read-only: they leak host data or let a
    # process reconfigure the host kernel.
    for p in () if spec.hardening.privileged else MASKED_PATHS:
        try:
            is_dir = stat.S_ISDIR(os.stat(p).st_mode)
        except OSError:
            continue
        if is_dir:
            sc.mount("tmpfs", p, "tmpfs", sc.MS_RDONLY | _KERNEL_FS, "size=0")
        else:
            sc.mount("/dev/null", p, None, sc.MS_BIND)
    for p in () if spec.hardening.privileged else READONLY_PATHS:
        if not os.path.exists(p):
            continue
        sc.mount(p, p, None, sc.MS_BIND | sc.MS_REC)
        sc.mount(None, p, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | _KERNEL_FS)

    # 6b. The cgroups: wait until P has moved this process into the container's cgroups (the
    # mounts above overlapped that wait), then root a cgroup namespace there and mount the
    # container's own cgroup, read-only. Nothing of the command runs before this point.
    if os.read(go, 1) != b"G":
        os._exit(125)  # the runner could not move us into the cgroup: it reports why
    os.close(go)
    if cgroup is not None:
        sc.unshare(sc.CLONE_NEWCGROUP)
        root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        mounts = cgroup.container_mounts()
        if mounts[0][0] == "cgroup2":
            _mount_in(root, "/sys/fs/cgroup", "cgroup2", "cgroup2", _KERNEL_FS | sc.MS_RDONLY)
        else:
            _mount_in(root, "/sys/fs/cgroup", "tmpfs", "tmpfs", _KERNEL_FS, "mode=755,size=64k")
            for fstype, sub, opts in mounts:
                _mount_in(root, f"/sys/fs/cgroup/{sub}", "cgroup", fstype, _KERNEL_FS | sc.MS_RDONLY, opts)
                if "," in sub:
                    cg = _open_in(root, "/sys/fs/cgroup")
                    for part in sub.split(","):
                        os.symlink(sub, part, dir_fd=cg)
                    os.close(cg)
            _remount_ro_in(root, "/sys/fs/cgroup", _KERNEL_FS)
        os.close(root)
    if spec.readonly:
        # --read-only: the root mount itself; /dev, /proc, volumes, tmpfs stay as they are.
        sc.mount(None, "/", None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY)
    sc.sethostname(spec.hostname)

    # The user, from the image's own files (read inside the new root, bounded).
    user = resolve_user(spec.user, _read_in_root("/etc/passwd"), _read_in_root("/etc/group"))
    env = dict(e.partition("=")[::2] for e in spec.env)
    env.setdefault("HOME", user.home)

    # 7. Capabilities: drop everything else from the bounding set (so no exec can regain it),
    # clear ambient; permitted and effective are set after the uid change.
    keep = 0
    # (without CAP_MKNOD where the v2 device fallback holds the devices)
    for name in _hardening.drop_for_fallback(spec.caps, hardening) if hardening else spec.caps:
        keep |= 1 << CAP_NUMBER[name]
    for cap in range(cap_last + 1):
        if not keep & (1 << cap):
            sc.prctl(sc.PR_CAPBSET_DROP, cap)
    with contextlib.suppress(OSError):  # kernels before 4.3 have no ambient set
        sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    # no_new_privs: setuid binaries and file capabilities cannot raise privileges in the container.
    sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)

    # 8. Identity: keep the capability sets across setuid, then set them exactly.
    sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    os.setgroups(list(user.groups))
    os.setgid(user.gid)
    os.setuid(user.uid)
    sc.capset(keep, keep, 0)
    sc.prctl(sc.PR_SET_KEEPCAPS, 0)
    os.chdir(spec.cwd)
    # The cwd must be inside the container (CVE-2024-21626: a leaked host fd as cwd).
    if not os.getcwd().startswith("/"):
        raise errors.RuntimeSetupError(f"the working directory {spec.cwd} is outside the container")
    os.umask(0o022)
    # Python ignores SIGPIPE and SIGXFSZ; ignored signals survive exec, so restore them.
    for s in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    # Only fds 0-2 reach the command: every other fd is close-on-exec (runc's fix for leaked fds,
    # CVE-2024-21626). The setup pipe stays open until exec, to report exec failures.
    try:
        sc.close_range(3, 0xFFFFFFFF, sc.CLOSE_RANGE_CLOEXEC)
    except OSError:
        for name in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if int(name) > 2:
                    os.set_inheritable(int(name), False)

    # Last, after no_new_privs and the uid change: --ulimit, then the seccomp filter (nothing but
    # exec may follow it; the filter was built in the parent while libseccomp was reachable).
    if hardening is not None:
        _hardening.before_exec(spec.hardening, hardening)
    if spec.init:
        _reaper(spec, env, w)
    _exec(spec.argv, env)


def _exec(argv: tuple[str, ...], env: dict[str, str]) -> None:
    """execve, searching the container's PATH like docker; errors say 126 or 127."""
    prog = argv[0]
    if "/" in prog:
        candidates = [prog]
    else:
        candidates = [posixpath.join(d or ".", prog) for d in env.get("PATH", DEFAULT_PATH).split(":")]
    first: OSError | None = None
    for c in candidates:
        try:
            os.execve(c, list(argv), env)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR) and first is None:
                first = e
    if first is not None:
        raise errors.ContainerCommandError(f"cannot execute {prog!r} in the container: {first.strerror}")
    if "/" in prog:
        raise errors.CommandNotFound(f"{prog}: no such file or directory in the container")
    raise errors.CommandNotFound(f"{prog}: executable file not found in $PATH of the container")


def _reaper(spec: RunSpec, env: dict[str, str], w: int) -> None:  # pragma: no cover - PID 1 with --init
    """--init: stay PID 1 (already-loaded Python, no exec: the container may have no python),
    forward signals to the command (PID 2) and reap every orphan; exit with the command's status."""
    pid = os.fork()
    if pid == 0:
        try:
            _exec(spec.argv, env)
        except BaseException as e:
            os._exit(_report(w, e))
    os.close(w)
    _forward_signals(pid)
    while True:
        try:
            child, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(125)
        if child == pid:
            os._exit(_exit_status(status))
