"""ocibox-runtime's command line on prepared bundles (tests/bundle.py: runc's default config.json and a
busybox rootfs), beside runc on the same bundles: the hooks at the runtime spec's points (namespaces,
timing, state on stdin, timeouts) and bad input (malformed config.json, missing rootfs, unknown
namespace, an id that exists, failing hooks) refused as runc refuses it, with an error line in the JSON
log, a non-zero exit and nothing left behind (state dir, cgroup, mount, process)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bundle
import pytest

pytestmark = pytest.mark.privileged

OCIBOX = bundle.runtime_cmd()
RUNC = ["runc"]
CG = f"/ocibox-rt-test-{os.getpid()}"


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundle.rootfs(tmp_path_factory.mktemp("rt-rootfs") / "rootfs")


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for hier in Path("/sys/fs/cgroup").iterdir():
        d = hier / CG.lstrip("/")
        if d.is_dir():
            for sub in sorted(d.iterdir(), reverse=True):
                if sub.is_dir():
                    sub.rmdir()
            d.rmdir()


def _hook(path: Path, log: Path, name: str, host_marker: Path) -> dict[str, Any]:
    """A hook script appending what it sees to ``log``: its name, its mount and pid namespaces, whether
    the host's marker file is visible, whether PID 1's root still shows it, and the state from stdin."""
    path.write_text(f"""#!/bin/sh
