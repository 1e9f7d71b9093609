"""The detached face of the lifecycle core: create and start a container in a child process that then
becomes its monitor (``ocibox.monitor``: a small C program, exec'd in place), so that ``run -d`` and
``start`` return as soon as the command runs and nothing of Python stays behind.

Processes::

    ocibox (P) ──fork──> C1: setsid, subreaper, create + start (the lifecycle core, in-process: no second
                         interpreter), records the run, then execs ocibox-monitor with the container's
                         stdio, the log and the attach socket. PID 1 is C1's (the monitor's) child.
    P reads C1's report (PID 1's pid, or the error) on a pipe and returns.

The monitor holds ``containers/<id>/monitor.lock`` (an flock taken by P before the fork, inherited across
every exec) until the container's cleanup, which it execs when PID 1 exits, has finished: ``wait``,
``stop`` and ``ps`` learn from that lock whether a monitor looks after the container.
"""

from __future__ import annotations

import fcntl
import os
import sys

from ocibox import errors
from ocibox._contextlib import suppress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from ocibox import ocispec
    from ocibox.cgroups import Cgroup
    from ocibox.run._seccomp import SeccompFilter
    from ocibox.settings import Settings
    from ocibox.store import ContainerRecord, ImageRecord, Store

LOCK, EXIT, LOG, ATTACH, MONITOR_LOG = "monitor.lock", "exit", "ctr.log", "attach.sock", "monitor.err"


