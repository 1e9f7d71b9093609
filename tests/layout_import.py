"""Import an OCI image layout into an ocibox store through the layer store's own
``unpack_layer`` (no registry): for tests of unpacking, mounting and comparing."""

from __future__ import annotations

import json
from pathlib import Path

from ocibox.digest import Digest, VerifyingReader
from ocibox.image import ImageConfig, Manifest, Platform, chain_ids
from ocibox.layers import unpack_layer
from ocibox.reference import Reference
from ocibox.store import ImageRecord, Store, has_layer, record_image


def import_layout(store: Store, layout: Path, tag: str, name: str) -> ImageRecord:
    index = json.loads((layout / "index.json").read_text())
    desc = next(m for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    mdigest = Digest.parse(desc["digest"])
    mbytes = (layout / "blobs" / "sha256" / mdigest.hex).read_bytes()
    manifest = Manifest.parse(mbytes, "manifest", desc.get("mediaType", ""))
    cbytes = (layout / "blobs" / "sha256" / manifest.config.digest.hex).read_bytes()
    config = ImageConfig.parse(cbytes)
    store.ensure()
    store.write_blob(mdigest, mbytes)
    store.write_blob(manifest.config.digest, cbytes)
    cids = chain_ids(config.diff_ids)
    total = 0
    for i, (ldesc, diff_id, cid) in enumerate(zip(manifest.layers, config.diff_ids, cids, strict=True)):
        if has_layer(store, cid):
            continue
        with open(layout / "blobs" / "sha256" / ldesc.digest.hex, "rb") as f:
            reader = VerifyingReader(f, ldesc.digest, ldesc.size, f"blob {ldesc.digest}")
            total += unpack_layer(store, reader, compression=ldesc.compression, diff_id=diff_id, chain_id=cid,
                                  parent=cids[i - 1] if i else None, what=f"image {name} layer {ldesc.digest}")
    return record_image(store, Reference.parse(name), pinned=mdigest, manifest_digest=mdigest, manifest=manifest,
                        config_digest=manifest.config.digest, config=config, platform=Platform.host(), size=total)
