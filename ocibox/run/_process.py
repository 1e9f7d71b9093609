"""The creator's side of a container (the "main process" role): ``create`` makes it and leaves its PID 1
waiting at the gate; ``Container.start`` lets it exec; ``Container.wait`` supervises it (signals
forwarded, the tty relayed) until it exits; ``Container.close`` tears down what create made.

Processes::

    creator (subreaper) ──fork──> intermediate: unshares the namespaces, forks, exits
                                  └──fork──> PID 1 of the new pid namespace (reparented to the creator):
                                             sets up the rootfs, drops privileges, waits at the gate,
                                             execs the command (with --init: stays as a reaper; the
                                             command is PID 2)

The setup pipe (close-on-exec in PID 1) carries PID 1's pid (written by the intermediate), then b"R"
when PID 1 is created and waits at the gate, or an error; EOF after start means the command was
exec'd. The creator moves PID 1 into the container's cgroups while PID 1 mounts its rootfs (a cgroup
migration waits for an RCU grace period, 6 to 30 ms here: overlapped, not added), then sends b"G" on
the go pipe; PID 1 waits for it before it unshares its cgroup namespace and, long before, execs anything.

``run_container`` is the foreground face: create, start, wait and close in one process.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from pathlib import Path

from ocibox import errors
from ocibox.linux import syscalls
from ocibox.run._init import FORWARDED_SIGNALS, InitArgs, exit_status
from ocibox.run._intermediate import intermediate
from ocibox.run._spec import RunSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ocibox.cgroups import Cgroup
    from ocibox.run._hardening import Prepared


class _SetupPipe:
    """The creator's end of the setup pipe, read a line at a time."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buf = fd, b""

    def line(self) -> bytes:
        """The next line (without its newline), or what is left at EOF (b"" when nothing)."""
        while b"\n" not in self.buf:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Container:
    """A created container, as its creator holds it: PID 1 (``pid``) waits at the gate until ``start``."""

    def __init__(self, spec: RunSpec, cgroup: Cgroup | None, master: int) -> None:
        self.spec, self.cgroup, self.master = spec, cgroup, master
        self.pid = 0
        self.reaped = False
        self.status: int | None = None
        self._setup: _SetupPipe | None = None
        self._gate = -1

    def start(self) -> None:
        """Release PID 1 and return once its command was exec'd; a command that cannot be executed
        raises its error (126/127) with PID 1 reaped."""
        assert self._setup is not None and self._gate >= 0
        os.write(self._gate, b"S")
        os.close(self._gate)
        self._gate = -1
        try:
            error = errors.from_wire(self._setup.line(), errors.RuntimeSetupError)
        finally:
            self._setup.close()
        if error is not None:
            self.reap()
            raise error

    def wait(self) -> int:
        """Supervise until PID 1 exits; its status as docker reports it (128+N for a signal)."""
        if self.master < 0:
            _, status = os.waitpid(self.pid, 0)
        else:
            status = _relay_tty(self.pid, self.master, self.spec.interactive)
        self.reaped = True
        self.status = exit_status(status)
        return self.status

    def reap(self) -> None:
        if self.pid and not self.reaped:
            os.waitpid(self.pid, 0)
            self.reaped = True

    def close(self) -> list[str]:
        """Kill PID 1 if it still runs, close what create opened, remove the cgroup. Returns problems."""
        if self.pid and not self.reaped:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            self.reaped = True
        for fd in (self._gate, self.master):
            if fd >= 0:
                os.close(fd)
        self._gate = self.master = -1
        if self._setup is not None:
            self._setup.close()
        return self.cgroup.destroy() if self.cgroup is not None else []


