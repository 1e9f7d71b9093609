"""``MigrationWarmup``: pay the cgroup join's fixed cost early, in the background."""

from __future__ import annotations

import _thread
import os
import time

from ocibox.linux import proc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

#: the cgroup mount (a string: this module is imported before anything else of a run, pathlib included)
ROOT = "/sys/fs/cgroup"
#: the verbs (with ``container`` before them or not) whose process joins a container's cgroups
JOINING = frozenset({"run", "exec"})
#: the global options that take a value (the CLI's GLOBAL_OPTIONS; a unit test holds the two together)
VALUE_OPTIONS = ("--root", "--insecure-registry")


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

    def __init__(self, proc_cgroup: str | None = None, root: str | Path = ROOT, period: float = 0.004,
                 limit: float = 2.0) -> None:
        own = proc.parse_cgroup(proc.cgroup_text() if proc_cgroup is None else proc_cgroup)
        memory = own.paths.get("memory")
        if memory is not None:  # v1 and hybrid: a hierarchy the join writes to (as cgroups.v1_dir finds it)
            hier = os.path.join(root, own.hierarchies["memory"])
            base = hier if os.path.isdir(hier) else os.path.join(root, "memory")
            self.path = os.path.join(base, memory.lstrip("/"), "cgroup.procs")
        else:
            self.path = os.path.join(root, (own.unified or "/").lstrip("/"), "cgroup.procs")
        self.period, self.limit = period, limit
        self.writes = 0
        # A bare _thread (threading's import is ~1 ms of every run): ``_wake`` is held until stop()
        # releases it (the thread's sleep between writes is a timed acquire of it), ``_running`` is held
        # by the thread while it lives (stop() waits on it, as a join).
        self._wake = _thread.allocate_lock()
        self._wake.acquire()
        self._running = _thread.allocate_lock()
        self._stopped = False

    def start(self) -> MigrationWarmup:
        self._running.acquire()
        try:
            _thread.start_new_thread(self._run, ())
        except BaseException:
            self._running.release()
            raise
        return self

    def _run(self) -> None:
        try:
            pid = str(os.getpid()).encode()
            deadline = time.monotonic() + self.limit
            while not self._stopped and time.monotonic() < deadline:
                try:
                    fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
                    try:
                        os.write(fd, pid)
                    finally:
                        os.close(fd)
                except OSError:
                    return
                self.writes += 1
                if self._wake.acquire(timeout=self.period):
                    return  # stop()
        finally:
            self._running.release()

    def join(self, timeout: float = -1) -> bool:
        """Wait (up to ``timeout`` s) until the thread has ended by itself; True if it has."""
        if not self._running.acquire(timeout=timeout):
            return False
        self._running.release()
        return True

    @property
    def alive(self) -> bool:
        return self._running.locked()

    def stop(self) -> None:
        """Stop, and wait for a write in flight (after this, no thread of ours is running)."""
        if not self._stopped:
            self._stopped = True
            self._wake.release()
        with self._running:  # the thread's end (at once if it never started or has ended)
            pass


_early: list[MigrationWarmup] = []  # the one warm_for started, until a verb takes it


def warm_for(argv: Sequence[str]) -> None:
    """Start the warmup at once when the command line is a verb that joins a container's cgroups
    (``JOINING``) by pid (``needed()``): the entry points call it before they import the CLI, ~7 ms
    sooner than the verb itself could. The grace period takes 7-12 ms (up to 40 on a busy host) from
    the first write, and ``run`` forks about 20 ms after its interpreter starts. Global options before
    the verb are skipped (``--root PATH``...); anything else is left alone."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in VALUE_OPTIONS else 1
    words = argv[i:i + 2]
    if words[:1] == ["container"]:
        words = words[1:]
    if words[:1] and words[0] in JOINING and needed():
        _early.append(MigrationWarmup().start())


def needed(root: str = ROOT) -> bool:
    """Whether a container's join moves processes by pid: on a pure v2 host, and without root (a
    delegated v2 cgroup). As root on v1 and hybrid hosts they move themselves in, without the lock
    (Cgroup.self_join_files), and there is nothing to warm up."""
    return os.geteuid() != 0 or os.path.exists(os.path.join(root, "cgroup.controllers"))


def warmup() -> MigrationWarmup | None:
    """The warmup ``warm_for`` started for this command, else a new one where ``needed()``, else None."""
    if _early:
        return _early.pop()
    return MigrationWarmup().start() if needed() else None
