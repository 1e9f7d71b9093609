"""The same bundles under runc (Debian's 1.1) and under ocibox-runtime give the same view from inside:
capabilities (all five sets), NoNewPrivs, seccomp mode and what the filter does, uid/gid/groups, umask,
oom_score_adj, rlimits, the mount table's shape (mount points, types, flags), masked and read-only paths,
the cgroups (/proc/self/cgroup, the cgroup mount, the limit files), device nodes and the device cgroup,
hostname (and domainname, which runc 1.1 ignores), sysctls, tmpfs sizes. A probe script in a busybox rootfs prints all of it; the
outputs are compared after naming the container the same way.

Where ocibox is deliberately stricter, the comparison says so: its masked and read-only paths and the
/sys/fs/cgroup tmpfs carry nosuid/nodev/noexec/ro where runc's do not (never the other way round)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import bundle
import pytest

pytestmark = [pytest.mark.privileged, pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc")]

PROBE = r"""
echo "== status"; grep -E '^(Cap|NoNewPrivs|Seccomp|Uid|Gid|Groups)' /proc/self/status
echo "== id"; id
echo "== umask"; umask
echo "== oom"; cat /proc/self/oom_score_adj
echo "== limits"; cat /proc/self/limits
echo "== mounts"; awk '{o=$6; for(i=7;i<=NF;i++) if($i=="-"){t=$(i+1); break}; print $5, t, o}' /proc/self/mountinfo | sort
echo "== scratch"; awk '$5=="/scratch" {print $NF}' /proc/self/mountinfo
echo "== masked"; for p in /proc/acpi /proc/asound /proc/kcore /proc/keys /proc/latency_stats /proc/timer_list \
  /proc/timer_stats /proc/sched_debug /proc/scsi /sys/firmware; do [ -e $p ] && { stat -c '%n %F %s' $p; ls $p 2>&1 | head -3; }; done
echo "== readonly"; for p in /proc/bus /proc/fs /proc/irq /proc/sys /proc/sysrq-trigger; do touch $p/x 2>&1 | sed 's/touch: //'; done
echo "== cgroup"; cat /proc/self/cgroup; ls /sys/fs/cgroup
echo "== cgfiles"; cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.shares \
  /sys/fs/cgroup/cpu/cpu.cfs_quota_us; ls /sys/fs/cgroup/memory | grep -v '^memory\.'
echo "== devices"; ls -la /dev | awk '$1 !~ /^d/ {print $1, $5, $6, $NF}' | grep -v '^total'
echo "== device-cgroup"; for d in null zero full random urandom tty fuse; do [ -e /dev/$d ] && { head -c1 /dev/$d >/dev/null 2>&1 </dev/null && echo "$d open" || echo "$d denied"; }; done
echo "== names"; hostname; cat /proc/sys/kernel/domainname
echo "== sysctl"; cat /proc/sys/kernel/shmmni /proc/sys/net/ipv4/ip_unprivileged_port_start
echo "== seccomp"; mkdir /tmp/probe-dir 2>&1; echo "mkdir rc=$?"; uname -m
echo "== write"; touch /probe-root 2>&1 | sed 's/touch: //'; touch /tmp/ok 2>&1 && echo tmp writable
echo "== ns"; ls /proc/self/ns
"""

RESOURCES = {"memory": {"limit": 64 << 20}, "pids": {"limit": 50},
             "cpu": {"shares": 512, "quota": 50000, "period": 100000},
             "devices": [{"allow": False, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"}]}
CAPS = ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_KILL"]
SECCOMP = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
           "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                        {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]}


def _variants(base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    mounts = [*base["mounts"], {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                                "options": ["nosuid", "nodev", "size=1m", "mode=1777"]},
              {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["rw", "nosuid", "size=2m"]}]
    return {
        "runc-default": {"hostname": "probe"},
        "hardened": {
            "hostname": "probe", "domainname": "example.test", "mounts": mounts,
            "process.user": {"uid": 1000, "gid": 1000, "additionalGids": [2000, 3000], "umask": 63},
            "process.oomScoreAdj": 500,
            "process.rlimits": [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
                                {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
                                {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}],
            "process.capabilities": {"bounding": CAPS, "effective": CAPS, "permitted": CAPS,
                                     "inheritable": ["CAP_NET_BIND_SERVICE"], "ambient": ["CAP_NET_BIND_SERVICE"]},
            "process.noNewPrivileges": True,
            "linux.seccomp": SECCOMP,
            "linux.sysctl": {"kernel.shmmni": "2048", "net.ipv4.ip_unprivileged_port_start": "80"},
            "linux.resources": RESOURCES,
            "linux.devices": [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229, "fileMode": 0o600,
                               "uid": 0, "gid": 0}],
            "linux.rootfsPropagation": "private",
        },
        "writable-root-no-nnp": {
            "hostname": "probe", "root.readonly": False, "process.noNewPrivileges": False, "mounts": mounts,
            "process.user": {"uid": 0, "gid": 0, "additionalGids": [10]},
        },
    }


LENIENT = {"nosuid", "nodev", "noexec", "ro"}  # what ocibox may add over runc's flags


def _sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    cur = ""
    for line in text.splitlines():
        if line.startswith("== "):
            cur = line[3:]
            out[cur] = []
        elif cur:
            out[cur].append(line)
    return out


def _compare_mounts(runc: list[str], ours: list[str]) -> None:
    r = {tuple(x.split()[:2]): set(x.split()[2].split(",")) for x in runc}
    o = {tuple(x.split()[:2]): set(x.split()[2].split(",")) for x in ours}
    assert sorted(o) == sorted(r), "mount points or types differ"
    for key, flags in r.items():
        extra, missing = o[key] - flags, flags - o[key]
        if "ro" in extra:
            missing.discard("rw")
        assert extra <= LENIENT and not missing, f"{key}: runc {sorted(flags)}, ocibox {sorted(o[key])}"


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = bundle.rootfs(tmp_path_factory.mktemp("vs-runc") / "rootfs")
    (root / "probe.sh").write_text(PROBE)
    (root / "tmp").chmod(0o1777)
    return root


@pytest.mark.parametrize("variant", ["runc-default", "hardened", "writable-root-no-nnp"])
def test_same_view_from_inside(rootfs: Path, tmp_path: Path, variant: str) -> None:
    outputs = {}
    for who, runtime in (("runc", bundle.RUNC), ("ocibox", bundle.runtime_cmd())):
        changes = dict(_variants(bundle.runc_spec())[variant])
        changes["linux.cgroupsPath"] = f"/vs-runc-{tmp_path.name}-{who}"
        b = bundle.make(tmp_path / who, rootfs, ["sh", "/probe.sh"], **changes)
        r = bundle.run(runtime, tmp_path / f"state-{who}", "run", "--bundle", str(b), f"probe-{who}")
        assert r.returncode == 0, f"{who}: {r.stderr}"
        outputs[who] = _sections(r.stdout.replace(f"{tmp_path.name}-{who}", "CID"))
    runc, ours = outputs["runc"], outputs["ocibox"]
    assert sorted(ours) == sorted(runc)
    _compare_mounts(runc.pop("mounts"), ours.pop("mounts"))
    if variant == "hardened":  # runc 1.1 ignores domainname (runc 1.2 sets it); the spec asks for it
        assert runc["names"][1] == "(none)" and ours["names"][1] == "example.test"
        runc["names"], ours["names"] = runc["names"][:1], ours["names"][:1]
    for section in runc:
        assert ours[section] == runc[section], f"{variant}: {section} differs"
