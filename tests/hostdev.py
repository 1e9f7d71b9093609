"""The host's device nodes as the device tests need them."""

from __future__ import annotations

import os
import stat

import pytest


def host_block_device() -> str:
    """A block device node the host's root can open (on these machines even root cannot open /dev/vda:
    a node the host refuses would prove nothing about a container or a cgroup); skips without one."""
    for name in sorted(os.listdir("/dev")):
        p = f"/dev/{name}"
        if stat.S_ISBLK(os.stat(p).st_mode):
            try:
                os.close(os.open(p, os.O_RDONLY))
            except OSError:
                continue
            return p
    pytest.skip("no block device under /dev that the host can open")
    raise AssertionError  # unreachable
