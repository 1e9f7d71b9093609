"""The runner moves the container's PID 1 into its cgroups while that process mounts its rootfs
(``run_container``; on v1 PID 1 moves itself in through the ``tasks`` files the creator opened, see
``Cgroup.self_join_files``): that it is in them, and what happens when that move fails. The failures
are injected (a cgroup manager whose join raises, or whose self-join files are ones a write of "0"
fails on), since a real cgroup write cannot be made to fail on demand; everything else is real: the
cgroups are created and removed, the namespaces, mounts and processes are the kernel's."""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import oci
import pytest

from ocibox.cgroups import MigrationWarmup, open_cgroup
from ocibox.digest import Digest
from ocibox.errors import CgroupError
from ocibox.image import ImageConfig, Platform
from ocibox.run._flags import parse_run_args
from ocibox.run._process import run_container
from ocibox.run._spec import RunSpec

pytestmark = pytest.mark.privileged


def _rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    root.mkdir()
    with tarfile.open(fileobj=io.BytesIO(oci.busybox_layer())) as t:
        oci.extractall(t, root, "tar")
    return root


def _dirs(cg: object) -> list[Path]:
    return list(cg.dirs.values()) if hasattr(cg, "dirs") else [cg.dir]  # type: ignore[attr-defined]


def _children() -> set[int]:
    out: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            out.update(int(p) for p in f.read().split())
    return out


def _spec(*argv: str) -> RunSpec:
    config = ImageConfig(platform=Platform("linux", "amd64"), diff_ids=(Digest.parse("sha256:" + "0" * 64),))
    return RunSpec.from_image(config, parse_run_args(["--network", "none", "img", *argv], {}),
                              container_id="c0ffee" * 10 + "abcd")


@pytest.fixture(autouse=True)
def _no_subreaper_left() -> Iterator[None]:
    """run_container here runs inside pytest: while a container runs, it makes pytest a child subreaper
    and forwards signals to PID 1. When it returns, both must be as they were: left so, pytest would
    adopt later tests' orphans (an exec -d process inside a container's pid namespace) and never reap
    them, and a container's PID 1 would then never finish exiting."""
    import signal

    from ocibox.linux import syscalls
    from ocibox.run._init import FORWARDED_SIGNALS

    handlers = {s: signal.getsignal(s) for s in FORWARDED_SIGNALS}
    assert not syscalls.child_subreaper()
    yield
    assert not syscalls.child_subreaper()
    assert {s: signal.getsignal(s) for s in FORWARDED_SIGNALS} == handlers


