"""Hardening seen from inside a container started by ``ocibox run``, and compared with podman+runc.

The image: busybox plus the static seccomp probe (seccomp_probe.c) at /probe and a block device node
shipped in the image at /blk (the numbers of a real host block device, so that only the devices
cgroup stands between the container and the disk).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cli import ocibox
from hostdev import host_block_device

pytestmark = pytest.mark.privileged

EPERM, ENOSYS = 1, 38


@pytest.fixture(scope="module")
def probe_ref(registry: object, tmp_path_factory: pytest.TempPathFactory) -> str:
    import oci

    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build the probe"
    out = tmp_path_factory.mktemp("probe") / "probe"
    subprocess.run([gcc, "-static", "-O1", "-o", str(out), str(Path(__file__).with_name("seccomp_probe.c"))],
                   check=True)
    blk = os.stat(host_block_device())
    layer = oci.make_tar([
        oci.Entry("probe", data=out.read_bytes(), mode=0o755),
        oci.Entry("blk", "block", mode=0o666, devmajor=os.major(blk.st_rdev), devminor=os.minor(blk.st_rdev)),
    ])
    host = registry.host  # type: ignore[attr-defined]
    oci.push_image(tmp_path_factory.mktemp("probe-layout"), host, "probe:latest",
                   [oci.Layer(oci.busybox_layer()), oci.Layer(layer)])
    return f"{host}/probe:latest"


@pytest.fixture(scope="module")
def store(probe_ref: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    ocibox(root, "pull", "-q", probe_ref, check=True)
    return root


def ocibox_run(store: Path, ref: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``ocibox run --rm OPTIONS IMAGE COMMAND``; ``args`` is OPTIONS, "--", COMMAND."""
    sep = args.index("--")
    return ocibox(store, "run", "--rm", *args[:sep], ref, *args[sep + 1:])


def probe_results(cp: subprocess.CompletedProcess[str]) -> dict[str, int]:
    assert cp.returncode == 0, (cp.returncode, cp.stdout, cp.stderr)
    return {k: int(v) for k, v in (line.split("=") for line in cp.stdout.split())}


REFUSED = ("unshare", "mount", "umount2", "keyctl", "bpf", "kexec_load", "open_by_handle_at", "setns",
           "personality_bad", "socket_vsock", "clone_newuser")


def test_probe_in_a_default_container(store: Path, probe_ref: str) -> None:
    got = probe_results(ocibox_run(store, probe_ref, "--", "/probe"))
    assert {k: got[k] for k in REFUSED} == dict.fromkeys(REFUSED, EPERM)
    assert got["clone3"] == ENOSYS and got["clone_plain"] == 0 and got["personality_query"] == 0


def test_seccomp_unconfined_and_cap_sys_admin(store: Path, probe_ref: str) -> None:
    got = probe_results(ocibox_run(store, probe_ref, "--security-opt", "seccomp=unconfined", "--", "/probe"))
    assert got["keyctl"] == 0  # no capability needed: only the filter refused it
    assert got["clone3"] == 0
    got = probe_results(ocibox_run(store, probe_ref, "--cap-add", "SYS_ADMIN", "--", "/probe"))
    assert got["unshare"] == 0 and got["keyctl"] == EPERM


def test_seccomp_profile_file(store: Path, probe_ref: str, tmp_path: Path) -> None:
    import json

    prof = tmp_path / "p.json"
    prof.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}))
    cp = ocibox_run(store, probe_ref, "--security-opt", f"seccomp={prof}", "--", "mkdir", "/tmp/x")
    assert cp.returncode == 1 and "Permission denied" in cp.stderr, cp
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    cp = ocibox_run(store, probe_ref, "--security-opt", f"seccomp={bad}", "--", "true")
    assert cp.returncode == 125 and str(bad) in cp.stderr, cp


def test_ordinary_programs(store: Path, probe_ref: str) -> None:
    cp = ocibox_run(store, probe_ref, "--", "sh", "-c", "echo hello | wc -c; ls / | grep -c probe")
    assert cp.returncode == 0 and cp.stdout.split() == ["6", "1"], cp


def test_a_device_node_in_the_image_cannot_be_opened(store: Path, probe_ref: str) -> None:
    cp = ocibox_run(store, probe_ref, "--", "sh", "-c", "head -c1 /blk >/dev/null; echo rc=$?")
    assert cp.stdout.split() == ["rc=1"], cp
    assert "Operation not permitted" in cp.stderr or "Permission denied" in cp.stderr, cp
    # ... nor one made inside, even with CAP_MKNOD
    cp = ocibox_run(store, probe_ref, "--cap-add", "MKNOD", "--", "sh", "-c",
                    "mknod /tmp/k c 1 11 && head -c1 /tmp/k >/dev/null; echo rc=$?")
    assert cp.stdout.split() == ["rc=1"], cp


def test_device_option(store: Path, probe_ref: str) -> None:
    host = host_block_device()
    cp = ocibox_run(store, probe_ref, "--device", f"{host}:/dev/xvda:r", "--", "sh", "-c",
                    "head -c1 /dev/xvda >/dev/null; echo rc=$?; echo x >/dev/xvda; echo rc=$?")
    assert cp.stdout.split() == ["rc=0", "rc=1"], cp  # read allowed, write refused (r only)
    assert "Operation not permitted" in cp.stderr, cp


