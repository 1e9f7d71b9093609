"""The two cgroup managers: ``CgroupV1`` (one directory per hierarchy) and ``CgroupV2`` (one directory in
the unified hierarchy), and ``open_cgroup``, which picks the one of this host.

The container's cgroup is created below the caller's own cgroup (read from /proc/self/cgroup), or
below ``--cgroup-parent``, as runc and podman do when given no path. Each controller is a small function
writing its files; a limit that cannot be written raises CgroupError and is never dropped.
"""

from __future__ import annotations

from pathlib import Path

from ocibox.cgroups._base import (
    CGROUP_ROOT,
    Cgroup,
    Limits,
    Writer,
    counter,
    cpu_weight,
    detect,
    kill_procs,
    make_dir,
    needs,
    read_procs,
    remove_dirs,
)
from ocibox.cgroups._devices import V2_FALLBACK, Device, attach_v2, write_v1
from ocibox.errors import CgroupError
from ocibox.linux import proc

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


# ---------------------------------------------------------------------- v1
def _v1_memory(w: Writer, d: Path, lim: Limits) -> None:
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


def _v1_cpu(w: Writer, d: Path, lim: Limits) -> None:
    if lim.cpu_quota:
        w(d / "cpu.cfs_period_us", lim.cpu_period, "--cpus")
        w(d / "cpu.cfs_quota_us", lim.cpu_quota, "--cpus")
    if lim.cpu_shares:
        w(d / "cpu.shares", lim.cpu_shares, "--cpu-shares")


def _v1_pids(w: Writer, d: Path, lim: Limits) -> None:
    if lim.pids:
        w(d / "pids.max", "max" if lim.pids < 0 else lim.pids, "--pids-limit")


def _v1_cpuset(w: Writer, d: Path, lim: Limits) -> None:
    # A new v1 cpuset has empty cpus and mems: nothing can join it until both are set, and a parent made
    # for the cgroupsPath is as empty: fill them top-down from the nearest ancestor that has them (runc's).
    for f in ("cpuset.mems", "cpuset.cpus"):
        chain = [d]
        while not (chain[-1] / f).read_text().strip() and (chain[-1].parent / f).exists():
            chain.append(chain[-1].parent)
        value = (chain[-1] / f).read_text().strip() or "0"
        for x in reversed(chain[:-1]):
            w(x / f, value)
    if lim.cpuset:
        w(d / "cpuset.cpus", lim.cpuset, "--cpuset-cpus")


_V1 = {"memory": _v1_memory, "cpu": _v1_cpu, "pids": _v1_pids, "cpuset": _v1_cpuset}

_V1_EXTRA = {
    "memory.reservation": ("memory", "memory.soft_limit_in_bytes"), "memory.swappiness": ("memory", "memory.swappiness"),
    "memory.disable_oom_killer": ("memory", "memory.oom_control"), "cpu.rt_runtime": ("cpu", "cpu.rt_runtime_us"),
    "cpu.rt_period": ("cpu", "cpu.rt_period_us"), "cpu.burst": ("cpu", "cpu.cfs_burst_us"),
    "cpuset.mems": ("cpuset", "cpuset.mems"), "blkio.weight": ("blkio", "blkio.weight"),
    "blkio.leaf_weight": ("blkio", "blkio.leaf_weight"), "blkio.weight_device": ("blkio", "blkio.weight_device"),
}


def v1_extra(what: str) -> tuple[str, str]:
    """(controller, file) of one of Limits.extra's keys on cgroup v1; CgroupError if v1 has none."""
    if what in _V1_EXTRA:
        return _V1_EXTRA[what]
    if what.startswith("blkio.throttle."):
        return "blkio", what
    if what.startswith("hugetlb."):
        return "hugetlb", f"{what}.limit_in_bytes"
    raise CgroupError(f"linux.resources: {what.replace('unified:', 'unified ')} needs cgroup v2; this host "
                      "runs cgroup v1 (runc refuses it too)")


