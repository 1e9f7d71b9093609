"""An image mounted with `ocibox image mount` is in use: prune keeps it, rmi refuses it."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import cli
import pytest

pytestmark = pytest.mark.privileged


ocibox = partial(cli.ocibox, check=True)  # a verb here must succeed unless a test says check=False


def test_prune_keeps_a_mounted_image(pulled_busybox: tuple[Path, str]) -> None:
    root, ref = pulled_busybox
    mp = Path(ocibox(root, "image", "mount", ref).stdout.strip())
    try:
        assert (mp / "bin" / "busybox").is_file()
        ocibox(root, "prune", "--all", "-f")
        assert (mp / "bin" / "busybox").is_file()
        assert ocibox(root, "images", "-q").stdout.strip(), "prune --all removed a mounted image"
        r = ocibox(root, "rmi", ref, check=False)
        assert r.returncode == 125 and "in use" in r.stderr, r.stderr
    finally:
        ocibox(root, "image", "umount", ref)
    assert not mp.is_mount()
    ocibox(root, "prune", "--all", "-f")
    assert ocibox(root, "images", "-q").stdout.strip() == ""
