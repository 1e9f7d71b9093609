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

import errno
import os
import sys
from pathlib import Path

from ocibox import errors, ocispec
from ocibox._contextlib import suppress
from ocibox.linux import syscalls
from ocibox.run._config import INIT_ANNOTATION, USER_ANNOTATION
from ocibox.run._fifo import start_fifo  # noqa: F401 - re-exported (it lived here)
from ocibox.run._init import FORWARDED_SIGNALS, InitArgs, exit_status
from ocibox.run._intermediate import intermediate
from ocibox.run._spec import RunSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable
    from typing import Any

    from ocibox.cgroups import Cgroup
    from ocibox.run._hardening import Prepared
    from ocibox.run._seccomp import SeccompFilter
else:
    import _signal as signal  # not signal: its Signals enum imports enum (~3 ms of a run)


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
    """A created container, as its creator holds it: PID 1 (``pid``) waits at the gate until ``start``.
    ``master`` is the pty's master when the process has a terminal (-1 otherwise)."""

    def __init__(self, config: ocispec.Spec, cgroup: Cgroup | None) -> None:
        self.config, self.cgroup = config, cgroup
        self.pid = 0
        self.master = -1
        self.reaped = False
        self.status: int | None = None
        self._setup: _SetupPipe | None = None
        self._gate = -1
        # What create and start changed in this process, undone by close: a library caller (a test
        # runner, a service) must not stay a subreaper that never reaps, or keep forwarding signals.
        self._was_subreaper = True
        self._handlers: dict[int, Any] = {}

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

    def wait(self, interactive: bool = False) -> int:
        """Supervise until PID 1 exits; its status as docker reports it (128+N for a signal). With a
        terminal, the pty is relayed to this process's stdio (its stdin too when ``interactive``)."""
        if self.master < 0:
            _, status = os.waitpid(self.pid, 0)
        else:
            status = _relay_tty(self.pid, self.master, interactive)
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
            with suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            self.reaped = True
        for fd in (self._gate, self.master):
            if fd >= 0:
                os.close(fd)
        self._gate = self.master = -1
        if self._setup is not None:
            self._setup.close()
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers = {}
        if not self._was_subreaper:
            syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 0)
            self._was_subreaper = True
        return self.cgroup.destroy() if self.cgroup is not None else []


_FROM_CONFIG: object = object()