def v1_dir(root: Path, own: proc.CgroupMembership, controller: str, path: str) -> Path:
    """``path`` in the v1 hierarchy of ``controller`` (mounted under the name of its controllers,
    "cpu,cpuacct", or of the controller alone)."""
    hier = own.hierarchies[controller]
    base = root / hier if (root / hier).is_dir() else root / controller
    return base / path.lstrip("/")


class CgroupV1(Cgroup):
    """One child cgroup ``<name>`` in each v1 hierarchy ocibox uses (memory, cpu, pids, cpuset when
    asked for, and devices when device rules are given)."""

    version = 1

    def __init__(self, name: str, limits: Limits, *, parent: str = "", root: Path = CGROUP_ROOT,
                 proc_cgroup: str | None = None, echo: Callable[[str], None] | None = None,
                 devices: Iterable[Device] | None = None, every: bool = False) -> None:
        self.limits = limits
        self.w = Writer(echo)
        self.rules = tuple(devices) if devices is not None else None
        own = proc.parse_cgroup(proc.cgroup_text() if proc_cgroup is None else proc_cgroup)
        wanted = ["memory", "cpu", "pids", "freezer"] + (["cpuset"] if limits.cpuset else [])
        if self.rules is not None:
            wanted.append("devices")
        for what, _ in limits.extra:
            c = v1_extra(what)[0]
            if c not in wanted:
                wanted.append(c)
        if every:
            # runc's placement (ocibox-runtime): a cgroup in every hierarchy, named ones included, so
            # that the container's view and tools that read /proc/PID/cgroup see runc's layout.
            wanted += [c for c in own.paths if c not in wanted]
        self.dirs: dict[str, Path] = {}
        self.hier: dict[str, str] = {}
        self.created: list[Path] = []
        self._notes: list[str] = []
        for c in wanted:
            own_path = own.paths.get(c)
            if own_path is None:
                if needs(c, limits):
                    raise CgroupError(f"the {c} cgroup controller is not mounted on this host; drop the {c} limit")
                if c == "devices":
                    self.devices_fallback = True
                    self._notes.append(f"devices: no devices hierarchy; {V2_FALLBACK}")
                continue
            self.hier[c] = own.hierarchies[c]
            self.dirs[c] = v1_dir(root, own, c, parent or own_path) / name
            self.path = self.path or "/" + str(Path((parent or own_path).lstrip("/")) / name)
        if every and own.unified is not None and (root / "unified" / "cgroup.procs").exists():
            # a hybrid host's cgroup2 mount (no controllers): joined too, as runc does; never mounted inside
            self.dirs["unified"] = root / "unified" / (parent or own.unified).lstrip("/") / name

    def create(self) -> None:
        for d in self.dirs.values():
            d.parent.mkdir(parents=True, exist_ok=True)
            make_dir(d)
            self.created.append(d)

    def apply(self, limits: Limits) -> None:
        for c, d in self.dirs.items():
            if c == "devices":
                if self.rules is None:
                    continue  # reopened to update limits: the rules stay as they were written
                write_v1(str(d), self.rules)
                self._notes.append(f"devices: v1 cgroup {d}: deny a, allow {len(self.rules)} rules")
            elif c in _V1:
                _V1[c](self.w, d, limits)
        for what, value in limits.extra:
            c, name = v1_extra(what)
            if c not in self.dirs:
                raise CgroupError(f"linux.resources: {what} needs the {c} cgroup controller, not mounted here")
            self.w(self.dirs[c] / name, value, f"linux.resources {what}")

    def freeze(self, frozen: bool) -> None:
        d = self.dirs.get("freezer")
        if d is None:
            raise CgroupError("the freezer cgroup controller is not mounted on this host: cannot pause")
        self.w(d / "freezer.state", "FROZEN" if frozen else "THAWED", "pause")
        _wait_for(lambda: (d / "freezer.state").read_text().strip() == ("FROZEN" if frozen else "THAWED"),
                  f"the freezer of {d}")

    def frozen(self) -> bool:
        d = self.dirs.get("freezer")
        try:
            return d is not None and (d / "freezer.state").read_text().strip() != "THAWED"
        except OSError:
            return False

    def stats(self) -> dict[str, int]:
        out: dict[str, int] = {}
        m, c, p = self.dirs.get("memory"), self.dirs.get("cpu"), self.dirs.get("pids")
        if m is not None:
            out["memory_usage"] = _read_int(m / "memory.usage_in_bytes")
            out["memory_limit"] = _read_int(m / "memory.limit_in_bytes")
            out["memory_cache"] = counter(m / "memory.stat", "total_inactive_file")
        if c is not None:
            out["cpu_usage_ns"] = _read_int(c / "cpuacct.usage")
        if p is not None:
            out["pids"] = _read_int(p / "pids.current")
        return out

    def state(self) -> dict[str, object]:
        return {"version": 1, "dirs": {c: str(d) for c, d in self.dirs.items()}, "hier": self.hier, "path": self.path}

    def join(self, pid: int, *, self_joined: bool = False) -> None:
        for c, d in self.dirs.items():
            if not (self_joined and c != "unified"):
                self.w(d / "cgroup.procs", pid)

    def self_join_files(self) -> list[str]:
        # every v1 hierarchy has a tasks file; a hybrid host's cgroup2 mount ("unified") has none
        return [str(d / "tasks") for c, d in self.dirs.items() if c != "unified"]

    def container_mounts(self) -> list[tuple[str, str, str]]:
        seen = []
        for h in self.hier.values():
            if h not in seen:
                seen.append(h)
        # a named hierarchy ("name=systemd") is mounted at its name, as runc does
        return [("cgroup", h.removeprefix("name="), h) for h in seen]

    def oom_kills(self) -> int:
        d = self.dirs.get("memory")
        return counter(d / "memory.oom_control", "oom_kill") if d else 0

    def procs(self) -> list[int]:
        d = self.dirs.get("pids") or self.dirs.get("memory") or next(iter(self.dirs.values()), None)
        return read_procs(d) if d is not None else []

    @property
    def notes(self) -> list[str]:
        return self._notes

    def destroy(self) -> list[str]:
        return remove_dirs(list(reversed(self.created)), kill_procs)


