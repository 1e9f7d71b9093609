"""The commands of ``ocibox-runtime``, runc's: each takes the state root, its arguments and the log, and
returns the exit status. The container itself is made by ocibox's one executor (``ocibox.run``).
``start`` and ``delete`` are in ``ocibox.runtime._lifecycle``. Every call is a new interpreter: what a
command alone needs is imported in it."""

from __future__ import annotations

import os
import sys

from ocibox.errors import OciboxError, UsageError
from ocibox.options import Parser
from ocibox.runtime import _state
from ocibox.runtime._lifecycle import ID, _config, _delete, _remove_dir
from ocibox.runtime._state import State

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocibox import ocispec
    from ocibox.runtime import Log

def _parse(prog: str, options: tuple[Any, ...], args: tuple[Any, ...], argv: list[str]) -> dict[str, Any]:
    return Parser(f"ocibox-runtime {prog}", options, args).parse(argv)


def _cgroup_for(config: ocispec.Spec, cid: str) -> Any:
    """The cgroup manager for config.json's cgroupsPath (absolute: from the hierarchy's root; relative or
    empty: below this process's own cgroup) with its resources."""
    from ocibox.cgroups import limits_from_resources, open_cgroup
    from ocibox.run import config_rules

    limits, rules = limits_from_resources(config.linux.resources)
    rules = config_rules(config, rules)
    path = config.linux.cgroups_path.rstrip("/")
    if ":" in path and not path.startswith("/"):
        raise UsageError(f"config.json: cgroupsPath {path!r} is a systemd slice path; ocibox uses cgroupfs paths")
    if path.startswith("/"):
        parent, _, name = path.rpartition("/")
        return open_cgroup(name, limits, parent=parent or "/", devices=rules, every=True)
    if path:
        from ocibox.linux import proc

        own = proc.cgroup()
        base = own.unified if own.unified is not None and not own.paths else (own.paths.get("memory") or "/")
        parent, _, name = f"{base.rstrip('/')}/{path}".rpartition("/")
        return open_cgroup(name, limits, parent=parent or "/", devices=rules, every=True)
    return open_cgroup(cid, limits, devices=rules, every=True)


