"""Cgroup writers on a directory model of /sys/fs/cgroup (the real hierarchies are tested in
tests/privileged/test_run.py for v1 and tests/v2/ inside the pure-v2 VM). A plain directory cannot
create the kernel's control files, so each test makes the ones that kernel would offer: a missing
file is a feature the kernel lacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocibox.cgroups import CgroupV1, CgroupV2, Limits, cpu_weight, detect
from ocibox.errors import CgroupError
from ocibox.linux.proc import parse_cgroup

V1_PROC = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/user\n1:cpuset:/\n0::/\n"
V1_FILES = {
    "memory": ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.oom_control", "cgroup.procs"],
    "cpu,cpuacct": ["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares", "cgroup.procs"],
    "pids": ["pids.max", "cgroup.procs"],
    "cpuset": ["cpuset.cpus", "cpuset.mems", "cgroup.procs"],
}


def make_v1(root: Path) -> None:
    for h in V1_FILES:
        (root / h).mkdir(parents=True)
    (root / "cpuset" / "cpuset.cpus").write_text("0-1\n")
    (root / "cpuset" / "cpuset.mems").write_text("0\n")


def kernel_files(d: Path, names: list[str]) -> None:
    for n in names:
        (d / n).write_text("")


def test_detect(tmp_path: Path) -> None:
    assert detect(tmp_path) == 1
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    assert detect(tmp_path) == 2


def test_parse_proc_cgroup() -> None:
    own = parse_cgroup(V1_PROC)
    assert own.paths["memory"] == "/process_api/abc" and own.paths["cpuacct"] == "/user"
    assert own.hierarchies["cpu"] == "cpu,cpuacct"
    assert own.unified == "/"


def test_v1_writes_each_controller_below_the_callers_cgroup(tmp_path: Path) -> None:
    make_v1(tmp_path)
    log: list[str] = []
    lim = Limits(memory=64 << 20, cpu_quota=50_000, cpu_shares=512, pids=20, cpuset="1")
    cg = CgroupV1("ocibox-x", lim, root=tmp_path, proc_cgroup=V1_PROC, echo=log.append)
    assert cg.dirs["memory"] == tmp_path / "memory/process_api/abc/ocibox-x"
    assert cg.dirs["cpu"] == tmp_path / "cpu,cpuacct/user/ocibox-x"
    cg.create()
    for c, d in cg.dirs.items():
        kernel_files(d, V1_FILES[cg.hier[c]])
    cg.apply(lim)
    m = cg.dirs["memory"]
    assert (m / "memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (m / "memory.memsw.limit_in_bytes").read_text() == str(128 << 20)  # docker: swap = memory
    assert (cg.dirs["cpu"] / "cpu.cfs_quota_us").read_text() == "50000"
    assert (cg.dirs["cpu"] / "cpu.cfs_period_us").read_text() == "100000"
    assert (cg.dirs["cpu"] / "cpu.shares").read_text() == "512"
    assert (cg.dirs["pids"] / "pids.max").read_text() == "20"
    assert (cg.dirs["cpuset"] / "cpuset.mems").read_text() == "0"  # copied from the parent first
    assert (cg.dirs["cpuset"] / "cpuset.cpus").read_text() == "1"
    assert any("memory.limit_in_bytes" in line for line in log)  # --debug shows every write
    assert cg.container_mounts() == [("cgroup", "memory", "memory"), ("cgroup", "cpu,cpuacct", "cpu,cpuacct"),
                                     ("cgroup", "pids", "pids"), ("cgroup", "cpuset", "cpuset")]
    (m / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert cg.oom_kills() == 2
    for c, d in cg.dirs.items():  # a real rmdir of a cgroup ignores its files; the model needs them gone
        for f in V1_FILES[cg.hier[c]]:
            (d / f).unlink()
    assert cg.destroy() == []
    assert not any(d.exists() for d in cg.dirs.values())


def test_v1_unlimited_swap_and_pids(tmp_path: Path) -> None:
    make_v1(tmp_path)
    lim = Limits(memory=64 << 20, memory_swap=-1, pids=-1)
    cg = CgroupV1("c", lim, root=tmp_path, proc_cgroup=V1_PROC)
    cg.create()
    for c, d in cg.dirs.items():
        kernel_files(d, V1_FILES[cg.hier[c]])
    cg.apply(lim)
    assert (cg.dirs["memory"] / "memory.memsw.limit_in_bytes").read_text() == "-1"
    assert (cg.dirs["pids"] / "pids.max").read_text() == "max"


def test_v1_a_limit_the_kernel_lacks_is_an_error(tmp_path: Path) -> None:
    make_v1(tmp_path)
    lim = Limits(memory=64 << 20, memory_swap=100 << 20)
    cg = CgroupV1("c", lim, root=tmp_path, proc_cgroup=V1_PROC)
    cg.create()
    kernel_files(cg.dirs["memory"], ["memory.limit_in_bytes"])  # no swap accounting
    with pytest.raises(CgroupError, match="memory-swap"):
        cg.apply(lim)


def test_v1_default_swap_skipped_without_swap_accounting(tmp_path: Path) -> None:
    make_v1(tmp_path)
    lim = Limits(memory=64 << 20)
    cg = CgroupV1("c", lim, root=tmp_path, proc_cgroup=V1_PROC)
    cg.create()
    kernel_files(cg.dirs["memory"], ["memory.limit_in_bytes"])
    cg.apply(lim)  # no memsw file and no explicit --memory-swap: nothing to refuse


def test_v1_missing_controller_with_a_limit(tmp_path: Path) -> None:
    make_v1(tmp_path)
    with pytest.raises(CgroupError, match="pids"):
        CgroupV1("c", Limits(pids=5), root=tmp_path, proc_cgroup="4:memory:/\n2:cpu:/\n")
    CgroupV1("c", Limits(), root=tmp_path, proc_cgroup="4:memory:/\n2:cpu:/\n")  # no limit: fine


def test_v1_existing_cgroup_is_refused(tmp_path: Path) -> None:
    make_v1(tmp_path)
    (tmp_path / "pids" / "c").mkdir()
    with pytest.raises(CgroupError, match="already exists"):
        CgroupV1("c", Limits(), root=tmp_path, proc_cgroup=V1_PROC).create()


V2_FILES = ["memory.max", "memory.swap.max", "memory.events", "cpu.max", "cpu.weight", "pids.max",
            "cgroup.procs", "cpuset.cpus"]


def make_v2(root: Path, parent: str = "") -> Path:
    root.mkdir(exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    p = root / parent
    if parent:
        p.mkdir(parents=True)
        (p / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
        (p / "cgroup.subtree_control").write_text("memory\n")
    return p


def test_v2_enables_controllers_and_writes_limits(tmp_path: Path) -> None:
    parent = make_v2(tmp_path, "user.slice/me")
    lim = Limits(memory=64 << 20, memory_swap=96 << 20, cpu_quota=20_000, cpu_shares=1024, pids=10, cpuset="0")
    cg = CgroupV2("ocibox-y", lim, root=tmp_path, proc_cgroup="0::/user.slice/me\n")
    cg.create()
    # memory was already on; the others are added (one write of the missing ones)
    assert (parent / "cgroup.subtree_control").read_text() == "+cpu +pids +cpuset"
    kernel_files(cg.dir, V2_FILES)
    cg.apply(lim)
    d = cg.dir
    assert (d / "memory.max").read_text() == str(64 << 20)
    assert (d / "memory.swap.max").read_text() == str(32 << 20)  # docker's memory+swap minus memory
    assert (d / "cpu.max").read_text() == "20000 100000"
    assert (d / "cpu.weight").read_text() == str(cpu_weight(1024))
    assert (d / "pids.max").read_text() == "10"
    assert (d / "cpuset.cpus").read_text() == "0"
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cg.oom_kills() == 1
    assert cg.container_mounts() == [("cgroup2", "", "")]


def test_v2_cgroup_parent_is_created_level_by_level(tmp_path: Path) -> None:
    make_v2(tmp_path)
    cg = CgroupV2("c", Limits(pids=5), parent="/ocibox.slice/sub", root=tmp_path, proc_cgroup="0::/elsewhere\n")
    orig_enable = cg._enable

    def enable(d: Path, wanted: list[str]) -> list[str]:
        if not (d / "cgroup.controllers").exists():  # a real cgroup dir has these from birth
            (d / "cgroup.controllers").write_text("cpu memory pids\n")
            (d / "cgroup.subtree_control").write_text("")
        return orig_enable(d, wanted)

    cg._enable = enable  # type: ignore[method-assign]
    cg.create()
    assert cg.dir == tmp_path / "ocibox.slice/sub/c" and cg.dir.is_dir()
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"


def test_v2_missing_controller_with_a_limit(tmp_path: Path) -> None:
    tmp_path.joinpath("cgroup.controllers").write_text("memory\n")
    tmp_path.joinpath("cgroup.subtree_control").write_text("")
    with pytest.raises(CgroupError, match="pids controller is not available"):
        CgroupV2("c", Limits(pids=5), root=tmp_path, proc_cgroup="0::/\n").create()


def test_cpu_weight_conversion() -> None:
    assert cpu_weight(2) == 1 and cpu_weight(1024) == 39 and cpu_weight(262144) == 10000