# ---------------------------------------------------------------------- v2
def _v2_memory(w: Writer, d: Path, lim: Limits) -> None:
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


def _v2_cpu(w: Writer, d: Path, lim: Limits) -> None:
    if lim.cpu_quota:
        w(d / "cpu.max", f"{lim.cpu_quota} {lim.cpu_period}", "--cpus")
    if lim.cpu_shares:
        w(d / "cpu.weight", cpu_weight(lim.cpu_shares), "--cpu-shares")


def _v2_pids(w: Writer, d: Path, lim: Limits) -> None:
    if lim.pids:
        w(d / "pids.max", "max" if lim.pids < 0 else lim.pids, "--pids-limit")


def _v2_cpuset(w: Writer, d: Path, lim: Limits) -> None:
    if lim.cpuset:
        w(d / "cpuset.cpus", lim.cpuset, "--cpuset-cpus")


_V2 = {"memory": _v2_memory, "cpu": _v2_cpu, "pids": _v2_pids, "cpuset": _v2_cpuset}
_IO_MAX = {"read_bps_device": "rbps", "write_bps_device": "wbps", "read_iops_device": "riops",
           "write_iops_device": "wiops"}


def v2_extra(what: str, value: str) -> tuple[str, str, str]:
    """(controller, file, value) of one of Limits.extra's pairs on cgroup v2 (runc's conversions)."""
    if what.startswith("unified:"):
        name = what.removeprefix("unified:")
        return name.split(".")[0], name, value
    if what == "memory.reservation":
        return "memory", "memory.low", value
    if what == "cpu.idle":
        return "cpu", "cpu.idle", value
    if what == "cpu.burst":
        return "cpu", "cpu.max.burst", value
    if what == "cpuset.mems":
        return "cpuset", "cpuset.mems", value
    if what in ("blkio.weight", "blkio.weight_device"):
        dev, _, w = value.rpartition(" ")
        weight = 1 + (int(w) - 10) * 9999 // 990  # blkio's 10..1000 onto io's 1..10000 (runc's)
        return "io", "io.weight", f"{dev} {weight}".strip() if dev else f"default {weight}"
    if what.startswith("blkio.throttle."):
        dev, _, rate = value.partition(" ")
        return "io", "io.max", f"{dev} {_IO_MAX[what.removeprefix('blkio.throttle.')]}={rate}"
    if what.startswith("hugetlb."):
        return "hugetlb", f"{what}.max", value
    raise CgroupError(f"linux.resources: {what} has no cgroup v2 equivalent (v1 only); remove it")