def _write_pid(path: str, pid: int) -> None:
    """Bare decimal, no newline (containerd's strconv.Atoi), published by rename."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _send_console(socket_path: str, master: int) -> None:
    import fcntl
    import socket
    import struct

    from ocibox.linux.pty import TIOCGPTN, send_fd

    # The message is the pty's name as the container sees it (runc's): the master's number in its devpts.
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(socket_path)
        send_fd(s.fileno(), master, f"/dev/pts/{number}")
    finally:
        s.close()


# ----------------------------------------------------------------------------- create, run
CREATE = (
    (("-b", "--bundle"), "str", "DIR", "the bundle (default: the current directory)"),
    (("--pid-file",), "str", "FILE", "write PID 1's pid here"),
    (("--console-socket",), "str", "SOCKET", "send the terminal's master fd to this unix socket"),
    (("--no-pivot",), "bool", "", "chroot instead of pivot_root (for a ramfs root only)"),
    (("--no-new-keyring",), "bool", "", "(accepted: ocibox makes no session keyring)"),
    (("--preserve-fds",), "int", "N", "pass N more fds (3..3+N-1) to the container"),
)


def _create(root: str, ns: dict[str, Any], log: Log) -> tuple[State, Any]:
    from ocibox import ocispec
    from ocibox.run import create

    bundle = os.path.abspath(ns["bundle"] or ".")
    config = ocispec.load(os.path.join(bundle, "config.json"))
    if config.process is None:
        raise UsageError("config.json: process is required")
    rootfs = config.root.path if config.root.path.startswith("/") else os.path.join(bundle, config.root.path)
    if not os.path.isdir(rootfs):
        raise UsageError(f"rootfs ({rootfs}) does not exist: the bundle needs its root directory")
    if config.process.terminal and not ns["console_socket"]:
        raise UsageError("config.json asks for a terminal: pass --console-socket")
    state = _state.new(root, ns["id"])
    try:
        cgroup = _cgroup_for(config, ns["id"])
        state.data.update({"bundle": bundle, "rootfs": rootfs, "annotations": config.annotations,
                           # which of the runtime's own hooks exist: start and delete parse config.json only then
                           "hooks": [k for k in ("poststart", "poststop") if getattr(config.hooks, k)]})
        import gc

        gc.enable()  # (off in main) PID 1 forks from here, and with io.ocibox.init it stays, a reaper
        # prestart, createRuntime and createContainer hooks run inside create, before pivot_root
        ctr = create(config, rootfs=rootfs, cgroup=cgroup, bundle=bundle, fifo=state.fifo, no_pivot=ns["no_pivot"],
                     preserve_fds=ns["preserve_fds"], seccomp_cache=os.path.join(root, ".seccomp"),
                     state_of=lambda pid: state.oci("creating", pid))
        state.data.update({"pid": ctr.pid, "pid_start": _pid_start(ctr.pid), "cgroup": cgroup.state()})
        state.save()
        if ctr.master >= 0:
            _send_console(ns["console_socket"], ctr.master)
            os.close(ctr.master)
            ctr.master = -1
        if ns["pid_file"]:
            _write_pid(os.path.abspath(ns["pid_file"]), ctr.pid)
    except BaseException:
        if "ctr" in locals():
            try:
                ctr.close()
            except Exception:  # the error being raised is the one to report
                pass
        _remove_dir(state.dir)
        raise
    return state, ctr


def _pid_start(pid: int) -> int:
    from ocibox.linux import proc

    return proc.start_time(pid)


def create(root: str, argv: list[str], log: Log) -> int:
    ns = _parse("create", CREATE, ID, argv)
    from ocibox.cgroups import MigrationWarmup

    # the cgroup join's RCU grace period paid while config.json is read and the executor imported
    warmup = MigrationWarmup().start()
    try:
        _create(root, ns, log)
    finally:
        warmup.stop()
    return 0  # PID 1 waits at the fifo; this process exits and it is reparented to our caller


def run(root: str, argv: list[str], log: Log) -> int:
    """create + start + wait, this process the container's parent (runc run)."""
    ns = _parse("run", (*CREATE, (("-d", "--detach"), "bool", "", "do not wait (the container is left running)")),
                ID, argv)
    state, ctr = _create(root, ns, log)
    from ocibox.run import exit_status, start_fifo

    try:
        start_fifo(state.fifo)
        if ns["detach"]:
            return 0
        _, status = os.waitpid(ctr.pid, 0)
        return exit_status(status)
    except BaseException:
        ns["detach"] = False
        raise
    finally:
        if not ns["detach"]:
            try:
                _delete(state, force=True, log=log)
            except OciboxError:
                pass


# ----------------------------------------------------------------------------- state, list, ps
def state(root: str, argv: list[str], log: Log) -> int:
    import json

    ns = _parse("state", (), ID, argv)
    sys.stdout.write(json.dumps(_state.load(root, ns["id"]).oci(), indent=2) + "\n")
    return 0


def list_(root: str, argv: list[str], log: Log) -> int:
    ns = _parse("list", ((("-f", "--format"), ("table", "json"), "FORMAT", "table or json"),
                         (("-q", "--quiet"), "bool", "", "only ids")), (), argv)
    import json

    states = [_state.load(root, cid).oci() for cid in _state.all_ids(root)]
    if ns["quiet"]:
        for s in states:
            sys.stdout.write(s["id"] + "\n")
    elif ns["format"] == "json":
        sys.stdout.write(json.dumps(states) + "\n")
    else:
        sys.stdout.write(f"{'ID':<20} {'PID':<8} {'STATUS':<10} {'BUNDLE':<40} CREATED\n")
        for s in states:
            sys.stdout.write(f"{s['id']:<20} {s['pid']:<8} {s['status']:<10} {s['bundle']:<40} {s['created']}\n")
    return 0


