"""The hardening for real, as the runner applies it: the device rules in the cgroup manager's v1 devices
hierarchy, then rlimits and the seccomp filter, on a forked child that joins the cgroup and execs busybox."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from hostdev import host_block_device

from ocibox import cgroups
from ocibox.errors import RuntimeSetupError
from ocibox.run import _hardening as hd

pytestmark = pytest.mark.privileged
CAPS = {"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP", "SETGID",
        "SETPCAP", "SETUID", "SYS_CHROOT"}


def child(cg: cgroups.Cgroup | None, prep: hd.Prepared, h: hd.Hardening, script: str) -> subprocess.CompletedProcess[str]:
    def setup() -> None:
        if cg is not None:
            cg.join(os.getpid())
        hd._rlimits.apply_ulimits(h.ulimits)  # what the init does with config.json's rlimits
        if prep.seccomp is not None:
            prep.seccomp.load()

    return subprocess.run(["/bin/busybox", "sh", "-c", script], preexec_fn=setup, capture_output=True,
                          text=True, timeout=60)


def devices_cgroup(name: str, h: hd.Hardening, tty: bool) -> cgroups.Cgroup:
    """The manager with only the devices controller's work to do (no limits), created and applied."""
    cg = cgroups.open_cgroup(name, cgroups.Limits(), devices=hd.device_rules(h, tty))
    cg.create()
    cg.apply(cgroups.Limits())
    return cg


def devices_dir(cg: cgroups.Cgroup) -> str:
    return str(cg.dirs["devices"])  # type: ignore[attr-defined]


def test_default_hardening(tmp_path: Path) -> None:
    if cgroups.own_v1_dir("devices") is None:
        pytest.skip("no v1 devices hierarchy here: the v2 path is tested in test_devices.py")
    blk = os.stat(host_block_device())
    node = tmp_path / "disk"
    os.mknod(node, stat.S_IFBLK | 0o600, blk.st_rdev)
    h = hd.from_args(ulimit=["nofile=100:200"])
    prep = hd.prepare(h, CAPS, cache_dir=str(tmp_path / "cache"))
    cg = devices_cgroup(f"ocibox-test-hardening-{os.getpid()}", h, False)
    try:
        assert os.path.isdir(devices_dir(cg)) and prep.seccomp is not None
        cp = child(cg, prep, h, f"ulimit -n; head -c1 {node} >/dev/null; echo rc=$?; head -c1 /dev/zero | wc -c; "
                   "unshare -m true; echo rc=$?; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status")
        out = cp.stdout.split()
        assert out == ["100", "rc=1", "1", "rc=1", "NoNewPrivs:", "1", "Seccomp:", "2"], cp
        assert "Operation not permitted" in cp.stderr
    finally:
        assert cg.destroy() == []
    assert not os.path.exists(f"{cgroups.own_v1_dir('devices')}/ocibox-test-hardening-{os.getpid()}")


def test_privileged_lifts_everything(tmp_path: Path) -> None:
    blk = os.stat(host_block_device())
    node = tmp_path / "disk"
    os.mknod(node, stat.S_IFBLK | 0o600, blk.st_rdev)
    h = hd.from_args(privileged=True)
    prep = hd.prepare(h, CAPS)
    assert prep.seccomp is None and hd.device_rules(h, False) is None
    cp = child(None, prep, h, f"head -c1 {node} >/dev/null; echo rc=$?; unshare -m true; echo rc=$?")
    assert cp.stdout.split() == ["rc=0", "rc=0"], cp


def test_unconfined_keeps_the_devices_cgroup(tmp_path: Path) -> None:
    if cgroups.own_v1_dir("devices") is None:
        pytest.skip("no v1 devices hierarchy here")
    h = hd.from_args(security_opt=["seccomp=unconfined"])
    prep = hd.prepare(h, CAPS)
    cg = devices_cgroup(f"ocibox-test-hardening-u-{os.getpid()}", h, True)
    try:
        assert prep.seccomp is None and os.path.isdir(devices_dir(cg))
        assert "c 5:1 rwm" in cgroups.read_v1(devices_dir(cg))  # -t adds /dev/console
        cp = child(cg, prep, h, "unshare -m true; echo rc=$?")
        assert cp.stdout.split() == ["rc=0"]
    finally:
        cg.destroy()


def test_a_ulimit_above_the_hard_limit_fails_before_anything_starts() -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hd._rlimits._has_cap_sys_resource():
        pytest.skip("this process may raise its hard nofile limit")
    with pytest.raises(RuntimeSetupError, match=f"at most {hard}"):
        hd.prepare(hd.from_args(ulimit=[f"nofile={hard + 1}"]), CAPS)
