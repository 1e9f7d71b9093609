"""Concurrent ``ocibox pull`` processes of one image into one store, counted at the fault proxy in
front of the real registry: every blob, the config included, is fetched once (issue 16, section 7).
The first config answer is slowed down, so that all the pulls are under way while it is in flight."""

from __future__ import annotations

import os
from pathlib import Path

import oci
import pytest
from cli import ocibox, ocibox_popen
from faultproxy import FaultProxy
from registry import Registry

pytestmark = pytest.mark.integration

PULLS = 6


def test_concurrent_pulls_fetch_config_and_layers_once(registry: Registry, proxy: FaultProxy, tmp_path: Path,
                                                       store_root: Path) -> None:
    repo = f"once{os.urandom(4).hex()}/img"
    layers = [oci.Layer(oci.make_tar([oci.Entry(f"f{i}", data=os.urandom(n))])) for i, n in
              enumerate((1 << 20, 256 << 10, 64 << 10))]
    config = oci.image_config([oci.sha256(x.tar) for x in layers])
    oci.push_image(tmp_path / "layout", registry.host, f"{repo}:v1", layers, config=config)
    config_path = f"/v2/{repo}/blobs/{oci.sha256(config)}"
    # ~2 s for the first config answer: the other pulls ask for it meanwhile (or would)
    proxy.add(config_path, "trickle", chunk=max(1, len(config) // 10), delay=0.2)

    procs = [ocibox_popen(store_root, "pull", "-q", f"{proxy.host}/{repo}:v1") for _ in range(PULLS)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * PULLS, [err for _, err in outs]
    assert len({out for out, _ in outs}) == 1  # the same digest, printed by each
    config_gets = proxy.requests(config_path)
    layer_gets = [len(proxy.requests(f"/v2/{repo}/blobs/{oci.sha256(x.blob)}")) for x in layers]
    assert (len(config_gets), layer_gets) == (1, [1] * len(layers))
    # all of them asked for the manifest while the one config request was in flight
    manifests = proxy.requests(f"/v2/{repo}/manifests/v1")
    assert len(manifests) == PULLS and all(m.t < config_gets[0].end for m in manifests)
    v = ocibox(store_root, "verify")
    assert v.returncode == 0 and v.stdout == "", v.stdout + v.stderr
