"""The cache verbs end to end through the CLI, on a store filled by a real pull from the
session registry: images, inspect, verify, system df against du, rmi refused while a
container uses the image, prune keeping what a running container uses, and prune's reported
bytes against statvfs (on a tmpfs of its own, so nothing else writes to that filesystem)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cli
import pytest

from ocibox import store as ocistore
from ocibox.cgroups import container_cgroups
from ocibox.digest import Digest
from ocibox.store import Store

pytestmark = pytest.mark.integration


ocibox = partial(cli.ocibox, check=True)  # a verb here must succeed unless a test says check=False


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sx", "--block-size=1", str(path)], check=True, capture_output=True,
                              text=True).stdout.split()[0])


def record_running_container(root: Path, image_id: str, pid: int) -> str:
    """What the runner records for a running container (its process: ``pid``)."""
    store = Store(root)
    cid = ocistore.new_container_id()
    ocistore.add_container(store, cid, None, Digest.parse(image_id), ["sleep", "120"])
    ocistore.set_container_pid(store, cid, pid)
    (store.container_dir(cid) / "upper").mkdir(parents=True)
    store.close()
    return cid


def test_images_inspect_verify_df(pulled_busybox: tuple[Path, str]) -> None:
    root, ref = pulled_busybox
    name, tag = ref.rsplit(":", 1)
    table = ocibox(root, "images").stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert table[1].split()[:2] == [name, tag] and len(table) == 2
    rows = json.loads(ocibox(root, "images", "--format", "json").stdout)
    assert [r["Repository"] for r in rows] == [name]
    iid = rows[0]["ID"]
    assert ocibox(root, "images", "-q").stdout.split() == [iid[7:19]]
    info = json.loads(ocibox(root, "inspect", ref).stdout)[0]
    assert info["Id"] == iid and info["RepoTags"] == [ref]
    assert [x["DiffID"] for x in info["Layers"]] == info["RootFS"]["diff_ids"]
    assert info["Layers"][0]["Digest"] == info["Manifest"]["layers"][0]["digest"]
    assert Path(info["Layers"][0]["Path"], "bin", "busybox").is_file()
    r = ocibox(root, "verify")
    assert r.stdout == "" and r.returncode == 0
    df = json.loads(ocibox(root, "system", "df", "--format", "json").stdout)
    assert df["TotalSize"] == du(root)
    images = next(t for t in df["Types"] if t["Type"] == "Images")
    assert images["Total"] == 1 and images["Size"] >= du(Path(info["Layers"][0]["Path"]))
    assert "Images" in ocibox(root, "system", "df", "-v").stdout


def test_rmi_refused_and_prune_keeps_what_a_running_container_uses(
        pulled_busybox: tuple[Path, str], sleeper: subprocess.Popen[bytes]) -> None:
    root, ref = pulled_busybox
    iid = json.loads(ocibox(root, "images", "--format", "json").stdout)[0]["ID"]
    info = json.loads(ocibox(root, "inspect", ref).stdout)[0]
    layer = Path(info["Layers"][0]["Path"])
    cid = record_running_container(root, iid, sleeper.pid)

    r = ocibox(root, "rmi", ref, check=False)
    assert r.returncode == 125 and f"running container {cid[:12]} uses it" in r.stderr
    assert ocibox(root, "rmi", "-f", iid[7:19], check=False).returncode == 125
    out = ocibox(root, "prune", "--all", "-f").stdout
    assert iid not in out and layer.is_dir() and (root / "containers" / cid).is_dir()
    assert json.loads(ocibox(root, "images", "--format", "json").stdout)[0]["ID"] == iid
    df = json.loads(ocibox(root, "system", "df", "--format", "json").stdout)
    assert df["TotalSize"] == du(root)
    assert next(t for t in df["Types"] if t["Type"] == "Images")["Active"] == 1

    # The container's process dies without cleaning up (a crash): its row is stale, prune
    # removes the container and, with --all, the image, its layer and its blobs.
    sleeper.kill()
    sleeper.wait()
    out = ocibox(root, "prune", "--all", "-f").stdout
    assert cid in out and f"deleted: {iid}" in out and f"deleted: {info['Layers'][0]['ChainID']}" in out
    assert not layer.exists() and not (root / "containers" / cid).exists()
    assert os.listdir(root / "blobs" / "sha256") == [] and os.listdir(root / "tmp") == []
    assert sorted(os.listdir(root / "layers")) == ["l"] and os.listdir(root / "layers" / "l") == []
    assert ocibox(root, "images", "-a", "-q").stdout == ""
    assert ocibox(root, "verify").stdout == ""
    assert json.loads(ocibox(root, "system", "df", "--format", "json").stdout)["TotalSize"] == du(root)


def test_rmi_then_pull_again(pulled_busybox: tuple[Path, str]) -> None:
    root, ref = pulled_busybox
    out = ocibox(root, "rmi", ref).stdout.splitlines()
    assert out[0] == f"Untagged: {ref}" and out[2].startswith("Deleted: sha256:") and len(out) == 4
    r = ocibox(root, "rmi", ref, check=False)
    assert r.returncode == 125 and "no such image" in r.stderr
    ocibox(root, "pull", "-q", ref)
    assert ocibox(root, "verify").stdout == ""
    assert len(ocibox(root, "images", "-q").stdout.split()) == 1


@pytest.mark.privileged
def test_prune_reports_what_statvfs_sees(busybox_ref: str, tmp_path: Path) -> None:
    """On a tmpfs of its own, the bytes prune reports as freed are what statvfs sees freed."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        root = mnt / "store"
        ocibox(root, "pull", "-q", busybox_ref)
        layer_bytes = du(root / "layers")
        before = os.statvfs(mnt)
        out = ocibox(root, "prune", "--all", "-f").stdout
        after = os.statvfs(mnt)
        seen = (after.f_bfree - before.f_bfree) * after.f_frsize
        m = re.search(r"Total reclaimed space: \S+ \((-?\d+) bytes freed on the filesystem, measured by statvfs; "
                      r"the removed files held (\d+) bytes\)", out)
        assert m, out
        reported, removed = int(m.group(1)), int(m.group(2))
        # The CLI's own start (opening the database) may move a few pages either way.
        assert abs(reported - seen) <= 64 << 10, (reported, seen)
        assert removed >= layer_bytes - (8 << 10) and reported >= layer_bytes - (64 << 10), (removed, reported, layer_bytes)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def live(root: Path) -> list[ocistore.ContainerRecord]:
    store = Store(root)
    try:
        return ocistore.live_containers(store)
    finally:
        store.close()


