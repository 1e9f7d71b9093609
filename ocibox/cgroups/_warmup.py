"""``MigrationWarmup``: pay the cgroup join's fixed cost early, in the background."""

from __future__ import annotations

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
        import threading

        from ocibox.cgroups._manager import v1_dir

        own = proc.parse_cgroup(proc.cgroup_text() if proc_cgroup is None else proc_cgroup)
        memory = own.paths.get("memory")
        if memory is not None:  # v1 and hybrid: a hierarchy the join writes to
            self.path = str(v1_dir(root, own, "memory", memory) / "cgroup.procs")
        else:
            self.path = str(root / (own.unified or "/").lstrip("/") / "cgroup.procs")
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
