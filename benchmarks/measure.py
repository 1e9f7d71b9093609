"""Run one command and measure its wall time and the peak memory of its whole process tree.

Memory: the command is started in a fresh child memory cgroup (v1: below this process's own memory cgroup;
v2: below its unified cgroup) so that every descendant, even a re-parented one, is found. Every 20 ms a
sampler sums ``VmRSS`` over the cgroup's processes (the tree's RSS) and reads the cgroup's anonymous memory
(``total_rss`` / ``anon``). The sampled figure may miss a spike shorter than 20 ms; ``getrusage`` cannot serve
as a floor: a child forked by this Python process keeps the parent's RSS high-water mark across exec, so
its ``ru_maxrss`` is never below the harness's own ~25 MiB (it is recorded as ``maxrss_single`` only). The cgroup's own peak
(``memory.max_usage_in_bytes`` / ``memory.peak``) counts page cache too: written files are charged to it, so
it grows with the layer size for every tool and is reported only as a side note.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_CG_ROOT_V1 = Path("/sys/fs/cgroup/memory")
_CG_ROOT_V2 = Path("/sys/fs/cgroup")


@dataclass
class Sample:
    wall: float
    rc: int
    tree_rss: int | None = None  # bytes: max over samples of sum(VmRSS)
    anon: int | None = None  # bytes: max sampled cgroup anonymous memory
    cgroup_peak: int | None = None  # bytes: cgroup peak incl. page cache
    maxrss_single: int | None = None  # bytes: ru_maxrss of the largest single process
    out: str = ""


def _own_memory_cgroup() -> tuple[str, Path] | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        if "memory" in ctrls.split(",") and (_CG_ROOT_V1 / path.lstrip("/")).is_dir():
            return "v1", _CG_ROOT_V1 / path.lstrip("/")
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        if ctrls == "" and (_CG_ROOT_V2 / "cgroup.controllers").exists():
            base = _CG_ROOT_V2 / path.lstrip("/")
            if "memory" in (base / "cgroup.controllers").read_text().split():
                return "v2", base
    return None


def _children() -> set[int]:
    """The pids of this process's children (from /proc: each process's parent)."""
    me, out = os.getpid(), set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == me:
                out.add(int(d))
    return out


class Meter:
    """Creates one child cgroup per measured command; removes it after.

    ``settle``: after each command, wait until every process it left behind has exited too, before the
    next command starts (this process is a child subreaper, so a daemonised leftover becomes its child).
    podman's ``run --rm`` returns while its conmon and a ``podman container cleanup`` still work for tens
    of ms; without this they ran beside the next tool of the round and were charged to it. The command's
    own time is unchanged: it ends when the command returns."""

    def __init__(self, tag: str, settle: bool = False) -> None:
        self.kind_base = _own_memory_cgroup()
        self.tag = tag
        self.n = 0
        self.leftover: list[Path] = []
        self.settle = settle
        self.stragglers = 0  # commands that left processes behind
        if settle:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER

    def _wait_leftovers(self, before: set[int], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        left = _children() - before
        if left:
            self.stragglers += 1
        while left and time.monotonic() < deadline:
            for pid in list(left):
                try:
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        left.discard(pid)
                except ChildProcessError:
                    left.discard(pid)
            time.sleep(0.002)
            left |= _children() - before  # leftovers of leftovers

    @property
    def how(self) -> str:
        if self.kind_base is None:
            return "sampling /proc every 20 ms (no memory cgroup available)"
        return f"fresh cgroup-{self.kind_base[0]} memory cgroup per command, sampled every 20 ms"

    def run(self, argv: list[str], *, log: Path, mem: bool = True, env: dict[str, str] | None = None,
            timeout: float = 1800) -> Sample:
        cg: Path | None = None
        if mem and self.kind_base is not None:
            self.n += 1
            cg = self.kind_base[1] / f"ocibox-bench-{self.tag}-{self.n}"
            cg.mkdir()
        procs = str(cg / "cgroup.procs") if cg else ""

        def enter() -> None:  # runs in the child between fork and exec: join the cgroup
            if procs:
                with open(procs, "w") as f:
                    f.write(str(os.getpid()))

        before = _children() if self.settle else set()
        stop = threading.Event()
        peaks = {"tree": 0, "anon": 0}
        with open(log, "wb") as logf:
            t0 = time.perf_counter()
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                 env=env, preexec_fn=enter if procs else None)
            sampler = None
            if mem:
                sampler = threading.Thread(target=self._sample, args=(p.pid, cg, stop, peaks), daemon=True)
                sampler.start()
            timer = threading.Timer(timeout, p.kill)
            timer.start()
            _, status, ru = os.wait4(p.pid, 0)
            wall = time.perf_counter() - t0
            p.returncode = os.waitstatus_to_exitcode(status)
            timer.cancel()
            stop.set()
            if sampler:
                sampler.join()
        if self.settle:
            self._wait_leftovers(before)
        s = Sample(wall=wall, rc=p.returncode)
        if mem:
            single = ru.ru_maxrss * 1024
            s.maxrss_single = single
            s.tree_rss = peaks["tree"] or None
            s.anon = peaks["anon"] or None
            if cg is not None:
                s.cgroup_peak = self._cg_peak(cg)
                self._remove(cg)
        if p.returncode != 0:
            s.out = log.read_text(errors="replace")[-4000:]
        return s

    def _cg_peak(self, cg: Path) -> int | None:
        assert self.kind_base is not None
        name = "memory.max_usage_in_bytes" if self.kind_base[0] == "v1" else "memory.peak"
        try:
            return int((cg / name).read_text().split()[0])
        except (OSError, ValueError):
            return None

    def _sample(self, pid: int, cg: Path | None, stop: threading.Event, peaks: dict[str, int]) -> None:
        anon_key = "total_rss" if self.kind_base and self.kind_base[0] == "v1" else "anon"
        while True:
            pids = _cg_pids(cg) if cg else _tree_pids(pid)
            tree = 0
            for q in pids:
                try:
                    with open(f"/proc/{q}/status", "rb") as f:
                        for line in f:
                            if line.startswith(b"VmRSS:"):
                                tree += int(line.split()[1]) * 1024
                                break
                except (OSError, ValueError):
                    pass
            peaks["tree"] = max(peaks["tree"], tree)
            if cg is not None:
                try:
                    for line in (cg / "memory.stat").read_text().splitlines():
                        k, _, v = line.partition(" ")
                        if k == anon_key:
                            peaks["anon"] = max(peaks["anon"], int(v))
                            break
                except (OSError, ValueError):
                    pass
            if stop.wait(0.02):
                return

    def _remove(self, cg: Path) -> None:
        for _ in range(100):
            try:
                cg.rmdir()
                return
            except OSError:
                time.sleep(0.05)
        self.leftover.append(cg)

    def cleanup(self) -> list[str]:
        """Remove cgroups that were still busy; return the ones that could not be removed."""
        bad = []
        for cg in self.leftover:
            try:
                cg.rmdir()
            except OSError as e:
                bad.append(f"{cg}: {e}")
        return bad


def _cg_pids(cg: Path) -> list[str]:
    try:
        return (cg / "cgroup.procs").read_text().split()
    except OSError:
        return []


def _tree_pids(root: int) -> list[str]:
    children: dict[str, list[str]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                ppid = f.read().rsplit(b")", 1)[1].split()[1].decode()
        except (OSError, IndexError):
            continue
        children.setdefault(ppid, []).append(d)
    out, todo = [], [str(root)]
    while todo:
        q = todo.pop()
        out.append(q)
        todo.extend(children.get(q, []))
    return out
