"""The one warning of rootless mode: a user without subordinate ids gets a single-id map."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ocibox.rootless._ids import IdMaps

MARK = ".single-id-map-warned"


def howto(maps: IdMaps) -> str:
    """What gives a user a subordinate range (as root; shadow's usermod)."""
    return f"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {maps.user}"


def warn_single(maps: IdMaps, root: Path) -> None:
    """Once per store (a mark file in its root): the user has no subordinate range, so only root
    exists in containers, and what that means."""
    if not maps.single:
        return
    mark = Path(root) / MARK
    if mark.exists():
        return
    sys.stderr.write(f"ocibox: warning: user {maps.user} has no subordinate ids in /etc/subuid and /etc/subgid: "
                     "containers get a single-id map (only root exists inside) and images with files of other "
                     f"owners cannot be unpacked; an administrator can add a range: {howto(maps)}\n")
    try:
        os.makedirs(root, exist_ok=True)
        with open(mark, "w"):
            pass
    except OSError:
        pass
