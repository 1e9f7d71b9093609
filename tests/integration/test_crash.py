"""kill -9 at random moments: pulls and prunes killed mid-way leave a store that works. After
each kill no listed image is broken; a normal pull then succeeds and verify is clean; at the
end prune leaves nothing of the interrupted work and system df still equals du."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import oci
import pytest
from cli import ocibox, ocibox_popen
from oci import files_layer
from registry import Registry

from ocibox import cache
from ocibox import store as ocistore
from ocibox.puller import pull
from ocibox.reference import Reference
from ocibox.settings import Settings
from ocibox.store import DiskUsage

pytestmark = pytest.mark.integration

KILLS = 20


@pytest.fixture(scope="module")
def crash_ref(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Four layers (one of 3 MB of random bytes, so there is a download to interrupt)."""
    tag = os.urandom(4).hex()
    layers = [files_layer({"big": os.urandom(3 << 20)}), oci.Layer(oci.busybox_layer()),
              files_layer({f"f{i}": os.urandom(20000) for i in range(40)}), files_layer({"top": b"top"})]
    oci.push_image(tmp_path_factory.mktemp("crash"), registry.host, f"crash{tag}/img:v1", layers)
    return f"{registry.host}/crash{tag}/img:v1"


def spawn(root: Path, *args: str) -> subprocess.Popen[bytes]:
    return ocibox_popen(root, *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=False)


def kill_after(p: subprocess.Popen[bytes], delay: float) -> str:
    time.sleep(delay)
    state = "finished" if p.poll() is not None else "killed"
    p.send_signal(signal.SIGKILL)
    p.wait()
    return state


def assert_listed_images_complete(settings: Settings) -> None:
    for row in cache.list_images(settings, all_=True):
        info = cache.inspect_image(settings, row["ID"])
        for layer in info["Layers"]:
            assert Path(layer["Path"]).is_dir(), layer


def test_pulls_and_prunes_killed_at_random_moments(crash_ref: str, store_root: Path) -> None:
    seed = int(os.environ.get("OCIBOX_CRASH_SEED", time.time()))
    rng = random.Random(seed)
    settings = Settings(root=store_root, quiet=True)
    ref = Reference.parse(crash_ref)
    # How long a CLI pull takes here: kills are spread over that time (and a bit past it).
    t = time.monotonic()
    assert ocibox(store_root, "pull", "-q", crash_ref).returncode == 0
    span = time.monotonic() - t
    states = []
    for i in range(KILLS):
        # Take the image away (a prune killed at a random moment, or an rmi) so the pull has work.
        if i % 2:
            states.append(kill_after(spawn(store_root, "prune", "--all", "-f"), rng.uniform(0, span)))
        else:
            cache.remove_images(settings, [crash_ref], force=False)
        assert_listed_images_complete(settings)
        states.append(kill_after(spawn(store_root, "pull", "-q", crash_ref), rng.uniform(0, span * 1.1)))
        assert_listed_images_complete(settings)
        res = pull(settings, ref)
        problems = cache.verify(settings, repair=False)
        assert problems == [], f"seed {seed}, kill {i}: {problems}"
        assert [r["ID"] for r in cache.list_images(settings, all_=False)] == [str(res.image.id)]
    assert states.count("killed") >= KILLS // 2, (seed, states)

    # prune removes every leftover of the killed processes; df still adds up to du.
    cache.prune(settings, all_=False, dry_run=False)
    assert os.listdir(store_root / "tmp") == []
    layers = {n for n in os.listdir(store_root / "layers") if n != "l"}
    assert layers == {str(x.chain_id.hex) for x in ocistore.load_image(ocistore.Store(store_root), res.image.id).layers}
    df = cache.disk_usage(settings, verbose=False)
    assert df["TotalSize"] == DiskUsage().tree(store_root)
    assert int(subprocess.run(["du", "-sx", "--block-size=1", str(store_root)], capture_output=True, text=True,
                              check=True).stdout.split()[0]) == df["TotalSize"]
