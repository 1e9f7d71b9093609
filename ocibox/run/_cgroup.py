"""Cgroups: one interface, v1 and v2 behind it, detected once (a hybrid host counts as v1).

The container's cgroup is created below the caller's own cgroup (read from /proc/self/cgroup),
or below ``--cgroup-parent``, as runc and podman do when given no path. Each controller is a
small function writing its files; a limit that cannot be written raises CgroupError and is
never dropped. Every write goes through ``_Writer``, which ``--debug`` echoes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from ocibox.errors import CgroupError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (5 ms of ocibox run)

if TYPE_CHECKING:
    from typing import Protocol

    from ocibox.run._spec import Limits

CGROUP_ROOT = Path("/sys/fs/cgroup")


def detect(root: Path = CGROUP_ROOT) -> int:
    """2 on a pure cgroup-v2 host (cgroup2 mounted at the root), else 1 (v1 and hybrid)."""
    return 2 if (root / "cgroup.controllers").exists() else 1


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/self/cgroup`` as {controller: path}; the v2 entry ("0::/x") is under key ""."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, ctrls, path = parts
        if not ctrls:
            out[""] = path
        for c in ctrls.split(","):
            if c:
                out[c] = path
                out[f"hier:{c}"] = ctrls
    return out


def _read_self_cgroup() -> str:
    with open("/proc/self/cgroup") as f:
        return f.read()


class _Writer:
    def __init__(self, echo: Callable[[str], None] | None) -> None:
        self.echo = echo

    def __call__(self, path: Path, value: str | int, why: str = "") -> None:
        text = str(value)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except FileNotFoundError:
            raise CgroupError(f"cannot apply {why or path.name}: {path} does not exist "
                              "(the kernel lacks this cgroup feature); drop that limit") from None
        except OSError as e:
            raise CgroupError(f"cannot write {text!r} to {path}: {e.strerror}") from None
        if self.echo:
            self.echo(f"cgroup: wrote {text} to {path}")


def _mkdir(path: Path) -> None:
    try:
        path.mkdir()
    except FileExistsError:
        raise CgroupError(f"cgroup {path} already exists; remove it (rmdir) or choose another container") from None
    except OSError as e:
        raise CgroupError(f"cannot create cgroup {path}: {e.strerror}; pass --cgroup-parent to place it "
                          "somewhere writable") from None


def _rmdir_all(paths: list[Path], kill: Callable[[Path], None]) -> list[str]:
    """Remove cgroup dirs (deepest first), killing what is left; retry while tasks exit."""
    errors = []
    for p in paths:
        deadline = time.monotonic() + 5
        delay = 0.001
        while True:
            try:
                p.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    errors.append(f"cannot remove cgroup {p}: {e.strerror}")
                    break
                kill(p)
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
    return errors


def _kill_procs(d: Path) -> None:
    try:
        pids = (d / "cgroup.procs").read_text().split()
    except OSError:
        return
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


if TYPE_CHECKING:

    class Cgroup(Protocol):
        version: int

        def create(self) -> None: ...
        def apply(self, limits: Limits) -> None: ...
        def join(self, pid: int) -> None: ...
        def container_mounts(self) -> list[tuple[str, str, str]]: ...
        def oom_kills(self) -> int: ...
        def destroy(self) -> list[str]: ...


# ---------------------------------------------------------------------- v1
def _v1_memory(w: _Writer, d: Path, lim: Limits) -> None:
    if lim.memory:
        w(d / "memory.limit_in_bytes", lim.memory, "--memory")
    memsw = d / "memory.memsw.limit_in_bytes"
    if lim.memory_swap == -1:
        if memsw.exists():
            w(memsw, -1, "--memory-swap")
    elif lim.memory_swap:
        w(memsw, lim.memory_swap, "--memory-swap (swap accounting)")
    elif lim.memory and memsw.exists():
        w(memsw, 2 * lim.memory, "the default swap limit")  # docker: swap defaults to the memory limit


def _v1_cpu(w: _Writer, d: Path, lim: Limits) -> None:
    if lim.cpu_quota:
        w(d / "cpu.cfs_period_us", lim.cpu_period, "--cpus")
        w(d / "cpu.cfs_quota_us", lim.cpu_quota, "--cpus")
    if lim.cpu_shares:
        w(d / "cpu.shares", lim.cpu_shares, "--cpu-shares")


def _v1_pids(w: _Writer, d: Path, lim: Limits) -> None:
    if lim.pids:
        w(d / "pids.max", "max" if lim.pids < 0 else lim.pids, "--pids-limit")


def _v1_cpuset(w: _Writer, d: Path, lim: Limits) -> None:
    # A new v1 cpuset has empty cpus and mems: nothing can join it until both are set.
    for f in ("cpuset.mems", "cpuset.cpus"):
        if not (d / f).read_text().strip():
            w(d / f, (d.parent / f).read_text().strip() or "0")
    if lim.cpuset:
        w(d / "cpuset.cpus", lim.cpuset, "--cpuset-cpus")


_V1 = {"memory": _v1_memory, "cpu": _v1_cpu, "pids": _v1_pids, "cpuset": _v1_cpuset}


def _v1_dir(root: Path, own: dict[str, str], controller: str, path: str) -> Path:
    """``path`` in the v1 hierarchy of ``controller`` (mounted under the name of its controllers,
    "cpu,cpuacct", or of the controller alone)."""
    hier = own[f"hier:{controller}"]
    base = root / hier if (root / hier).is_dir() else root / controller
    return base / path.lstrip("/")


class CgroupV1:
    """One child cgroup ``<name>`` in each v1 hierarchy ocibox uses (memory, cpu, pids, cpuset)."""

    version = 1

    def __init__(self, name: str, limits: Limits, *, parent: str = "", root: Path = CGROUP_ROOT,
                 proc_cgroup: str | None = None, echo: Callable[[str], None] | None = None) -> None:
        self.limits = limits
        self.w = _Writer(echo)
        own = parse_proc_cgroup(_read_self_cgroup() if proc_cgroup is None else proc_cgroup)
        wanted = ["memory", "cpu", "pids"] + (["cpuset"] if limits.cpuset else [])
        self.dirs: dict[str, Path] = {}
        self.hier: dict[str, str] = {}
        self.created: list[Path] = []
        for c in wanted:
            if c not in own:
                if _needs(c, limits):
                    raise CgroupError(f"the {c} cgroup controller is not mounted on this host; drop the {c} limit")
                continue
            self.hier[c] = own[f"hier:{c}"]
            self.dirs[c] = _v1_dir(root, own, c, parent or own[c]) / name

    def create(self) -> None:
        for d in self.dirs.values():
            d.parent.mkdir(parents=True, exist_ok=True)
            _mkdir(d)
            self.created.append(d)

    def apply(self, limits: Limits) -> None:
        for c, d in self.dirs.items():
            _V1[c](self.w, d, limits)

    def join(self, pid: int) -> None:
        for d in self.dirs.values():
            self.w(d / "cgroup.procs", pid)

    def container_mounts(self) -> list[tuple[str, str, str]]:
        seen = []
        for h in self.hier.values():
            if h not in seen:
                seen.append(h)
        return [("cgroup", h, h) for h in seen]

    def oom_kills(self) -> int:
        d = self.dirs.get("memory")
        return _field(d / "memory.oom_control", "oom_kill") if d else 0

    def destroy(self) -> list[str]:
        return _rmdir_all(list(reversed(self.created)), _kill_procs)


def _needs(controller: str, lim: Limits) -> bool:
    return {
        "memory": bool(lim.memory or lim.memory_swap),
        "cpu": bool(lim.cpu_quota or lim.cpu_shares),
        "pids": bool(lim.pids),
        "cpuset": bool(lim.cpuset),
    }[controller]


def _field(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
    except (OSError, ValueError):
        pass
    return 0


# ---------------------------------------------------------------------- v2
def _v2_memory(w: _Writer, d: Path, lim: Limits) -> None:
    if lim.memory:
        w(d / "memory.max", lim.memory, "--memory")
    swap = d / "memory.swap.max"
    if lim.memory_swap == -1:
        if swap.exists():
            w(swap, "max", "--memory-swap")
    elif lim.memory_swap:
        # docker's --memory-swap is memory plus swap; v2 limits the swap alone.
        w(swap, lim.memory_swap - lim.memory, "--memory-swap (swap accounting)")
    elif lim.memory and swap.exists():
        w(swap, lim.memory, "the default swap limit")


def cpu_weight(shares: int) -> int:
    """cpu.shares (2..262144) to cpu.weight (1..10000), as runc and crun convert it."""
    return max(1, min(10000, 1 + ((shares - 2) * 9999) // 262142))


def _v2_cpu(w: _Writer, d: Path, lim: Limits) -> None:
    if lim.cpu_quota:
        w(d / "cpu.max", f"{lim.cpu_quota} {lim.cpu_period}", "--cpus")
    if lim.cpu_shares:
        w(d / "cpu.weight", cpu_weight(lim.cpu_shares), "--cpu-shares")


def _v2_pids(w: _Writer, d: Path, lim: Limits) -> None:
    if lim.pids:
        w(d / "pids.max", "max" if lim.pids < 0 else lim.pids, "--pids-limit")


def _v2_cpuset(w: _Writer, d: Path, lim: Limits) -> None:
    if lim.cpuset:
        w(d / "cpuset.cpus", lim.cpuset, "--cpuset-cpus")


_V2 = {"memory": _v2_memory, "cpu": _v2_cpu, "pids": _v2_pids, "cpuset": _v2_cpuset}


class CgroupV2:
    """``<parent>/<name>`` in the unified hierarchy, with the controllers ocibox uses enabled."""

    version = 2

    def __init__(self, name: str, limits: Limits, *, parent: str = "", root: Path = CGROUP_ROOT,
                 proc_cgroup: str | None = None, echo: Callable[[str], None] | None = None) -> None:
        self.limits = limits
        self.w = _Writer(echo)
        self.root = root
        own = parse_proc_cgroup(_read_self_cgroup() if proc_cgroup is None else proc_cgroup)
        self.parent = root / (parent or own.get("", "/")).lstrip("/")
        self.dir = self.parent / name
        self.controllers = ["memory", "cpu", "pids"] + (["cpuset"] if limits.cpuset else [])
        self.created = False

    def _enable(self, d: Path, wanted: list[str]) -> list[str]:
        """Enable ``wanted`` in d's subtree_control; returns those d itself offers."""
        try:
            available = (d / "cgroup.controllers").read_text().split()
            enabled = (d / "cgroup.subtree_control").read_text().split()
        except OSError as e:
            raise CgroupError(f"cannot read the controllers of cgroup {d}: {e.strerror}") from None
        usable = [c for c in wanted if c in available]
        missing = [c for c in usable if c not in enabled]
        if missing:
            try:
                self.w(d / "cgroup.subtree_control", " ".join("+" + c for c in missing))
            except CgroupError as e:
                if "Device or resource busy" in str(e):
                    # The no-internal-process rule: a cgroup with processes cannot hand
                    # controllers to children (only the root is exempt).
                    raise CgroupError(f"cannot enable {' '.join(missing)} below {d}: it holds processes "
                                      "(cgroup v2's no-internal-process rule); pass --cgroup-parent "
                                      "naming an empty cgroup") from None
                raise
        return usable

    def create(self) -> None:
        if not self.parent.is_dir():
            # --cgroup-parent that does not exist yet: create it level by level from the root,
            # handing the controllers down each level.
            rel = self.parent.relative_to(self.root).parts
            cur = self.root
            for part in rel:
                self._enable(cur, self.controllers)
                cur = cur / part
                cur.mkdir(exist_ok=True)
        usable = self._enable(self.parent, self.controllers)
        for c in self.controllers:
            if c not in usable and _needs(c, self.limits):
                raise CgroupError(f"the {c} controller is not available in cgroup {self.parent} "
                                  "(cgroup.controllers); enable it in its parent's cgroup.subtree_control")
        _mkdir(self.dir)
        self.created = True

    def apply(self, limits: Limits) -> None:
        for c in self.controllers:
            _V2[c](self.w, self.dir, limits)

    def join(self, pid: int) -> None:
        self.w(self.dir / "cgroup.procs", pid)

    def container_mounts(self) -> list[tuple[str, str, str]]:
        return [("cgroup2", "", "")]

    def oom_kills(self) -> int:
        return _field(self.dir / "memory.events", "oom_kill")

    def destroy(self) -> list[str]:
        if not self.created:
            return []

        def kill(d: Path) -> None:
            try:
                (d / "cgroup.kill").write_text("1")
            except OSError:
                _kill_procs(d)

        return _rmdir_all([self.dir], kill)


