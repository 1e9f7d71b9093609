"""What both cgroup versions share: the limits, the interface, the writer every write goes through
(``--debug`` echoes it), and creating and removing cgroup directories."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from ocibox._contextlib import suppress
from ocibox._record import record
from ocibox.cgroups._devices import Device
from ocibox.errors import CgroupError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable
else:
    import _signal as signal  # not signal: its Signals enum imports enum (~3 ms of a run)

CGROUP_ROOT = Path("/sys/fs/cgroup")


@record
class Limits:
    """Cgroup limits. 0 means "not set"; -1 means unlimited where docker allows it."""

    memory: int = 0  # bytes
    memory_swap: int = 0  # bytes of memory + swap (docker's --memory-swap); -1 unlimited
    cpu_quota: int = 0  # microseconds per cpu_period
    cpu_period: int = 100_000
    cpu_shares: int = 0
    pids: int = 0  # -1 unlimited
    cpuset: str = ""
    # the rest of the runtime spec's linux.resources, as (what, value) pairs that each manager writes to
    # its own files ("memory.reservation", "blkio.weight", "blkio.throttle.read_bps_device" with
    # "MAJ:MIN RATE", "hugetlb.2MB", "unified:<file>", ...): see ocibox.cgroups._resources
    extra: tuple[tuple[str, str], ...] = ()


def needs(controller: str, lim: Limits) -> bool:
    """Whether ``lim`` asks for something only ``controller`` can give."""
    return {
        "memory": bool(lim.memory or lim.memory_swap),
        "cpu": bool(lim.cpu_quota or lim.cpu_shares),
        "pids": bool(lim.pids),
        "cpuset": bool(lim.cpuset),
    }.get(controller, False)


def detect(root: Path = CGROUP_ROOT) -> int:
    """2 on a pure cgroup-v2 host (cgroup2 mounted at the root), else 1 (v1 and hybrid)."""
    return 2 if (root / "cgroup.controllers").exists() else 1


def cpu_weight(shares: int) -> int:
    """cpu.shares (2..262144) to cpu.weight (1..10000), as runc and crun convert it."""
    return max(1, min(10000, 1 + ((shares - 2) * 9999) // 262142))


class Cgroup:
    """The interface of a container's cgroup, the same for v1 and v2 (youki's ``CgroupManager``).

    Order of use: ``create()`` (directories, controllers enabled), ``apply(limits)`` (limits and device
    rules, before any process is in it), ``join(pid)``, then ``oom_kills()``/``procs()`` while it runs
    and ``destroy()`` (kills what is left, removes every directory; returns problems as lines).
    ``devices_fallback`` is True when no device rules could be enforced by the kernel (a v2 host without
    eBPF, a v1 host without the devices hierarchy): the runner then holds devices by other means.
    """

    version = 0
    devices_fallback = False
    limits: Limits
    rules: tuple[Device, ...] | None  # the device allow list; None: no restriction
    path = ""  # where it is, as config.json's cgroupsPath writes it (from the hierarchy's root)

    def create(self) -> None:
        raise NotImplementedError

    def apply(self, limits: Limits) -> None:
        raise NotImplementedError

    def join(self, pid: int, *, self_joined: bool = False) -> None:
        """Move process ``pid`` into the cgroup; ``self_joined``: only where ``self_join_files()``
        did not (the process wrote to those itself)."""
        raise NotImplementedError

    def self_join_files(self) -> list[str]:
        """The files through which a single-threaded process moves itself in, by writing "0" to each:
        v1's ``tasks``. A thread that moves itself takes no global lock, where a move by pid takes the
        kernel's ``cgroup_threadgroup_rwsem`` for writing, whose first writer after a pause waits for an
        RCU grace period (5 to 40 ms here: the longest step of a warm ``ocibox run``, which runc and crun
        pay too). Empty where a process can only be moved by pid (v2's ``cgroup.procs``)."""
        return []

    def join_self(self) -> None:
        """Move the calling process (single-threaded: a forked child) in: through ``self_join_files()``
        where it can, by its pid elsewhere."""
        for path in self.self_join_files():
            Writer(None)(Path(path), 0, "the join")
        self.join(os.getpid(), self_joined=True)

    def container_mounts(self) -> list[tuple[str, str, str]]:
        """(fstype, subdirectory of /sys/fs/cgroup, mount data) of the container's cgroup mounts."""
        raise NotImplementedError

    def oom_kills(self) -> int:
        raise NotImplementedError

    def procs(self) -> list[int]:
        """Pids of every process in the cgroup."""
        raise NotImplementedError

    def destroy(self) -> list[str]:
        raise NotImplementedError

    def freeze(self, frozen: bool) -> None:
        """Pause (freeze) or resume every process of the cgroup; waits until the kernel says it is."""
        raise NotImplementedError

    def frozen(self) -> bool:
        raise NotImplementedError

    def stats(self) -> dict[str, int]:
        """memory_usage, memory_limit (0: none), memory_cache, cpu_usage_ns, pids."""
        raise NotImplementedError

    def state(self) -> dict[str, object]:
        """What ``reopen`` needs to manage this cgroup from another process (JSON-able)."""
        raise NotImplementedError

    def kill_all(self, sig: int) -> None:
        """A signal to every process of the cgroup (runc's kill --all)."""
        for pid in self.procs():
            with suppress(OSError):
                os.kill(pid, sig)

    @property
    def notes(self) -> list[str]:
        """What was set up, for --debug."""
        return []


class Writer:
    """Writes one value to one control file; a failure is a CgroupError naming the limit."""

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


def make_dir(path: Path) -> None:
    try:
        path.mkdir()
    except FileExistsError:
        raise CgroupError(f"cgroup {path} already exists; remove it (rmdir) or choose another container") from None
    except OSError as e:
        raise CgroupError(f"cannot create cgroup {path}: {e.strerror}; pass --cgroup-parent to place it "
                          "somewhere writable") from None


def read_procs(d: Path) -> list[int]:
    try:
        return [int(p) for p in (d / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def kill_procs(d: Path) -> None:
    for pid in read_procs(d):
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def remove_dirs(paths: list[Path], kill: Callable[[Path], None]) -> list[str]:
    """Remove cgroup dirs (deepest first), killing what is left; retry while tasks exit."""
    problems = []
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
                    problems.append(f"cannot remove cgroup {p}: {e.strerror}")
                    break
                kill(p)
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
    return problems


def counter(path: Path, key: str) -> int:
    """A ``key value`` line of a flat-keyed control file (memory.events, memory.oom_control), 0 if absent."""
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
    except (OSError, ValueError):
        pass
    return 0