def ps(root: str, argv: list[str], log: Log) -> int:
    ns = Parser("ocibox-runtime ps", ((("-f", "--format"), ("table", "json"), "FORMAT", "table or json"),),
                (("id", "CONTAINER_ID", ""), ("ps_args", "[ps ARG...]", "")), interspersed=False).parse(argv)
    st = _state.load(root, ns["id"])
    cg = st.cgroup()
    pids = cg.procs() if cg is not None else []
    if ns["format"] == "json":
        import json

        sys.stdout.write(json.dumps(pids) + "\n")
        return 0
    import subprocess

    if not pids:
        return 0
    r = subprocess.run(["ps", *(ns["ps_args"] or ["-ef"])], capture_output=True, text=True, check=False)
    lines = r.stdout.splitlines()
    if lines:
        sys.stdout.write(lines[0] + "\n")
        col = lines[0].split().index("PID") if "PID" in lines[0].split() else 1
        for line in lines[1:]:
            parts = line.split()
            if len(parts) > col and parts[col].isdigit() and int(parts[col]) in pids:
                sys.stdout.write(line + "\n")
    return 0


# ----------------------------------------------------------------------------- kill, pause
def kill(root: str, argv: list[str], log: Log) -> int:
    ns = Parser("ocibox-runtime kill", ((("-a", "--all"), "bool", "", "every process of the container"),),
                (("id", "CONTAINER_ID", ""), ("signal", "[SIGNAL]", ""))).parse(argv)
    import signal

    from ocibox.run import parse_signal

    st = _state.load(root, ns["id"])
    sig = parse_signal(ns["signal"] or "SIGTERM")
    if ns["all"]:
        cg = st.cgroup()
        if cg is not None:
            cg.kill_all(sig)
        return 0
    if not st.alive():
        raise UsageError("container not running")
    pidfd = os.pidfd_open(st.pid)
    try:
        signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        raise UsageError("container not running") from None
    finally:
        os.close(pidfd)
    return 0


def pause(root: str, argv: list[str], log: Log) -> int:
    st = _state.load(root, _parse("pause", (), ID, argv)["id"])
    if st.status() != "running":
        raise UsageError(f"container {st.id} is not running")
    st.cgroup().freeze(True)
    return 0


def resume(root: str, argv: list[str], log: Log) -> int:
    st = _state.load(root, _parse("resume", (), ID, argv)["id"])
    if st.status() != "paused":
        raise UsageError(f"container {st.id} is not paused")
    st.cgroup().freeze(False)
    return 0


# ----------------------------------------------------------------------------- update
def update(root: str, argv: list[str], log: Log) -> int:
    ns = _parse("update", (
        (("-r", "--resources"), "str", "FILE", "LinuxResources JSON ('-' for stdin)"),
        (("-m", "--memory"), "str", "BYTES", "memory limit"),
        (("--memory-swap",), "str", "BYTES", "memory plus swap limit"),
        (("--cpu-shares",), "str", "N", "cpu shares"),
        (("--cpu-quota",), "str", "N", "cfs quota (us)"),
        (("--cpu-period",), "str", "N", "cfs period (us)"),
        (("--cpuset-cpus",), "str", "LIST", "cpus"),
        (("--pids-limit",), "str", "N", "maximum number of processes"),
    ), ID, argv)
    import json

    from ocibox.cgroups import limits_from_resources

    st = _state.load(root, ns["id"])
    res: dict[str, Any] = {}
    if ns["resources"]:
        try:
            text = sys.stdin.read() if ns["resources"] == "-" else open(ns["resources"]).read()  # noqa: SIM115
            res = json.loads(text)
        except (OSError, ValueError) as e:
            raise UsageError(f"update --resources: not a LinuxResources JSON ({e})") from None
    from ocibox.units import parse_size

    def num(key: str) -> int | None:
        return int(ns[key]) if ns[key] else None

    if ns["memory"]:
        res.setdefault("memory", {})["limit"] = parse_size(ns["memory"])
    if ns["memory_swap"]:
        res.setdefault("memory", {})["swap"] = parse_size(ns["memory_swap"])
    for key, (group, field) in {"cpu_shares": ("cpu", "shares"), "cpu_quota": ("cpu", "quota"),
                                "cpu_period": ("cpu", "period"), "pids_limit": ("pids", "limit")}.items():
        if num(key) is not None:
            res.setdefault(group, {})[field] = num(key)
    if ns["cpuset_cpus"]:
        res.setdefault("cpu", {})["cpus"] = ns["cpuset_cpus"]
    res.pop("devices", None)  # the device rules stay as created (runc ignores them on update too)
    limits, _ = limits_from_resources(res)
    cg = st.cgroup()
    if cg is None:
        raise UsageError(f"container {st.id} has no cgroup")
    cg.apply(limits)
    return 0