@pytest.mark.privileged
def test_prune_and_rmi_during_a_real_run(pulled_busybox: tuple[Path, str]) -> None:
    """A container started by 'ocibox run' keeps its image and layers through prune --all, and
    rmi is refused; once it has exited, prune --all removes them."""
    root, ref = pulled_busybox
    info = json.loads(ocibox(root, "inspect", ref).stdout)[0]
    layer = Path(info["Layers"][0]["Path"])
    run = cli.ocibox_popen(root, "run", "--rm", ref, "sleep", "3")
    try:
        wait_for(lambda: any(c.pid != run.pid for c in live(root)), "the container to start")
        (c,) = live(root)
        r = ocibox(root, "rmi", ref, check=False)
        assert r.returncode == 125 and f"running container {c.id[:12]} uses it" in r.stderr
        out = ocibox(root, "prune", "--all", "-f").stdout
        assert info["Id"] not in out and layer.is_dir() and (root / "containers" / c.id / "merged").is_dir()
        assert ocibox(root, "verify").stdout == ""
    finally:
        out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    out = ocibox(root, "prune", "--all", "-f").stdout
    assert f"deleted: {info['Id']}" in out and not layer.exists()


@pytest.mark.privileged
def test_run_killed_leaves_a_container_prune_cleans(pulled_busybox: tuple[Path, str]) -> None:
    """kill -9 of 'ocibox run': once the container's process is gone too, its row is stale;
    prune removes the row, the directory and the cgroup named after it."""
    root, ref = pulled_busybox
    run = cli.ocibox_popen(root, "run", ref, "sleep", "1", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: any(c.pid != run.pid for c in live(root)), "the container to start")
    (c,) = live(root)
    run.kill()
    run.wait()
    wait_for(lambda: not live(root), "the container's process to end", timeout=20)
    cgroups = container_cgroups(c.id)
    assert cgroups, "the cgroups the runner made for the container (ocibox-<id>) were not found"
    out = ocibox(root, "prune", "-f").stdout
    assert c.id in out
    assert not (root / "containers" / c.id).exists() and os.listdir(root / "containers") == []
    assert [p for p in cgroups if p.exists()] == [] and container_cgroups(c.id) == []
    assert all(c.id not in line for line in Path("/proc/self/mountinfo").read_text().splitlines())
    assert ocibox(root, "verify").stdout == ""
    assert len(json.loads(ocibox(root, "images", "--format", "json").stdout)) == 1