class MigrationWarmup:
    """Makes the container's cgroup join cheap by paying its fixed cost early, in the background.

    Moving a process into a cgroup takes the kernel's ``cgroup_threadgroup_rwsem`` for writing, and a
    writer that finds it idle first waits for an RCU grace period (``rcu_sync_enter``): 6 to 30 ms
    on these machines, the longest single step of a warm ``ocibox run``, paid by runc and podman as
    well. Writers that follow within about a grace period of the last one do not wait. So while
    ``ocibox run`` imports, reads the store and builds the container, a thread moves this process
    into the cgroup it is already in (a migration that changes nothing) every few ms; the join of
    the container, when it comes, finds the grace period passed. The thread stops at ``stop()``, at
    the first failed write (no cgroup to write to: nothing is lost but the speed-up), and after
    ``limit`` seconds whatever happens.
    """

    def __init__(self, proc_cgroup: str | None = None, root: Path = CGROUP_ROOT, period: float = 0.004,
                 limit: float = 2.0) -> None:
        import threading

        own = parse_proc_cgroup(_read_self_cgroup() if proc_cgroup is None else proc_cgroup)
        if "memory" in own:  # v1 and hybrid: a hierarchy the join writes to
            self.path = str(_v1_dir(root, own, "memory", own["memory"]) / "cgroup.procs")
        else:
            self.path = str(root / own.get("", "/").lstrip("/") / "cgroup.procs")
        self.period, self.limit = period, limit
        self.writes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cgroup-warmup", daemon=True)

    def start(self) -> MigrationWarmup:
        self._thread.start()
        return self

    def _run(self) -> None:
        pid = str(os.getpid()).encode()
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)
            except OSError:
                return
            self.writes += 1
            self._stop.wait(self.period)

    def stop(self) -> None:
        """Stop, and wait for a write in flight (after this, no thread of ours is running)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def open_cgroup(name: str, limits: Limits, *, parent: str = "", echo: Callable[[str], None] | None = None,
                root: Path = CGROUP_ROOT) -> CgroupV1 | CgroupV2:
    """The manager for this host's cgroup version."""
    cls = CgroupV2 if detect(root) == 2 else CgroupV1
    return cls(name, limits, parent=parent, root=root, echo=echo)