def create(config: ocispec.Spec, *, rootfs: str, cgroup: Cgroup | None = None,
           seccomp: SeccompFilter | object | None = _FROM_CONFIG, mount_rootfs: Callable[[], None] | None = None,
           etc_dir: str = "", etc: dict[str, str] | None = None, stdin_null: bool = False, bundle: str = "",
           on_pid: Callable[[int], None] | None = None, seccomp_cache: str | None = None, fifo: str = "",
           no_pivot: bool = False, preserve_fds: int = 0,
           late_etc: Callable[[], dict[str, str]] | None = None,
           state_of: Callable[[int], dict[str, object]] | None = None,
           on_namespaces: Callable[[int], None] | None = None) -> Container:
    """Create the container ``config`` describes: cgroup with its limits, namespaces, rootfs, mounts,
    pivot_root, privileges dropped; its PID 1 is left waiting at the gate. On any failure everything
    made is removed and the error raised (125; 126/127 when the command cannot be executed).

    ``rootfs``: the absolute root path. ocibox's own extras: ``mount_rootfs`` (its overlay, mounted in
    the container's mount namespace), ``etc_dir``/``etc`` (its /etc files on a private tmpfs),
    ``stdin_null``. ``seccomp``: a filter already built, or by default the one config.json describes.
    ``on_pid`` is called with PID 1's pid once it is in its cgroups. ``fifo``: the gate is a fifo at that
    path (runc's exec.fifo), for a start from another process (``start_fifo``); ``no_pivot`` and
    ``preserve_fds`` are runc's --no-pivot and --preserve-fds. ``late_etc`` gives /etc files known only
    once the container's namespaces exist (the network's addresses): called while PID 1 mounts, its
    result reaches PID 1 with the go-ahead; its error stops the container before anything runs in it.
    ``state_of(pid)``: the OCI state document the config's hooks get on stdin (see ocibox.run._hooks:
    prestart and createRuntime hooks run here, createContainer and startContainer in PID 1).
    ``on_namespaces(pid)``: called as soon as PID 1's namespaces exist, before its cgroup join and
    ``late_etc`` (which may wait for what it started: a user-mode network on the container's netns),
    with the pid of the intermediate, held in the container's user and network namespaces (with PID
    1's other ones) until ``late_etc`` returned: their /proc/PID/ns files can be opened through it."""
    proc = config.process
    if proc is None:
        raise ocispec.SpecError("config.json: process is required to create a container")
    _refuse_unsupported(config)
    if config.linux.namespace("user") is not None:
        from ocibox.run._init import preload

        preload()
    if seccomp is _FROM_CONFIG:
        seccomp = None
        if config.linux.seccomp is not None:
            from ocibox.run._seccomp import compile_filter, from_oci

            seccomp = compile_filter(from_oci(config.linux.seccomp), seccomp_cache)
    ctr = Container(config, cgroup)
    console = theirs = -1
    self_join: tuple[tuple[int, str], ...] = ()
    try:
        # 1. The cgroup first, with its limits and device rules, so the container never runs unlimited.
        if cgroup is not None:
            cgroup.create()
            cgroup.apply(cgroup.limits)
        if proc.terminal:  # the pty is made in the container; its master comes back on this socket
            import socket

            ours, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            console, theirs = ours.detach(), other.detach()
        # PID 1 is a grandchild: as subreaper, the creator inherits it when the intermediate exits.
        ctr._was_subreaper = syscalls.child_subreaper()
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
        setup_r, setup_w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        if fifo:
            os.mkfifo(fifo, 0o622)
            os.chmod(fifo, 0o622)  # not the umask's: PID 1 opens it for writing as the container's user
            gate_r = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
        else:
            gate_r, ctr._gate = os.pipe2(os.O_CLOEXEC)
        ctr._setup = _SetupPipe(setup_r)
        hooks = config.hooks
        hook_r = hook_w = -1
        if hooks.prestart or hooks.create_runtime or hooks.create_container or hooks.start_container:
            hook_r, hook_w = os.pipe2(os.O_CLOEXEC)
        hold_r, hold_w = os.pipe2(os.O_CLOEXEC) if on_namespaces is not None else (-1, -1)
        self_join = _open_self_join(cgroup) if cgroup is not None else ()
        ann = config.annotations
        args = InitArgs(config=config, rootfs=rootfs, setup=setup_w, go=go_r, gate=gate_r, kernel=syscalls,
                        bundle=bundle, mount_rootfs=mount_rootfs, etc_dir=etc_dir, etc=etc or {},
                        cgroup_mounts=tuple(cgroup.container_mounts()) if cgroup is not None else (),
                        devices_fallback=cgroup.devices_fallback if cgroup is not None else False,
                        console_socket=theirs, stdin_null=stdin_null and theirs < 0,
                        seccomp=seccomp,  # type: ignore[arg-type]
                        user=ann.get(USER_ANNOTATION), reaper=ann.get(INIT_ANNOTATION) == "true",
                        gate_fifo=bool(fifo), no_pivot=no_pivot, preserve_fds=preserve_fds, hooks=hook_r,
                        hold=hold_r, self_join=self_join)
        c1 = os.fork()
        if c1 == 0:  # pragma: no cover - the intermediate
            os.close(setup_r)
            os.close(go_w)
            if ctr._gate >= 0:
                os.close(ctr._gate)
            if console >= 0:
                os.close(console)
            if hook_w >= 0:
                os.close(hook_w)
            if hold_w >= 0:
                os.close(hold_w)
            intermediate(args)
        for fd in (setup_w, go_r, gate_r, hook_r, hold_r, *(fd for fd, _ in self_join)):
            if fd >= 0:
                os.close(fd)
        self_join = ()
        if theirs >= 0:
            os.close(theirs)
            theirs = -1
        hook_point = _Hooks(config, bundle, state_of, hook_w)
        try:
            _created(ctr, c1, go_w, on_pid, late_etc, hook_point, on_namespaces, hold_w)
        finally:
            with suppress(OSError):
                os.close(go_w)
            if hook_point.fd >= 0:
                os.close(hook_point.fd)
        if console >= 0:
            from ocibox.linux.pty import recv_fd

            ctr.master = recv_fd(console)
            _copy_winsize(ctr.master, proc.console_size)
        return ctr
    except BaseException:
        for problem in ctr.close():
            sys.stderr.write(f"ocibox: warning: {problem}\n")
        raise
    finally:
        for fd in (console, theirs, *(fd for fd, _ in self_join)):
            if fd >= 0:
                os.close(fd)


