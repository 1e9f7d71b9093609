"""PID 1 of a new container: everything between the fork into the new namespaces and the exec of the
command, for any OCI runtime configuration, in one function (``init``) that reads top to bottom, each
step numbered once and commented with its reason (the runc or crun behaviour, or the CVE, behind it).

It reaches the kernel through ``args.kernel`` (``ocibox.linux.syscalls`` in real use), so a test double
can stand in for the kernel in unit tests of the order of the steps.

It talks to its creator through three fds:

- ``setup`` (write end, close-on-exec): b"R\\n" once the container is created and PID 1 waits at the
  gate; an error line (``errors.to_wire``) if a step fails; EOF when the command was exec'd.
- ``go`` (read end): b"G" once the creator moved this process into the container's cgroups and its
  network is attached (the mounts overlap both), then the /etc files known only then, then EOF; EOF
  alone if it could not.
- ``gate``: the create/start seam. PID 1 blocks on it, created but not started, until the creator
  writes b"S" (``start``); EOF means the container is deleted before it started. For the runtime's
  command line (create and start in two processes) it is a fifo opened O_PATH: opening it for writing
  through /proc/self/fd blocks until ``start`` opens it for reading (runc's exec.fifo).
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat

from ocibox import errors, ocispec
from ocibox._contextlib import contextmanager, suppress
from ocibox._record import field, record
from ocibox.run._spec import CAP_NUMBER, DEFAULT_PATH, resolve_user

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable, Iterator
    from types import ModuleType

    from ocibox.run._seccomp import SeccompFilter
else:
    import _signal as signal  # not signal: its Signals enum imports enum (~3 ms of a run)

# runc's default device nodes, its /dev symlinks
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
             ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore"), ("ptmx", "pts/ptmx"))
_MAX_ETC_FILE = 4 << 20  # bounded reads of the image's /etc/passwd and /etc/group


@record
class InitArgs:
    """Everything PID 1 needs, made by its creator before the fork."""

    config: ocispec.Spec
    rootfs: str  # the absolute path of root.path
    setup: int  # pipe write end: R, an error, or EOF at exec
    go: int  # pipe read end: G once in the cgroups
    gate: int  # pipe read end (b"S" to start), or an O_PATH fd of the exec fifo (``gate_fifo``)
    kernel: ModuleType  # ocibox.linux.syscalls, or a test double
    bundle: str = ""  # relative bind-mount sources are relative to it
    gate_fifo: bool = False
    mount_rootfs: Callable[[], None] | None = None  # ocibox's overlay; None: bind-mount ``rootfs`` onto itself
    etc_dir: str = ""  # ocibox's /etc files: a tmpfs made here, filled with ``etc``
    etc: dict[str, str] = field(default_factory=dict)
    cgroup_mounts: tuple[tuple[str, str, str], ...] = ()  # Cgroup.container_mounts(); () = no cgroup
    devices_fallback: bool = False  # no device cgroup: rootfs nodev, no CAP_MKNOD
    console_socket: int = -1  # process.terminal: where to send the master of the pty made in the container
    stdin_null: bool = False  # docker without -i: stdin is /dev/null
    seccomp: SeccompFilter | None = None  # built by the creator while libseccomp was reachable
    user: str | None = None  # docker's -u, resolved in the container (ocibox's io.ocibox.user)
    reaper: bool = False  # --init: stay PID 1 as a reaper, the command as its child
    preserve_fds: int = 0  # fds 3.. 3+N-1 passed to the command (runc's --preserve-fds)
    no_pivot: bool = False  # chroot instead of pivot_root (runc's --no-pivot: only for ramfs roots)
    hooks: int = -1  # pipe read end: the state JSON once the creator ran createRuntime hooks (-1: no hooks)
    hold: int = -1  # pipe read end: the intermediate waits for its EOF before it exits (-1: it exits at once)
    #: (fd, path) of Cgroup.self_join_files(), opened by the creator: PID 1 moves itself in by writing "0"
    self_join: tuple[tuple[int, str], ...] = ()


def preload() -> None:
    """For a config with a new user namespace, called by the creator before its fork: PID 1's ids are
    then those of the maps, which may not read the host's Python (a stdlib or venv below /root, 0700),
    so what it would import lazily is imported now."""
    import fcntl  # noqa: F401
    import resource  # noqa: F401
    import struct  # noqa: F401

    from ocibox import _json  # noqa: F401
    from ocibox.linux import proc, pty  # noqa: F401
    from ocibox.run import _hooks, _rlimits  # noqa: F401


def init(a: InitArgs) -> None:  # pragma: no cover - runs as PID 1 (the order is unit-tested with a double)
    """Set up the container and exec its command. Never returns; an error is raised to the caller,
    which reports it on ``a.setup``."""
    k, cfg = a.kernel, a.config
    proc = cfg.process
    assert proc is not None
    # 1. Until exec this process is the host's Python with the host's files mapped: make it non-dumpable,
    # so nothing in the container can ptrace it or open /proc/1/mem (runc does the same for its init;
    # CVE-2019-5736, CVE-2016-9962). Its own session: the container cannot signal the caller's terminal.
    k.prctl(k.PR_SET_DUMPABLE, 0)
    k.setsid()
    if a.stdin_null and a.console_socket < 0:
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        k.dup2(null, 0)
        os.close(null)
    if proc.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:  # before privileges go (lowering it needs them)
            f.write(str(proc.oom_score_adj))
    # Device nodes and mount points must get exactly the modes asked for.
    k.umask(0)
    net = cfg.linux.namespace("network")
    if net is not None and not net.path:
        _loopback_up(k)  # a new network namespace: loopback up, as runc does
    with open("/proc/sys/kernel/cap_last_cap") as f:
        cap_last = int(f.read())

    # 2. Mounts made here must not propagate back to the host, while host unmounts still reach us:
    # rootfsPropagation on the whole tree (runc's default: rslave).
    k.mount(None, "/", None, _PROPAGATION[cfg.linux.rootfs_propagation or "rslave"])
    kernel_fs = k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC
    if a.etc_dir:
        # ocibox's hostname, hosts, resolv.conf live on a small tmpfs seen only in this mount namespace:
        # nothing is written to the host's disk for them.
        k.mount("tmpfs", a.etc_dir, "tmpfs", kernel_fs, "mode=755,size=256k")
        for name, text in a.etc.items():
            path = os.path.join(a.etc_dir, name)
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o644)
    # The rootfs: ocibox's overlay of the image's layers, or a prepared directory bound onto itself
    # (pivot_root needs new_root to be a mount point).
    if a.mount_rootfs is not None:
        a.mount_rootfs()
    else:
        k.mount(a.rootfs, a.rootfs, None, k.MS_BIND | k.MS_REC)
    if a.devices_fallback:
        # No device cgroup could be set up (see ocibox.cgroups.V2_FALLBACK): nodes shipped in the image
        # must not open, so the rootfs is nodev (/dev is a separate tmpfs below).
        k.mount(None, a.rootfs, None, k.MS_REMOUNT | k.MS_BIND | k.MS_NODEV)
    m = _Mounter(k, os.open(a.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), a.bundle,
                 userns=in_userns(cfg))

    # 3. The mounts of the config, in its order, every target resolved inside the rootfs. An image whose
    # /proc, /sys or /dev is a symlink could point kernel mounts at host paths (CVE-2019-19921 and kin):
    # refuse it outright. The cgroup mount waits until the creator has moved this process into the
    # container's cgroups (the mounts before it overlapped that wait), then roots a cgroup namespace there.
    for name in ("proc", "sys", "dev"):
        m.refuse_symlink(name)
    joined = False
    for mnt in cfg.mounts:
        with _naming(f"mount on {mnt.destination} ({mnt.type or 'bind'})",
                     "the target must be a path inside the rootfs that does not leave it through a symlink"):
            if mnt.type == "cgroup":
                joined = _join(a, k, joined)
                _mount_cgroup(a, m, mnt)
            else:
                m.mount_spec(mnt)
    joined = _join(a, k, joined)

    # 4. Device nodes: runc's defaults and the config's, the /dev symlinks; with a terminal, a pty of the
    # container's own devpts as its stdio and /dev/console, its master sent to the creator (runc's
    # console socket). The working directory is created if missing (docker and runc do), inside the rootfs.
    _devices(a, k, m)
    if a.console_socket >= 0:
        _console(a, k, m)
    with _naming(f"working directory {proc.cwd}", "use -w with a directory inside the image"):
        os.close(m.open(proc.cwd, "dir"))
    state = _hook_point(a) if a.hooks >= 0 else b""

    # 5. pivot_root, never chroot: chroot leaves the host's mounts reachable (runc's pivot_root(".", ".")
    # then a lazy unmount of the old root stacked on top).
    old_root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    k.fchdir(m.root)
    if a.no_pivot:
        k.mount(".", "/", None, k.MS_MOVE)
        k.chroot(".")
    else:
        try:
            k.pivot_root(".", ".")
        except OSError as e:
            if e.errno != errno.EINVAL or not _on_initramfs():
                raise
            # The host's / is an initramfs: pivot_root is impossible there. Move the rootfs over / and
            # chroot (what runc's --no-pivot does), and say so.
            os.write(2, b"ocibox: warning: / is an initramfs where pivot_root cannot work; using move-mount "
                        b"and chroot (weaker isolation)\n")
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

    # 6. The sysctls (runc's order: before /proc/sys turns read-only), then masked paths (/dev/null over
    # files, an empty read-only tmpfs over directories) and read-only paths: they leak host data or let
    # a process reconfigure the host kernel.
    for key, value in cfg.linux.sysctl.items():
        with _naming(f"sysctl {key}", "set only namespaced sysctls (net.*, kernel.shm*, kernel.msg*, fs.mqueue.*)"), \
                open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
    for p in cfg.linux.masked_paths:
        try:
            is_dir = stat.S_ISDIR(os.stat(p).st_mode)
        except OSError:
            continue
        if is_dir:
            k.mount("tmpfs", p, "tmpfs", k.MS_RDONLY | kernel_fs, "size=0")
        else:
            k.mount("/dev/null", p, None, k.MS_BIND)
    for p in cfg.linux.readonly_paths:
        if not os.path.exists(p):
            continue
        k.mount(p, p, None, k.MS_BIND | k.MS_REC)
        k.mount(None, p, None, k.MS_REMOUNT | k.MS_BIND | k.MS_RDONLY | kernel_fs)

    # 7. The root read-only if asked (after everything mounted on it), the names.
    if cfg.root.readonly:
        k.mount(None, "/", None, k.MS_REMOUNT | k.MS_BIND | k.MS_RDONLY)
    if cfg.hostname:
        k.sethostname(cfg.hostname)
    if cfg.domainname:
        k.setdomainname(cfg.domainname)

    # 8. The user: docker's -u resolved from the container's own files (read inside the new root,
    # bounded), or the config's numbers; HOME from the passwd entry when the config has none (runc).
    env = dict(e.partition("=")[::2] for e in proc.env)
    uid, gid, groups = proc.user.uid, proc.user.gid, proc.user.additional_gids
    if a.user is not None or "HOME" not in env:
        user = resolve_user(a.user if a.user is not None else f"{uid}:{gid}", _read_in_root(k, "/etc/passwd"),
                            _read_in_root(k, "/etc/group"))
        if a.user is not None:
            uid, gid, groups = user.uid, user.gid, user.groups
        env.setdefault("HOME", user.home)

    # 9. Capabilities: drop everything else from the bounding set (so no exec can regain it), clear the
    # ambient set (without CAP_MKNOD where the devices fallback holds the devices). no_new_privs: setuid
    # binaries and file capabilities cannot raise privileges in the container.
    caps = proc.capabilities or ocispec.Capabilities()
    bounding = _mask(caps.bounding, a.devices_fallback)
    for cap in range(cap_last + 1):
        if not bounding & (1 << cap):
            k.prctl(k.PR_CAPBSET_DROP, cap)
    with suppress(OSError):  # kernels before 4.3 have no ambient set
        k.prctl(k.PR_CAP_AMBIENT, k.PR_CAP_AMBIENT_CLEAR_ALL)
    if proc.no_new_privileges:
        k.prctl(k.PR_SET_NO_NEW_PRIVS, 1)

    # 10. Identity: keep the capability sets across setuid, then set them exactly.
    k.prctl(k.PR_SET_KEEPCAPS, 1)
    _set_ids(k, uid, gid, groups)
    k.capset(_mask(caps.effective, a.devices_fallback), _mask(caps.permitted, a.devices_fallback),
             _mask(caps.inheritable, a.devices_fallback))
    for name in caps.ambient:
        with suppress(OSError):  # runc ignores an ambient capability it cannot raise
            k.prctl(k.PR_CAP_AMBIENT, k.PR_CAP_AMBIENT_RAISE, CAP_NUMBER[name.removeprefix("CAP_")])
    k.prctl(k.PR_SET_KEEPCAPS, 0)
    k.chdir(proc.cwd)
    # The cwd must be inside the container (CVE-2024-21626: a leaked host fd as cwd).
    if not os.getcwd().startswith("/"):
        raise errors.RuntimeSetupError(f"the working directory {proc.cwd} is outside the container")
    k.umask(0o022 if proc.user.umask is None else proc.user.umask)
    # Python ignores SIGPIPE and SIGXFSZ; ignored signals survive exec, so restore them.
    for s in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    # Only fds 0-2 (and --preserve-fds) reach the command: every other fd is close-on-exec (runc's fix
    # for leaked fds, CVE-2024-21626). The setup pipe stays open until exec, to report exec failures.
    first = 3 + a.preserve_fds
    try:
        k.close_range(first, 0xFFFFFFFF, k.CLOSE_RANGE_CLOEXEC)
    except OSError:
        for name in os.listdir("/proc/self/fd"):
            with suppress(OSError):
                if int(name) >= first:
                    os.set_inheritable(int(name), False)

    # 11. The rlimits, then find the command (runc looks it up before it waits for start: a command that
    # cannot be executed fails the create, 126 or 127).
    for r in proc.rlimits:
        _setrlimit(r)
    command = None if a.reaper else find_executable(proc.args[0], env)

    # 12. Created: tell the creator and wait at the gate until it starts the container.
    os.write(a.setup, b"R\n")
    if a.gate_fifo:
        # Blocks until 'start' opens the fifo for reading (reopened through our own /proc: the path is
        # on the host, out of reach after pivot_root).
        fd = os.open(f"/proc/self/fd/{a.gate}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, b"0")
        os.close(fd)
    elif os.read(a.gate, 1) != b"S":
        os._exit(125)  # deleted before it started
    os.close(a.gate)
    if cfg.hooks.start_container:
        # startContainer hooks: in the container, after start, with this process's own credentials (runc's).
        from ocibox.run._hooks import run_hooks, with_status

        run_hooks(cfg.hooks.start_container, with_status(state, "created"), "startContainer")

    # 13. Last, the seccomp filter (nothing but exec may follow it), then exec.
    if cfg.linux.personality:
        k.personality(_persona(cfg.linux.personality))
    if a.seccomp is not None:
        a.seccomp.load()
    if a.reaper:
        _reaper(k, proc.args, env, a.setup)
    assert command is not None
    try:
        k.execve(command, list(proc.args), env)
    except OSError as e:
        raise errors.ContainerCommandError(f"cannot execute {proc.args[0]!r} in the container: {e.strerror}") from None


# ----------------------------------------------------------------------------- helpers of the steps
_PROPAGATION = {
    "private": 1 << 18, "rprivate": (1 << 18) | 16384, "slave": 1 << 19, "rslave": (1 << 19) | 16384,
    "shared": 1 << 20, "rshared": (1 << 20) | 16384, "unbindable": 1 << 17, "runbindable": (1 << 17) | 16384,
}
# mount(8) options that are flags (set, or cleared: the value is False)
_FLAGS: dict[str, tuple[int, bool]] = {
    "ro": (1, True), "rw": (1, False), "nosuid": (2, True), "suid": (2, False), "nodev": (4, True),
    "dev": (4, False), "noexec": (8, True), "exec": (8, False), "sync": (16, True), "async": (16, False),
    "mand": (64, True), "nomand": (64, False), "dirsync": (128, True), "noatime": (1024, True),
    "atime": (1024, False), "nodiratime": (2048, True), "diratime": (2048, False), "relatime": (1 << 21, True),
    "norelatime": (1 << 21, False), "strictatime": (1 << 24, True), "nostrictatime": (1 << 24, False),
    "nosymfollow": (256, True),
}
_ATIME = 1024 | (1 << 21) | (1 << 24)


def mount_flags(options: tuple[str, ...]) -> tuple[int, int, str, bool, bool]:
    """(flags, propagation flags, data, bind, recursive) of a mount's options, as runc parses them."""
    flags = prop = 0
    data: list[str] = []
    bind = recursive = False
    for o in options:
        if o in ("bind", "rbind"):
            bind, recursive = True, recursive or o == "rbind"
        elif o in _PROPAGATION:
            prop |= _PROPAGATION[o]
        elif o in _FLAGS:
            bit, on = _FLAGS[o]
            flags = flags | bit if on else flags & ~bit
        elif o in ("tmpcopyup", "defaults"):
            pass
        elif o in ("idmap", "ridmap"):
            raise errors.RuntimeSetupError(f"mount option {o!r} needs an idmapped mount, which ocibox does not "
                                           "make; remove it")
        else:
            data.append(o)
    return flags, prop, ",".join(data), bind, recursive


