"""The intermediate process between the creator and the container's PID 1: it unshares the new
namespaces, forks PID 1 into them (CLONE_NEWPID applies to children only), reports its pid and exits,
so that PID 1 is reparented to the creator, a subreaper (or, under a shim or a monitor, to them)."""

from __future__ import annotations

import contextlib
import os

from ocibox import errors
from ocibox.run._init import InitArgs, init


def report(fd: int, e: BaseException) -> int:
    """Send ``e`` to the creator on the setup pipe; return the exit code for this process."""
    line, code = errors.to_wire(e, "container setup failed: ")
    with contextlib.suppress(OSError):
        os.write(fd, line)
    return code


def intermediate(args: InitArgs, new_net: bool) -> None:  # pragma: no cover - runs in the forked child
    """Never returns. The cgroup namespace is unshared later, by PID 1, once the creator has moved it
    into its cgroup: the new namespace is rooted at the cgroup the process is in when it unshares."""
    k = args.kernel
    code = 125
    try:
        k.unshare(k.CLONE_NEWNS | k.CLONE_NEWUTS | k.CLONE_NEWIPC | k.CLONE_NEWPID | (k.CLONE_NEWNET if new_net else 0))
        pid = os.fork()
        if pid == 0:
            try:
                init(args)
            except BaseException as e:
                code = report(args.setup, e)
            os._exit(code)
        os.write(args.setup, f"P{pid}\n".encode())
        os._exit(0)
    except BaseException as e:
        code = report(args.setup, e)
    os._exit(code)
