"""The hostile-layer corpus (tests/hostile.py): each case is refused or confined, and
canary files outside the store prove that nothing outside changed."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest
from hostile import Case, corpus
from oci import compress

from ocibox.digest import Digest
from ocibox.errors import HostileLayerError, LayerError
from ocibox.layers import unpack_layer
from ocibox.store import Store, has_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="owners and devices need root")

# The canary directory must have the same absolute path for every case (it is in the tars).
OUTSIDE = Path("/tmp/ocibox-hostile-canaries")


def snapshot(root: Path) -> dict[str, tuple[int, int, int, int, int, str, bytes]]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in ["", *dirs, *files]:
            p = os.path.join(dirpath, n) if n else dirpath
            st = os.lstat(p)
            content = ""
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else ""
            xattrs = repr(sorted((k, os.getxattr(p, k, follow_symlinks=False))
                                 for k in os.listxattr(p, follow_symlinks=False))).encode()
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_nlink,
                                             content + link, xattrs)
    return out


@pytest.fixture(scope="module")
def outside() -> Path:
    OUTSIDE.mkdir(exist_ok=True)
    (OUTSIDE / "canary").write_bytes(b"canary")
    os.chmod(OUTSIDE / "canary", 0o644)
    (OUTSIDE / "sub").mkdir(exist_ok=True)
    (OUTSIDE / "sub" / "deep").write_bytes(b"deep")
    yield OUTSIDE
    for dirpath, dirs, files in os.walk(OUTSIDE, topdown=False):
        for f in files:
            os.unlink(os.path.join(dirpath, f))
        for d in dirs:
            os.rmdir(os.path.join(dirpath, d))
    OUTSIDE.rmdir()


CASES = corpus(str(OUTSIDE))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_layer(case: Case, outside: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "store").ensure()
    before_out = snapshot(outside)
    before_tmp = {p for p in os.listdir(tmp_path)}
    diff_id = Digest("sha256", hashlib.sha256(case.tar).hexdigest())
    what = f"image evil:1 layer {diff_id}"

    def run() -> None:
        unpack_layer(store, io.BytesIO(compress(case.tar, "gzip")), compression="gzip", diff_id=diff_id,
                     chain_id=diff_id, parent=None, what=what)

    if case.expect == "confined":
        run()
        assert has_layer(store, diff_id)
        layer = store.layer_dir(diff_id) / "diff"
        # whatever was written went inside the layer: nothing points to or is outside
        for dirpath, dirs, files in os.walk(layer):
            for n in dirs + files:
                p = Path(dirpath) / n
                assert os.path.realpath(p.parent).startswith(str(layer)), p
                st = os.lstat(p)
                if stat.S_ISREG(st.st_mode):
                    assert st.st_nlink == 1 or os.path.samefile(p, p)
        for n in os.listdir(layer):
            assert not any(x.startswith("trusted.") and x != "trusted.overlay.opaque"
                           for x in os.listxattr(layer / n, follow_symlinks=False))
    else:
        exc = HostileLayerError if case.expect == "hostile" else LayerError
        with pytest.raises(exc) as ei:
            run()
        msg = str(ei.value)
        assert msg.startswith(what + ": ") and "\n" not in msg, msg
        assert not has_layer(store, diff_id)
        assert sorted(os.listdir(store.layers)) == ["l"] and os.listdir(store.tmp) == []
    assert snapshot(outside) == before_out
    assert {p for p in os.listdir(tmp_path)} == before_tmp


def test_specific_confinements(outside: Path, tmp_path: Path) -> None:
    """Where confined entries actually land."""
    store = Store(tmp_path / "store").ensure()
    by_id = {c.id: c for c in CASES}

    def unpack(cid: str) -> Path:
        tar = by_id[cid].tar
        d = Digest("sha256", hashlib.sha256(tar).hexdigest())
        unpack_layer(store, io.BytesIO(tar), compression="none", diff_id=d, chain_id=d, parent=None, what=cid)
        return store.layer_dir(d) / "diff"

    o = str(OUTSIDE).lstrip("/")
    assert (unpack("absolute-name") / o / "pwned").read_bytes() == b"x"
    assert (unpack("abs-symlink-write-mirrored") / o / "pwned").read_bytes() == b"x"
    assert (unpack("rel-symlink-write-mirrored") / o / "pwned").read_bytes() == b"x"
    d = unpack("symlink-to-file-then-file")
    assert (d / "f").read_bytes() == b"overwritten" and not (d / "f").is_symlink()
    d = unpack("hardlink-to-symlink-then-mode")
    assert os.readlink(d / "h2") == str(OUTSIDE / "canary")
    assert os.lstat(d / "h2").st_ino == os.lstat(d / "s").st_ino
    d = unpack("parent-replaced-mirrored")
    assert os.readlink(d / "d") == str(OUTSIDE) and (d / o / "pwned").read_bytes() == b"x"
    d = unpack("whiteout-through-symlink-mirrored")
    assert stat.S_ISCHR(os.lstat(d / o / "canary").st_mode)
    d = unpack("trusted-xattrs")
    assert os.listxattr(d / "d") == [] and os.listxattr(d / "f") == []


@pytest.mark.parametrize("mtime", [b"inf", b"1e300"])
def test_pax_mtime_out_of_range_is_refused_by_name(mtime: bytes, tmp_path: Path) -> None:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("a")
        ti.size = 5
        ti.pax_headers = {"mtime": mtime.decode()}
        tf.addfile(ti, io.BytesIO(b"hello"))
    tar = buf.getvalue()
    assert b"mtime=" + mtime + b"\n" in tar
    store = Store(tmp_path / "store").ensure()
    d = Digest("sha256", hashlib.sha256(tar).hexdigest())
    with pytest.raises(HostileLayerError, match="refusing entry 'a'"):
        unpack_layer(store, io.BytesIO(tar), compression="none", diff_id=d, chain_id=d, parent=None, what="layer")
    assert not has_layer(store, d)


def test_zstd_bomb_is_decompressed_in_bounded_memory(tmp_path: Path) -> None:
    """16 KB of zstd holding 512 MiB of zeros: read 1 MiB at a time, never 512 MiB at once."""
    import subprocess
    import sys

    import zstandard

    bomb = tmp_path / "bomb.zst"
    bomb.write_bytes(zstandard.ZstdCompressor(level=3).compress(bytes(512 << 20)))
    code = ("import io, sys\n"
            "from ocibox.layers._decompress import decompressing_reader\n"
            "r = decompressing_reader(io.BytesIO(open(sys.argv[1], 'rb').read()), 'zstd', 'bomb')\n"
            "n = big = 0\n"
            "while (c := r.read(1 << 20)):\n    n += len(c); big = max(big, len(c))\n"
            "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')][0].split()[1]\n"
            "print(n, big, int(hwm) >> 10)\n")  # VmHWM: ru_maxrss keeps the forking parent's peak
    out = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, check=True)
    total, biggest, peak_mib = map(int, out.stdout.split())
    assert total == 512 << 20 and biggest <= 1 << 20 and peak_mib < 100, out.stdout
