"""Test helpers that build fixture images as OCI layouts and push them with skopeo.

Nothing here uses ocibox code: fixture images are made with ``tarfile`` and
``hashlib`` and pushed by skopeo, so what ocibox pulls was never written by it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

BUSYBOX = "/bin/busybox"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Entry:
    """One tar entry: ``kind`` is file, dir, symlink, hardlink, char, block, fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    mtime: int = 1_700_000_000
    pax: dict[str, str] = field(default_factory=dict)


_KINDS = {
    "file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def extractall(tf: tarfile.TarFile, dest: str | Path, how: str = "fully_trusted", **kw: object) -> None:
    """``tf.extractall(dest, filter=how)`` where tarfile has extraction filters (3.11.4+; Debian 12's
    3.11.2 has none and extracts everything as "fully_trusted" does)."""
    if hasattr(tarfile, "fully_trusted_filter"):
        kw["filter"] = how
    tf.extractall(dest, **kw)  # type: ignore[arg-type]


def make_tar(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            ti = tarfile.TarInfo(e.name)
            ti.type = _KINDS[e.kind]
            ti.mode = e.mode if e.kind != "dir" or e.mode != 0o644 else 0o755
            ti.uid, ti.gid, ti.mtime = e.uid, e.gid, e.mtime
            ti.linkname = e.linkname
            ti.devmajor, ti.devminor = e.devmajor, e.devminor
            ti.pax_headers = dict(e.pax)
            if e.kind == "file":
                ti.size = len(e.data)
                tf.addfile(ti, io.BytesIO(e.data))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


def busybox_layer() -> bytes:
    """A layer with Debian's static busybox at /bin/busybox and applet links for a shell."""
    data = Path(BUSYBOX).read_bytes()
    entries = [Entry("bin", "dir"), Entry("bin/busybox", data=data, mode=0o755)]
    for applet in ("sh", "ls", "cat", "echo", "id", "hostname", "sleep", "true", "false", "env", "pwd",
                   "mount", "ps", "grep", "head", "wc", "stat", "touch", "mkdir", "rm", "readlink",
                   "ip", "ifconfig", "dd", "sed", "awk", "test", "kill", "uname", "nproc", "find", "tr"):
        entries.append(Entry(f"bin/{applet}", "symlink", linkname="busybox"))
    entries += [
        Entry("etc", "dir"),
        Entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
              b"app:x:1000:1000:app:/home/app:/bin/sh\n"),
        Entry("etc/group", data=b"root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:2000:app\n"),
        Entry("root", "dir", mode=0o700), Entry("tmp", "dir", mode=0o1777),
        Entry("home", "dir"), Entry("home/app", "dir", uid=1000, gid=1000),
    ]
    return make_tar(entries)


@dataclass
class Layer:
    tar: bytes
    compression: str = "gzip"

    @property
    def blob(self) -> bytes:
        return compress(self.tar, self.compression)


def files_layer(files: dict[str, bytes], compression: str = "gzip") -> Layer:
    """A layer of one directory, data/, holding ``files`` (name: content)."""
    entries = [Entry("data", "dir")] + [Entry(f"data/{k}", data=v) for k, v in files.items()]
    return Layer(make_tar(entries), compression)


def image_config(diff_ids: list[str], *, arch: str = "amd64", variant: str = "", os_: str = "linux",
                 config: dict | None = None) -> bytes:
    obj: dict = {
        "created": "2024-01-01T00:00:00Z",
        "architecture": arch,
        "os": os_,
        "config": config if config is not None else {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                                                     "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "ocibox tests"} for _ in diff_ids],
    }
    if variant:
        obj["variant"] = variant
    return json.dumps(obj, sort_keys=True).encode()


class Layout:
    """An OCI image layout directory being written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.index: list[dict] = []

    def put(self, data: bytes) -> str:
        d = sha256(data)
        (self.path / "blobs" / "sha256" / d.split(":")[1]).write_bytes(data)
        return d

    def add_manifest(self, layers: list[Layer], *, config: bytes | None = None, arch: str = "amd64",
                     variant: str = "", config_obj: dict | None = None) -> dict:
        """Write layers, config and manifest; returns the manifest's descriptor (not yet indexed)."""
        ldescs = []
        for layer in layers:
            blob = layer.blob
            ldescs.append({"mediaType": LAYER_TYPES[layer.compression], "digest": self.put(blob), "size": len(blob)})
        if config is None:
            config = image_config([sha256(x.tar) for x in layers], arch=arch, variant=variant, config=config_obj)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": self.put(config), "size": len(config)},
            "layers": ldescs,
        }).encode()
        desc = {"mediaType": OCI_MANIFEST, "digest": self.put(manifest), "size": len(manifest),
                "platform": {"os": "linux", "architecture": arch}}
        if variant:
            desc["platform"]["variant"] = variant
        return desc

    def add_index(self, manifests: list[dict]) -> dict:
        data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
        return {"mediaType": OCI_INDEX, "digest": self.put(data), "size": len(data)}

    def tag(self, desc: dict, tag: str) -> None:
        d = dict(desc)
        d["annotations"] = {"org.opencontainers.image.ref.name": tag}
        self.index.append(d)
        (self.path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": self.index}))


def skopeo_push(layout: Path, tag: str, dest: str, *, docker_schema2: bool = False, all_: bool = False,
                creds: str | None = None, extra: list[str] | None = None) -> None:
    """``skopeo copy oci:LAYOUT:TAG docker://DEST`` with the bytes kept as they are."""
    cmd = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
    if all_:
        cmd.append("--all")
    if docker_schema2:
        cmd += ["--format", "v2s2"]
    else:
        cmd.append("--preserve-digests")
    if creds:
        cmd += ["--dest-creds", creds]
    cmd += extra or []
    cmd += [f"oci:{layout}:{tag}", f"docker://{dest}"]
    env = dict(os.environ, REGISTRY_AUTH_FILE="/dev/null") if False else None
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=300)


def push_image(tmp: Path, registry: str, repo_tag: str, layers: list[Layer], **kw: object) -> dict:
    """Build a one-platform image and push it; returns the manifest descriptor."""
    lay = Layout(tmp / ("layout-" + repo_tag.replace("/", "_").replace(":", "_")))
    desc = lay.add_manifest(layers, **kw)  # type: ignore[arg-type]
    lay.tag(desc, "t")
    skopeo_push(lay.path, "t", f"{registry}/{repo_tag}")
    return desc