state=$(cat)
pid=$(echo "$state" | sed -n 's/.*"pid": *\\([0-9]*\\).*/\\1/p')
seen=no; test -e {host_marker} && seen=yes
root=-; test -n "$pid" && test "$pid" != 0 && {{ root=no; test -e /proc/$pid/root{host_marker} && root=yes; }}
echo "{name} mnt=$(readlink /proc/self/ns/mnt) pid=$(readlink /proc/self/ns/pid) host=$seen pid1root=$root state=$state" >> {log}
""")
    path.chmod(0o755)
    return {"path": str(path), "args": [path.name, name]}


def _lines(log: Path) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
    out = []
    for line in log.read_text().splitlines():
        head, _, state = line.partition(" state=")
        name, *fields = head.split()
        out.append((name, dict(f.split("=", 1) for f in fields), json.loads(state) if state else {}))
    return out


def test_hooks_at_the_runtime_spec_points(rootfs: Path, work: Path) -> None:
    """prestart and createRuntime in the runtime's namespaces before pivot_root (PID 1's root is still
    the host's); createContainer in the container's namespaces before pivot_root; startContainer in the
    container after start, before the program; poststart after it; poststop after delete."""
    marker = work / "host-marker"
    marker.write_text("x")
    out = work / "out"
    out.mkdir()
    log = out / "log"
    hooks = {kind: [_hook(work / f"{kind}.sh", log, kind, marker)]
             for kind in ("prestart", "createRuntime", "createContainer", "poststart", "poststop")}
    # startContainer's path resolves in the container: a script in the bind-mounted out dir
    sc = _hook(out / "start.sh", Path("/out/log"), "startContainer", marker)
    sc["path"] = "/out/start.sh"
    hooks["startContainer"] = [sc]
    mounts = [*bundle.runc_spec()["mounts"], {"destination": "/out", "type": "bind", "source": str(out),
                                                "options": ["rbind", "rw"]}]
    b = bundle.make(work / "b", rootfs, ["sh", "-c", "echo program >> /out/log; sleep 1000"], hooks=hooks,
                    mounts=mounts, **{"linux.cgroupsPath": f"{CG}/hooked"})
    root = work / "state"
    r = bundle.run(OCIBOX, root, "create", "--bundle", str(b), "hooked")
    assert r.returncode == 0, r.stderr
    try:
        created = _lines(log)
        assert [c[0] for c in created] == ["prestart", "createRuntime", "createContainer"]
        pid = json.loads(bundle.run(OCIBOX, root, "state", "hooked").stdout)["pid"]
        host_mnt = os.readlink("/proc/self/ns/mnt")
        for name, f, state in created:
            assert state["status"] == "creating" and state["pid"] == pid and state["id"] == "hooked", (name, state)
            assert state["bundle"] == str(b)
            assert f["pid1root"] == "yes", f"{name}: PID 1 had pivoted already"
        assert created[0][1]["mnt"] == created[1][1]["mnt"] == host_mnt  # the runtime's namespace
        assert created[2][1]["mnt"] == os.readlink(f"/proc/{pid}/ns/mnt") != host_mnt  # the container's
        assert created[2][1]["pid"] == os.readlink(f"/proc/{pid}/ns/pid")
        assert created[2][1]["host"] == "yes"  # before pivot_root: the host's paths resolve
        r = bundle.run(OCIBOX, root, "start", "hooked")
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 10
        while len(_lines(log)) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        started = _lines(log)[3:]
        names = [s[0] for s in started]
        assert names[0] == "startContainer" and sorted(names[1:]) == ["poststart", "program"], names
        sc_fields, sc_state = started[0][1], started[0][2]
        assert sc_fields["mnt"] == os.readlink(f"/proc/{pid}/ns/mnt") and sc_fields["host"] == "no"
        assert sc_state["status"] == "created"
        ps = next(s for s in started if s[0] == "poststart")
        assert ps[1]["mnt"] == host_mnt and ps[2]["status"] == "running"
    finally:
        r = bundle.run(OCIBOX, root, "delete", "--force", "hooked")
    assert r.returncode == 0, r.stderr
    post = _lines(log)[-1]
    assert post[0] == "poststop" and post[1]["mnt"] == os.readlink("/proc/self/ns/mnt")
    assert post[2]["status"] == "stopped"
    assert not (root / "hooked").exists()


# ----------------------------------------------------------------------------- bad input
def _leftovers(root: Path, cid: str, b: Path) -> list[str]:
    out = []
    if (root / cid).exists():
        out.append(f"state dir {root / cid}")
    for hier in Path("/sys/fs/cgroup").iterdir():
        d = hier / CG.lstrip("/") / cid
        if d.is_dir():
            out.append(f"cgroup {d}")
    out += [f"mount {line.split()[4]}" for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if str(b) in line]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if str(b).encode() in Path(f"/proc/{pid}/cmdline").read_bytes() or (
                    os.readlink(f"/proc/{pid}/root").startswith(str(b))):
                out.append(f"process {pid}")
        except OSError:
            pass
    return out


def _refused(runtime: list[str], work: Path, b: Path, cid: str, name: str) -> str:
    """Create ``cid`` from ``b`` under ``runtime``: it must fail, with an error line last in its JSON log,
    and leave nothing behind. Returns the error message."""
    root = work / f"state-{name}"
    log = work / f"log-{name}.json"
    r = bundle.run(runtime, root, "create", "--bundle", str(b), "--pid-file", str(work / "pid"), cid, log=log)
    assert r.returncode != 0, f"{name}: create succeeded"
    lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    errors = [x for x in lines if x.get("level") == "error"]
    assert errors, f"{name}: no error line in the log ({r.stderr})"
    assert set(errors[-1]) >= {"level", "msg", "time"}
    left = _leftovers(root, cid, b)
    if left:  # clean up before failing
        bundle.run(runtime, root, "delete", "--force", cid)
    assert left == [], f"{name}: {left}"
    return str(errors[-1]["msg"])


BAD = {
    "malformed": lambda b: (b / "config.json").write_text('{"ociVersion": "1.0.2", "process": '),
    "no-rootfs": lambda b: _edit(b, lambda c: c["root"].update(path=str(b / "missing"))),
    "unknown-namespace": lambda b: _edit(b, lambda c: c["linux"]["namespaces"].append({"type": "bogus"})),
    "hook-fails": lambda b: _edit(b, lambda c: c.setdefault("hooks", {}).update(
        createRuntime=[{"path": "/bin/sh", "args": ["sh", "-c", "echo broken >&2; exit 3"]}])),
    "prestart-fails": lambda b: _edit(b, lambda c: c.setdefault("hooks", {}).update(
        prestart=[{"path": "/bin/false"}])),
    "container-hook-fails": lambda b: _edit(b, lambda c: c.setdefault("hooks", {}).update(
        createContainer=[{"path": "/bin/sh", "args": ["sh", "-c", "exit 4"]}])),
    "hook-timeout": lambda b: _edit(b, lambda c: c.setdefault("hooks", {}).update(
        createRuntime=[{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}])),
    "missing-program": lambda b: _edit(b, lambda c: c["process"].update(args=["/no/such/program"])),
}
WORDS = {"malformed": "config.json", "no-rootfs": "missing", "unknown-namespace": "bogus", "hook-fails": "broken",
         "prestart-fails": "prestart", "container-hook-fails": "createContainer", "hook-timeout": "timeout",
         "missing-program": "/no/such/program"}


def _edit(b: Path, change: Any) -> None:
    cfg = json.loads((b / "config.json").read_text())
    change(cfg)
    (b / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_refused_as_runc_refuses_it(rootfs: Path, work: Path, name: str) -> None:
    for runtime, who in ((RUNC, "runc"), (OCIBOX, "ocibox")):
        b = bundle.make(work / f"{who}-{name}", rootfs, ["sleep", "100"], **{"linux.cgroupsPath": f"{CG}/{who}-{name}"})
        BAD[name](b)
        msg = _refused(runtime, work, b, f"{who}-{name}", f"{who}-{name}")
        if who == "ocibox":
            assert WORDS[name] in msg, msg


def test_an_id_that_exists_is_refused_and_the_first_is_kept(rootfs: Path, work: Path) -> None:
    for runtime, who in ((RUNC, "runc"), (OCIBOX, "ocibox")):
        b = bundle.make(work / who, rootfs, ["sleep", "100"], **{"linux.cgroupsPath": f"{CG}/{who}-dup"})
        root, log = work / f"state-{who}", work / f"log-{who}.json"
        r = bundle.run(runtime, root, "create", "--bundle", str(b), f"{who}-dup", log=log)
        assert r.returncode == 0, r.stderr
        try:
            r = bundle.run(runtime, root, "create", "--bundle", str(b), f"{who}-dup", log=log)
            assert r.returncode != 0
            last = json.loads(log.read_text().splitlines()[-1])
            assert last["level"] == "error" and "exists" in last["msg"], last
            st = json.loads(bundle.run(runtime, root, "state", f"{who}-dup").stdout)
            assert st["status"] == "created"
        finally:
            assert bundle.run(runtime, root, "delete", "--force", f"{who}-dup").returncode == 0
        assert _leftovers(root, f"{who}-dup", b) == []


# ----------------------------------------------------------------------------- the rest of the spec
def test_resources_beyond_memory_cpu_pids_on_v1(rootfs: Path, work: Path) -> None:
    """memory reservation/swappiness, blockIO throttles (this kernel has no blkio.weight), cpu realtime and mems land in their
    cgroup v1 files; unified (v2 only) is refused by name, as runc refuses it."""
    dev = os.stat("/").st_dev
    maj, mnr = os.major(dev), os.minor(dev)
    res = {"memory": {"limit": 64 << 20, "reservation": 32 << 20, "swappiness": 10},
           "cpu": {"mems": "0", "realtimePeriod": 1000000},
           "blockIO": {"throttleReadBpsDevice": [{"major": maj, "minor": mnr, "rate": 1048576}],
                       "throttleWriteIOPSDevice": [{"major": maj, "minor": mnr, "rate": 100}]}}
    b = bundle.make(work / "res", rootfs, ["sleep", "100"], **{"linux.cgroupsPath": f"{CG}/res",
                                                               "linux.resources": res})
    root = work / "state"
    r = bundle.run(OCIBOX, root, "create", "--bundle", str(b), "res")
    assert r.returncode == 0, r.stderr
    try:
        cg = Path("/sys/fs/cgroup")
        d = CG.lstrip("/") + "/res"
        assert (cg / "memory" / d / "memory.soft_limit_in_bytes").read_text().strip() == str(32 << 20)
        assert (cg / "memory" / d / "memory.swappiness").read_text().strip() == "10"
        assert (cg / "memory" / d / "memory.memsw.limit_in_bytes").read_text().strip() != str(128 << 20)
        assert (cg / "cpuset" / d / "cpuset.mems").read_text().strip() == "0"
        blkio = cg / "blkio" / d
        assert f"{maj}:{mnr} 1048576" in (blkio / "blkio.throttle.read_bps_device").read_text()
        assert f"{maj}:{mnr} 100" in (blkio / "blkio.throttle.write_iops_device").read_text()
    finally:
        assert bundle.run(OCIBOX, root, "delete", "--force", "res").returncode == 0
    b = bundle.make(work / "uni", rootfs, ["true"], **{"linux.cgroupsPath": f"{CG}/uni",
                                                      "linux.resources": {"unified": {"memory.high": "1G"}}})
    for runtime, who in ((RUNC, "runc"), (OCIBOX, "ocibox")):
        r = bundle.run(runtime, work / f"state-{who}", "run", "--bundle", str(b), f"uni-{who}")
        assert r.returncode != 0, who
    assert "memory.high" in r.stderr and "v2" in r.stderr
    assert _leftovers(work / "state-ocibox", "uni-ocibox", b) == []


def test_personality_and_time_offsets(rootfs: Path, work: Path) -> None:
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    namespaces = [*bundle.runc_spec()["linux"]["namespaces"], {"type": "time"}]
    b = bundle.make(work / "pt", rootfs, ["sh", "-c", "uname -m; cat /proc/uptime"],
                    **{"linux.personality": {"domain": "LINUX32"}, "linux.namespaces": namespaces,
                       "linux.timeOffsets": {"boottime": {"secs": 864000, "nanosecs": 0}},
                       "linux.cgroupsPath": f"{CG}/pt"})
    r = bundle.run(OCIBOX, work / "state", "run", "--bundle", str(b), "pt")
    assert r.returncode == 0, r.stderr
    machine, up = r.stdout.split("\n")[:2]
    assert machine in ("i686", "i386")
    assert float(up.split()[0]) >= uptime + 864000


def test_user_namespace_beside_runc(work: Path) -> None:
    """A new user namespace from linux.uidMappings/gidMappings (written by the creator as root): the same
    maps, ids and owners seen from inside as under runc. The rootfs lives where the mapped root may walk
    (pytest's tmp is 0700 root's, which refuses both runtimes' mounts as it must)."""
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="ocibox-rt-userns-", dir="/var/tmp"))
    top.chmod(0o755)
    try:
        _user_namespace_beside_runc(bundle.rootfs(top / "rootfs"), work)
    finally:
        shutil.rmtree(top)