def _open_self_join(cgroup: Cgroup) -> tuple[tuple[int, str], ...]:
    """The files PID 1 moves itself into its cgroups through, opened here (a failure is ours to report)."""
    out: list[tuple[int, str]] = []
    try:
        for path in cgroup.self_join_files():
            out.append((os.open(path, os.O_WRONLY | os.O_CLOEXEC), path))
    except OSError as e:
        for fd, _ in out:
            os.close(fd)
        raise errors.CgroupError(f"cannot open {e.filename} to move the container into its cgroup: "
                                 f"{e.strerror}") from None
    return tuple(out)


def _refuse_unsupported(config: ocispec.Spec) -> None:
    """What this executor cannot give is refused at create, by name, never dropped."""
    lx = config.linux
    user = lx.namespace("user")
    if user is not None and not user.path and not (lx.uid_mappings and lx.gid_mappings):
        raise ocispec.SpecError("config.json: a new user namespace needs linux.uidMappings and linux.gidMappings")
    if (lx.uid_mappings or lx.gid_mappings) and user is None:
        raise ocispec.SpecError("config.json: linux.uidMappings/gidMappings are given, but no user namespace "
                                "(linux.namespaces type user)")
    if lx.intel_rdt:
        raise ocispec.SpecError("config.json: linux.intelRdt: this host has no Intel RDT (resctrl) support in "
                                "ocibox; remove it")
    proc = config.process
    if proc is not None and (proc.apparmor_profile or proc.selinux_label):
        raise ocispec.SpecError("config.json: process.apparmorProfile/selinuxLabel: this host enforces neither "
                                "AppArmor nor SELinux for ocibox; remove them")


class _Hooks:
    """The creator's part of the hooks: at PID 1's hook point (b"H"), prestart and createRuntime hooks
    in the runtime's namespaces, then the state JSON to PID 1 (which runs createContainer and
    startContainer hooks with it); a failing hook closes the pipe instead, and PID 1 gives up."""

    def __init__(self, config: ocispec.Spec, bundle: str, state_of: Callable[[int], dict[str, object]] | None,
                 fd: int) -> None:
        self.config, self.bundle, self.state_of, self.fd = config, bundle, state_of, fd

    def run(self, pid: int) -> None:
        from ocibox import _json as json
        from ocibox.run._hooks import run_hooks

        try:
            doc = dict(self.state_of(pid)) if self.state_of is not None else {
                "ociVersion": self.config.oci_version, "id": "", "pid": pid, "bundle": self.bundle,
                "annotations": dict(self.config.annotations)}
            doc["status"] = "creating"
            state = json.dumps(doc).encode()
            run_hooks(self.config.hooks.prestart, state, "prestart")
            run_hooks(self.config.hooks.create_runtime, state, "createRuntime")
            _write_all(self.fd, state + b"\n")
        finally:
            os.close(self.fd)
            self.fd = -1


