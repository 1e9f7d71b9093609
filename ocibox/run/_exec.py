"""A new process in a running container (``ocibox exec``, and ``ocibox-runtime exec``): it joins every
namespace of the container's PID 1 and its cgroups, and gets the container's capabilities, seccomp filter,
no_new_privs and rlimits, never more.

CVE-2016-9962: until it execs, the joining process is the host's Python with host files open; it must
not be ptraceable from inside nor hold a host fd. So it is made non-dumpable before it joins anything,
and every fd but its stdio is close-on-exec.

Processes: the caller (a subreaper) forks J, which joins the cgroups (by host path), then the namespaces,
and forks E (CLONE_NEWPID applies to children) before it exits; E, in the container's pid namespace,
reparented to the caller, sets up the process and execs. A pipe (close-on-exec in E) carries E's pid and
then an error, or EOF once it exec'd.
"""

from __future__ import annotations

import os

from ocibox import errors, ocispec
from ocibox._contextlib import suppress
from ocibox.linux import syscalls
from ocibox.run._init import _mask, _read_in_root, _setrlimit, exit_status, find_executable
from ocibox.run._intermediate import NS_FLAGS
from ocibox.run._spec import resolve_user

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal

    from ocibox.cgroups import Cgroup
    from ocibox.run._seccomp import SeccompFilter
else:
    import _signal as signal  # not signal: its Signals enum imports enum (~3 ms of an exec)

_JOIN = ("user", "ipc", "uts", "network", "pid", "cgroup", "mount")


class Exec:
    """A process started in a container: ``pid`` (host pid), ``master`` (its pty's master, or -1)."""

    def __init__(self, pid: int, master: int) -> None:
        self.pid, self.master = pid, master

    def wait(self, interactive: bool = False) -> int:
        from ocibox.run._process import _relay_tty

        if self.master >= 0:
            status = _relay_tty(self.pid, self.master, interactive)
            os.close(self.master)
            self.master = -1
        else:
            _, status = os.waitpid(self.pid, 0)
        return exit_status(status)


def exec_process(pid1: int, pid1_start: int, process: ocispec.Process, *, cgroup: Cgroup | None,
                 seccomp: SeccompFilter | None, user: str | None = None, devices_fallback: bool = False,
                 stdin_null: bool = False, namespaces: tuple[str, ...] = _JOIN) -> Exec:
    """Start ``process`` in the container whose PID 1 is ``pid1`` (started at ``pid1_start``); return once
    it exec'd (its errors raised: 126/127 when the command cannot be executed). ``user``: docker's -u,
    resolved in the container (None: the process's numeric user)."""
    fds: dict[str, int] = {}
    try:
        for kind in namespaces:
            with suppress(FileNotFoundError):
                fds[kind] = os.open(f"/proc/{pid1}/ns/{_PROC_NAME[kind]}", os.O_RDONLY | os.O_CLOEXEC)
        # The namespaces are PID 1's only if it still is the process that started then (not a reuse).
        from ocibox.linux import proc

        if proc.start_time(pid1) != pid1_start:
            raise errors.UsageError("the container is not running")
        own = os.readlink("/proc/self/ns/user")
        if "user" in fds and os.readlink(f"/proc/{pid1}/ns/user") == own:
            os.close(fds.pop("user"))  # the same user namespace: setns would refuse it (EINVAL)
        master = console = theirs = -1
        if process.terminal:  # the pty is made in the container; its master comes back on this socket
            import socket

            ours, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            console, theirs = ours.detach(), other.detach()
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
        r, w = os.pipe2(os.O_CLOEXEC)
        j = os.fork()
        if j == 0:  # pragma: no cover - the joining process
            code = 125
            try:
                os.close(r)
                if console >= 0:
                    os.close(console)
                _join(fds, cgroup, process, w, theirs, seccomp, user, devices_fallback, stdin_null)
            except BaseException as e:
                line, code = errors.to_wire(e, "exec failed: ")
                with suppress(OSError):
                    os.write(w, line)
            os._exit(code)
        os.close(w)
        if theirs >= 0:
            os.close(theirs)
            theirs = -1
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
        os.close(r)
        os.waitpid(j, 0)
        if console >= 0 and data.startswith(b"P") and b"\nE" not in data:
            from ocibox.linux.pty import recv_fd
            from ocibox.run._process import _copy_winsize

            master = recv_fd(console)
            _copy_winsize(master, process.console_size)
    finally:
        for fd in (*fds.values(), console, theirs):
            if fd >= 0:
                os.close(fd)
    first, _, rest = data.partition(b"\n")
    if not first.startswith(b"P"):
        if master >= 0:
            os.close(master)
        raise errors.from_wire(first, errors.RuntimeSetupError) or errors.RuntimeSetupError("exec: the process died")
    pid = int(first[1:])
    error = errors.from_wire(rest, errors.RuntimeSetupError)
    if error is not None:
        os.waitpid(pid, 0)
        if master >= 0:
            os.close(master)
        raise error
    return Exec(pid, master)