def create(spec: RunSpec, rootfs: Path, state_dir: Path, *, mount_rootfs: Callable[[], None] | None = None,
           cgroup: Cgroup | None = None, prepared: Prepared | None = None,
           on_pid: Callable[[int], None] | None = None) -> Container:
    """Create the container: cgroup with its limits, namespaces, rootfs, mounts, pivot_root, privileges
    dropped; its PID 1 is left waiting at the gate. On any failure everything made is removed and the
    error raised (125; 126/127 when the command cannot be executed). ``on_pid`` is called with PID 1's
    pid once it is in its cgroups."""
    from ocibox.run._etc import etc_files

    (state_dir / "etc").mkdir(parents=True, exist_ok=True)
    ctr = Container(spec, cgroup, -1)
    slave = -1
    try:
        # 1. The cgroup first, with its limits and device rules, so the container never runs unlimited.
        if cgroup is not None:
            cgroup.create()
            cgroup.apply(spec.limits)
        if spec.tty:
            ctr.master, slave = os.openpty()
            _copy_winsize(ctr.master)
        # PID 1 is a grandchild: as subreaper, the creator inherits it when the intermediate exits.
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
        setup_r, setup_w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        gate_r, ctr._gate = os.pipe2(os.O_CLOEXEC)
        ctr._setup = _SetupPipe(setup_r)
        args = InitArgs(spec=spec, rootfs=str(rootfs), etc_dir=str(state_dir / "etc"), etc=etc_files(spec),
                        setup=setup_w, go=go_r, gate=gate_r, kernel=syscalls, mount_rootfs=mount_rootfs,
                        cgroup_mounts=tuple(cgroup.container_mounts()) if cgroup is not None else (),
                        devices_fallback=cgroup.devices_fallback if cgroup is not None else False,
                        console=slave, prepared=prepared)
        c1 = os.fork()
        if c1 == 0:  # pragma: no cover - the intermediate
            os.close(setup_r)
            os.close(go_w)
            os.close(ctr._gate)
            intermediate(args, spec.network != "host")
        for fd in (setup_w, go_r, gate_r):
            os.close(fd)
        if slave >= 0:
            os.close(slave)
            slave = -1
        try:
            _created(ctr, c1, go_w, on_pid)
        finally:
            with contextlib.suppress(OSError):
                os.close(go_w)
        return ctr
    except BaseException:
        if slave >= 0:
            os.close(slave)
        for problem in ctr.close():
            sys.stderr.write(f"ocibox: warning: {problem}\n")
        raise


def _created(ctr: Container, c1: int, go_w: int, on_pid: Callable[[int], None] | None) -> None:
    """Read PID 1's pid, move it into its cgroups, let it go on; then wait until it is created."""
    assert ctr._setup is not None
    try:
        first = ctr._setup.line()
    finally:
        os.waitpid(c1, 0)
    if not first.startswith(b"P"):
        raise errors.from_wire(first, errors.RuntimeSetupError) or errors.RuntimeSetupError(
            "the container's setup process died before starting it")
    ctr.pid = int(first[1:])
    _forward_signals(ctr.pid)
    join_error: BaseException | None = None
    try:
        # PID 1 into the cgroups (where the limits already are), while it mounts its rootfs.
        if ctr.cgroup is not None:
            ctr.cgroup.join(ctr.pid)
        os.write(go_w, b"G")
    except (OSError, errors.OciboxError) as e:
        # A join failed, or PID 1 already died of its own setup error (which follows on the pipe and
        # is the one reported). EOF on its go pipe tells a waiting PID 1 to give up.
        join_error = e
    else:
        if on_pid is not None:
            on_pid(ctr.pid)
    os.close(go_w)
    line = ctr._setup.line()
    if line == b"R" and join_error is None:
        return
    error = errors.from_wire(line, errors.RuntimeSetupError)
    if error is None and join_error is not None:
        error = join_error if isinstance(join_error, errors.OciboxError) else \
            errors.CgroupError(f"moving the container into its cgroup failed: {join_error}")
    ctr.reap()
    raise error or errors.RuntimeSetupError("the container's init died during its setup")


def _forward_signals(pid: int) -> None:
    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for s in FORWARDED_SIGNALS:
        signal.signal(s, forward)


def run_container(spec: RunSpec, rootfs: Path, state_dir: Path, *, mount_rootfs: Callable[[], None] | None = None,
                  cgroup: Cgroup | None = None, on_start: Callable[[int], None] | None = None,
                  prepared: Prepared | None = None) -> int:
    """The foreground face: create, start, wait and tear down; the exit status (docker's convention).

    ``mount_rootfs`` mounts the rootfs at ``rootfs`` inside the container's mount namespace (the overlay
    of the image's layers); without it ``rootfs`` is a prepared directory that is bind-mounted.
    ``state_dir/etc`` gets a tmpfs, in the container's mount namespace only, holding its hostname,
    hosts and resolv.conf."""
    ctr = create(spec, rootfs, state_dir, mount_rootfs=mount_rootfs, cgroup=cgroup, prepared=prepared,
                 on_pid=on_start)
    try:
        ctr.start()
        status = ctr.wait()
        if cgroup is not None and cgroup.oom_kills():
            limit = spec.limits.memory
            what = f"memory limit {_human(limit)}" if limit else "the host ran out of memory"
            sys.stderr.write(f"ocibox: the container was killed by the OOM killer ({what}); exit status {status}\n")
        return status
    finally:
        for problem in ctr.close():
            sys.stderr.write(f"ocibox: warning: {problem}\n")


# ----------------------------------------------------------------------------- the tty relay
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
    """-t: copy stdin to the pty and the pty to stdout, in raw mode; the size follows SIGWINCH.
    Returns PID 1's wait status."""
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
    return status


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