def _created(ctr: Container, c1: int, go_w: int, on_pid: Callable[[int], None] | None,
             late_etc: Callable[[], dict[str, str]] | None = None, hooks: _Hooks | None = None,
             on_namespaces: Callable[[int], None] | None = None, hold_w: int = -1) -> None:
    """Read PID 1's pid, move it into its cgroups (and wait for ``late_etc``), let it go on; then wait
    until it is created. ``hold_w``: the intermediate waits until it is closed (see ``on_namespaces``)."""
    assert ctr._setup is not None
    try:
        first = ctr._setup.line()
        if first == b"U":  # a new user namespace: its maps, written from out here
            first = _map_ids(ctr, c1, go_w)
    except BaseException:
        _release(c1, hold_w)
        raise
    if not first.startswith(b"P"):
        _release(c1, hold_w)
        raise errors.from_wire(first, errors.RuntimeSetupError) or errors.RuntimeSetupError(
            "the container's setup process died before starting it")
    if hold_w < 0:
        os.waitpid(c1, 0)
    ctr.pid = int(first[1:])
    ctr._handlers = _forward_signals(ctr.pid)
    join_error: BaseException | None = None
    try:
        if on_namespaces is not None:
            # The intermediate waits in the container's namespaces (PID 1's are out of reach until it
            # execs: it is not dumpable): what attaches to them opens them through it.
            on_namespaces(c1)
        # PID 1 into the cgroups (where the limits already are), while it mounts its rootfs; it moves
        # itself in where it can (Cgroup.self_join_files), after our go-ahead.
        if ctr.cgroup is not None:
            ctr.cgroup.join(ctr.pid, self_joined=True)
        payload = b""
        if late_etc is not None:
            payload = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in late_etc().items())
        _write_all(go_w, b"G" + payload)
    except (OSError, errors.OciboxError) as e:
        # A join failed, or PID 1 already died of its own setup error (which follows on the pipe and
        # is the one reported). EOF on its go pipe tells a waiting PID 1 to give up.
        join_error = e
    else:
        if on_pid is not None:
            on_pid(ctr.pid)
    finally:
        if hold_w >= 0:
            _release(c1, hold_w)
    os.close(go_w)
    line = ctr._setup.line()
    if line == b"H" and join_error is None and hooks is not None:
        try:
            hooks.run(ctr.pid)
        except BaseException:
            ctr.reap()  # PID 1 saw EOF on its hooks pipe and exits
            raise
        line = ctr._setup.line()
    if line == b"R" and join_error is None:
        return
    error = errors.from_wire(line, errors.RuntimeSetupError)
    if error is None and join_error is not None:
        error = join_error if isinstance(join_error, errors.OciboxError) else \
            errors.CgroupError(f"moving the container into its cgroup failed: {join_error}")
    ctr.reap()
    raise error or errors.RuntimeSetupError("the container's init died during its setup")


def _release(c1: int, hold_w: int) -> None:
    """Let the intermediate exit (it waits on its hold pipe when there is one), and reap it."""
    if hold_w >= 0:
        with suppress(OSError):
            os.close(hold_w)
    os.waitpid(c1, 0)


def _map_ids(ctr: Container, c1: int, go_w: int) -> bytes:
    """The intermediate ``c1`` unshared its user namespace: write its maps (the config's; see
    ocibox.rootless.write_maps), tell it on the go pipe (b"M", or b"X": it gives up), and return the
    next line of the setup pipe."""
    from ocibox.rootless import write_maps

    lx = ctr.config.linux
    try:
        write_maps(c1, lx.uid_mappings, lx.gid_mappings)
    except BaseException:
        _write_all(go_w, b"X")
        raise
    _write_all(go_w, b"M")
    return ctr._setup.line() if ctr._setup is not None else b""


def _forward_signals(pid: int) -> dict[int, Any]:
    """The signals a container's creator gets go to PID 1; the handlers they replaced."""

    def forward(signum: int, frame: object) -> None:
        with suppress(ProcessLookupError):
            os.kill(pid, signum)

    return {s: signal.signal(s, forward) for s in FORWARDED_SIGNALS}


