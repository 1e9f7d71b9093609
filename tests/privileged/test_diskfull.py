"""A store on a small tmpfs that fills up mid-pull: a clear one-line error, nothing
half-written left in the store, and the same pull succeeds once space is freed.

A ballast file leaves only ``free`` bytes: few enough that the download or the unpack of the
busybox layer (1 MB compressed, 2 MB unpacked) runs out of space part way."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli import ocibox

from ocibox import cache
from ocibox.settings import Settings

pytestmark = pytest.mark.privileged


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill(mnt: Path, leave: int) -> Path:
    """A ballast file taking all but ``leave`` bytes of the filesystem."""
    st = os.statvfs(mnt)
    size = st.f_bavail * st.f_frsize - leave
    ballast = mnt / "ballast"
    with open(ballast, "wb") as f:
        f.write(b"\0" * max(size, 0))
    return ballast


def assert_clean_failure(r: subprocess.CompletedProcess[str], root: Path) -> str:
    """One clear line, and nothing half-written: no layer, no image, no temporary data."""
    assert r.returncode == 125, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error: ") and "Traceback" not in r.stderr, r.stderr
    assert "no space left" in err[0].lower() or "disk is full" in err[0].lower(), err
    assert [n for n in os.listdir(root / "layers") if n != "l"] == []
    assert os.listdir(root / "layers" / "l") == []
    assert os.listdir(root / "tmp") == []
    settings = Settings(root=root)
    assert cache.list_images(settings, all_=True) == []
    assert cache.verify(settings, repair=False) == []
    return err[0]


def pull_after_freeing(root: Path, ballast: Path, ref: str) -> None:
    ballast.unlink()
    r = ocibox(root, "pull", "-q", ref)
    assert r.returncode == 0, r.stderr
    settings = Settings(root=root)
    assert cache.verify(settings, repair=False) == []
    assert len(cache.list_images(settings, all_=False)) == 1
    cache.prune(settings, all_=False, dry_run=False)
    assert cache.disk_usage(settings, verbose=False)["TotalSize"] == int(subprocess.run(
        ["du", "-sx", "--block-size=1", str(root)], capture_output=True, text=True, check=True).stdout.split()[0])


@pytest.mark.parametrize("free", [200 << 10, 1500 << 10], ids=["early", "mid-layer"])
def test_full_disk_mid_pull(small_fs: Path, busybox_ref: str, free: int) -> None:
    root = small_fs / "store"
    assert ocibox(root, "images").returncode == 0  # the store and its database exist
    ballast = fill(small_fs, free)
    assert_clean_failure(ocibox(root, "pull", "-q", busybox_ref), root)
    pull_after_freeing(root, ballast, busybox_ref)


def test_full_disk_at_the_end_of_a_pull(small_fs: Path, busybox_ref: str) -> None:
    """Space runs out after the layer's bytes are written (its row, the blobs, the image
    record): from about the size the pull needs, add 16 kB at a time until it succeeds;
    every failure on the way must be as clean."""
    root = small_fs / "store"
    assert ocibox(root, "images").returncode == 0
    free = os.path.getsize("/bin/busybox") + (900 << 10)
    failures: list[str] = []
    for _ in range(40):
        ballast = fill(small_fs, free)
        r = ocibox(root, "pull", "-q", busybox_ref)
        if r.returncode == 0:
            break
        failures.append(assert_clean_failure(r, root))
        ballast.unlink()
        free += 16 << 10
    else:
        raise AssertionError(f"the pull never succeeded: {failures[-1:]}")
    assert failures, "the first try already had room: start lower"
    cache.remove_images(Settings(root=root), [busybox_ref], force=False)
    pull_after_freeing(root, ballast, busybox_ref)