# ----------------------------------------------------------------------------- exec
EXEC = (
    (("-p", "--process"), "str", "FILE", "a process.json (the runtime spec's Process)"),
    (("--console-socket",), "str", "SOCKET", "send the terminal's master fd to this unix socket"),
    (("-d", "--detach"), "bool", "", "return once it runs"),
    (("--pid-file",), "str", "FILE", "write its pid here"),
    (("-t", "--tty"), "bool", "", "a terminal"),
    (("--cwd",), "str", "DIR", "working directory"),
    (("-e", "--env"), "list", "NAME=VALUE", "an environment variable"),
    (("-u", "--user"), "str", "UID[:GID]", "user"),
    (("-g", "--additional-gids"), "list", "GID", "supplementary group"),
    (("-c", "--cap"), "list", "CAP", "add a capability"),
    (("--no-new-privs",), "bool", "", "set no_new_privs"),
    (("--preserve-fds",), "int", "N", "pass N more fds"),
    (("--process-label",), "str", "LABEL", "(refused: no SELinux here)"),
    (("--apparmor",), "str", "PROFILE", "(refused: no AppArmor here)"),
    (("--ignore-paused",), "bool", "", "(accepted)"),
)


class ExecError(OciboxError):
    """runc exits 255 when exec's process cannot be started."""

    runtime_code = 255


def exec_(root: str, argv: list[str], log: Log) -> int:
    ns = Parser("ocibox-runtime exec", EXEC, (("id", "CONTAINER_ID", ""), ("command", "[COMMAND] [ARG...]", "")),
                interspersed=False).parse(argv)
    import json

    from ocibox import ocispec
    from ocibox.run import exec_process, seccomp_filter_of

    st = _state.load(root, ns["id"])
    if st.status() not in ("running", "created"):
        raise ExecError(f"cannot exec in a container that is {st.status()}")
    config = _config(st)
    if config is None or config.process is None:
        raise ExecError(f"container {st.id}: its config.json is gone")
    if ns["process_label"] or ns["apparmor"]:
        raise ExecError("--process-label/--apparmor: this host enforces neither SELinux nor AppArmor for ocibox")
    try:
        if ns["process"]:
            with open(ns["process"]) as f:
                doc = json.load(f)
            process = ocispec.parse({"ociVersion": "1.0.0", "root": {"path": "/"}, "process": doc}).process
        else:
            if not ns["command"]:
                raise UsageError("exec needs a COMMAND or --process FILE")
            base = config.process
            uid, _, gid = (ns["user"] or f"{base.user.uid}:{base.user.gid}").partition(":")
            caps = base.capabilities or ocispec.Capabilities()
            if ns["cap"]:
                add = tuple(c if c.startswith("CAP_") else "CAP_" + c for c in ns["cap"])
                caps = ocispec.Capabilities(caps.bounding + add, caps.effective + add, caps.inheritable,
                                            caps.permitted + add, caps.ambient)
            process = ocispec.Process(
                args=tuple(ns["command"]), cwd=ns["cwd"] or base.cwd, env=base.env + tuple(ns["env"]),
                user=ocispec.User(int(uid), int(gid or 0), None, tuple(int(g) for g in ns["additional_gids"])),
                terminal=ns["tty"], capabilities=caps, rlimits=base.rlimits,
                no_new_privileges=base.no_new_privileges or ns["no_new_privs"])
    except (OSError, ValueError) as e:
        raise ExecError(f"exec: the process cannot be read ({e})") from None
    assert process is not None
    if process.terminal and not ns["console_socket"] and ns["detach"]:
        raise ExecError("exec --tty --detach needs --console-socket")
    seccomp = seccomp_filter_of(config.linux.seccomp, os.path.join(root, ".seccomp")) if config.linux.seccomp else None
    try:
        proc = exec_process(st.pid, st.pid_start, process, cgroup=st.cgroup(), seccomp=seccomp)
    except OciboxError as e:
        raise ExecError(str(e)) from None
    if ns["pid_file"]:
        _write_pid(os.path.abspath(ns["pid_file"]), proc.pid)
    if proc.master >= 0 and ns["console_socket"]:
        _send_console(ns["console_socket"], proc.master)
        os.close(proc.master)
        proc.master = -1
    if ns["detach"]:
        return 0
    return proc.wait(interactive=process.terminal)


