"""Unpacking generated layers into a temporary store (real files, real xattrs, as root)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import threading
from pathlib import Path

import pytest
import zstandard
from oci import Entry, compress, make_tar

from ocibox.digest import Digest, VerifyingReader
from ocibox.errors import DigestMismatch, LayerError
from ocibox.layers import unpack_layer
from ocibox.store import Store, has_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="owners, devices and trusted xattrs need root")


def digest(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def unpack(store: Store, tar: bytes, compression: str = "gzip", *, blob: bytes | None = None,
           diff_id: Digest | None = None, chain: Digest | None = None) -> Path:
    diff_id = diff_id or digest(tar)
    chain = chain or diff_id
    blob = compress(tar, compression) if blob is None else blob
    unpack_layer(store, io.BytesIO(blob), compression=compression, diff_id=diff_id, chain_id=chain,
                 parent=None, what=f"layer {chain.short}")
    return store.layer_dir(chain) / "diff"


def assert_nothing_left(store: Store) -> None:
    assert sorted(os.listdir(store.layers)) == ["l"]
    assert os.listdir(store.links) == []
    assert os.listdir(store.tmp) == []
    assert store.db.execute("SELECT count(*) FROM layers").fetchone()[0] == 0


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store").ensure()


def test_every_kind_of_entry(store: Store) -> None:
    data = os.urandom(300_000)
    tar = make_tar([
        Entry("./", "dir", mode=0o755, mtime=1_600_000_000),
        Entry("usr", "dir", mode=0o755),
        Entry("usr/bin", "dir", mode=0o555, mtime=1_500_000_000),  # read-only, filled after
        Entry("usr/bin/su", data=data, mode=0o4755, uid=0, gid=0),
        Entry("usr/bin/wall", data=b"wall", mode=0o2755, uid=0, gid=5),
        Entry("usr/bin/ping", data=b"ping", mode=0o755,
              pax={"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00"
                   "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"}),
        Entry("tmp", "dir", mode=0o1777),
        Entry("home/app/notes", data=b"n", uid=1000, gid=1000, mode=0o600, mtime=1_234_567_890),
        Entry("abs", "symlink", linkname="/usr/bin/su", uid=7, gid=8),
        Entry("rel", "symlink", linkname="usr/bin"),
        Entry("usr/bin/su2", "hardlink", linkname="usr/bin/su"),
        Entry("dev/null", "char", devmajor=1, devminor=3, mode=0o666),
        Entry("dev/loop0", "block", devmajor=7, devminor=0, mode=0o660, gid=6),
        Entry("run/fifo", "fifo", mode=0o620),
        Entry("x", data=b"x", pax={"SCHILY.xattr.user.note": "hello", "SCHILY.xattr.trusted.evil": "y",
                                   "SCHILY.xattr.security.selinux": "ctx"}),
        Entry("u\udcff", data=b"raw name"),  # a name that is not UTF-8 stays bytes
    ])
    size = unpack_layer(store, io.BytesIO(compress(tar, "gzip")), compression="gzip", diff_id=digest(tar),
                        chain_id=digest(tar), parent=None, what="l")
    d = store.layer_dir(digest(tar)) / "diff"
    assert size == len(data) + 4 + 4 + 1 + 1 + 8
    assert has_layer(store, digest(tar))
    st = os.lstat(d / "usr/bin/su")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and (d / "usr/bin/su").read_bytes() == data
    assert st.st_nlink == 2 and os.lstat(d / "usr/bin/su2").st_ino == st.st_ino
    st = os.lstat(d / "usr/bin/wall")
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o2755, 5)
    assert os.getxattr(d / "usr/bin/ping", "security.capability")[:4] == b"\x01\x00\x00\x02"
    st = os.lstat(d / "usr/bin")
    assert stat.S_IMODE(st.st_mode) == 0o555 and st.st_mtime == 1_500_000_000
    assert stat.S_IMODE(os.lstat(d / "tmp").st_mode) == 0o1777
    assert os.lstat(d).st_mtime == 1_600_000_000
    st = os.lstat(d / "home/app/notes")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_mtime) == (1000, 1000, 0o600, 1_234_567_890)
    assert stat.S_IMODE(os.lstat(d / "home").st_mode) == 0o755  # implicit parent
    assert os.readlink(d / "abs") == "/usr/bin/su" and os.lstat(d / "abs")[4:6] == (7, 8)
    assert os.readlink(d / "rel") == "usr/bin"
    st = os.lstat(d / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    assert stat.S_IMODE(st.st_mode) == 0o666
    st = os.lstat(d / "dev/loop0")
    assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(7, 0) and st.st_gid == 6
    assert stat.S_ISFIFO(os.lstat(d / "run/fifo").st_mode)
    assert stat.S_IMODE(os.lstat(d / "run/fifo").st_mode) == 0o620
    assert os.listxattr(d / "x") == ["user.note"]
    assert os.getxattr(d / "x", "user.note") == b"hello"
    assert os.path.exists(os.fsencode(d) + b"/u\xff")
    # the short link and the row
    short, = store.db.execute("SELECT short FROM layers WHERE chain_id=?", (str(digest(tar)),)).fetchone()
    assert os.path.samefile(store.links / short, d)
    assert os.listdir(store.tmp) == []


def test_whiteouts_and_opaque_dirs(store: Store) -> None:
    tar = make_tar([
        Entry("etc", "dir"),
        Entry("etc/.wh.passwd", data=b""),
        Entry("etc/keep", data=b"k"),
        Entry("etc/.wh.keep", data=b""),  # same layer, after: the entry stays
        Entry("var/.wh.cache", data=b""),
        Entry("var/cache", "dir"),  # same layer, after the whiteout: a new, opaque dir
        Entry("var/cache/new", data=b"n"),
        Entry("opt/.wh..wh..opq", data=b""),  # before its directory's own entry
        Entry("opt", "dir", mode=0o700),
        Entry("opt/app", data=b"a"),
        Entry("srv/sub/.wh..wh..opq", data=b""),
        Entry(".wh.gone", data=b""),
        Entry(".wh..wh.plnk", "dir"),  # aufs metadata: ignored
    ])
    d = unpack(store, tar)
    st = os.lstat(d / "etc/passwd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert (d / "etc/keep").read_bytes() == b"k"
    assert os.getxattr(d / "var/cache", "trusted.overlay.opaque") == b"y"
    assert (d / "var/cache/new").read_bytes() == b"n"
    assert os.getxattr(d / "opt", "trusted.overlay.opaque") == b"y"
    assert stat.S_IMODE(os.lstat(d / "opt").st_mode) == 0o700
    assert os.getxattr(d / "srv/sub", "trusted.overlay.opaque") == b"y"
    assert stat.S_ISCHR(os.lstat(d / "gone").st_mode)
    assert not any(n.startswith(".wh.") for _, dirs, files in os.walk(d) for n in dirs + files)
    with pytest.raises(OSError):
        os.getxattr(d / "etc", "trusted.overlay.opaque")


def test_whiteout_below_a_file_of_the_same_layer_is_moot(store: Store) -> None:
    """umoci writes a directory that became a file as the file, then whiteouts below it."""
    tar = make_tar([Entry("var/lib/d", data=b"now a file"), Entry("var/lib/d/.wh.x", data=b""),
                    Entry("var/lib/d/.wh..wh..opq", data=b"")])
    d = unpack(store, tar)
    assert (d / "var/lib/d").read_bytes() == b"now a file"


def test_replacing_entries(store: Store) -> None:
    tar = make_tar([
        Entry("a", "dir"), Entry("a/x", data=b"x"),
        Entry("a", data=b"now a file"),
        Entry("b", data=b"file"), Entry("b", "dir", mode=0o711), Entry("b/y", data=b"y"),
        Entry("c", "symlink", linkname="/nowhere"), Entry("c", data=b"c"),
        Entry("d", "dir", mode=0o700), Entry("d", "dir", mode=0o750, uid=3),
    ])
    d = unpack(store, tar)
    assert (d / "a").read_bytes() == b"now a file"
    assert stat.S_IMODE(os.lstat(d / "b").st_mode) == 0o711 and (d / "b/y").read_bytes() == b"y"
    assert (d / "c").read_bytes() == b"c"
    assert stat.S_IMODE(os.lstat(d / "d").st_mode) == 0o750 and os.lstat(d / "d").st_uid == 3


def test_parent_dirs_are_resolved_anew_after_a_replacement(store: Store) -> None:
    """The unpacker keeps parent directory fds between entries: a path replaced by a later entry
    (a directory by a symlink, a symlink by another) is followed to where it leads now."""
    tar = make_tar([
        Entry("real", "dir"), Entry("other", "dir"),
        Entry("p", "dir"), Entry("p/a", data=b"a"),
        Entry("p", "symlink", linkname="/other"), Entry("p/b", data=b"b"),
        Entry("q", "symlink", linkname="real"), Entry("q/c", data=b"c"),
        Entry("q", "symlink", linkname="other"), Entry("q/d", data=b"d"),
    ])
    d = unpack(store, tar)
    assert sorted(os.listdir(d / "other")) == ["b", "d"]
    assert os.listdir(d / "real") == ["c"]
    assert os.readlink(d / "p") == "/other" and os.readlink(d / "q") == "other"


def test_owners_and_modes_without_redundant_calls(store: Store) -> None:
    """Modes the umask would cut, setuid bits, and owners of replaced directories are all applied
    although new inodes skip the chown and chmod that would change nothing."""
    old = os.umask(0o077)
    try:
        tar = make_tar([
            Entry("f666", data=b"w", mode=0o666), Entry("f4711", data=b"s", mode=0o4711),
            Entry("f0", data=b"0", mode=0o000), Entry("mine", data=b"m", mode=0o640),
            Entry("d", "dir", uid=3, gid=4), Entry("d", "dir", uid=0, gid=0, mode=0o751),
            Entry("l", "symlink", linkname="f666", uid=5, gid=6),
        ])
        d = unpack(store, tar)
    finally:
        os.umask(old)
    modes = {n: stat.S_IMODE(os.lstat(d / n).st_mode) for n in ("f666", "f4711", "f0", "mine", "d")}
    assert modes == {"f666": 0o666, "f4711": 0o4711, "f0": 0, "mine": 0o640, "d": 0o751}
    assert os.lstat(d / "d")[4:6] == (0, 0) and os.lstat(d / "l")[4:6] == (5, 6)
    assert os.lstat(d / "mine")[4:6] == (0, 0)


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_compressions(store: Store, compression: str) -> None:
    tar = make_tar([Entry("big", data=os.urandom(3 << 20)), Entry("z", data=bytes(5 << 20))])
    d = unpack(store, tar, compression)
    assert (d / "big").stat().st_size == 3 << 20 and (d / "z").read_bytes() == bytes(5 << 20)


def test_multi_member_gzip_and_multi_frame_zstd(store: Store) -> None:
    tar = make_tar([Entry("a", data=os.urandom(100_000)), Entry("b", data=b"b" * 100_000)])
    half = len(tar) // 2
    gz = gzip.compress(tar[:half]) + gzip.compress(tar[half:])
    d = unpack(store, tar, "gzip", blob=gz)
    assert (d / "b").read_bytes() == b"b" * 100_000
    zc = zstandard.ZstdCompressor()
    zs = zc.compress(tar[:half]) + zc.compress(tar[half:])
    d = unpack(store, tar, "zstd", blob=zs, chain=digest(b"other chain"))
    assert (d / "b").read_bytes() == b"b" * 100_000


def test_empty_layer(store: Store) -> None:
    tar = bytes(1024)  # what docker writes for a layer with no files
    assert digest(tar) == Digest.parse("sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef")
    d = unpack(store, tar)
    assert os.listdir(d) == []


def test_reads_stream_to_eof_past_end_marker(store: Store) -> None:
    """The puller's VerifyingReader checks the blob digest only at EOF."""
    tar = make_tar([Entry("f", data=b"f")])
    blob = compress(tar, "gzip")
    good = VerifyingReader(io.BytesIO(blob), digest(blob), len(blob), "blob")
    unpack_layer(store, good, compression="gzip", diff_id=digest(tar), chain_id=digest(tar), parent=None,
                 what="l")
    assert good.verified
    store2 = Store(store.root.parent / "s2").ensure()
    bad = VerifyingReader(io.BytesIO(blob), digest(b"not it"), len(blob), "blob sha256:bad")
    with pytest.raises(DigestMismatch):
        unpack_layer(store2, bad, compression="gzip", diff_id=digest(tar), chain_id=digest(tar), parent=None,
                     what="l")
    assert_nothing_left(store2)