def test_privileged_lifts_the_defaults(store: Path, probe_ref: str) -> None:
    cp = ocibox_run(store, probe_ref, "--privileged", "--", "sh", "-c", "head -c1 /blk >/dev/null; echo rc=$?")
    assert cp.stdout.split() == ["rc=0"], cp
    got = probe_results(ocibox_run(store, probe_ref, "--privileged", "--", "/probe"))
    assert got["unshare"] == 0 and got["keyctl"] == 0


def test_privileged_gets_the_host_devices(store: Path, probe_ref: str) -> None:
    blk = host_block_device()
    st = os.stat(blk)
    want = f"{os.major(st.st_rdev):x}:{os.minor(st.st_rdev):x}:{stat.S_IMODE(st.st_mode):o}"
    script = f"stat -c %t:%T:%a {blk}; head -c1 {blk} >/dev/null; echo rc=$?; readlink /dev/ptmx; ls /dev/pts"
    cp = ocibox_run(store, probe_ref, "--privileged", "--", "sh", "-c", script)
    # the host's node at the same path, its numbers and mode (docker's and runc's HostDevices); the
    # container keeps its own devpts (ptmx links into it) and sees none of the host's terminals
    assert cp.stdout.split() == [want, "rc=0", "pts/ptmx", "ptmx"], cp
    cp = ocibox_run(store, probe_ref, "--", "sh", "-c", f"test -e {blk} && echo PRESENT; ls /dev | wc -l")
    assert "PRESENT" not in cp.stdout and int(cp.stdout.split()[-1]) < 20, cp  # without it: the defaults only


def test_no_way_back_to_the_host(store: Path, probe_ref: str) -> None:
    before = hashlib.sha256(Path(sys.executable).resolve().read_bytes()).hexdigest()
    cp = ocibox_run(store, probe_ref, "--", "sh", "-c",
                    "for p in /proc/[0-9]*; do echo x >> $p/exe 2>/dev/null && echo WROTE $p; done; "
                    "touch /sys/fs/cgroup/x 2>/dev/null && echo WROTE-CGROUP; "
                    "for d in /sys/fs/cgroup/*/; do mkdir $d/x 2>/dev/null && echo MKDIR $d; done; "
                    "ls /proc/self/fd | wc -l")
    assert "WROTE" not in cp.stdout and "MKDIR" not in cp.stdout, cp
    assert cp.stdout.split()[-1] in ("4", "5"), cp  # 0-2, plus ls's own directory fd
    assert hashlib.sha256(Path(sys.executable).resolve().read_bytes()).hexdigest() == before


def test_ulimit(store: Path, probe_ref: str) -> None:
    cp = ocibox_run(store, probe_ref, "--ulimit", "nofile=100:200", "--", "sh", "-c", "ulimit -n; ulimit -Hn")
    assert cp.stdout.split() == ["100", "200"], cp
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        cp = ocibox_run(store, probe_ref, "--ulimit", f"nofile={hard + 1}", "--", "true")
        if cp.returncode != 0:  # without CAP_SYS_RESOURCE (this host): refused, naming the limit
            assert cp.returncode == 125 and f"at most {hard}" in cp.stderr, cp


def test_help_says_what_privileged_lifts() -> None:
    cp = ocibox(None, "run", "--help")
    text = " ".join(cp.stdout.split())
    assert "--privileged" in text and "no seccomp filter" in text, text


def test_same_answers_as_podman_with_runc(store: Path, probe_ref: str, tmp_path: Path) -> None:
    """podman (runc, its default seccomp profile and device list) on the same image: whatever podman
    refuses, ocibox refuses too. podman's profile (containers-common) is looser than docker's: it allows
    keyctl, unshare/clone with namespace flags, mount/umount2/setns (then refused by capabilities),
    AF_VSOCK and clone3, and answers ENOSYS by default. The differences are printed for the notes."""
    if not shutil.which("podman") or not shutil.which("runc"):
        pytest.skip("podman or runc not installed")
    env = dict(os.environ, CONTAINERS_STORAGE_CONF=str(tmp_path / "storage.conf"))
    (tmp_path / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\nrunroot = "{tmp_path}/run"\ngraphroot = "{tmp_path}/graph"\n')
    base = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
    try:
        subprocess.run([*base, "pull", "-q", "--tls-verify=false", probe_ref], env=env, check=True,
                       capture_output=True, timeout=300)
        cp = subprocess.run([*base, "run", "--rm", "--network", "none", "--ulimit", "nofile=20000:20000",
                             "--ulimit", "nproc=32768:32768", probe_ref, "/probe"], env=env, capture_output=True,
                            text=True, timeout=300)
        theirs = probe_results(cp)
        blk = subprocess.run([*base, "run", "--rm", "--network", "none", "--ulimit", "nofile=20000:20000",
                              "--ulimit", "nproc=32768:32768", probe_ref, "sh", "-c",
                              "head -c1 /blk >/dev/null; echo rc=$?"], env=env, capture_output=True, text=True,
                             timeout=300)
    finally:
        subprocess.run([*base, "system", "reset", "-f"], env=env, capture_output=True, timeout=300)
    ours = probe_results(ocibox_run(store, probe_ref, "--", "/probe"))
    diff = {k: (ours.get(k), theirs.get(k)) for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k)}
    print(f"ocibox vs podman+runc differences (ours, theirs): {diff}")
    assert {k: ours[k] for k in REFUSED} == dict.fromkeys(REFUSED, EPERM)
    for k, v in theirs.items():
        if v != 0:
            assert ours[k] != 0, (k, ours[k], v)
    assert blk.stdout.split() == ["rc=1"], blk