_PROC_NAME = {"user": "user", "ipc": "ipc", "uts": "uts", "network": "net", "pid": "pid", "cgroup": "cgroup",
              "mount": "mnt"}


def _join(fds: dict[str, int], cgroup: Cgroup | None, process: ocispec.Process, w: int, console: int,
          seccomp: SeccompFilter | None, user: str | None, devices_fallback: bool,
          stdin_null: bool) -> None:  # pragma: no cover - runs in the joining process
    k = syscalls
    # Everything this process imports, imported now: after setns(mount) the host's files are out of reach
    # (the pty's modules only with a terminal: 4-5 ms of every exec otherwise).
    import stat  # noqa: F401

    if console >= 0:
        import socket  # noqa: F401 - for pty.send_fd

        from ocibox.linux import pty  # noqa: F401
    # Not ptraceable, no core dump, from now until exec (CVE-2016-9962).
    k.prctl(k.PR_SET_DUMPABLE, 0)
    # The cgroups first: by host path, which the container's mount namespace hides.
    if cgroup is not None:
        cgroup.join_self()  # v1: by "0" to its tasks files, without the kernel's global lock
    for kind in _JOIN:
        if kind in fds:
            k.setns(fds[kind], NS_FLAGS[kind])
    pid = os.fork()
    if pid != 0:
        os.write(w, f"P{pid}\n".encode())
        os._exit(0)
    # E: in the container's pid namespace. setns(mount) put the root and cwd at the container's root.
    os.setsid()
    if console >= 0:
        _terminal(console)
    elif stdin_null:
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        os.dup2(null, 0)
        os.close(null)
    env = dict(e.partition("=")[::2] for e in process.env)
    uid, gid, groups = process.user.uid, process.user.gid, process.user.additional_gids
    if user is not None or "HOME" not in env:
        found = resolve_user(user if user is not None else f"{uid}:{gid}", _read_in_root(k, "/etc/passwd"),
                             _read_in_root(k, "/etc/group"))
        if user is not None:
            uid, gid, groups = found.uid, found.gid, found.groups
        env.setdefault("HOME", found.home)
    with open("/proc/sys/kernel/cap_last_cap") as f:
        cap_last = int(f.read())
    caps = process.capabilities or ocispec.Capabilities()
    bounding = _mask(caps.bounding, devices_fallback)
    for cap in range(cap_last + 1):
        if not bounding & (1 << cap):
            k.prctl(k.PR_CAPBSET_DROP, cap)
    with suppress(OSError):
        k.prctl(k.PR_CAP_AMBIENT, k.PR_CAP_AMBIENT_CLEAR_ALL)
    if process.no_new_privileges:
        k.prctl(k.PR_SET_NO_NEW_PRIVS, 1)
    k.prctl(k.PR_SET_KEEPCAPS, 1)
    os.setgroups(list(groups))
    os.setgid(gid)
    os.setuid(uid)
    k.capset(_mask(caps.effective, devices_fallback), _mask(caps.permitted, devices_fallback),
             _mask(caps.inheritable, devices_fallback))
    k.prctl(k.PR_SET_KEEPCAPS, 0)
    try:
        os.chdir(process.cwd)
    except OSError as e:
        raise errors.RuntimeSetupError(f"exec: the working directory {process.cwd}: {e.strerror}") from None
    os.umask(0o022 if process.user.umask is None else process.user.umask)
    for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    k.close_range(3, 0xFFFFFFFF, k.CLOSE_RANGE_CLOEXEC)
    for r in process.rlimits:
        _setrlimit(r)
    command = find_executable(process.args[0], env)
    if seccomp is not None:
        seccomp.load()
    try:
        os.execve(command, list(process.args), env)
    except OSError as e:
        raise errors.ContainerCommandError(f"cannot execute {process.args[0]!r} in the container: {e.strerror}") from None


def _terminal(console: int) -> None:  # pragma: no cover - runs in the joined process
    """A pty of the container's devpts instance as the process's terminal, its master sent out. The
    container could have put anything at /dev/pts/ptmx: no symlink followed, no blocking open, and it
    must be the ptmx character device."""
    import stat

    from ocibox.linux import pty

    fd = os.open("/dev/pts/ptmx", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISCHR(st.st_mode) or (os.major(st.st_rdev), os.minor(st.st_rdev)) != (5, 2):
            raise errors.RuntimeSetupError("exec -t: the container's /dev/pts/ptmx is not the pty multiplexer")
        master, slave, number = pty.open_master(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    pty.make_controlling(slave)
    pty.send_fd(console, master, f"/dev/pts/{number}")
    for x in (master, slave, console):
        os.close(x)