def test_the_container_runs_in_its_cgroup(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    spec = _spec("sh", "-c", "cat /proc/self/cgroup > /seen")
    cg = open_cgroup(f"ocibox-test-join-{os.getpid()}", spec.limits)
    assert run_container(spec, root, tmp_path / "state", cgroup=cg) == 0
    lines = (root / "seen").read_text().splitlines()
    # its own cgroup namespace, rooted at the container's cgroup: every hierarchy shows "/"
    assert lines and all(line.endswith(":/") for line in lines), lines
    assert not any(d.exists() for d in _dirs(cg))  # removed once it exited


def test_pid1_is_in_every_cgroup_of_the_container(tmp_path: Path) -> None:
    """Seen from the host while it runs: each of the container's cgroup directories lists one process,
    the container's PID 1 (the host pid whose pid-namespace pid is 1). (From inside, a container whose
    PID 1 had stayed in its creator's cgroups would look the same: its cgroup namespace would be rooted
    there.)"""
    import threading

    root = _rootfs(tmp_path)
    cg = open_cgroup(f"ocibox-test-join-{os.getpid()}", _spec("true").limits)
    seen: dict[str, list[int]] = {}
    nspid: list[str] = []

    def look() -> None:  # a thread: run_container must run in the main thread (it forwards signals)
        deadline = time.monotonic() + 10
        while not (root / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        for d in _dirs(cg):
            seen[str(d)] = [int(p) for p in (d / "cgroup.procs").read_text().split()]
        first = next(iter(seen.values()))
        if first:  # the host pid's pids in each pid namespace, innermost last
            nspid.extend(line.split()[-1] for line in Path(f"/proc/{first[0]}/status").read_text().splitlines()
                         if line.startswith("NSpid:"))

    t = threading.Thread(target=look)
    t.start()
    try:
        assert run_container(_spec("sh", "-c", "touch /started; sleep 1"), root, tmp_path / "state", cgroup=cg) == 0
    finally:
        t.join()
    assert len(seen) == len(_dirs(cg)) and all(len(pids) == 1 for pids in seen.values()), seen
    pid1 = next(iter(seen.values()))[0]
    assert all(pids == [pid1] for pids in seen.values()), seen
    assert nspid == ["1"]  # it is the container's PID 1


@pytest.mark.parametrize("files,error", [
    (["/dev/full"], "moving the container into its cgroup failed: cannot write 0 to /dev/full: No space left"),
    (["/proc/sys/kernel/ostype"], "cannot open /proc/sys/kernel/ostype to move the container into its cgroup"),
])
def test_a_failed_self_join_stops_the_container_before_its_command(tmp_path: Path, files: list[str],
                                                                   error: str) -> None:
    """PID 1's own move fails (a write of "0" refused), or the creator cannot open the file for it."""
    root = _rootfs(tmp_path)
    spec = _spec("touch", "/ran")
    real = open_cgroup(f"ocibox-test-join-{os.getpid()}", spec.limits)

    class FailingSelfJoin(type(real)):  # type: ignore[misc]
        def self_join_files(self) -> list[str]:  # the injected fault
            return files

    cg = FailingSelfJoin(f"ocibox-test-join-{os.getpid()}", spec.limits)
    before = _children()
    with pytest.raises(CgroupError, match=error):
        run_container(spec, root, tmp_path / "state", cgroup=cg)
    assert not (root / "ran").exists()
    assert not any(d.exists() for d in _dirs(cg))
    assert _children() == before


def test_a_failed_join_stops_the_container_before_its_command(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    spec = _spec("touch", "/ran")
    real = open_cgroup(f"ocibox-test-join-{os.getpid()}", spec.limits)

    class FailingJoin(type(real)):  # type: ignore[misc]
        def join(self, pid: int, *, self_joined: bool = False) -> None:  # the injected fault
            raise CgroupError(f"injected: cannot move {pid}")

    cg = FailingJoin(f"ocibox-test-join-{os.getpid()}", spec.limits)
    before = _children()
    with pytest.raises(CgroupError, match="injected: cannot move"):
        run_container(spec, root, tmp_path / "state", cgroup=cg)
    assert not (root / "ran").exists()  # the command never ran
    assert not any(d.exists() for d in _dirs(cg))  # its cgroups are gone
    assert _children() == before  # and no process of it is left (the runner is their subreaper)


def test_migration_warmup_moves_nothing_and_stops(tmp_path: Path) -> None:
    before = Path("/proc/self/cgroup").read_text()
    w = MigrationWarmup(period=0.001).start()
    deadline = time.monotonic() + 5
    while w.writes < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    w.stop()
    assert w.writes >= 3 and not w.alive
    assert Path("/proc/self/cgroup").read_text() == before  # it moved this process where it already was
    # no cgroup to write to (here: a path that does not exist): it gives up at once, nothing else
    gone = MigrationWarmup(proc_cgroup="4:memory:/no-such-cgroup-ocibox\n0::/no-such-cgroup-ocibox\n").start()
    assert gone.join(5)
    assert gone.writes == 0 and not gone.alive
    bounded = MigrationWarmup(limit=0.05).start()  # never stopped: it ends by itself
    assert bounded.join(5)
    assert not bounded.alive and bounded.writes >= 1


@pytest.mark.parametrize("argv,joins", [
    (["run", "--rm", "busybox"], True),
    (["--root", "/x", "--debug", "run", "busybox"], True),
    (["--insecure-registry", "run", "ps"], False),  # "run" is the option's value here, "ps" the verb
    (["container", "exec", "c1", "true"], True),
    (["ps", "run"], False),
    (["pull", "busybox"], False),
    ([], False),
])
def test_the_entry_point_warms_up_only_for_verbs_that_join(argv: list[str], joins: bool,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the join moves processes by pid (a v2 host, faked here by ``needed``: this host is v1)."""
    from ocibox.cgroups import _warmup

    monkeypatch.setattr(_warmup, "needed", lambda root=_warmup.ROOT: True)
    starts = joins
    assert _warmup._early == []
    _warmup.warm_for(argv)
    early = list(_warmup._early)
    w = _warmup.warmup()  # the one started early is taken (else a new one starts)
    try:
        assert len(early) == int(starts) and (w is early[0] if starts else True)
        assert _warmup._early == [] and w.alive
    finally:
        w.stop()
    assert not w.alive
