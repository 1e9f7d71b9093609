"""The runner moves the container's PID 1 into its cgroups while that process mounts its rootfs
(``run_container``): what happens when that move fails. The failure is injected (a cgroup manager
whose join raises), since a real cgroup write cannot be made to fail on demand; everything else is
real: the cgroups are created and removed, the namespaces, mounts and processes are the kernel's."""

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


def test_a_failed_join_stops_the_container_before_its_command(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    spec = _spec("touch", "/ran")
    real = open_cgroup(f"ocibox-test-join-{os.getpid()}", spec.limits)

    class FailingJoin(type(real)):  # type: ignore[misc]
        def join(self, pid: int) -> None:  # the injected fault
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


@pytest.mark.parametrize("argv,starts", [
    (["run", "--rm", "busybox"], True),
    (["--root", "/x", "--debug", "run", "busybox"], True),
    (["--insecure-registry", "run", "ps"], False),  # "run" is the option's value here, "ps" the verb
    (["container", "exec", "c1", "true"], True),
    (["ps", "run"], False),
    (["pull", "busybox"], False),
    ([], False),
])
def test_the_entry_point_warms_up_only_for_verbs_that_join(argv: list[str], starts: bool) -> None:
    from ocibox.cgroups import _warmup

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
