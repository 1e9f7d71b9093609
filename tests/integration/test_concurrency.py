"""Many ocibox processes on one store at once: 8 CLI pulls of the same and of overlapping images
(each layer blob fetched once from the registry, counted in its access log; all succeed;
verify clean), and pulls racing prunes and rmis (nothing listed is ever broken)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import oci
import pytest
from cli import ocibox, ocibox_popen
from oci import files_layer
from registry import Registry

from ocibox import cache
from ocibox.settings import Settings

pytestmark = pytest.mark.integration


def blob_gets(registry: Registry, digest: str) -> int:
    time.sleep(0.3)  # the registry writes its access log asynchronously
    return len(re.findall(rf'"GET /v2/[^ ]+/blobs/{digest} HTTP', registry.access_log()))


@pytest.fixture(scope="module")
def overlapping(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Three images sharing layers: A = base+a, B = base+b, C = base+a+c (C's second layer is
    A's: same chain id). Random content, so no other test's pull has these blobs."""
    tmp = tmp_path_factory.mktemp("overlap")
    tag = os.urandom(4).hex()
    base = files_layer({"base": os.urandom(2 << 20), "busybox": Path(oci.BUSYBOX).read_bytes()})
    a = files_layer({"a": os.urandom(512 << 10)})
    b = files_layer({"b": os.urandom(512 << 10)})
    c = files_layer({"c": os.urandom(256 << 10)})
    refs = {}
    for name, layers in (("a", [base, a]), ("b", [base, b]), ("c", [base, a, c])):
        oci.push_image(tmp, registry.host, f"conc{tag}/{name}:v1", layers)
        refs[name] = f"{registry.host}/conc{tag}/{name}:v1"
    return {"refs": refs, "blobs": [oci.sha256(x.blob) for x in (base, a, b, c)]}


def test_eight_processes_pull_same_and_overlapping_images(overlapping: dict[str, object], registry: Registry,
                                                          store_root: Path) -> None:
    refs: dict[str, str] = overlapping["refs"]  # type: ignore[assignment]
    blobs: list[str] = overlapping["blobs"]  # type: ignore[assignment]
    which = ["a", "b", "c", "a", "b", "c", "a", "c"]
    procs = [ocibox_popen(store_root, "pull", "-q", refs[w]) for w in which]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [o[1] for o in outs]
    for blob in blobs:
        assert blob_gets(registry, blob) == 1, blob
    v = ocibox(store_root, "verify")
    assert v.returncode == 0 and v.stdout == "", v.stdout
    listed = json.loads(ocibox(store_root, "images", "--format", "json").stdout)
    assert sorted(r["Repository"].rsplit("/", 1)[1] for r in listed) == ["a", "b", "c"]
    # 4 distinct chain ids: base, base+a (shared by A and C), base+b, base+a+c.
    assert len([n for n in os.listdir(store_root / "layers") if n != "l"]) == 4
    assert os.listdir(store_root / "tmp") == []


def test_pulls_racing_prunes_and_rmis(overlapping: dict[str, object], store_root: Path) -> None:
    """Pulls, rmis and prune --all at the same time, two rounds: every command either succeeds
    or refuses cleanly, and afterwards verify is clean and every listed image is complete."""
    refs: dict[str, str] = overlapping["refs"]  # type: ignore[assignment]
    settings = Settings(root=store_root)
    for _ in range(2):
        procs = [ocibox_popen(store_root, "pull", "-q", refs[w]) for w in ("a", "b", "c")]
        procs += [ocibox_popen(store_root, "prune", "--all", "-f"), ocibox_popen(store_root, "rmi", refs["a"]),
                  ocibox_popen(store_root, "prune", "-f")]
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (_, err) in zip(procs[:3], outs[:3], strict=True):
            assert p.returncode == 0, err
        for p, (_, err) in zip(procs[3:], outs[3:], strict=True):
            # rmi may find the image not pulled yet or already pruned, or being pulled right now
            # (the pull's lease names it): a clean refusal.
            assert p.returncode == 0 or "no such image" in err or "a running ocibox process uses it" in err, err
        assert cache.verify(settings, repair=False) == []
        for row in cache.list_images(settings, all_=True):
            for layer in cache.inspect_image(settings, row["ID"])["Layers"]:
                assert Path(layer["Path"]).is_dir()
    # Whatever the race left, one more pull of each makes them all present and complete.
    for w in ("a", "b", "c"):
        assert ocibox(store_root, "pull", "-q", refs[w]).returncode == 0
    assert cache.verify(settings, repair=False) == []
    assert len(cache.list_images(settings, all_=False)) == 3
