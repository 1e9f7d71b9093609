"""``MigrationWarmup``: pay the cgroup join's fixed cost early, in the background."""

from __future__ import annotations

import _thread
import os
import time
from pathlib import Path

from ocibox.cgroups._base import CGROUP_ROOT
from ocibox.linux import proc


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
        from ocibox.cgroups._manager import v1_dir

        own = proc.parse_cgroup(proc.cgroup_text() if proc_cgroup is None else proc_cgroup)
        memory = own.paths.get("memory")
        if memory is not None:  # v1 and hybrid: a hierarchy the join writes to
            self.path = str(v1_dir(root, own, "memory", memory) / "cgroup.procs")
        else:
            self.path = str(root / (own.unified or "/").lstrip("/") / "cgroup.procs")
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
