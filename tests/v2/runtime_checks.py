"""ocibox-runtime on pure cgroup v2, run INSIDE the v2 VM (../shared/v2vm) by tests/v2/test_cgroup_v2.py:
``run`` of a busybox bundle with an absolute and a relative cgroupsPath, memory/pids/cpu limits and a
unified file seen from inside (cgroup namespace), blockIO as io.max, OOM as 137, v1-only fields refused,
and nothing left. A plain script (python under TCG is slow); one line per check, exit 1 if any failed."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bundle
from v2lib import Checks

check = Checks()
CG = Path("/sys/fs/cgroup")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="rt-v2-", dir="/tmp"))
    rootfs = bundle.rootfs(work / "rootfs")
    rt = bundle.runtime_cmd()
    spec = bundle.runc_spec()
    ns = spec["linux"]["namespaces"]
    if not any(n["type"] == "cgroup" for n in ns):
        ns = [*ns, {"type": "cgroup"}]
    blocks = [p for p in Path("/sys/block").iterdir() if (p / "dev").exists()] if Path("/sys/block").is_dir() else []
    major, minor = (int(x) for x in (blocks[0] / "dev").read_text().split(":")) if blocks else (0, 0)
    res = {"memory": {"limit": 64 << 20}, "pids": {"limit": 30}, "cpu": {"quota": 20000, "period": 100000},
           "unified": {"memory.high": str(48 << 20)},
           **({"blockIO": {"throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1 << 20}]}}
              if blocks else {})}
    script = ("cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/memory.high;"
              " cat /proc/self/cgroup; exit 7")
    for label, path, where in (("absolute", "/ocibox-rt/abs", CG / "ocibox-rt" / "abs"),
                               ("relative", "ocibox-rel", CG / "ocibox-rel")):
        b = bundle.make(work / label, rootfs, ["sh", "-c", script],
                        **{"linux.cgroupsPath": path, "linux.resources": res, "linux.namespaces": ns})
        r = bundle.run(rt, work / "state", "run", "--bundle", str(b), label, timeout=600)
        out = r.stdout.split()
        check(f"{label} cgroupsPath: run exits with the program's status", r.returncode == 7, r.stderr[-500:])
        check(f"{label}: limits seen inside", out[:6] == [str(64 << 20), "30", "20000", "100000", str(48 << 20),
                                                          "0::/"], " ".join(out))
        check(f"{label}: the cgroup is gone after run", not where.exists(), str(where))
    # io.max is written (checked from the host while created)
    b = bundle.make(work / "io", rootfs, ["sleep", "100"],
                    **{"linux.cgroupsPath": "/ocibox-rt/io", "linux.resources": res})
    r = bundle.run(rt, work / "state", "create", "--bundle", str(b), "io", timeout=600)
    if blocks:
        io_max = (CG / "ocibox-rt" / "io" / "io.max").read_text() if r.returncode == 0 else "create failed: " + r.stderr
        check("blockIO throttle as io.max", r.returncode == 0 and f"rbps={1 << 20}" in io_max, io_max)
    else:
        print("skip blockIO throttle: the VM has no block device", flush=True)
    st = bundle.run(rt, work / "state", "state", "io", timeout=600)
    check("state of a created container", r.returncode == 0 and json.loads(st.stdout or "{}").get("status") == "created",
          st.stdout + st.stderr)
    bundle.run(rt, work / "state", "delete", "--force", "io", timeout=600)
    check("delete --force removes its cgroup", not (CG / "ocibox-rt" / "io").exists())
    # OOM: 137
    b = bundle.make(work / "oom", rootfs, ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a)"],
                    **{"linux.cgroupsPath": "/ocibox-rt/oom", "linux.resources": {"memory": {"limit": 32 << 20}}})
    r = bundle.run(rt, work / "state", "run", "--bundle", str(b), "oom", timeout=600)
    check("OOM kill is 137", r.returncode == 137, f"{r.returncode} {r.stderr[-300:]}")
    # v1-only fields refused by name
    b = bundle.make(work / "v1only", rootfs, ["true"], **{"linux.cgroupsPath": "/ocibox-rt/v1only",
                                                         "linux.resources": {"cpu": {"realtimeRuntime": 1000}}})
    r = bundle.run(rt, work / "state", "run", "--bundle", str(b), "v1only", timeout=600)
    check("v1-only fields refused", r.returncode != 0 and "v2" in r.stderr, r.stderr[-300:])
    left = [p for p in (CG / "ocibox-rt").iterdir() if p.is_dir()] if (CG / "ocibox-rt").exists() else []
    check("nothing left", not left, str(left))
    subprocess.run(["rmdir", str(CG / "ocibox-rt")], check=False, capture_output=True)
    return 1 if check.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
