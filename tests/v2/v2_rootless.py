"""The rootless half of the cgroup v2 checks, run INSIDE the pure-v2 VM as an unprivileged user by
tests/v2/v2_checks.py (which made the user, a cgroup delegated to it as systemd's Delegate=yes does, and
moved this process into a leaf of it). A plain script, like v2_checks.py: one process, each container
through the lifecycle core (run_container on a busybox rootfs the user owns), with the id maps and the
cgroup rootless ``ocibox run`` uses. Prints one line per check; exits 1 if any failed.

argv: WORK (a directory of the user's on the VM's tmpfs), then ``delegated CGROUP_DIR`` (this process is in
a leaf of that delegated cgroup) or ``plain`` (it is in a cgroup that is not the user's)."""

from __future__ import annotations

import io
import os
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import oci
from v2lib import Checks, captured

from ocibox.cgroups import delegated_root, open_cgroup
from ocibox.errors import RootlessError
from ocibox.image import ImageConfig
from ocibox.rootless import is_rootless, namespace_maps
from ocibox.run._flags import parse_run_args
from ocibox.run._process import run_container
from ocibox.run._spec import RunSpec

check = Checks("rootless: ")


def run(work: Path, rootfs: Path, config: ImageConfig, *argv: str) -> tuple[int, str, str]:
    flags = parse_run_args(["--network", "none", *argv], {})
    cid = os.urandom(8).hex()
    spec = RunSpec.from_image(config, flags, container_id=cid)
    cg = open_cgroup(f"ocibox-{cid}", spec.limits, parent=flags.cgroup_parent)
    maps = namespace_maps()
    return captured(work, cid, lambda: run_container(spec, rootfs, work / cid, cgroup=cg,
                                                     id_maps=(maps.uids, maps.gids)))


def main() -> int:
    work, mode = Path(sys.argv[1]), sys.argv[2]
    rootfs = work / "rootfs"
    if not rootfs.exists():
        with tarfile.open(fileobj=io.BytesIO(oci.busybox_layer())) as tf:
            for m in tf.getmembers():  # the user owns it all (no subordinate ids needed)
                m.uid = m.gid = os.geteuid()
            oci.extractall(tf, rootfs)
    config = ImageConfig.parse(oci.image_config(["sha256:" + "0" * 64]))
    if mode == "plain":
        # a process in a cgroup not delegated to the user: limits refused with why and what to do
        try:
            run(work, rootfs, config, "-m", "64m", "img", "true")
            check("no delegation: limits refused", False, "ran")
        except RootlessError as e:
            check("no delegation: limits refused", "delegat" in str(e), str(e))
        code, out, err = run(work, rootfs, config, "img", "cat", "/proc/self/cgroup")
        own = Path("/proc/self/cgroup").read_text().strip()
        check("no delegation, no limits: the user's own cgroup", code == 0 and out.strip() == own,
              f"{code} {out!r} {own!r} {err!r}")
        return 1 if check.failed else 0
    delegated = Path(sys.argv[3])
    check("runs without root", os.geteuid() != 0 and is_rootless(), str(os.geteuid()))
    found = delegated_root()
    check("the delegated cgroup is found", found == delegated, f"{found} != {delegated}")
    code, out, err = run(work, rootfs, config, "-m", "64m", "--pids-limit", "20", "img", "sh", "-c",
                         "id -u; cat /proc/self/cgroup /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max")
    check("limits applied in the delegated cgroup", code == 0 and out.split() == ["0", "0::/", str(64 << 20), "20"],
          f"{code} {out!r} {err!r}")
    code, out, err = run(work, rootfs, config, "-m", "32m", "img", "sh", "-c",
                         "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived")
    check("memory limit: OOM kill and 137", code == 137 and "survived" not in out, f"{code} {out!r} {err!r}")
    code, out, err = run(work, rootfs, config, "--pids-limit", "12", "img", "sh", "-c",
                         "i=0; while [ $i -lt 40 ]; do sleep 2 & i=$((i+1)); done")
    check("pids limit holds a fork bomb", code == 2 and "can't fork" in err, f"{code} {out!r} {err!r}")
    left = [p.name for p in delegated.iterdir() if p.name.startswith("ocibox-")]
    check("every container cgroup removed", left == [], str(left))
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
