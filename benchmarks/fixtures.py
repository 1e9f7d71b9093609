"""Fixture images for the benchmarks, built once and cached under /var/cache/ocibox-bench.

Every image is written as an OCI layout (blobs made here with GNU tar / tarfile, gzip and zstd) and
pushed to the loopback registry by skopeo with ``--preserve-digests``; nothing here uses ocibox code.
The registry's storage lives in the cache too, so a later run only re-pushes what is missing.

Images (repository names under ``bench/``):
  busybox        1 layer, Debian's static busybox and applet links (tests/oci.busybox_layer)
  debian-gzip    3 layers split from ``debootstrap --variant=minbase bookworm`` + python3 + perl:
                 base / usr/share / python+perl libraries, ~220 MB and ~10,000 entries unpacked
  debian-zstd    the same tars (same diff ids) compressed with zstd, in a separate layout
  files50k       1 layer: 50,000 small files (0.2-7 KB) + 10 x 50 MB files
  big2g          1 layer of ~2 GB (8 x 256 MB files)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from oci import (  # noqa: E402
    LAYER_TYPES,
    OCI_CONFIG,
    OCI_MANIFEST,
    Layer,
    Layout,
    busybox_layer,
    image_config,
    skopeo_push,
)

CACHE = Path(os.environ.get("OCIBOX_BENCH_CACHE", "/var/cache/ocibox-bench"))
MIRROR = "http://deb.debian.org/debian"
IMAGES = ("busybox", "debian-gzip", "debian-zstd", "files50k", "big2g")


def log(msg: str) -> None:
    print(f"[fixtures] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- debian rootfs
def debian_rootfs() -> Path:
    """debootstrap minbase bookworm + python3 + perl, apt caches and lists removed (cached)."""
    root = CACHE / "debian-rootfs"
    if root.is_dir():
        return root
    tmp = CACHE / "debootstrap.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    CACHE.mkdir(parents=True, exist_ok=True)
    log(f"debootstrap --variant=minbase bookworm from {MIRROR} (once, ~2 min)")
    subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(tmp), MIRROR], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.copy("/etc/resolv.conf", tmp / "etc/resolv.conf")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["chroot", str(tmp), "apt-get", "install", "-y", "-q", "--no-install-recommends",
                    "python3", "perl"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["chroot", str(tmp), "apt-get", "clean"], check=True)
    for p in (tmp / "var/lib/apt/lists").iterdir():
        if p.is_file():
            p.unlink()
    (tmp / "etc/resolv.conf").write_text("")
    tmp.rename(root)
    return root


def _tree_list(root: Path, include: list[str], exclude: set[str]) -> list[str]:
    """Paths (relative, './'-prefixed) for a layer: parents of each include root, then its subtree."""
    out: list[str] = []
    seen: set[str] = set()
    for inc in include:
        parts = [] if inc == "." else inc.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in seen:
                seen.add(parent)
                out.append("./" + parent)
        for dirpath, dirnames, filenames in os.walk(root / inc):
            rel = os.path.relpath(dirpath, root)
            rel = "" if rel == "." else rel
            if rel in exclude:
                dirnames[:] = []
                continue
            if rel and rel not in seen:
                seen.add(rel)
                out.append("./" + rel)
            dirnames.sort()
            keep = []
            for d in dirnames:
                r = f"{rel}/{d}" if rel else d
                if r in exclude:
                    continue
                if os.path.islink(os.path.join(dirpath, d)):  # walk does not descend into links
                    out.append("./" + r)
                    seen.add(r)
                else:
                    keep.append(d)
            dirnames[:] = keep
            for f in sorted(filenames):
                r = f"{rel}/{f}" if rel else f
                # /dev nodes, /proc and /sys contents never go into an image layer
                if r.startswith(("dev/", "proc/", "sys/")):
                    continue
                out.append("./" + r)
    return out


def _gnu_tar(root: Path, paths: list[str], dest: Path) -> str:
    """Write an uncompressed pax tar of ``paths`` to ``dest``; return its sha256 (the diff id)."""
    listing = dest.with_suffix(".list")
    listing.write_bytes(b"\0".join(p.encode() for p in paths) + b"\0")
    subprocess.run(["tar", "-C", str(root), "--format=pax", "--numeric-owner", "--no-recursion",
                    "--null", "-T", str(listing), "-cf", str(dest)], check=True)
    listing.unlink()
    return _sha256_file(dest)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _compress_file(src: Path, how: str, dest: Path) -> None:
    cmd = ["gzip", "-n", "-6", "-c"] if how == "gzip" else ["zstd", "-3", "-q", "-c", "-T1"]
    with open(src, "rb") as fi, open(dest, "wb") as fo:
        subprocess.run(cmd, stdin=fi, stdout=fo, check=True)


def _layout_from_tars(name: str, tars: list[tuple[Path, str]], how: str) -> Path:
    """An OCI layout ``CACHE/layouts/NAME`` with one layer per (tar file, diff id), tagged ``t``."""
    final = CACHE / "layouts" / name
    tmp = CACHE / "layouts" / (name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    lay = Layout(tmp)
    ldescs = []
    for tar, _diff in tars:
        blob = tmp / "blob.tmp"
        _compress_file(tar, how, blob)
        digest = _sha256_file(blob)
        size = blob.stat().st_size
        blob.rename(tmp / "blobs" / "sha256" / digest.split(":")[1])
        ldescs.append({"mediaType": LAYER_TYPES[how], "digest": digest, "size": size})
    config = image_config([d for _, d in tars])
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": lay.put(config), "size": len(config)},
        "layers": ldescs,
    }).encode()
    lay.tag({"mediaType": OCI_MANIFEST, "digest": lay.put(manifest), "size": len(manifest),
             "platform": {"os": "linux", "architecture": "amd64"}}, "t")
    _write_stats(name, [t for t, _ in tars], sum(x["size"] for x in ldescs))
    tmp.rename(final)
    return final


def _debian_tars() -> list[tuple[Path, str]]:
    """The three uncompressed Debian layer tars (cached next to the layouts)."""
    d = CACHE / "debian-tars"
    meta = d / "diffids.json"
    if meta.exists():
        return [(d / f"layer{i}.tar", diff) for i, diff in enumerate(json.loads(meta.read_text()))]
    root = debian_rootfs()
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    third = ["usr/lib/python3", "usr/lib/python3.11", "usr/lib/x86_64-linux-gnu/perl",
             "usr/lib/x86_64-linux-gnu/perl-base", "usr/share/perl"]
    third = [p for p in third if (root / p).is_dir()]
    layers = [
        _tree_list(root, ["."], {"usr/share", *third}),
        _tree_list(root, ["usr/share"], set(third)),
        _tree_list(root, third, set()),
    ]
    diffs = []
    for i, paths in enumerate(layers):
        log(f"debian layer {i}: {len(paths)} entries")
        diffs.append(_gnu_tar(root, paths, d / f"layer{i}.tar"))
    meta.write_text(json.dumps(diffs))
    return [(d / f"layer{i}.tar", diff) for i, diff in enumerate(diffs)]


# ----------------------------------------------------------------------------- generated data
def _pool() -> bytes:
    """64 MB of real file content (binaries, text) from the Debian rootfs: realistic compressibility."""
    root = debian_rootfs()
    buf = bytearray()
    for dirpath, _dirs, files in sorted(os.walk(root / "usr")):
        for f in sorted(files):
            p = os.path.join(dirpath, f)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            buf += Path(p).read_bytes()
            if len(buf) >= 64 << 20:
                return bytes(buf[: 64 << 20])
    return bytes(buf)


def _mixed(rng: random.Random, pool: bytes, size: int, random_share: float) -> bytes:
    """``size`` bytes: 64 KB chunks, a share of them random, the rest slices of the pool."""
    out = bytearray()
    chunk = 64 << 10
    while len(out) < size:
        n = min(chunk, size - len(out))
        if rng.random() < random_share:
            out += os.urandom(n)
        else:
            off = rng.randrange(0, len(pool) - n)
            out += pool[off:off + n]
    return bytes(out)


def _add(tf: tarfile.TarFile, name: str, data: bytes | None, mode: int = 0o644) -> None:
    ti = tarfile.TarInfo(name)
    ti.mtime = 1_700_000_000
    if data is None:
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(ti)
    else:
        ti.size, ti.mode = len(data), mode
        tf.addfile(ti, io.BytesIO(data))


def _files50k_tar(dest: Path) -> str:
    rng = random.Random(50_000)
    pool = _pool()
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        _add(tf, "data", None)
        for d in range(50):
            _add(tf, f"data/d{d:02d}", None)
            for i in range(1000):
                size = rng.randint(200, 7000)
                off = rng.randrange(0, len(pool) - size)
                _add(tf, f"data/d{d:02d}/f{i:04d}.dat", pool[off:off + size])
        _add(tf, "big", None)
        for i in range(10):
            _add(tf, f"big/blob{i}.bin", _mixed(rng, pool, 50 << 20, 0.75))
    return _sha256_file(dest)


def _big2g_tar(dest: Path) -> str:
    rng = random.Random(2_000)
    pool = _pool()
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        _add(tf, "big", None)
        for i in range(8):
            _add(tf, f"big/part{i}.bin", _mixed(rng, pool, 256 << 20, 0.5))
    return _sha256_file(dest)


# ----------------------------------------------------------------------------- layouts
def layout(name: str) -> Path:
    """The cached OCI layout of fixture image ``name`` (built on first use)."""
    final = CACHE / "layouts" / name
    if (final / "index.json").exists():
        return final
    (CACHE / "layouts").mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    if name == "busybox":
        tmp = CACHE / "layouts" / "busybox.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        lay = Layout(tmp)
        desc = lay.add_manifest([Layer(busybox_layer())])
        lay.tag(desc, "t")
        tar = CACHE / "busybox.tar"
        tar.write_bytes(busybox_layer())
        m = json.loads((tmp / "blobs/sha256" / desc["digest"].split(":")[1]).read_bytes())
        _write_stats(name, [tar], m["layers"][0]["size"])
        tar.unlink()
        tmp.rename(final)
    elif name in ("debian-gzip", "debian-zstd"):
        _layout_from_tars(name, _debian_tars(), name.split("-")[1])
    elif name in ("files50k", "big2g"):
        tar = CACHE / f"{name}.tar"
        log(f"generating {name} layer (once)")
        diff = (_files50k_tar if name == "files50k" else _big2g_tar)(tar)
        _layout_from_tars(name, [(tar, diff)], "gzip")
        tar.unlink()
    else:
        raise KeyError(name)
    log(f"built layout {name} in {time.monotonic() - t0:.1f} s")
    return final


def manifest_of(name: str) -> tuple[str, dict]:
    """(manifest digest, manifest JSON) of a fixture layout."""
    lay = layout(name)
    desc = json.loads((lay / "index.json").read_text())["manifests"][0]
    digest = desc["digest"]
    return digest, json.loads((lay / "blobs/sha256" / digest.split(":")[1]).read_bytes())


def layer_blobs(name: str) -> list[Path]:
    """The compressed layer blob files of a fixture image, in order (for the tar floor)."""
    _, m = manifest_of(name)
    return [layout(name) / "blobs/sha256" / layer["digest"].split(":")[1] for layer in m["layers"]]


def ensure_pushed(name: str, host: str) -> str:
    """Push fixture ``name`` as ``HOST/bench/NAME:1`` unless the registry already holds that manifest."""
    import httpx

    digest, _ = manifest_of(name)
    ref = f"{host}/bench/{name}:1"
    r = httpx.head(f"http://{host}/v2/bench/{name}/manifests/1",
                   headers={"Accept": OCI_MANIFEST}, timeout=10)
    if r.status_code == 200 and r.headers.get("Docker-Content-Digest") == digest:
        return ref
    log(f"pushing {name} with skopeo")
    skopeo_push(layout(name), "t", ref)
    return ref


def unpacked_stats(name: str) -> dict:
    """{"bytes": file bytes, "entries": tar entries, "blob_bytes": compressed size} of a fixture image."""
    path = CACHE / "layouts" / f"{name}.stats.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    return {}


def _write_stats(name: str, tars: list[Path], blob_bytes: int) -> None:
    total = entries = 0
    for tar in tars:
        with tarfile.open(tar, "r:") as tf:
            for ti in tf:
                entries += 1
                total += ti.size
    (CACHE / "layouts" / f"{name}.stats.json").write_text(
        json.dumps({"bytes": total, "entries": entries, "blob_bytes": blob_bytes}))