def _user_namespace_beside_runc(rootfs: Path, work: Path) -> None:
    namespaces = [*bundle.runc_spec()["linux"]["namespaces"], {"type": "user"}]
    maps = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    script = "cat /proc/self/uid_map /proc/self/gid_map; id; stat -c '%u:%g' /bin/busybox; touch /dev/shm/x; stat -c '%u' /dev/shm/x; cat /sys/fs/cgroup/memory/cgroup.procs"
    out = {}
    for who, runtime in (("runc", RUNC), ("ocibox", OCIBOX)):
        b = bundle.make(work / f"u-{who}", rootfs, ["sh", "-c", script],
                        **{"linux.namespaces": namespaces, "linux.uidMappings": maps, "linux.gidMappings": maps,
                           "linux.cgroupsPath": f"{CG}/u-{who}"})
        r = bundle.run(runtime, work / f"state-{who}", "run", "--bundle", str(b), f"u-{who}")
        assert r.returncode == 0, (who, r.stderr)
        out[who] = r.stdout
        assert _leftovers(work / f"state-{who}", f"u-{who}", b) == []
    assert out["ocibox"] == out["runc"]
    assert "0 200000 65536" in " ".join(out["ocibox"].split()) and "uid=0(root)" in out["ocibox"]
    assert "65534:65534" in out["ocibox"]  # the rootfs's host owner (root) is not mapped: nobody