def take_lock(cdir: Path) -> int:
    """The monitor lock of a container, taken now (an fd to hand down); one line if it is held."""
    fd = os.open(cdir / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise errors.UsageError("the container is already running (its monitor holds it); stop it first") from None
    return fd


def monitored(cdir: Path) -> bool:
    """A monitor (or its cleanup) holds the container right now."""
    try:
        fd = os.open(cdir / LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def spawn(config: ocispec.Spec, cdir: Path, *, rootfs: str, cgroup: Cgroup | None, seccomp: SeccompFilter | None,
          mount_rootfs: Callable[[], None] | None, etc_dir: str, etc: dict[str, str], interactive: bool,
          log_max_size: int, log_max_files: int, exit_command: list[str], lock_fd: int,
          on_started: Callable[[int], None], late_etc: Callable[[], dict[str, str]] | None = None,
          on_namespaces: Callable[[int], None] | None = None, on_pid: Callable[[int], None] | None = None) -> int:
    """Create and start ``config`` under a new monitor; return PID 1's pid once the command was exec'd.

    ``lock_fd`` is the taken monitor lock (``take_lock``), handed to the monitor. ``on_started(pid)``
    runs in the child right after the start, before the monitor is exec'd (it records the run: the
    monitor's cleanup may follow at once). ``late_etc``: see ``create``. A setup failure raises here (125, or 126/127 when the
    command cannot be executed) with everything the child made removed."""
    from ocibox.monitor import binary

    monitor = binary()  # before the fork: a first build must not happen in the child
    tty = bool(config.process and config.process.terminal)
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    out_r, out_w = (-1, -1) if tty else os.pipe2(os.O_CLOEXEC)
    err_r, err_w = (-1, -1) if tty else os.pipe2(os.O_CLOEXEC)
    in_r, in_w = os.pipe2(os.O_CLOEXEC) if interactive and not tty else (-1, -1)
    for fd in (out_r, err_r):
        if fd >= 0:
            with suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)  # fewer wake-ups of the monitor (best effort)
    c1 = os.fork()
    if c1 == 0:  # pragma: no cover - the child that becomes the monitor
        code = 125
        try:
            os.close(report_r)
            _child(config, cdir, rootfs=rootfs, cgroup=cgroup, seccomp=seccomp, mount_rootfs=mount_rootfs,
                   etc_dir=etc_dir, etc=etc, stdio=(in_r, out_w, err_w), monitor_fds=(out_r, err_r, in_w),
                   report=report_w, monitor=monitor, log_max_size=log_max_size, log_max_files=log_max_files,
                   exit_command=exit_command, lock_fd=lock_fd, on_started=on_started, late_etc=late_etc,
                   on_namespaces=on_namespaces, on_pid=on_pid)
        except BaseException as e:
            line, code = errors.to_wire(e, "container setup failed: ")
            with suppress(OSError):
                os.write(report_w, line)
        os._exit(code)
    os.close(report_w)
    for fd in (out_r, out_w, err_r, err_w, in_r, in_w):
        if fd >= 0:
            os.close(fd)
    data = b""
    try:
        while chunk := os.read(report_r, 4096):
            data += chunk
    finally:
        os.close(report_r)
    if data.startswith(b"P"):
        return int(data[1:].split()[0])
    os.waitpid(c1, 0)
    raise errors.from_wire(data, errors.RuntimeSetupError) or errors.RuntimeSetupError(
        "the container's monitor process died before the container started")


def _child(config: ocispec.Spec, cdir: Path, *, rootfs: str, cgroup: Cgroup | None, seccomp: SeccompFilter | None,
           mount_rootfs: Callable[[], None] | None, etc_dir: str, etc: dict[str, str], stdio: tuple[int, int, int],
           monitor_fds: tuple[int, int, int], report: int, monitor: str, log_max_size: int, log_max_files: int,
           exit_command: list[str], lock_fd: int, on_started: Callable[[int], None],
           late_etc: Callable[[], dict[str, str]] | None,
           on_namespaces: Callable[[int], None] | None = None,
           on_pid: Callable[[int], None] | None = None) -> None:  # pragma: no cover
    from ocibox.run._process import create

    # A session of its own: no terminal's hangup or ^C reaches the monitor or the container.
    os.setsid()
    null = os.open("/dev/null", os.O_RDWR)
    in_r, out_w, err_w = stdio
    # The container's stdio, inherited by its PID 1 (with a terminal, create gives it the pty instead).
    os.dup2(in_r if in_r >= 0 else null, 0)
    os.dup2(out_w if out_w >= 0 else null, 1)
    os.dup2(err_w if err_w >= 0 else null, 2)
    ctr = create(config, rootfs=rootfs, cgroup=cgroup, seccomp=seccomp, mount_rootfs=mount_rootfs, etc_dir=etc_dir,
                 etc=etc, late_etc=late_etc, on_namespaces=on_namespaces, on_pid=on_pid)
    try:
        ctr.start()
    except BaseException:
        ctr.close()
        raise
    on_started(ctr.pid)
    # The monitor's own stdio: nothing of the container's, nothing of the caller's terminal.
    err = os.open(cdir / MONITOR_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(err, 2)
    for fd in (in_r, out_w, err_w, null, err):
        if fd > 2:
            os.close(fd)
    out_r, err_r, in_w = monitor_fds
    args = [monitor, "--pid", str(ctr.pid), "--log", str(cdir / LOG), "--log-max-size", str(log_max_size),
            "--log-max-files", str(log_max_files), "--attach", ATTACH, "--exit", str(cdir / EXIT)]
    passed = [lock_fd]
    if ctr.master >= 0:
        args += ["--pty", str(ctr.master)]
        passed.append(ctr.master)
    else:
        args += ["--stdout", str(out_r), "--stderr", str(err_r)]
        passed += [out_r, err_r]
    if in_w >= 0:
        args += ["--stdin", str(in_w)]
        passed.append(in_w)
    for fd in passed:
        os.set_inheritable(fd, True)
    os.chdir(cdir)  # the attach socket is bound by a short relative name (sun_path is 108 bytes)
    # The caller may be gone (killed): the container runs all the same, and its monitor must follow.
    with suppress(OSError):
        os.write(report, f"P{ctr.pid}\n".encode())
    os.close(report)
    sys.stdout.flush()
    os.execv(monitor, [*args, "--", *exit_command])


# ----------------------------------------------------------------------------- from a container's record
DEFAULT_SETTINGS: dict[str, object] = {
    "restart": {"name": "no", "max": 0}, "stop_signal": "SIGTERM", "stop_timeout": 10,
    "log": {"max_size": 0, "max_file": 1}, "auto_remove": False, "tty": False, "interactive": False,
    "cgroup_parent": "", "network": "bridge", "hostname": "", "net": {}, "exposed": [],
}


def start_detached(settings: Settings, store: Store, rec: ContainerRecord, *, lock_fd: int | None = None,
                   made: tuple[ocispec.Spec, ImageRecord, SeccompFilter | None] | None = None) -> int:
    """Start a detached container from what its record and its directory keep (config.json, the
    writable layer): a new cgroup, the overlay of its image's layers with its own upper dir, a new
    monitor. Returns PID 1's pid. ``lock_fd``: the monitor lock when the caller already holds it (the
    cleanup of a restart), else it is taken here. ``made``: the config just written, its image and its
    seccomp program, from ``run -d`` (not read back and built again)."""
    from ocibox import ocispec
    from ocibox import store as st
    from ocibox.cgroups import limits_from_resources, open_cgroup
    from ocibox.layers import prepare_rootfs
    from ocibox.run._etc import etc_files
    from ocibox.run._plain import NetFlags
    from ocibox.run._seccomp import compile_filter, from_oci

    cdir = store.container_dir(rec.id)
    conf = {**DEFAULT_SETTINGS, **rec.setting_map}
    if made is not None:
        config, image, seccomp = made
    else:
        config = ocispec.load(str(cdir / "config.json"))
        image = st.load_image(store, rec.image_id)
        seccomp = None
        if config.linux.seccomp is not None:
            seccomp = compile_filter(from_oci(config.linux.seccomp), str(store.root / "seccomp"))
    from ocibox.run._devices import config_rules

    limits, rules = limits_from_resources(config.linux.resources)
    rules = config_rules(config, rules)
    cgroup = open_cgroup(f"ocibox-{rec.id}", limits, parent=str(conf["cgroup_parent"]), devices=rules)
    merged, upper, work = cdir / "merged", cdir / "upper", cdir / "work"
    for d in (merged, upper, work, cdir / "etc"):
        d.mkdir(parents=True, exist_ok=True)
    log = conf["log"] if isinstance(conf["log"], dict) else {}
    taken = lock_fd if lock_fd is not None else take_lock(cdir)
    exit_command = [sys.executable, "-m", "ocibox", "--root", str(store.root), "container", "cleanup",
                    "--lock-fd", str(taken), rec.id]

    child: list[tuple[st.Store, str]] = []

    def connect(pid: int) -> None:
        """In the child, while PID 1 sets itself up (on another CPU): the child's own connection to the
        store (one never crosses a fork) opened, and the record's data made, before the start needs them."""
        from ocibox import _json as json

        child_store = st.Store(store.root)
        child_store.db  # noqa: B018 - opens it
        child.append((child_store, json.dumps(cgroup.state())))

    def started(pid: int) -> None:  # in the child, right after the start: the monitor's cleanup may follow
        if not child:
            connect(pid)
        child_store, state = child[0]
        st.set_container_pid(child_store, rec.id, pid, cgroup=state)

    hostname = str(conf["hostname"]) or rec.id[:12]
    net = None
    fuse = None

    rootfs_mount: Callable[[], None] | None = None
    on_started: Callable[[int], None] = started
    try:
        if config.linux.uid_mappings:  # without root: where the kernel refuses overlayfs, fuse-overlayfs
            from ocibox.layers import FuseRootfs, rootless_overlay

            if rootless_overlay(store) == "fuse":
                fuse = FuseRootfs(store, image, merged, upper, work)
                fuse.start()
                config = _joined(config, fuse.joined)
                on_started = fuse.then(started)
        if fuse is None:  # the kernel's overlay, its options read from the store here, mounted by PID 1
            rootfs_mount = prepare_rootfs(store, image, merged, upper=upper, work=work)

        with suppress(FileNotFoundError):
            os.unlink(cdir / EXIT)
        net_flags = NetFlags.from_json(conf["net"]) if isinstance(conf["net"], dict) else NetFlags()
        if conf["net"] and not net_flags.plain():  # on networks: made again at each start
            from ocibox.run import _net
            from ocibox.run._spec import net_request

            exposed = conf["exposed"] if isinstance(conf["exposed"], list) else []
            net = _net.plan(settings, store, net_request(net_flags, exposed), rec.id, rec.name, hostname)
            config = _net.with_netns(config, net.netns)
        etc = {**etc_files(hostname, str(conf["network"])), **(net.etc if net is not None else {})}
        pid = spawn(config, cdir, rootfs=str(merged), cgroup=cgroup, seccomp=seccomp,
                    mount_rootfs=rootfs_mount,
                    etc_dir=str(cdir / "etc"), etc=etc, interactive=bool(conf["interactive"]),
                    log_max_size=int(log.get("max_size", 0)), log_max_files=int(log.get("max_file", 1)),
                    exit_command=exit_command, lock_fd=taken, on_started=on_started,
                    late_etc=net.late_etc if net is not None else None,
                    on_namespaces=net.on_namespaces if net is not None else None, on_pid=connect)
        if net is not None and net.pending is not None:
            net.pending.cancel()  # the ADD's process, reaped (its result went to the creator)
        return pid
    except BaseException:
        if net is not None:
            net.finish(settings, rec.id, background=False)
        raise
    finally:
        if fuse is not None:
            fuse.close()
        if lock_fd is None:
            os.close(taken)  # the monitor has its own copy of the lock (or nothing runs: released)


def _joined(config: ocispec.Spec, joined: dict[str, str]) -> ocispec.Spec:
    """``config`` with the namespaces of ``joined`` joined by path (and no id maps: the user namespace
    joined has its own)."""
    from ocibox import ocispec as spec
    from ocibox._record import replace

    spaces = tuple(spec.Namespace(n.type, joined.get(n.type, n.path)) for n in config.linux.namespaces)
    return replace(config, linux=replace(config.linux, namespaces=spaces, uid_mappings=(), gid_mappings=()))
