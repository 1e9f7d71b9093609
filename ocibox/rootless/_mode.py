"""The mode: whether ocibox runs without root. Asked by every command (where the store is, which
config file, how overlay marks whiteouts), so it imports nothing but the seam: one read of uid_map."""

from __future__ import annotations

import os

from ocibox.linux.proc import initial_userns


def is_rootless() -> bool:
    """ocibox runs without root: not uid 0, or uid 0 of a user namespace (not the host's root)."""
    return os.geteuid() != 0 or not initial_userns()


def in_userns() -> bool:
    """This process is root of a user namespace of its own already (``ocibox unshare``, ``enter``)."""
    return os.geteuid() == 0 and not initial_userns()
