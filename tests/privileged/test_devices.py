"""The v1 devices cgroup for real: deny-all plus the default allow list, a forked child inside it.

A block device node made with mknod (as an image could ship one) opens for the test process, and is
refused (EPERM) once the child is in the cgroup, while /dev/null still works.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostdev import host_block_device

from ocibox import cgroups
from ocibox.run import _devices as dv

pytestmark = pytest.mark.privileged


def _cgroup_below(parent: str) -> Iterator[str]:
    """The test's own cgroup below ``parent``; removed after (every child put there has exited and been
    reaped by then: an empty cgroup can be removed; on v2 that detaches the program too)."""
    path = os.path.join(parent, f"ocibox-test-devices-{os.getpid()}")
    os.mkdir(path)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(path)
    assert not os.path.exists(path)


@pytest.fixture
def devices_cgroup() -> Iterator[str]:
    own = cgroups.own_v1_dir("devices")
    if own is None:
        pytest.skip("no cgroup v1 devices hierarchy on this host (pure v2): see the v2 fallback")
    yield from _cgroup_below(str(own))


def in_child(cgroup: str | None, paths: list[str]) -> dict[str, int]:
    """Fork; the child joins ``cgroup`` and tries to open each path; returns {path: errno or 0}."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            if cgroup:
                with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                    f.write("0")
            out = []
            for p in paths:
                try:
                    os.close(os.open(p, os.O_RDONLY))
                    out.append(f"{p}=0")
                except OSError as e:
                    out.append(f"{p}={e.errno}")
            os.write(w, "\n".join(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return {k: int(v) for k, v in (line.rsplit("=", 1) for line in data.decode().splitlines())}


def test_deny_all_then_defaults(devices_cgroup: str, tmp_path: Path) -> None:
    blk = os.stat(host_block_device())
    node = tmp_path / "sda"
    os.mknod(node, stat.S_IFBLK | 0o600, blk.st_rdev)  # as an image could ship it
    kmsg = tmp_path / "kmsg"
    os.mknod(kmsg, stat.S_IFCHR | 0o600, os.makedev(1, 11))
    paths = [str(node), str(kmsg), "/dev/null", "/dev/zero", "/dev/urandom"]
    assert in_child(None, paths) == dict.fromkeys(paths, 0)  # without the cgroup, root opens them all

    cgroups.write_v1(devices_cgroup, dv.device_rules())
    listed = cgroups.read_v1(devices_cgroup)
    assert "c 1:3 rwm" in listed and "b *:* m" in listed and "a *:* rwm" not in listed
    got = in_child(devices_cgroup, paths)
    assert got == {str(node): errno.EPERM, str(kmsg): errno.EPERM, "/dev/null": 0, "/dev/zero": 0,
                   "/dev/urandom": 0}


def test_device_option_adds_one_node(devices_cgroup: str, tmp_path: Path) -> None:
    blk = os.stat(host_block_device())
    node = tmp_path / "disk"
    os.mknod(node, stat.S_IFBLK | 0o600, blk.st_rdev)
    spec = dv.parse_device_option(f"{node}:/dev/xvda:r")
    assert spec.type == "b" and os.makedev(spec.major, spec.minor) == blk.st_rdev
    cgroups.write_v1(devices_cgroup, dv.device_rules([spec]))
    assert f"b {spec.major}:{spec.minor} r" in cgroups.read_v1(devices_cgroup)
    assert in_child(devices_cgroup, [str(node)]) == {str(node): 0}


def test_a_device_the_parent_forbids_is_a_cgroup_error(devices_cgroup: str) -> None:
    from ocibox.errors import CgroupError

    child = os.path.join(devices_cgroup, "inner")
    cgroups.write_v1(devices_cgroup, dv.default_devices())
    os.mkdir(child)
    try:
        with pytest.raises(CgroupError, match=r"b 8:0 rwm.*inner/devices.allow.*parent cgroup"):
            cgroups.write_v1(child, [cgroups.Device("b", 8, 0, "rwm")])
    finally:
        os.rmdir(child)


def own_v2_cgroup() -> str | None:
    """This process's cgroup in the cgroup2 hierarchy (the whole tree on v2, /sys/fs/cgroup/unified on a
    hybrid host like these machines), or None."""
    with open("/proc/self/mountinfo") as f:
        point = next((line.split()[4] for line in f if line.partition(" - ")[2].startswith("cgroup2 ")), None)
    if point is None:
        return None
    with open("/proc/self/cgroup") as f:
        rel = next((line.rstrip("\n").split(":", 2)[2] for line in f if line.startswith("0::")), None)
    return None if rel is None else os.path.normpath(point + rel)


@pytest.fixture
def v2_cgroup() -> Iterator[str]:
    parent = own_v2_cgroup()
    if parent is None:
        pytest.skip("no cgroup2 hierarchy mounted on this host")
    yield from _cgroup_below(parent)


def in_child_v2(cgroup: str, paths: list[str]) -> dict[str, int]:
    return in_child(cgroup, paths)  # joining is the same cgroup.procs write on v2


def test_v2_ebpf_device_program(v2_cgroup: str, tmp_path: Path) -> None:
    """The eBPF program attached to a cgroup2 directory (on a hybrid host it acts alongside the v1
    devices cgroup, which allows everything at our level)."""
    blk = os.stat(host_block_device())
    node = tmp_path / "sda"
    os.mknod(node, stat.S_IFBLK | 0o600, blk.st_rdev)
    kmsg = tmp_path / "kmsg"
    os.mknod(kmsg, stat.S_IFCHR | 0o600, os.makedev(1, 11))
    paths = [str(node), str(kmsg), "/dev/null", "/dev/urandom"]
    assert in_child(None, paths) == dict.fromkeys(paths, 0)
    spec = dv.parse_device_option(f"{kmsg}:/dev/kmsg:r")
    cgroups.attach_v2(v2_cgroup, dv.device_rules([spec]))
    got = in_child_v2(v2_cgroup, paths)
    assert got == {str(node): errno.EPERM, str(kmsg): 0, "/dev/null": 0, "/dev/urandom": 0}
    # the access must be within the rule's: kmsg was given "r" only
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        with open(os.path.join(v2_cgroup, "cgroup.procs"), "w") as f:
            f.write("0")
        try:
            os.close(os.open(kmsg, os.O_WRONLY))
            os.write(w, b"0")
        except OSError as e:
            os.write(w, str(e.errno).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert os.read(r, 16) == str(errno.EPERM).encode()
    os.close(r)


def test_v2_program_for_every_rule_shape_passes_the_verifier() -> None:
    rules = [cgroups.Device("a", cgroups.ANY, cgroups.ANY, "m"), cgroups.Device("b", 8, cgroups.ANY, "rw"),
             cgroups.Device("c", cgroups.ANY, 3, "w"),
             *dv.device_rules(tty=True)]
    from ocibox.linux import bpf

    fd = bpf.prog_load_cgroup_device(cgroups.bpf_device_program(rules))
    os.close(fd)


def test_host_devices_for_privileged_walk_like_runc(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    for d in ("pts", "shm", "mqueue", "net", "cpu/0"):
        (dev / d).mkdir(parents=True)
    old_umask = os.umask(0)
    try:
        _make_host_like_dev(dev)
    finally:
        os.umask(old_umask)
    got = {d.container_path: (d.type, d.major, d.minor, d.access, stat.S_IMODE(d.mode), d.gid)
           for d in dv.host_devices(str(dev))}
    assert got == {
        "/dev/cpu/0/msr": ("c", 202, 0, "rwm", 0o600, 0), "/dev/loop9": ("b", 7, 9, "rwm", 0o660, 6),
        "/dev/net/tun": ("c", 10, 200, "rwm", 0o666, 0), "/dev/null": ("c", 1, 3, "rwm", 0o666, 0),
    }
    assert dv.host_devices(str(tmp_path / "absent")) == ()


def _make_host_like_dev(dev: Path) -> None:
    os.mknod(dev / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(dev / "loop9", stat.S_IFBLK | 0o660, os.makedev(7, 9))
    os.chown(dev / "loop9", 0, 6)
    os.mknod(dev / "net" / "tun", stat.S_IFCHR | 0o666, os.makedev(10, 200))
    os.mknod(dev / "cpu" / "0" / "msr", stat.S_IFCHR | 0o600, os.makedev(202, 0))
    os.mknod(dev / "pts" / "0", stat.S_IFCHR | 0o620, os.makedev(136, 0))  # the host's terminals: skipped
    os.mknod(dev / "console", stat.S_IFCHR | 0o600, os.makedev(5, 1))  # skipped
    os.mknod(dev / "ptmx", stat.S_IFCHR | 0o666, os.makedev(5, 2))  # skipped: the container's own devpts
    os.mknod(dev / "initctl", stat.S_IFIFO | 0o600)  # not a device
    (dev / "stdin").symlink_to("/proc/self/fd/0")  # not followed
    (dev / "disk").symlink_to("loop9")