# ----------------------------------------------------------------------------- start and delete's state
def _wait_stopped(root: Path, cid: str) -> None:
    deadline = time.monotonic() + 10
    while json.loads(bundle.run(OCIBOX, root, "state", cid).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline, f"{cid} did not stop"
        time.sleep(0.02)


def test_a_state_dir_without_its_brief_is_read_from_state_json(rootfs: Path, work: Path) -> None:
    """start and delete read the brief (no json); a state dir written before it existed (state.json
    alone) still starts and is deleted, cgroup included."""
    b = bundle.make(work / "old", rootfs, ["true"], **{"linux.cgroupsPath": f"{CG}/old"})
    root = work / "state"
    r = bundle.run(OCIBOX, root, "create", "--bundle", str(b), "old")
    assert r.returncode == 0, r.stderr
    try:
        brief = root / "old" / "brief"
        records = dict(rec.split("=", 1) for rec in brief.read_text().split("\0")[:-1])
        assert records["pid"] == str(json.loads((root / "old" / "state.json").read_text())["pid"])
        brief.unlink()
        r = bundle.run(OCIBOX, root, "start", "old")
        assert r.returncode == 0, r.stderr
        _wait_stopped(root, "old")
        r = bundle.run(OCIBOX, root, "delete", "old")
        assert r.returncode == 0, r.stderr
    finally:
        bundle.run(OCIBOX, root, "delete", "--force", "old")
    assert _leftovers(root, "old", b) == []


def test_delete_of_a_stopped_container_whose_cgroup_still_holds_a_process(rootfs: Path, work: Path) -> None:
    """Without a pid namespace of its own, a container's PID 1 may exit and leave a child in its cgroup:
    delete's rmdirs meet EBUSY, and the cgroup manager kills what is left and removes the cgroup."""
    namespaces = [n for n in bundle.runc_spec()["linux"]["namespaces"] if n["type"] != "pid"]
    b = bundle.make(work / "nopid", rootfs, ["sh", "-c", "sleep 100 & exit 0"],
                    **{"linux.cgroupsPath": f"{CG}/nopid", "linux.namespaces": namespaces})
    root = work / "state"
    r = bundle.run(OCIBOX, root, "create", "--bundle", str(b), "nopid")
    assert r.returncode == 0, r.stderr
    procs = Path("/sys/fs/cgroup/pids") / CG.lstrip("/") / "nopid" / "cgroup.procs"
    try:
        r = bundle.run(OCIBOX, root, "start", "nopid")
        assert r.returncode == 0, r.stderr
        _wait_stopped(root, "nopid")
        left = [int(p) for p in procs.read_text().split()]
        assert left, "the sleep should still be in the container's cgroup"
        r = bundle.run(OCIBOX, root, "delete", "nopid")
        assert r.returncode == 0, r.stderr
    finally:
        bundle.run(OCIBOX, root, "delete", "--force", "nopid")
    assert _leftovers(root, "nopid", b) == []
    for pid in left:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone
        assert state == "Z", f"process {pid} of the deleted container still runs"