class _Mounter:
    """Mounts on paths inside a root directory fd, each target resolved safely."""

    def __init__(self, k: ModuleType, root: int, bundle: str = "", *, userns: bool = False) -> None:
        self.k, self.root, self.bundle, self.userns = k, root, bundle, userns
        self.resolve = k.RESOLVE_IN_ROOT | k.RESOLVE_NO_MAGICLINKS

    def locked(self, path: str) -> int:
        """In a user namespace, the flags the kernel locked on the mount at ``path`` (nosuid, nodev,
        noexec, read-only, the atime mode of a mount that came from the host): a bind remount must
        repeat them or it fails with EPERM (runc's and crun's rule). 0 outside a user namespace."""
        if not self.userns:
            return 0
        k = self.k
        fd = self.open(path)
        try:
            f = os.statvfs(f"/proc/self/fd/{fd}").f_flag
        finally:
            os.close(fd)
        out = 0
        for st_bit, ms_bit in ((os.ST_NOSUID, k.MS_NOSUID), (os.ST_NODEV, k.MS_NODEV), (os.ST_NOEXEC, k.MS_NOEXEC),
                               (os.ST_RDONLY, k.MS_RDONLY), (os.ST_NOATIME, 1024), (os.ST_NODIRATIME, 2048),
                               (os.ST_RELATIME, 1 << 21)):
            if f & st_bit:
                out |= ms_bit
        return out

    def bind_device(self, path: str) -> None:
        """The host's device node ``path`` bound at the same path in the rootfs (a file made for it)."""
        if not os.path.exists(path):
            raise errors.RuntimeSetupError(f"device {path}: the host has no such node to bind in a user namespace")
        self.mount(path, path, None, self.k.MS_BIND, create="file")

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

    def mount_spec(self, mnt: ocispec.Mount) -> None:
        """One entry of the config's mounts (runc's mountToRootfs, without its cgroup case)."""
        k = self.k
        flags, prop, data, bind, recursive = mount_flags(mnt.options)
        if bind or mnt.type == "bind":
            source = mnt.source if mnt.source.startswith("/") else os.path.join(self.bundle, mnt.source)
            if not os.path.exists(source):
                os.makedirs(source, 0o755)  # docker creates a missing host directory
            kind = "dir" if os.path.isdir(source) else "file"
            self.mount(mnt.destination, source, None, k.MS_BIND | (k.MS_REC if recursive else 0), create=kind)
            if flags & ~_ATIME:
                # The flags of a bind mount take a remount; a read-only bind keeps nosuid/nodev/noexec
                # that its source's mount has (the kernel refuses to clear locked flags).
                self.mount(mnt.destination, None, None, k.MS_REMOUNT | k.MS_BIND | flags
                           | self.locked(mnt.destination))
        else:
            try:
                self.mount(mnt.destination, mnt.source or mnt.type, mnt.type, flags, data or None)
            except OSError as e:
                if not self.userns or not self._userns_fallback(mnt, flags, data, e):
                    raise
        if prop:
            self.mount(mnt.destination, None, None, prop)

    def _userns_fallback(self, mnt: ocispec.Mount, flags: int, data: str, e: OSError) -> bool:
        """What a user namespace refuses, done its way (crun's fallbacks): sysfs without a network
        namespace of its own is the host's /sys bound read-only; devpts with a gid= the namespace does
        not map is mounted without it. False: no fallback applies."""
        k = self.k
        if mnt.type == "sysfs" and e.errno == errno.EPERM:
            self.mount(mnt.destination, "/sys", None, k.MS_BIND | k.MS_REC)
            self.mount(mnt.destination, None, None, k.MS_REMOUNT | k.MS_BIND | k.MS_RDONLY | flags
                       | self.locked(mnt.destination))
            return True
        if mnt.type == "devpts" and e.errno == errno.EINVAL and "gid=" in data:
            rest = ",".join(o for o in data.split(",") if not o.startswith("gid="))
            self.mount(mnt.destination, mnt.source or mnt.type, mnt.type, flags, rest or None)
            return True
        return False

    def refuse_symlink(self, name: str) -> None:
        try:
            st = os.stat(name, dir_fd=self.root, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise errors.RuntimeSetupError(f"the image's /{name} is a symlink; a rootfs whose /{name} points "
                                           "elsewhere could steer the container's kernel mounts: refusing to run it")


def _hook_point(a: InitArgs) -> bytes:
    """The runtime spec's hook point of create: the namespaces and mounts exist, pivot_root has not
    happened. Ask the creator to run prestart/createRuntime hooks (in the runtime's namespaces) and wait
    for the state JSON it sends when they succeeded (EOF: one failed, the creator reports it); then run
    createContainer hooks here, in the container's namespaces, their paths still resolving on the host.
    Returns the state JSON (for startContainer)."""
    from ocibox.run._hooks import run_hooks, with_status

    os.write(a.setup, b"H\n")
    state = b""
    while chunk := os.read(a.hooks, 65536):
        state += chunk
    os.close(a.hooks)
    if not state.strip():
        os._exit(125)
    run_hooks(a.config.hooks.create_container, with_status(state, "creating"), "createContainer")
    return state


def _join(a: InitArgs, k: ModuleType, joined: bool) -> bool:
    """Wait (once) until the creator moved this process into its cgroups (or let it move itself in);
    then, if the config asks for a new cgroup namespace, make it: it is rooted at the cgroup the process
    is in when it unshares."""
    if joined:
        return True
    data = b""
    while chunk := os.read(a.go, 65536):
        data += chunk
    if not data.startswith(b"G"):
        os._exit(125)  # the creator could not move us into the cgroup (or attach the network): it reports why
    os.close(a.go)
    # Into the cgroups by our own hand where the kernel lets a thread move itself without its global lock
    # (v1's tasks files; see Cgroup.self_join_files): the creator moved us by pid everywhere else.
    for fd, path in a.self_join:
        try:
            os.write(fd, b"0")
        except OSError as e:
            raise errors.CgroupError(f"moving the container into its cgroup failed: cannot write 0 to {path}: "
                                     f"{e.strerror}") from None
        os.close(fd)
    if len(data) > 1 and a.etc_dir:
        # Files the creator knew only now (the addresses the network got): "name\0text\0" pairs.
        parts = data[1:].split(b"\0")
        for name, text in zip(parts[0::2], parts[1::2], strict=False):
            path = os.path.join(a.etc_dir, name.decode())
            with open(path, "wb") as f:
                f.write(text)
            os.chmod(path, 0o644)
    ns = a.config.linux.namespace("cgroup")
    if ns is not None and not ns.path:
        k.unshare(k.CLONE_NEWCGROUP)
    return True


def _mount_cgroup(a: InitArgs, m: _Mounter, mnt: ocispec.Mount) -> None:
    """The container's own cgroups at the mount's destination: cgroup2, or (v1) a tmpfs with each
    hierarchy, read-only as the options say (runc's mountCgroupV1/V2)."""
    if not a.cgroup_mounts:
        return
    k = m.k
    flags, _, _, _, _ = mount_flags(mnt.options)
    if a.cgroup_mounts[0][0] == "cgroup2":
        m.mount(mnt.destination, "cgroup2", "cgroup2", flags)
        return
    m.mount(mnt.destination, "tmpfs", "tmpfs", flags & ~k.MS_RDONLY, "mode=755,size=64k")
    # Without a cgroup namespace a hierarchy's root would show the host's whole tree: each mount is then
    # a bind of the container's own cgroup (as runc's v1 mounts are), taken from the hierarchy mounted
    # for a moment on a scratch dir of the tmpfs.
    own = {} if a.config.linux.namespace("cgroup") is not None else _own_cgroups()
    for fstype, sub, opts in a.cgroup_mounts:
        target = f"{mnt.destination}/{sub}"
        path = own.get(opts, "/").strip("/")
        if not path:
            m.mount(target, "cgroup", fstype, flags, opts)
        elif m.userns:
            # In a user namespace (and the host's cgroup namespace) no hierarchy can be mounted: the
            # container's cgroup is bound from where the host has the hierarchy mounted (as runc does).
            src = os.open(_host_hierarchy(opts, path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                m.mount(target, f"/proc/self/fd/{src}", None, k.MS_BIND)
            finally:
                os.close(src)
            m.mount(target, None, None, k.MS_REMOUNT | k.MS_BIND | flags)
        else:
            scratch = f"{mnt.destination}/.{sub}"
            m.mount(scratch, "cgroup", fstype, flags, opts)
            src = m.open(f"{scratch}/{path}")
            try:
                m.mount(target, f"/proc/self/fd/{src}", None, k.MS_BIND)
            finally:
                os.close(src)
            m.mount(target, None, None, k.MS_REMOUNT | k.MS_BIND | flags)
            whole = m.open(scratch)
            try:
                k.umount(f"/proc/self/fd/{whole}", k.MNT_DETACH)
            finally:
                os.close(whole)
            parent = m.open(mnt.destination)
            try:
                os.rmdir(f".{sub}", dir_fd=parent)
            finally:
                os.close(parent)
        if "," in sub:
            cg = m.open(mnt.destination)
            for part in sub.split(","):
                k.symlink(sub, part, dir_fd=cg)
            os.close(cg)
    if flags & k.MS_RDONLY:
        m.remount_ro(mnt.destination, flags & ~k.MS_RDONLY)


def _host_hierarchy(opts: str, path: str) -> str:
    """The host's path of cgroup ``path`` in the v1 hierarchy ``opts`` ("memory", "cpu,cpuacct",
    "name=systemd"), from where this mount namespace has the hierarchy mounted."""
    from ocibox.linux import proc

    want = set(opts.split(","))
    for e in proc.mountinfo():
        if e.fstype == "cgroup" and want <= set(e.super_options.split(",")):
            rel = posixpath.relpath("/" + path, e.root)
            if not rel.startswith(".."):
                return posixpath.normpath(posixpath.join(e.mount_point, rel))
    raise errors.RuntimeSetupError(f"the cgroup v1 hierarchy {opts} is not mounted on this host, and in a user "
                                   "namespace it cannot be mounted: mount it on the host (or use cgroup v2)")


def _persona(p: dict[str, object]) -> int:
    """linux.personality's execution domain (the spec's LINUX or LINUX32; flags are not defined yet)."""
    domains = {"LINUX": 0x0000, "LINUX32": 0x0008}
    if p.get("domain") not in domains or p.get("flags"):
        raise errors.RuntimeSetupError(f"linux.personality {p!r}: the domain must be LINUX or LINUX32, without flags")
    return domains[str(p["domain"])]


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup per hierarchy ("memory", "cpu,cpuacct", "name=systemd"; "" for cgroup2)."""
    with open("/proc/self/cgroup") as f:
        return {ctrls: path for _, ctrls, path in (line.rstrip("\n").split(":", 2) for line in f if line.count(":") >= 2)}


def in_userns(cfg: ocispec.Spec) -> bool:
    """Whether this process is in a user namespace other than the host's (the config's new one, or one
    its creator was in): there mknod makes no usable device, and the host's mount flags are locked."""
    if cfg.linux.namespace("user") is not None:
        return True
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def _set_ids(k: ModuleType, uid: int, gid: int, groups: tuple[int, ...] | list[int]) -> None:
    """setgroups, setgid, setuid; in a user namespace where setgroups is denied (a user's single-id map)
    an empty list is skipped, and an id the namespace does not map is named with its maps."""
    try:
        with open("/proc/self/setgroups") as f:
            denied = f.read().strip() == "deny"
    except OSError:
        denied = False
    try:
        if not (denied and not groups):
            k.setgroups(list(groups))
        k.setgid(gid)
        k.setuid(uid)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EPERM):
            raise
        with open("/proc/self/uid_map") as f:
            uids = " ".join(f.read().split()) or "none"
        with open("/proc/self/gid_map") as f:
            gids = " ".join(f.read().split()) or "none"
        raise errors.RuntimeSetupError(
            f"user {uid}:{gid} (groups {list(groups)}) is not mapped in the container's user namespace "
            f"(uid map: {uids}; gid map: {gids}; setgroups {'denied' if denied else 'allowed'}): without root, "
            "container ids other than 0 need a subordinate id range (usermod --add-subuids/--add-subgids)") from None


def _devices(a: InitArgs, k: ModuleType, m: _Mounter) -> None:
    """runc's default nodes, the config's linux.devices (with their modes and owners), the /dev symlinks."""
    dev = m.open("/dev", "dir")
    try:
        for name, major, minor in DEVICES:
            if m.userns:
                # In a user namespace mknod makes no usable node: bind the host's (runc and crun do).
                m.bind_device(f"/dev/{name}")
                continue
            with suppress(FileExistsError):
                k.mknod(name, stat.S_IFCHR | 0o666, os.makedev(major, minor), dir_fd=dev)
        for name, target in DEV_LINKS:
            if name == "core" and not os.path.exists("/proc/kcore"):
                continue  # runc links /dev/core only where the host has a /proc/kcore
            with suppress(FileExistsError):
                k.symlink(target, name, dir_fd=dev)
    finally:
        os.close(dev)
    for d in a.config.linux.devices:
        if not d.path.startswith("/dev/"):
            raise errors.RuntimeSetupError(f"device {d.path}: ocibox creates device nodes under /dev only")
        if m.userns and d.type != "p":
            m.bind_device(d.path)  # the host's node of that path (runc's rule in a user namespace)
            continue
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[d.type]
        mode = 0o666 if d.file_mode is None else d.file_mode
        head, _, name = d.path.rpartition("/")
        parent = m.open(head, "dir")
        try:
            with suppress(FileNotFoundError):
                os.unlink(name, dir_fd=parent)
            k.mknod(name, kind | stat.S_IMODE(mode), os.makedev(d.major, d.minor), dir_fd=parent)
            os.chown(name, d.uid or 0, d.gid or 0, dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(parent)


def _console(a: InitArgs, k: ModuleType, m: _Mounter) -> None:
    """A pty from the container's devpts (/dev/pts/ptmx, resolved inside the rootfs), bound as
    /dev/console, the controlling terminal and stdio of PID 1; the master goes to the creator."""
    from ocibox.linux import pty

    ptmx = m.open("/dev/pts/ptmx")
    try:
        master, slave, number = pty.open_master(f"/proc/self/fd/{ptmx}")
    finally:
        os.close(ptmx)
    try:
        fd = m.open(f"/dev/pts/{number}")
        try:
            m.mount("/dev/console", f"/proc/self/fd/{fd}", None, k.MS_BIND, create="file")
        finally:
            os.close(fd)
        pty.make_controlling(slave)
        pty.send_fd(a.console_socket, master, f"/dev/pts/{number}")
    finally:
        os.close(master)
        os.close(slave)
        os.close(a.console_socket)


@contextmanager
def _naming(what: str, hint: str) -> Iterator[None]:
    """Turn an OSError of one setup step into one line that names what was wrong and what to do."""
    try:
        yield
    except OSError as e:
        raise errors.RuntimeSetupError(f"{what}: {e.strerror or e}; {hint}") from None


def _mask(names: tuple[str, ...], devices_fallback: bool) -> int:
    """The capability names as a bit mask (without CAP_MKNOD where the devices fallback holds)."""
    out = 0
    for name in names:
        short = name.removeprefix("CAP_")
        if short in CAP_NUMBER and not (devices_fallback and short == "MKNOD"):
            out |= 1 << CAP_NUMBER[short]
    return out


def _setrlimit(r: ocispec.Rlimit) -> None:
    import resource

    from ocibox.run._rlimits import NAMES, Ulimit, apply_ulimits

    name = r.type.removeprefix("RLIMIT_").lower()
    if name not in NAMES:
        raise errors.RuntimeSetupError(f"rlimit {r.type} is not one this host knows")
    inf = resource.RLIM_INFINITY
    apply_ulimits([Ulimit(NAMES[name], inf if r.soft >= 2**64 - 1 else r.soft, inf if r.hard >= 2**64 - 1 else r.hard)])


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
        if stat.S_ISDIR(st.st_mode) or not os.access(c, os.X_OK):
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


FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                     signal.SIGUSR2, signal.SIGCONT)


def _reaper(k: ModuleType, argv: tuple[str, ...], env: dict[str, str], setup: int) -> None:  # pragma: no cover
    """--init: stay PID 1 (already-loaded Python, no exec: the container may have no python),
    forward signals to the command (PID 2) and reap every orphan; exit with the command's status."""
    pid = os.fork()
    if pid == 0:
        try:
            exec_command(k, argv, env)
        except BaseException as e:
            line, code = errors.to_wire(e, "container setup failed: ")
            with suppress(OSError):
                os.write(setup, line)
            os._exit(code)
    os.close(setup)

    def forward(signum: int, frame: object) -> None:
        with suppress(ProcessLookupError):
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
