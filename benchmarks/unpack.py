"""Time ``unpack_layer`` alone (no network) on the layers of an OCI layout, layer by layer.

usage: .venv/bin/python benchmarks/unpack.py LAYOUT STORE_DIR [--profile]
e.g.   .venv/bin/python benchmarks/unpack.py /var/cache/ocibox-bench/layouts/debian-gzip /dev/shm/unpack-store

The layouts are the fixtures benchmarks/run.py builds and caches. STORE_DIR is emptied first and
removed at the end; put it on tmpfs to take the disk out of the figure. --profile prints the
cProfile of the main thread (the prefetch thread's decompression and hashing are not in it).
"""

from __future__ import annotations

import cProfile
import json
import pstats
import sys
import time
from pathlib import Path

from ocibox.digest import Digest, VerifyingReader
from ocibox.image import ImageConfig, Manifest, chain_ids
from ocibox.layers import unpack_layer
from ocibox.store import Store, remove_tree


def main() -> None:
    layout, root = Path(sys.argv[1]), Path(sys.argv[2])
    profile = "--profile" in sys.argv[3:]

    def blob(d: str | Digest) -> Path:
        return layout / "blobs" / "sha256" / Digest.parse(str(d)).hex

    index = json.loads((layout / "index.json").read_text())
    manifest = Manifest.parse(blob(index["manifests"][0]["digest"]).read_bytes(), "manifest")
    config = ImageConfig.parse(blob(manifest.config.digest).read_bytes())
    cids = chain_ids(config.diff_ids)
    if root.exists():
        remove_tree(root)
    store = Store(root).ensure()
    prof = cProfile.Profile()
    total = time.perf_counter()
    try:
        for i, d in enumerate(manifest.layers):
            with open(blob(d.digest), "rb") as f:
                reader = VerifyingReader(f, d.digest, d.size, f"layer {i}")
                t = time.perf_counter()
                if profile:
                    prof.enable()
                size = unpack_layer(store, reader, compression=d.compression, diff_id=config.diff_ids[i],
                                    chain_id=cids[i], parent=cids[i - 1] if i else None, what=f"layer {i}")
                if profile:
                    prof.disable()
                print(f"layer {i}: {d.compression}, {d.size / 1e6:.1f} MB -> {size / 1e6:.1f} MB in "
                      f"{time.perf_counter() - t:.2f} s")
        print(f"total {time.perf_counter() - total:.2f} s")
    finally:
        store.close()
        remove_tree(root)
    if profile:
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