class CgroupV2(Cgroup):
    """``<parent>/<name>`` in the unified hierarchy, with the controllers ocibox uses enabled, and the
    device rules as an eBPF program attached to it."""

    version = 2

    def __init__(self, name: str, limits: Limits, *, parent: str = "", root: Path = CGROUP_ROOT,
                 proc_cgroup: str | None = None, echo: Callable[[str], None] | None = None,
                 devices: Iterable[Device] | None = None) -> None:
        self.limits = limits
        self.w = Writer(echo)
        self.root = root
        self.rules = tuple(devices) if devices is not None else None
        own = proc.parse_cgroup(proc.cgroup_text() if proc_cgroup is None else proc_cgroup)
        self.parent = root / (parent or own.unified or "/").lstrip("/")
        self.dir = self.parent / name
        self.path = "/" + str(self.dir.relative_to(root))
        self.controllers = ["memory", "cpu", "pids"] + (["cpuset"] if limits.cpuset else [])
        for what, value in limits.extra:
            c = v2_extra(what, value)[0]
            if c not in self.controllers:
                self.controllers.append(c)
        self.created = False
        self._notes: list[str] = []

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
            if c not in usable and needs(c, self.limits):
                raise CgroupError(f"the {c} controller is not available in cgroup {self.parent} "
                                  "(cgroup.controllers); enable it in its parent's cgroup.subtree_control")
        make_dir(self.dir)
        self.created = True

    def apply(self, limits: Limits) -> None:
        for c in self.controllers:
            if c in _V2:
                _V2[c](self.w, self.dir, limits)
        for what, value in limits.extra:
            _, name, text = v2_extra(what, value)
            self.w(self.dir / name, text, f"linux.resources {what}")
        if self.rules is not None:
            # Before any process is in the cgroup. Where the program cannot be attached, runc and crun
            # fail; ocibox keeps the container held by other means (V2_FALLBACK) and says so.
            try:
                attach_v2(str(self.dir), self.rules)
                self._notes.append(f"devices: eBPF program on {self.dir}")
            except CgroupError as e:
                self.devices_fallback = True
                self._notes.append(f"{e}; {V2_FALLBACK}")

    def join(self, pid: int, *, self_joined: bool = False) -> None:
        self.w(self.dir / "cgroup.procs", pid)

    def container_mounts(self) -> list[tuple[str, str, str]]:
        return [("cgroup2", "", "")]

    def freeze(self, frozen: bool) -> None:
        self.w(self.dir / "cgroup.freeze", "1" if frozen else "0", "pause")
        _wait_for(lambda: counter(self.dir / "cgroup.events", "frozen") == int(frozen), f"the freeze of {self.dir}")

    def frozen(self) -> bool:
        return counter(self.dir / "cgroup.events", "frozen") == 1

    def stats(self) -> dict[str, int]:
        d = self.dir
        limit = (d / "memory.max").read_text().strip() if (d / "memory.max").exists() else "max"
        return {"memory_usage": _read_int(d / "memory.current"),
                "memory_limit": 0 if limit == "max" else int(limit),
                "memory_cache": counter(d / "memory.stat", "inactive_file"),
                "cpu_usage_ns": counter(d / "cpu.stat", "usage_usec") * 1000,
                "pids": _read_int(d / "pids.current")}

    def state(self) -> dict[str, object]:
        return {"version": 2, "dir": str(self.dir), "path": self.path}

    def oom_kills(self) -> int:
        return counter(self.dir / "memory.events", "oom_kill")

    def procs(self) -> list[int]:
        return read_procs(self.dir)

    @property
    def notes(self) -> list[str]:
        return self._notes

    def destroy(self) -> list[str]:
        if not self.created:
            return []

        def kill(d: Path) -> None:
            try:
                (d / "cgroup.kill").write_text("1")
            except OSError:
                kill_procs(d)

        return remove_dirs([self.dir], kill)