# ----------------------------------------------------------------------------- spec, features
def spec(root: str, argv: list[str], log: Log) -> int:
    """A default config.json in the bundle (runc spec's: sh on a terminal, docker's hardening)."""
    ns = _parse("spec", ((("-b", "--bundle"), "str", "DIR", "where to write config.json (default: .)"),
                         (("--rootless",), "bool", "", "(accepted: the same config)")), (), argv)
    import json

    from ocibox import ocispec
    from ocibox.run import DEFAULT_MOUNTS, MASKED_PATHS, READONLY_PATHS

    path = os.path.join(ns["bundle"] or ".", "config.json")
    if os.path.exists(path):
        raise UsageError(f"File {path} exists. Remove it first")
    caps = ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
    config = ocispec.Spec(
        process=ocispec.Process(args=("sh",), env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                                   "TERM=xterm"),
                                terminal=True, capabilities=ocispec.Capabilities(caps, caps, (), caps, caps),
                                rlimits=(ocispec.Rlimit("RLIMIT_NOFILE", 1024, 1024),), no_new_privileges=True),
        root=ocispec.Root("rootfs", True), hostname="ocibox",
        mounts=(*DEFAULT_MOUNTS, ocispec.Mount("/sys/fs/cgroup", "cgroup", "cgroup",
                                               ("nosuid", "noexec", "nodev", "relatime", "ro"))),
        linux=ocispec.Linux(
            namespaces=tuple(ocispec.Namespace(n) for n in ("pid", "network", "ipc", "uts", "mount", "cgroup")),
            resources={"devices": [{"allow": False, "access": "rwm"}]},
            masked_paths=MASKED_PATHS, readonly_paths=READONLY_PATHS),
    )
    with open(path, "w") as f:
        json.dump(ocispec.to_json(config), f, indent=4)
    return 0


def features(root: str, argv: list[str], log: Log) -> int:
    """The runtime-spec features document: what this executor accepts."""
    _parse("features", (), (), argv)
    import json

    from ocibox.run import CAPS, SECCOMP_ACTIONS, SECCOMP_OPS

    doc = {
        "ociVersionMin": "1.0.0", "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": sorted(["bind", "rbind", "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
                                "sync", "async", "dirsync", "mand", "nomand", "atime", "noatime", "diratime",
                                "nodiratime", "relatime", "norelatime", "strictatime", "nostrictatime", "nosymfollow",
                                "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable",
                                "runbindable", "tmpcopyup"]),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": sorted("CAP_" + c for c in CAPS),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False, "rdma": False},
            "seccomp": {"enabled": True, "actions": sorted(SECCOMP_ACTIONS),
                        "operators": sorted(SECCOMP_OPS), "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32",
                                                             "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]},
            "apparmor": {"enabled": False}, "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
        },
        "annotations": {"io.ocibox.runtime.version": "0.1.0"},
    }
    sys.stdout.write(json.dumps(doc, indent=4) + "\n")
    return 0
