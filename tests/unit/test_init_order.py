"""The order of the container init's steps, with a test double of the Linux seam standing in for the
kernel (a fake, and only for that: the real steps run in tests/privileged/test_run*.py).

The double records every call that would change the process or the mount table (mount, pivot_root,
unshare, prctl, setuid, capset, mknod, execve, ...) and lets the harmless ones through (openat2 and
mkdir on a scratch rootfs, so that targets are resolved for real). The init runs in a forked child, so
that what it does to its own process (setsid, signal dispositions, umask) stays there."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

from ocibox.digest import Digest
from ocibox.image import ImageConfig, Platform
from ocibox.linux import syscalls
from ocibox.ocispec import IdMapping
from ocibox.run._config import USER_ANNOTATION, build
from ocibox.run._flags import parse_run_args
from ocibox.run._init import InitArgs, init
from ocibox.run._intermediate import enter_namespaces
from ocibox.run._spec import RunSpec


class _Exec(BaseException):
    """Raised by the double's execve: the end of the init."""


def recording_kernel(log: list[list[object]], rootfs: str) -> SimpleNamespace:
    """A stand-in for ocibox.linux.syscalls: the same constants, calls recorded."""
    k = SimpleNamespace(**{n: getattr(syscalls, n) for n in dir(syscalls) if n.isupper()})

    def target(path: str) -> str:
        if path.startswith("/proc/self/fd/"):
            path = os.readlink(path)  # the resolved mount target
        return "ROOTFS" + path[len(rootfs):] if path.startswith(rootfs) else path

    def rec(name: str, keep: bool = False):  # type: ignore[no-untyped-def]
        def call(*args: object, **kw: object) -> object:
            log.append([name, *[target(a) if isinstance(a, str) else a for a in args]])
            return getattr(syscalls, name)(*args, **kw) if keep else None
        return call

    for name in ("prctl", "setsid", "dup2", "umask", "mount", "umount", "pivot_root", "unshare", "sethostname",
                 "setgroups", "setgid", "setuid", "capset", "close_range", "chdir", "fchdir", "chroot", "mknod",
                 "symlink", "socket", "setns", "setresuid", "setresgid"):
        setattr(k, name, rec(name))
    k.openat2 = syscalls.openat2  # resolution inside the scratch rootfs is real
    k.mkdir = syscalls.mkdir

    def execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        log.append(["execve", path, argv])
        raise _Exec

    k.execve = execve
    return k


MAPS = ((IdMapping(0, 1001, 1), IdMapping(1, 100000, 65536)), (IdMapping(0, 1001, 1), IdMapping(1, 100000, 65536)))


def run_init(tmp_path: Path, *flags: str, id_maps: object = None) -> tuple[list[list[object]], bytes]:
    rootfs = tmp_path / "rootfs"
    for d in ("proc", "sys", "dev", "etc", "bin"):
        (rootfs / d).mkdir(parents=True)
    config = ImageConfig(platform=Platform("linux", "amd64"), diff_ids=(Digest.parse("sha256:" + "0" * 64),))
    spec = RunSpec.from_image(config, parse_run_args(["--network", "host", *flags, "img", "/bin/true"], {}),
                              container_id="c0ffee" * 10 + "abcd")
    setup_r, setup_w = os.pipe()
    go_r, go_w = os.pipe()
    gate_r, gate_w = os.pipe()
    os.write(go_w, b"G")
    os.write(gate_w, b"S")
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the init, in a child of its own
        log: list[list[object]] = []
        try:
            for fd in (out_r, go_w, gate_w, setup_r):  # the ends the init never holds (EOF on go ends its wait)
                os.close(fd)
            k = recording_kernel(log, str(rootfs))
            config = build(spec, rootfs=str(rootfs), etc_dir=str(tmp_path / "etc"), cgroups_path="/c", seccomp=None,
                           id_maps=id_maps)  # type: ignore[arg-type]
            init(InitArgs(config=config, rootfs=str(rootfs), etc_dir=str(tmp_path / "etc"),
                          etc={"hostname": "h\n", "hosts": "", "resolv.conf": ""}, setup=setup_w, go=go_r,
                          gate=gate_r, kernel=k, cgroup_mounts=(("cgroup2", "", ""),),  # type: ignore[arg-type]
                          user=config.annotations[USER_ANNOTATION]))
        except _Exec:
            pass
        except BaseException as e:
            log.append(["error", repr(e)])
        finally:
            os.write(out_w, json.dumps(log).encode())
            os._exit(0)
    os.close(out_w)
    for fd in (setup_w, go_w, gate_w):
        os.close(fd)
    data = b""
    while chunk := os.read(out_r, 1 << 16):
        data += chunk
    os.waitpid(pid, 0)
    os.set_blocking(setup_r, False)
    try:
        setup = os.read(setup_r, 100)
    except BlockingIOError:
        setup = b""
    for fd in (out_r, setup_r, go_r, gate_r):
        os.close(fd)
    (tmp_path / "etc").mkdir(exist_ok=True)
    return json.loads(data), setup


