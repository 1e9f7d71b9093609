"""The seccomp filter, loaded for real in a forked child that then execs a probe.

The probe (seccomp_probe.c, compiled static here as crun's tests do) calls each syscall through
syscall(2) and prints its errno. Every refusal is checked against the same probe run without the
filter, so an EPERM here is the filter's doing, not a missing privilege. We run as root with every
capability, which is what the filter must hold back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ocibox._record import replace
from ocibox.run import _seccomp as sc

pytestmark = pytest.mark.privileged

PODMAN_CAPS = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE",
               "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT"}
EPERM, ENOSYS = 1, 38


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> str:
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build the seccomp probe (apt-get install gcc libc6-dev)"
    out = tmp_path_factory.mktemp("probe") / "seccomp_probe"
    src = Path(__file__).with_name("seccomp_probe.c")
    subprocess.run([gcc, "-static", "-O1", "-o", str(out), str(src)], check=True)
    return str(out)


def run(argv: list[str], load: Callable[[], None] | None) -> subprocess.CompletedProcess[str]:
    """Fork, install the filter in the child (as the runner does, last), exec argv."""
    return subprocess.run(argv, preexec_fn=load, capture_output=True, text=True, timeout=60)


def results(cp: subprocess.CompletedProcess[str]) -> dict[str, int]:
    assert cp.returncode == 0, (cp.returncode, cp.stdout, cp.stderr)
    return {k: int(v) for k, v in (line.split("=") for line in cp.stdout.split())}


def default_filter(caps: set[str] = PODMAN_CAPS) -> sc.SeccompFilter:
    p = sc.default_profile(caps)
    return sc.compile_filter(p)


REFUSED = ("unshare", "mount", "umount2", "keyctl", "bpf", "kexec_load", "open_by_handle_at", "setns",
           "personality_bad", "socket_vsock", "clone_newuser")


def test_default_profile_refuses_the_dangerous_syscalls(probe: str) -> None:
    free = results(run([probe], None))
    # without a filter, as root, these do something other than EPERM (so the filter is what refuses)
    assert free["unshare"] == 0 and free["clone_newuser"] == 0 and free["keyctl"] == 0
    assert free["mount"] != EPERM and free["bpf"] != EPERM and free["open_by_handle_at"] != EPERM
    got = results(run([probe], default_filter().load))
    assert {k: got[k] for k in REFUSED} == dict.fromkeys(REFUSED, EPERM)
    assert got["clone3"] == ENOSYS  # so glibc falls back to clone, which the mask then checks
    assert got["clone_plain"] == 0 and got["personality_query"] == 0
    if free["i386_unshare"] != ENOSYS:  # the kernel has IA32 emulation: the compat table is filtered too
        assert got["i386_unshare"] == EPERM


def test_without_the_compat_arch_an_i386_syscall_is_killed(probe: str) -> None:
    """Why the filter covers x86 and x32 too: a syscall through another arch's table is not in a
    native-only filter, and libseccomp's bad-arch action kills the process (as with runc)."""
    if os.uname().machine != "x86_64":
        pytest.skip("the i386 syscall table exists only on x86_64")
    if results(run([probe], None))["i386_unshare"] == ENOSYS:
        pytest.skip("kernel built without IA32 emulation: no i386 table to reach")
    p = replace(sc.default_profile(PODMAN_CAPS), arches=("x86_64",))
    cp = run([probe], sc.compile_filter(p).load)
    assert cp.returncode == -31, cp  # SIGSYS, after the native calls were answered
    assert "clone3=38" in cp.stdout


def test_cap_sys_admin_lifts_the_gated_group(probe: str) -> None:
    got = results(run([probe], default_filter(PODMAN_CAPS | {"CAP_SYS_ADMIN"}).load))
    assert got["unshare"] == 0 and got["clone_newuser"] == 0 and got["clone3"] == 0
    assert got["mount"] != EPERM and got["setns"] != EPERM
    assert got["keyctl"] == EPERM and got["kexec_load"] == EPERM  # not gated: never allowed


def test_ordinary_programs_work_under_the_filter() -> None:
    load = default_filter().load
    cp = run(["/bin/busybox", "sh", "-c", "echo hello | wc -c; ls / >/dev/null && echo ls-ok"], load)
    assert cp.returncode == 0 and cp.stdout.split() == ["6", "ls-ok"], cp
    cp = run(["/usr/bin/python3", "-c", "import os, threading, subprocess; t = threading.Thread(target=print,"
              " args=('thread',)); t.start(); t.join(); print(subprocess.run(['/bin/busybox', 'true']).returncode)"],
             load)
    assert cp.returncode == 0 and cp.stdout.split() == ["thread", "0"], cp
    cp = run([sys.executable, "-c", "print(1)"], load)
    assert cp.stdout == "1\n", cp
    # Debian's own programs (this host is Debian 12, what a Debian image holds): apt with its libraries
    cp = run(["/usr/bin/apt-get", "--version"], load)
    assert cp.returncode == 0 and cp.stdout.startswith("apt "), cp


def test_busybox_applets_are_refused() -> None:
    load = default_filter().load
    cp = run(["/bin/busybox", "unshare", "-m", "true"], load)
    assert cp.returncode != 0 and "Operation not permitted" in cp.stderr, cp
    cp = run(["/bin/busybox", "mount", "-t", "tmpfs", "x", "/mnt"], load)
    assert cp.returncode != 0, cp
    assert run(["/bin/busybox", "unshare", "-m", "true"], None).returncode == 0


def test_no_new_privs_is_set_by_loading() -> None:
    cp = run(["/bin/busybox", "grep", "NoNewPrivs", "/proc/self/status"], default_filter().load)
    assert cp.stdout.split() == ["NoNewPrivs:", "1"]
    cp = run(["/bin/busybox", "grep", "Seccomp:", "/proc/self/status"], default_filter().load)
    assert cp.stdout.split() == ["Seccomp:", "2"]


def test_docker_json_profile_file(tmp_path: Path) -> None:
    prof = tmp_path / "deny-mkdir.json"
    prof.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": [{"names": ["mkdir", "mkdirat", "no_such_syscall_at_all"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 13}],
    }))
    p = sc.profile_from_option(str(prof), PODMAN_CAPS)
    assert p is not None
    flt = sc.compile_filter(p)
    assert flt.skipped == ("no_such_syscall_at_all",)
    cp = run(["/bin/busybox", "mkdir", str(tmp_path / "d")], flt.load)
    assert cp.returncode != 0 and "Permission denied" in cp.stderr, cp
    assert not (tmp_path / "d").exists()
    assert run(["/bin/busybox", "touch", str(tmp_path / "f")], flt.load).returncode == 0


def test_unconfined_means_no_filter() -> None:
    assert sc.profile_from_option("unconfined", PODMAN_CAPS) is None


def test_cache_hits_and_rejects_a_foreign_file(tmp_path: Path) -> None:
    p = sc.default_profile(PODMAN_CAPS)
    first = sc.compile_filter(p, str(tmp_path))
    (cached,) = tmp_path.iterdir()
    again = sc.compile_filter(p, str(tmp_path))
    assert again.program == first.program
    # a file whose header is another profile's is not taken, and is rewritten
    other = sc.default_profile(PODMAN_CAPS | {"CAP_SYS_ADMIN"})
    cached.write_bytes(f"x {other!r}\n".encode() + b"\0" * 8)
    assert sc.compile_filter(p, str(tmp_path)).program == first.program
    assert cached.read_bytes().endswith(first.program)
    assert [f.name for f in tmp_path.iterdir()] == [cached.name]  # no temporary left behind