def open_cgroup(name: str, limits: Limits, *, parent: str = "", echo: Callable[[str], None] | None = None,
                root: Path = CGROUP_ROOT, devices: Iterable[Device] | None = None, every: bool = False,
                rootless: bool | None = None) -> Cgroup:
    """The manager for this host's cgroup version. ``devices``: the allow list to enforce (None: no
    device rules, e.g. --privileged). ``every`` (v1): a cgroup in every hierarchy, as runc makes.
    Without root (``rootless``; None: as this process runs) see ``rootless_cgroup``."""
    if rootless is None:
        from ocibox.rootless import is_rootless

        rootless = is_rootless()
    if rootless:
        return rootless_cgroup(name, limits, parent=parent, echo=echo, root=root)
    if detect(root) == 2:
        return CgroupV2(name, limits, parent=parent, root=root, echo=echo, devices=devices)
    return CgroupV1(name, limits, parent=parent, root=root, echo=echo, devices=devices, every=every)


# ---------------------------------------------------------------------- without root
class NoCgroup(Cgroup):
    """A container without a cgroup of its own (a user without a delegated cgroup, and no limits asked
    for): it stays in the cgroup of the user's process that made it. Nothing to create or remove;
    what needs a cgroup (pause, stats) says so."""

    version = 0

    def __init__(self, limits: Limits | None = None, pid: int = 0) -> None:
        self.limits, self.rules, self.pid = limits or Limits(), None, pid

    def create(self) -> None:
        pass

    def apply(self, limits: Limits) -> None:
        if any(needs(c, limits) for c in ("memory", "cpu", "pids", "cpuset")):
            raise CgroupError(NO_DELEGATION)

    def join(self, pid: int, *, self_joined: bool = False) -> None:
        self.pid = pid

    def container_mounts(self) -> list[tuple[str, str, str]]:
        return []

    def oom_kills(self) -> int:
        return 0

    def procs(self) -> list[int]:
        """PID 1 and the processes of its pid namespace this user may see."""
        import os

        if not self.pid:
            return []
        try:
            ns = os.readlink(f"/proc/{self.pid}/ns/pid")
        except OSError:
            return []
        out = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    if os.readlink(f"/proc/{name}/ns/pid") == ns:
                        out.append(int(name))
                except OSError:
                    continue
        return out

    def destroy(self) -> list[str]:
        return []

    def freeze(self, frozen: bool) -> None:
        raise CgroupError(f"{'pause' if frozen else 'unpause'} needs the container's own cgroup, which a user "
                          f"without root has only on cgroup v2 with a delegated cgroup: {NO_DELEGATION_HOW}")

    def frozen(self) -> bool:
        return False

    def stats(self) -> dict[str, int]:
        return {"memory_usage": 0, "memory_limit": 0, "memory_cache": 0, "cpu_usage_ns": 0, "pids": len(self.procs())}

    def state(self) -> dict[str, object]:
        return {"version": 0, "pid": self.pid}


NO_DELEGATION_HOW = ("on cgroup v2, delegate a cgroup to the user (systemd: Delegate=yes, as user@UID.service "
                     "has; or chown a cgroup directory and its cgroup.procs, cgroup.subtree_control and "
                     "cgroup.threads to the user, with the controllers enabled in its parent) and run ocibox from "
                     "a process inside it, or pass --cgroup-parent naming it")
NO_DELEGATION = ("cgroup limits need a cgroup of the container's own, and a user without root can make one only "
                 f"below a cgroup v2 directory delegated to them: {NO_DELEGATION_HOW}; or run as root, or drop "
                 "the limits")


def _owned(d: Path) -> bool:
    import os

    try:
        return d.stat().st_uid == os.geteuid() and os.access(d / "cgroup.procs", os.W_OK)
    except OSError:
        return False


