"""Shared by the fuzz tests and tests/fuzz/long_fuzz.py: the canary area, hypothesis strategies
for hostile tar streams, the property check of the unpacker, and snapshots.

The area (``/tmp/ocibox-fuzz-<pid>/``) holds ``canary/`` (files, a subdirectory, a symlink and a
hardlink pair: what a hostile layer would like to touch) and ``store/`` (the ocibox store the
layers unpack into). Generated names and link targets aim at ``canary/`` by absolute paths, by
``..`` chains and through symlinks. Nothing here uses ocibox code except :func:`check_unpack`.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

AREA = Path(f"/tmp/ocibox-fuzz-{os.getpid()}")
CANARY = AREA / "canary"
STORE = AREA / "store"


def make_area() -> None:
    CANARY.mkdir(parents=True, exist_ok=True)
    (CANARY / "sub").mkdir(exist_ok=True)
    for p, data in ((CANARY / "canary", b"canary"), (CANARY / "sub" / "deep", b"deep")):
        if not p.exists():
            p.write_bytes(data)
            os.chmod(p, 0o644)
    if not (CANARY / "link").is_symlink():
        os.symlink("sub", CANARY / "link")
    if not (CANARY / "hard").exists():
        os.link(CANARY / "canary", CANARY / "hard")
    for p in (CANARY / "canary", CANARY / "sub" / "deep", CANARY / "sub", CANARY):
        os.utime(p, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))


def snapshot(root: Path = AREA, skip: str = "store") -> dict[str, tuple[Any, ...]]:
    """Names, types, modes, owners, mtimes, link counts, contents and xattrs under ``root``
    (the store itself excepted)."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirs, files in os.walk(root):
        if Path(dirpath) == root and skip in dirs:
            dirs.remove(skip)
        for n in ["", *dirs, *files]:
            p = os.path.join(dirpath, n) if n else dirpath
            st_ = os.lstat(p)
            content = ""
            if stat.S_ISREG(st_.st_mode):
                content = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st_.st_mode):
                content = os.readlink(p)
            xattrs = sorted((k, os.getxattr(p, k, follow_symlinks=False))
                            for k in os.listxattr(p, follow_symlinks=False))
            out[os.path.relpath(p, root)] = (st_.st_mode, st_.st_uid, st_.st_gid, st_.st_mtime_ns, st_.st_nlink,
                                             st_.st_ino, content, repr(xattrs))
    return out


# ------------------------------------------------------------------------------ strategies
_c = str(CANARY)
_up = "../" * 8
COMPONENTS = st.one_of(
    st.sampled_from(["a", "b", "d", "etc", "..", ".", "", "canary", "sub", "link", "hard", ".wh.a", ".wh.b",
                     ".wh..wh..opq", ".wh..", ".wh...", ".wh.", "tmp", "ocibox-fuzz", "l", "diff"]),
    st.text(alphabet="ab./\\-_\u00e9\x00 ", min_size=1, max_size=6),
)
# short names from a tiny alphabet, so entries meet each other (a symlink, then a file below it)
SIMPLE = st.lists(st.sampled_from(["a", "b", "d", ".wh.a", ".wh..wh..opq"]), min_size=1, max_size=3).map("/".join)
NAMES = st.one_of(
    SIMPLE, SIMPLE, SIMPLE,
    st.lists(COMPONENTS, min_size=1, max_size=4).map("/".join),
    st.lists(COMPONENTS, min_size=1, max_size=3).map(lambda p: "/" + "/".join(p)),
    st.lists(COMPONENTS, min_size=0, max_size=2).map(lambda p: "/".join([_c, *p])),
    st.lists(COMPONENTS, min_size=0, max_size=2).map(lambda p: _up + "/".join([_c.lstrip("/"), *p])),
    st.sampled_from(["./", "/", ".", "a/", "./a/../b", "a" * 300, "/".join(["d" * 200] * 22)]),
)
ESCAPES = st.sampled_from([_c, f"{_c}/canary", f"{_c}/sub", f"{_c}/link", f"{_up}{_c[1:]}", f"{_up}{_c[1:]}/sub",
                           "/", _up, "../a", "a/../../.."])
LINKS = st.one_of(ESCAPES, ESCAPES, SIMPLE, NAMES, st.sampled_from([_c, f"{_c}/canary", f"{_c}/sub", "/", "..", _up, f"{_up}{_c[1:]}",
                                          "../canary", "/proc/self/root", "/dev/null", "x" * 5000]))
PAX_KEYS = st.sampled_from([
    "SCHILY.xattr.user.x", "SCHILY.xattr.user.y", "SCHILY.xattr.trusted.overlay.opaque",
    "SCHILY.xattr.trusted.overlay.redirect", "SCHILY.xattr.trusted.overlay.metacopy",
    "SCHILY.xattr.security.capability", "SCHILY.xattr.security.selinux", "SCHILY.xattr.system.posix_acl_access",
    "path", "linkpath", "uid", "gid", "mtime", "uname",
])
PAX_VALUES = st.one_of(st.sampled_from(["y", "", "/etc", _c, f"{_up}{_c[1:]}", "-1", "4294967296", "1e9",
                                        "0", "nan", "\x01\x00\x00\x02"]),
                       st.text(alphabet="ab/.0123456789-", max_size=12))