def run_container(spec: RunSpec, rootfs: Path, state_dir: Path, *, mount_rootfs: Callable[[], None] | None = None,
                  cgroup: Cgroup | None = None, on_start: Callable[[int], None] | None = None,
                  prepared: Prepared | None = None, netns: str = "", etc: dict[str, str] | None = None,
                  late_etc: Callable[[], dict[str, str]] | None = None,
                  id_maps: tuple[tuple[ocispec.IdMapping, ...], tuple[ocispec.IdMapping, ...]] | None = None,
                  on_namespaces: Callable[[int], None] | None = None, joined: dict[str, str] | None = None) -> int:
    """The foreground face: ``spec`` as a config, then create, start, wait and tear down; the exit
    status (docker's convention).

    ``mount_rootfs`` mounts the rootfs at ``rootfs`` inside the container's mount namespace (the overlay
    of the image's layers); without it ``rootfs`` is a prepared directory that is bind-mounted.
    ``state_dir/etc`` gets a tmpfs, in the container's mount namespace only, holding its hostname,
    hosts and resolv.conf (``etc`` replaces some of the defaults; ``late_etc``: see ``create``).
    ``netns``: the network namespace to join by path (the network room's), "" for a new one. ``id_maps``:
    a new user namespace with these maps (rootless); ``joined``: namespaces joined by path (see build)."""
    from ocibox.run._config import build
    from ocibox.run._etc import etc_files

    etc_dir = state_dir / "etc"
    etc_dir.mkdir(parents=True, exist_ok=True)
    resources = None
    if cgroup is not None:
        from ocibox.cgroups import resources_of

        resources = resources_of(cgroup.limits, cgroup.rules)
    config = build(spec, rootfs=str(rootfs), etc_dir=str(etc_dir),
                   cgroups_path=cgroup.path if cgroup is not None else "",
                   seccomp=prepared.profile if prepared is not None else None,
                   nodes=prepared.nodes if prepared is not None else (), resources=resources, netns=netns,
                   id_maps=id_maps, joined=joined)

    def on_pid(pid: int) -> None:
        # While PID 1 sets itself up, before the container is recorded as running: for 'ocibox exec' into it.
        from ocibox import _json as json

        with open(state_dir / "config.json", "w") as f:
            f.write(json.dumps(ocispec.to_json(config)))
        if on_start is not None:
            on_start(pid)

    ctr = create(config, rootfs=str(rootfs), cgroup=cgroup, seccomp=prepared.seccomp if prepared else None,
                 mount_rootfs=mount_rootfs, etc_dir=str(etc_dir),
                 etc={**etc_files(spec.hostname, spec.network), **(etc or {})},
                 stdin_null=not spec.interactive, on_pid=on_pid, late_etc=late_etc, on_namespaces=on_namespaces)
    try:
        ctr.start()
        status = ctr.wait(spec.interactive)
        if cgroup is not None and cgroup.oom_kills():
            limit = spec.limits.memory
            what = f"memory limit {_human(limit)}" if limit else "the host ran out of memory"
            sys.stderr.write(f"ocibox: the container was killed by the OOM killer ({what}); exit status {status}\n")
        return status
    finally:
        for problem in ctr.close():
            sys.stderr.write(f"ocibox: warning: {problem}\n")


# ----------------------------------------------------------------------------- the tty relay
def _copy_winsize(master: int, size: tuple[int, int] | None = None) -> None:
    """The pty's size: the config's consoleSize, else the size of this process's terminal."""
    import fcntl
    import struct
    import termios

    if size is not None:
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
        return
    for fd in (1, 0, 2):
        try:
            ours = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
        except OSError:
            continue
        fcntl.ioctl(master, termios.TIOCSWINSZ, ours)
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
    winch = signal.signal(signal.SIGWINCH, lambda s, f: _copy_winsize(master))
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
        signal.signal(signal.SIGWINCH, winch)
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