def test_diff_id_mismatch_leaves_nothing_then_next_pull_works(store: Store) -> None:
    tar = make_tar([Entry("f", data=b"f")])
    with pytest.raises(LayerError, match=r"layer sha256:1111.*diff_id mismatch") as ei:
        unpack_layer(store, io.BytesIO(compress(tar, "gzip")), compression="gzip",
                     diff_id=Digest("sha256", "1" * 64), chain_id=Digest("sha256", "1" * 64), parent=None,
                     what="layer sha256:1111")
    assert "\n" not in str(ei.value)
    assert_nothing_left(store)
    unpack(store, tar)
    assert has_layer(store, digest(tar))


@pytest.mark.parametrize("case", ["gzip-garbage", "gzip-truncated", "gzip-trailing", "zstd-garbage",
                                  "zstd-truncated", "tar-truncated", "tar-garbage", "empty-gzip"])
def test_broken_streams(store: Store, case: str) -> None:
    tar = make_tar([Entry("f", data=os.urandom(50_000)), Entry("g", data=b"g")])
    compression = case.split("-")[0] if not case.startswith(("tar", "empty")) else "gzip"
    blob = {
        "gzip-garbage": os.urandom(5000),
        "gzip-truncated": compress(tar, "gzip")[:-100],
        "gzip-trailing": compress(tar, "gzip") + b"garbage!",
        "zstd-garbage": os.urandom(5000),
        "zstd-truncated": compress(tar, "zstd")[:-100],
        "tar-truncated": compress(tar[:30_000], "gzip"),
        "tar-garbage": compress(os.urandom(30_000), "gzip"),
        "empty-gzip": b"",
    }[case]
    diff_id = digest(tar[:30_000]) if case == "tar-truncated" else digest(tar)
    with pytest.raises(LayerError, match=r"^layer l1: ") as ei:
        unpack_layer(store, io.BytesIO(blob), compression=compression, diff_id=diff_id, chain_id=diff_id,
                     parent=None, what="layer l1")
    assert "\n" not in str(ei.value)
    assert_nothing_left(store)


def test_concurrent_unpacks(store: Store) -> None:
    tars = [make_tar([Entry(f"dir{i}/f{j}", data=os.urandom(2000)) for j in range(200)]) for i in range(4)]
    errors: list[BaseException] = []

    def work(t: bytes) -> None:
        try:
            unpack(store, t, "zstd")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in tars]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(has_layer(store, digest(t)) for t in tars)
    assert store.db.execute("SELECT count(*) FROM layers").fetchone()[0] == 4