KINDS = ("file", "dir", "symlink", "hardlink", "char", "block", "fifo")
_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
          "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}

ENTRY = st.fixed_dictionaries({
    "kind": st.sampled_from(KINDS),
    "name": NAMES,
    "link": LINKS,
    "data": st.binary(max_size=64),
    "mode": st.one_of(st.sampled_from([0o644, 0o755, 0o4755, 0o777, 0, 0o7777, 0o1777]),
                      st.integers(0, 0o7777)),
    "uid": st.sampled_from([0, 1000, 65534, 2097151]),
    "gid": st.sampled_from([0, 1000, 65534]),
    "dev": st.tuples(st.integers(0, 300), st.integers(0, 300)),
    "pax": st.dictionaries(PAX_KEYS, PAX_VALUES, max_size=3),
})



@st.composite
def _gadget(draw: Any) -> list[dict[str, Any]]:
    """A link aimed out of the layer, then an entry that goes through it or over it."""
    link = draw(ENTRY)
    link["kind"] = draw(st.sampled_from(["symlink", "symlink", "hardlink"]))
    link["name"] = draw(SIMPLE)
    link["link"] = draw(ESCAPES)
    after = draw(ENTRY)
    sep = draw(st.sampled_from(["/", "/", "/./", "/../", ""]))
    after["name"] = link["name"] + sep + draw(st.sampled_from(["x", "canary", "sub", "sub/deep", ".wh.canary",
                                                               ".wh..wh..opq", "link/y", ""]))
    if draw(st.booleans()):
        after["link"] = link["name"] + "/" + draw(st.sampled_from(["canary", "sub/deep", "hard"]))
    return [link, after]


#: lists of entries, many with escape gadgets in them
ENTRIES = st.lists(st.one_of(ENTRY.map(lambda e: [e]), _gadget()), min_size=1, max_size=6).map(
    lambda groups: [e for g in groups for e in g])


def build_tar(entries: list[dict[str, Any]]) -> bytes | None:
    """A PAX tar of ``entries``, or None when tarfile refuses to write one."""
    buf = io.BytesIO()
    try:
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for e in entries:
                ti = tarfile.TarInfo(e["name"])
                ti.type = _TYPES[e["kind"]]
                ti.mode, ti.uid, ti.gid, ti.mtime = e["mode"], e["uid"], e["gid"], 1_700_000_000
                if e["kind"] in ("symlink", "hardlink"):
                    ti.linkname = e["link"]
                ti.devmajor, ti.devminor = e["dev"]
                ti.pax_headers = dict(e["pax"])
                if e["kind"] == "file":
                    ti.size = len(e["data"])
                    tf.addfile(ti, io.BytesIO(e["data"]))
                else:
                    tf.addfile(ti)
    except (ValueError, tarfile.TarError, UnicodeError, OverflowError):
        return None
    return buf.getvalue()


# ------------------------------------------------------------------------------ the property
def check_unpack(data: bytes, compression: str = "none", *, check_area: bool = True) -> str:
    """Unpack ``data`` into the store next to the canaries. Returns 'ok' or the error class name.

    Raises AssertionError when the property breaks: an exception that is not an OciboxError, a
    change in the canary area, a leftover in the store's tmp/, or (on success) a layer entry
    whose real path is outside the layer directory."""
    from ocibox.digest import Digest
    from ocibox.errors import OciboxError
    from ocibox.layers import unpack_layer
    from ocibox.store import Store, has_layer

    store = Store(STORE).ensure()
    before = snapshot() if check_area else None
    raw = data
    if compression != "none":
        import gzip

        import zstandard

        raw = gzip.compress(data, mtime=0) if compression == "gzip" else zstandard.ZstdCompressor().compress(data)
    diff_id = Digest("sha256", hashlib.sha256(data).hexdigest())
    outcome = "ok"
    try:
        unpack_layer(store, io.BytesIO(raw), compression=compression, diff_id=diff_id, chain_id=diff_id,
                     parent=None, what=f"fuzz layer {diff_id}")
    except OciboxError as e:
        outcome = type(e).__name__
        assert "\n" not in str(e), str(e)
        assert not has_layer(store, diff_id)
    if check_area:
        after = snapshot()
        assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)  # type: ignore[union-attr]
                                 if before.get(k) != after.get(k)}  # type: ignore[union-attr]
    assert not os.listdir(store.tmp), os.listdir(store.tmp)
    if outcome == "ok":
        layer = os.path.realpath(store.layer_dir(diff_id) / "diff")
        for dirpath, dirs, files in os.walk(layer):
            for n in dirs + files:
                p = os.path.join(dirpath, n)
                # the entry itself (not what a symlink points at) lies inside the layer
                assert os.path.realpath(os.path.dirname(p)).startswith(layer), p
                st_ = os.lstat(p)
                if stat.S_ISREG(st_.st_mode) and st_.st_nlink > 1:
                    canary_inodes = {os.lstat(CANARY / "canary").st_ino, os.lstat(CANARY / "sub" / "deep").st_ino}
                    assert st_.st_ino not in canary_inodes, p
                xs = os.listxattr(p, follow_symlinks=False)
                assert not [x for x in xs if x.startswith("trusted.") and x != "trusted.overlay.opaque"], (p, xs)
                if "trusted.overlay.opaque" in xs:
                    assert stat.S_ISDIR(st_.st_mode), p
    return outcome
