"""cgroup v2 checks of the runner, run INSIDE the pure-v2 VM (../shared/v2vm/run-in-v2vm.sh) by
tests/v2/test_cgroup_v2.py. A plain script, not pytest: python under TCG is 30-60x slower, so one
process runs every container in turn (run_container on a busybox rootfs unpacked on the VM's tmpfs).
Prints one line per check and exits 1 if any failed."""

from __future__ import annotations

import io
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import oci
from v2lib import Checks, captured

from ocibox.cgroups import CGROUP_ROOT, detect, open_cgroup
from ocibox.image import ImageConfig
from ocibox.run import _hardening
from ocibox.run._flags import parse_run_args
from ocibox.run._process import run_container
from ocibox.run._spec import RunSpec

check = Checks()


def run(work: Path, rootfs: Path, config: ImageConfig, *argv: str, harden: bool = False) -> tuple[int, str, str]:
    """One container; its stdout/stderr captured through files on fds 1 and 2. ``harden``: with
    ocibox's seccomp filter and eBPF device program, as ``ocibox run`` applies them."""
    flags = parse_run_args(list(argv), {})
    cid = os.urandom(8).hex()
    spec = RunSpec.from_image(config, flags, container_id=cid)
    rules = _hardening.device_rules(spec.hardening, spec.tty) if harden else None
    cg = open_cgroup(f"ocibox-{cid}", spec.limits, parent=flags.cgroup_parent, devices=rules)
    prep = _hardening.prepare(spec.hardening, spec.caps) if harden else None
    return captured(work, cid, lambda: run_container(spec, rootfs, work / cid, cgroup=cg, prepared=prep))


def main() -> int:
    check("pure cgroup v2 detected", detect() == 2, (CGROUP_ROOT / "cgroup.controllers").read_text())
    work = Path(tempfile.mkdtemp(prefix="ocibox-v2-", dir="/tmp"))  # the VM's tmpfs
    rootfs = work / "rootfs"
    with tarfile.open(fileobj=io.BytesIO(oci.busybox_layer())) as tf:
        oci.extractall(tf, rootfs)
    config = ImageConfig.parse(oci.image_config(["sha256:" + "0" * 64]))
    t0 = time.monotonic()

    code, out, err = run(work, rootfs, config, "--cpus", "0.5", "--cpu-shares", "1024", "-m", "64m",
                         "--memory-swap", "96m", "--pids-limit", "20", "img", "sh", "-c",
                         "cat /proc/self/cgroup /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpu.weight "
                         "/sys/fs/cgroup/memory.max /sys/fs/cgroup/memory.swap.max /sys/fs/cgroup/pids.max")
    want = ["0::/", "50000", "100000", "39", str(64 << 20), str(32 << 20), "20"]
    check("limits visible in the container's own cgroup (cgroup namespace root)",
          code == 0 and out.split() == want, f"{code} {out!r} {err!r}")

    code, out, err = run(work, rootfs, config, "-m", "32m", "img", "sh", "-c",
                         "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived")
    check("memory limit: OOM kill, 137 and a message", code == 137 and "OOM" in err and "32 MiB" in err
          and "survived" not in out, f"{code} {out!r} {err!r}")

    code, out, err = run(work, rootfs, config, "--pids-limit", "12", "img", "sh", "-c",
                         "cat /sys/fs/cgroup/pids.max; i=0; while [ $i -lt 40 ]; do sleep 2 & i=$((i+1)); done")
    check("pids limit holds a fork bomb", code == 2 and out.split() == ["12"] and "can't fork" in err,
          f"{code} {out!r} {err!r}")

    code, out, err = run(work, rootfs, config, "img", "sh", "-c", "echo $$; ls /sys/fs/cgroup | grep -c ^memory")
    check("PID 1 and a cgroup2 mount in the container", code == 0 and out.split()[0] == "1" and int(out.split()[1]) > 0,
          f"{code} {out!r} {err!r}")

    # The eBPF device program is attached to the new cgroup before the container process joins it:
    # /dev/null opens; a node the container makes for /dev/mem (1:1) does not.
    code, out, err = run(work, rootfs, config, "img", "sh", "-c",
                         "echo x > /dev/null && echo null-ok; mknod /tmp/mem c 1 1 && head -c 1 /tmp/mem; "
                         "echo status=$?", harden=True)
    check("device program attached before the container joins (v2)",
          code == 0 and out.split() == ["null-ok", "status=1"] and "not permitted" in err, f"{code} {out!r} {err!r}")

    left = [p.name for p in CGROUP_ROOT.iterdir() if p.name.startswith("ocibox-")]
    check("every container cgroup removed", left == [], str(left))
    print(f"{5} containers in {time.monotonic() - t0:.1f} s", flush=True)
    rootless(work)
    return 1 if check.failed else 0


ROOTLESS_UID = 4242  # no passwd entry needed: HOME is given, and a user without subordinate ids maps itself


def rootless(work: Path) -> None:
    """tests/v2/v2_rootless.py as an unprivileged user: in a leaf of a cgroup delegated to it the way
    systemd's Delegate=yes does it (the directory and its cgroup.procs, cgroup.subtree_control and
    cgroup.threads chowned to the user, the controllers enabled in it and in its parent), then in a
    cgroup that is not the user's."""
    import shutil
    import subprocess
    import sysconfig

    uid = gid = ROOTLESS_UID
    home = Path(tempfile.mkdtemp(prefix="ocibox-v2-rootless-", dir="/tmp"))  # not below work: 0700, root's
    os.chown(home, uid, gid)
    deleg, plain = CGROUP_ROOT / "ocibox-test-delegated", CGROUP_ROOT / "ocibox-test-plain"
    try:
        (CGROUP_ROOT / "cgroup.subtree_control").write_text("+memory +pids +cpu")
        for d in (deleg, deleg / "session", plain):
            d.mkdir()
        (deleg / "cgroup.subtree_control").write_text("+memory +pids +cpu")
        for d in (deleg, deleg / "session"):
            for f in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
                os.chown(d / f if f else d, uid, gid)
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        python = next(p for p in (f"/usr/bin/{version}", shutil.which(version) or "") if p and "/root/" not in p)
        repo = Path(__file__).resolve().parents[2]
        env = {"HOME": str(home), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "PYTHONPATH": ":".join([str(repo), sysconfig.get_paths()["purelib"]])}
        for mode, cgroup, extra in (("delegated", deleg / "session", [str(deleg)]), ("plain", plain, [])):
            p = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--",
                                  "sh", "-c", 'read go && exec "$@"', "sh", python, "-S",
                                  str(Path(__file__).with_name("v2_rootless.py")), str(home), mode, *extra],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                 text=True, cwd=str(home))
            (cgroup / "cgroup.procs").write_text(str(p.pid))  # root moves it: the user may not leave its cgroup
            out, _ = p.communicate("go\n", timeout=1200)
            print(out, end="", flush=True)
            if p.returncode != 0:
                check.failed.append(f"rootless {mode}")
                if "FAIL" not in out:
                    print(f"FAIL rootless {mode}: exit {p.returncode}", flush=True)
    finally:
        for d in (deleg / "session", deleg, plain):
            for child in (d.iterdir() if d.is_dir() else ()):
                if child.is_dir():
                    child.rmdir()
            if d.exists():
                d.rmdir()


if __name__ == "__main__":
    sys.exit(main())