def index(log: list[list[object]], pred) -> int:  # type: ignore[no-untyped-def]
    for i, call in enumerate(log):
        if pred(call):
            return i
    raise AssertionError(f"no such call in {log}")


def test_init_steps_in_order(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    log, setup = run_init(tmp_path)
    assert not any(c[0] == "error" for c in log), log
    names = [c[0] for c in log]
    # first of all: not dumpable, own session
    assert log[0] == ["prctl", syscalls.PR_SET_DUMPABLE, 0] and names[1] == "setsid"
    first_mount = names.index("mount")
    assert log[first_mount] == ["mount", None, "/", None, syscalls.MS_REC | syscalls.MS_SLAVE]  # rslave before all
    pivot = names.index("pivot_root")
    proc = index(log, lambda c: c[0] == "mount" and c[2] == "ROOTFS/proc")
    sysfs = index(log, lambda c: c[0] == "mount" and c[2] == "ROOTFS/sys")
    devpts = index(log, lambda c: c[0] == "mount" and c[2] == "ROOTFS/dev/pts")
    assert first_mount < proc < devpts < sysfs < pivot  # kernel filesystems inside the rootfs, then pivot
    # no mount targets the rootfs by its host path after pivot_root; masking comes after it
    assert all(not (c[0] == "mount" and str(c[2]).startswith("ROOTFS")) for c in log[pivot:])
    mask = index(log, lambda c: c[0] == "mount" and c[1] in ("/dev/null", "tmpfs") and c[2] in
                 ("/proc/kcore", "/proc/keys", "/proc/acpi", "/proc/scsi", "/sys/firmware", "/proc/timer_list"))
    assert pivot < mask
    # the old root: slaved (its unmount must not reach the host), then detached, right after the pivot
    assert log[pivot + 2] == ["mount", None, ".", None, syscalls.MS_SLAVE | syscalls.MS_REC]
    assert log[pivot + 3] == ["umount", ".", syscalls.MNT_DETACH]
    # the cgroup namespace once the creator moved PID 1 into its cgroup (the go pipe), rooted there, then
    # its mount: the last of the config's mounts, so that the wait overlapped all the others
    cgroup_ns = names.index("unshare")
    cgroup_mount = index(log, lambda c: c[0] == "mount" and c[2] == "ROOTFS/sys/fs/cgroup")
    assert log[cgroup_ns] == ["unshare", syscalls.CLONE_NEWCGROUP] and sysfs < cgroup_ns < cgroup_mount < pivot
    hostname = names.index("sethostname")
    drops = [i for i, c in enumerate(log) if c[:2] == ["prctl", syscalls.PR_CAPBSET_DROP]]
    nnp = index(log, lambda c: c[:2] == ["prctl", syscalls.PR_SET_NO_NEW_PRIVS])
    setuid, capset, execve = names.index("setuid"), names.index("capset"), names.index("execve")
    # the bounding set and no_new_privs before the uid changes; capset after it; exec last of all
    assert mask < hostname < drops[0] and drops[-1] < nnp < setuid < capset < execve == len(log) - 1
    assert names.index("close_range") < execve
    assert log[execve][1:] == ["/bin/true", ["/bin/true"]]
    assert setup == b"R\n"  # created (at the gate) before the exec


def test_read_only_root_is_remounted_after_pivot(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    log, _ = run_init(tmp_path, "--read-only")
    names = [c[0] for c in log]
    ro = index(log, lambda c: c[0] == "mount" and c[2] == "/" and c[4] == syscalls.MS_REMOUNT | syscalls.MS_BIND
               | syscalls.MS_RDONLY)
    assert names.index("pivot_root") < ro < names.index("execve")


def test_in_a_user_namespace_device_nodes_are_bound(tmp_path: Path) -> None:
    """mknod makes no usable node in a user namespace: the host's nodes are bound instead (runc's rule),
    each on a file made for it, before pivot_root; nothing is mknod'ed."""
    (tmp_path / "etc").mkdir()
    log, setup = run_init(tmp_path, id_maps=MAPS)
    assert not any(c[0] == "error" for c in log), log
    names = [c[0] for c in log]
    assert "mknod" not in names
    binds = [c for c in log if c[0] == "mount" and c[1] in ("/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                                                             "/dev/urandom", "/dev/tty")
             and str(c[2]).startswith("ROOTFS/dev/")]
    assert [c[1] for c in binds] == ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"]
    assert all(c[4] == syscalls.MS_BIND for c in binds)
    assert log.index(binds[-1]) < names.index("pivot_root") and setup == b"R\n"


def _intermediate(tmp_path: Path, go: bytes, **kw: object) -> tuple[list[list[object]], bytes, int]:
    """enter_namespaces with the recording kernel, in a child: (calls, what went to the setup pipe, status)."""
    spec = RunSpec.from_image(ImageConfig(platform=Platform("linux", "amd64"),
                                          diff_ids=(Digest.parse("sha256:" + "0" * 64),)),
                              parse_run_args(["--network", "none", "img", "true"], {}), container_id="ab" * 32)
    config = build(spec, rootfs="/r", etc_dir="/e", cgroups_path="", seccomp=None, **kw)  # type: ignore[arg-type]
    setup_r, setup_w = os.pipe()
    go_r, go_w = os.pipe()
    os.write(go_w, go)
    os.close(go_w)
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        log: list[list[object]] = []
        code = 0
        try:
            os.close(out_r)
            enter_namespaces(InitArgs(config=config, rootfs="/r", setup=setup_w, go=go_r, gate=-1,
                                      kernel=recording_kernel(log, "/r")))  # type: ignore[arg-type]
        except BaseException as e:
            log.append(["error", repr(e)])
        finally:
            os.write(out_w, json.dumps(log).encode())
            os._exit(code)
    os.close(out_w)
    os.close(setup_w)
    data = b""
    while chunk := os.read(out_r, 1 << 16):
        data += chunk
    _, status = os.waitpid(pid, 0)
    setup = os.read(setup_r, 100)
    for fd in (out_r, setup_r, go_r):
        os.close(fd)
    return (json.loads(data) if data else []), setup, os.waitstatus_to_exitcode(status)


def test_intermediate_makes_the_user_namespace_first(tmp_path: Path) -> None:
    """The user namespace first, alone; the creator asked (b"U") to write its maps and its b"M" awaited;
    root in it; only then the other namespaces, which it owns."""
    log, setup, status = _intermediate(tmp_path, b"M", id_maps=MAPS)
    assert status == 0 and setup == b"U\n", (log, setup)
    assert log[0] == ["unshare", syscalls.CLONE_NEWUSER]
    assert log[1:3] == [["setresgid", 0, 0, 0], ["setresuid", 0, 0, 0]]
    rest = log[3]
    assert rest[0] == "unshare" and not rest[1] & syscalls.CLONE_NEWUSER
    assert rest[1] & syscalls.CLONE_NEWPID and rest[1] & syscalls.CLONE_NEWNS and rest[1] & syscalls.CLONE_NEWNET


def test_intermediate_gives_up_when_the_maps_fail(tmp_path: Path) -> None:
    log, setup, status = _intermediate(tmp_path, b"X", id_maps=MAPS)
    assert setup == b"U\n" and status == 125 and log == []  # it exits at once: nothing else is done


def test_intermediate_joins_a_user_namespace_by_path_and_becomes_root(tmp_path: Path) -> None:
    log, setup, status = _intermediate(tmp_path, b"", joined={"user": "/proc/self/ns/user"})
    assert status == 0 and setup == b"", log
    assert log[0][0] == "setns" and log[0][2] == syscalls.CLONE_NEWUSER
    assert log[1:3] == [["setresgid", 0, 0, 0], ["setresuid", 0, 0, 0]] and log[3][0] == "unshare"


def test_intermediate_without_a_user_namespace_is_as_before(tmp_path: Path) -> None:
    log, setup, status = _intermediate(tmp_path, b"")
    assert status == 0 and setup == b"" and [c[0] for c in log] == ["unshare"]
