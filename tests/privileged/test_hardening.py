"""prepare / join / before_exec, the runner's three calls, for real: the v1 devices cgroup, rlimits
and the seccomp filter on a forked child that execs busybox."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ocibox.errors import RuntimeSetupError
from ocibox.run import _devices as dv
from ocibox.run import _hardening as hd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_devices import a_block_device

pytestmark = pytest.mark.privileged
CAPS = {"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP", "SETGID",
        "SETPCAP", "SETUID", "SYS_CHROOT"}


def child(prep: hd.Prepared, h: hd.Hardening, script: str) -> subprocess.CompletedProcess[str]:
    def setup() -> None:
        prep.join(os.getpid())
        hd.before_exec(h, prep)

    return subprocess.run(["/bin/busybox", "sh", "-c", script], preexec_fn=setup, capture_output=True,
                          text=True, timeout=60)


def test_default_hardening(tmp_path: Path) -> None:
    if dv.own_v1_devices_cgroup() is None:
        pytest.skip("no v1 devices hierarchy here: the v2 path is tested in test_devices.py")
    blk = a_block_device()
    node = tmp_path / "disk"
    os.mknod(node, stat.S_IFBLK | 0o600, blk.st_rdev)
    h = hd.from_args(ulimit=["nofile=100:200"])
    prep = hd.prepare(h, CAPS, False, f"ocibox-test-hardening-{os.getpid()}", cache_dir=str(tmp_path / "cache"))
    try:
        assert prep.devices_dir and os.path.isdir(prep.devices_dir) and prep.seccomp is not None
        cp = child(prep, h, f"ulimit -n; head -c1 {node} >/dev/null; echo rc=$?; head -c1 /dev/zero | wc -c; "
                   "unshare -m true; echo rc=$?; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status")
        out = cp.stdout.split()
        assert out == ["100", "rc=1", "1", "rc=1", "NoNewPrivs:", "1", "Seccomp:", "2"], cp
        assert "Operation not permitted" in cp.stderr
    finally:
        assert prep.destroy() == []
    assert not os.path.exists(f"{dv.own_v1_devices_cgroup()}/ocibox-test-hardening-{os.getpid()}")


def test_privileged_lifts_everything(tmp_path: Path) -> None:
    blk = a_block_device()
    node = tmp_path / "disk"
    os.mknod(node, stat.S_IFBLK | 0o600, blk.st_rdev)
    h = hd.from_args(privileged=True)
    prep = hd.prepare(h, CAPS, False, "unused")
    assert prep.seccomp is None and prep.devices_dir is None
    cp = child(prep, h, f"head -c1 {node} >/dev/null; echo rc=$?; unshare -m true; echo rc=$?")
    assert cp.stdout.split() == ["rc=0", "rc=0"], cp


def test_unconfined_keeps_the_devices_cgroup(tmp_path: Path) -> None:
    if dv.own_v1_devices_cgroup() is None:
        pytest.skip("no v1 devices hierarchy here")
    h = hd.from_args(security_opt=["seccomp=unconfined"])
    prep = hd.prepare(h, CAPS, True, f"ocibox-test-hardening-u-{os.getpid()}")
    try:
        assert prep.seccomp is None and prep.devices_dir is not None
        assert "c 5:1 rwm" in dv.read_v1(prep.devices_dir)  # -t adds /dev/console
        cp = child(prep, h, "unshare -m true; echo rc=$?")
        assert cp.stdout.split() == ["rc=0"]
    finally:
        prep.destroy()


def test_a_ulimit_above_the_hard_limit_fails_before_anything_starts() -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hd._rlimits._has_cap_sys_resource():
        pytest.skip("this process may raise its hard nofile limit")
    with pytest.raises(RuntimeSetupError, match=f"at most {hard}"):
        hd.prepare(hd.from_args(ulimit=[f"nofile={hard + 1}"]), CAPS, False, "never-created")