def delegated_root(root: Path = CGROUP_ROOT, proc_cgroup: str | None = None) -> Path | None:
    """The top of the cgroup v2 subtree delegated to this user that holds this process (the highest
    ancestor of its cgroup that is the user's), None when there is none (v1, or not delegated)."""
    if detect(root) != 2:
        return None
    own = proc.parse_cgroup(proc.cgroup_text() if proc_cgroup is None else proc_cgroup)
    d = root / (own.unified or "/").lstrip("/")
    if d == root or not _owned(d):
        return None
    while d.parent != root and _owned(d.parent):
        d = d.parent
    return d


def rootless_cgroup(name: str, limits: Limits, *, parent: str = "", echo: Callable[[str], None] | None = None,
                    root: Path = CGROUP_ROOT, proc_cgroup: str | None = None) -> Cgroup:
    """The cgroup of a container of a user without root: on cgroup v2, below the cgroup delegated to
    the user (``--cgroup-parent``, else the delegated subtree this process is in) with the limits
    applied as for root; without one (cgroup v1 as on hybrid hosts, v2 without delegation) none at all
    (``NoCgroup``), and a requested limit is a RootlessError saying why and what to do. No device
    rules: in a user namespace no device node can be made, the host's are bound."""
    from ocibox.errors import RootlessError

    asked = any(needs(c, limits) for c in ("memory", "cpu", "pids", "cpuset"))
    if detect(root) != 2:
        if asked:
            raise RootlessError("this host has cgroup v1 (or hybrid) cgroups, where only root can make a cgroup: "
                                f"{NO_DELEGATION}")
        return NoCgroup(limits)
    if parent:
        top = root / parent.lstrip("/")
        probe = top
        while not probe.exists() and probe != root:
            probe = probe.parent
        if probe == root or not _owned(probe):
            if asked:
                raise RootlessError(f"--cgroup-parent {parent}: not a cgroup delegated to you. {NO_DELEGATION}")
            return NoCgroup(limits)
        rel = "/" + str(top.relative_to(root))
    else:
        found = delegated_root(root, proc_cgroup)
        if found is None:
            if asked:
                raise RootlessError(f"this process is in no cgroup v2 subtree delegated to you: {NO_DELEGATION}")
            return NoCgroup(limits)
        rel = "/" + str(found.relative_to(root))
    return CgroupV2(name, limits, parent=rel, root=root, echo=echo, devices=None, proc_cgroup=proc_cgroup)


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _wait_for(done: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise CgroupError(f"{what} did not settle in {timeout:g} s")
        time.sleep(0.002)


def reopen(state: dict[str, object]) -> Cgroup:
    """The manager of a container's existing cgroup, from what ``Cgroup.state()`` recorded (for the
    verbs that manage a container after its creator has gone: stop, pause, stats, rm, cleanup)."""
    cg: Cgroup
    if state.get("version") == 0:
        pid = state.get("pid", 0)
        return NoCgroup(pid=pid if isinstance(pid, int) else 0)
    if state.get("version") == 2:
        v2 = CgroupV2.__new__(CgroupV2)
        v2.dir = Path(str(state["dir"]))
        v2.parent, v2.root, v2.created = v2.dir.parent, CGROUP_ROOT, True
        v2.controllers = ["memory", "cpu", "pids", "cpuset"]
        cg = v2
    else:
        v1 = CgroupV1.__new__(CgroupV1)
        dirs = state.get("dirs") or {}
        hier = state.get("hier") or {}
        assert isinstance(dirs, dict) and isinstance(hier, dict)
        v1.dirs = {str(c): Path(str(d)) for c, d in dirs.items()}
        v1.hier = {str(c): str(h) for c, h in hier.items()}
        v1.created = list(v1.dirs.values())
        v1._notes = []
        cg = v1
    cg.limits, cg.rules, cg.w, cg.path = Limits(), None, Writer(None), str(state.get("path", ""))
    return cg


def own_v1_dir(controller: str, parent: str = "", root: Path = CGROUP_ROOT) -> Path | None:
    """This process's cgroup directory in the v1 hierarchy of ``controller`` (or ``parent`` there, a
    path from the hierarchy's root, as --cgroup-parent), None when that hierarchy is not mounted."""
    own = proc.cgroup()
    path = own.paths.get(controller)
    if path is None or detect(root) == 2:
        return None
    return v1_dir(root, own, controller, parent or path)
