"""ocibox.layers._tarstream against tarfile, the reference: the same members, the same contents,
the same errors, for ordinary layers (which must take the fast path), for every tar dialect tarfile
and GNU tar write (which may fall back), and for thousands of corrupted and truncated streams."""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from ocibox.layers._tarstream import Member, TarStream


class Chunked:
    """A reader handing out the bytes in chunks of random sizes (buffer boundaries anywhere)."""

    def __init__(self, data: bytes, seed: int, big: bool = False) -> None:
        self._data = data
        self._pos = 0
        self._rng = random.Random(seed)
        self._big = big

    def read(self, n: int = -1, /) -> bytes:
        k = (1 << 20) if self._big else self._rng.choice([1, 7, 511, 512, 513, 1000, 4096, 70000])
        out = self._data[self._pos : self._pos + k]
        self._pos += len(out)
        return out


def _describe(ti: Any, content: bytes | None) -> tuple[Any, ...]:
    return (ti.name, ti.linkname, ti.type, ti.mode, ti.uid, ti.gid, ti.size, ti.mtime, ti.devmajor,
            ti.devminor, dict(ti.pax_headers), ti.sparse, content)


def by_tarfile(data: bytes) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    try:
        tf = tarfile.open(fileobj=io.BytesIO(data), mode="r|")  # noqa: SIM115
        while (ti := tf.next()) is not None:
            f = tf.extractfile(ti) if ti.isreg() else None
            out.append(_describe(ti, f.read() if f is not None else None))
            tf.members.clear()  # type: ignore[attr-defined]
    except (tarfile.ReadError, tarfile.StreamError) as e:
        out.append((type(e).__name__, str(e)))
    return out


def by_tarstream(data: bytes, seed: int = 0, *, big: bool = False, tmp: Path) -> tuple[list[tuple[Any, ...]], int]:
    """The members as TarStream sees them, and how many came by the fast path."""
    out: list[tuple[Any, ...]] = []
    fast = 0
    ts = TarStream(Chunked(data, seed, big))
    path = tmp / "content"
    try:
        while (m := ts.next()) is not None:
            fast += isinstance(m, Member)
            content = None
            if m.isreg():
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    n = ts.write_data(m, fd)
                    content = os.pread(fd, n + 1, 0)
                    assert len(content) == n
                finally:
                    os.close(fd)
            out.append(_describe(m, content))
    except (tarfile.ReadError, tarfile.StreamError) as e:
        out.append((type(e).__name__, str(e)))
    return out, fast


def _add(tf: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **kw: Any) -> None:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    ti.mode = kw.pop("mode", 0o644)
    ti.mtime = kw.pop("mtime", 1_700_000_000)
    for k, v in kw.items():
        setattr(ti, k, v)
    tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def ordinary(fmt: int, *, pax: bool = False) -> bytes:
    """What image layers hold: directories, files of any size, symlinks, hardlinks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        extra: dict[str, Any] = {"pax_headers": {"atime": "1700000001.5", "ctime": "1700000002.25"}} if pax else {}
        _add(tf, "usr/", tarfile.DIRTYPE, mode=0o755, **extra)
        _add(tf, "usr/bin", tarfile.DIRTYPE, mode=0o755, uid=0, gid=0, **extra)
        for i, size in enumerate([0, 1, 511, 512, 513, 4096, 70_001, 1 << 20]):
            _add(tf, f"usr/bin/f{i}", data=bytes([i + 1]) * size, mode=0o4755 if i == 3 else 0o644,
                 uid=i * 1000, gid=i, uname="u", gname="g", **extra)
        _add(tf, "usr/bin/sh", tarfile.SYMTYPE, linkname="/bin/busybox", **extra)
        _add(tf, "usr/bin/sized-link", tarfile.SYMTYPE, linkname="sh", size=700, **extra)  # no data follows
        _add(tf, "usr/bin/hard", tarfile.LNKTYPE, linkname="usr/bin/f2", **extra)
        _add(tf, "a/" * 40 + "deep-ustar-prefix", data=b"deep", **extra)  # 80+ chars: the prefix field
        _add(tf, "etc/.wh..wh..opq", **extra)
        _add(tf, "etc/.wh.gone", **extra)
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "pax"), [(tarfile.USTAR_FORMAT, False), (tarfile.GNU_FORMAT, False),
                                          (tarfile.PAX_FORMAT, False), (tarfile.PAX_FORMAT, True)])
def test_ordinary_layers_take_the_fast_path_and_agree(fmt: int, pax: bool, tmp_path: Path) -> None:
    data = ordinary(fmt, pax=pax)
    want = by_tarfile(data)
    assert len(want) == 16 and want[-1][0] != "ReadError"
    for seed in range(5):
        got, fast = by_tarstream(data, seed, tmp=tmp_path)
        assert got == want
        assert fast == len(want)
    assert by_tarstream(data, big=True, tmp=tmp_path)[0] == want


def unusual() -> list[tuple[str, bytes]]:
    """Dialects the fast path leaves to tarfile."""
    out = []
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        _add(tf, "n" * 150, data=b"long name")  # GNU longname
        _add(tf, "l", tarfile.SYMTYPE, linkname="t" * 150)  # GNU longlink
        _add(tf, "big-uid", data=b"x", uid=1 << 30)  # base-256
        _add(tf, "dev", tarfile.CHRTYPE, devmajor=1, devminor=3)
        _add(tf, "fifo", tarfile.FIFOTYPE)
        _add(tf, "cont", tarfile.CONTTYPE, data=b"c")
        _add(tf, "after", data=b"after")
    out.append(("gnu", buf.getvalue()))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": "global"}) as tf:  # a global header: all slow
        _add(tf, "p" * 300, data=b"pax long")
        _add(tf, "x", data=b"x", pax_headers={"SCHILY.xattr.user.a": "b", "mtime": "12.5", "uid": "x"})
    out.append(("pax-global", buf.getvalue()))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        _add(tf, "\udcff-binary", data=b"y")  # hdrcharset=BINARY
        _add(tf, "p" * 300, data=b"pax long", linkname="")
        _add(tf, "x", data=b"x", pax_headers={"SCHILY.xattr.user.a": "b", "mtime": "12.5", "uid": "x",
                                            "path": "renamed/", "size": "zz"})
        _add(tf, "v7-dir/", tarfile.AREGTYPE)
        _add(tf, "after", data=b"after")
    out.append(("pax", buf.getvalue()))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        _add(tf, "a/" * 60 + "x", data=b"prefix split")
    out.append(("ustar-prefix", buf.getvalue()))
    for size in ("-1", "-1600"):  # -1600: tarfile's next offset comes out as 0, the end
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            _add(tf, "neg-size", data=b"abc", pax_headers={"size": size})
            _add(tf, "after", data=b"after")
        out.append((f"pax-size{size}", buf.getvalue()))
    return out


def test_numeric_fields_parsed_as_tarfile_does(tmp_path: Path) -> None:
    """Octal fields with the padding tarfile tolerates (str.strip: also \\x1c-\\x1f), on the fast path."""
    base = bytearray(ordinary(tarfile.USTAR_FORMAT))
    # (field, bytes, index in _describe, what tarfile makes of it)
    for (a, b), value, index, parsed in [((100, 108), b"\x1c000644\0", 3, 0o644),
                                        ((108, 116), b" 0001750", 4, 0o1750),
                                        ((136, 148), b"\x1f1234567\x1e\0\0\0", 7, 0o1234567)]:
        data = bytearray(base)
        data[a:b] = value
        data[148:156] = b"        "
        data[148:156] = b"%06o\0 " % sum(data[:512])
        want = by_tarfile(bytes(data))
        assert want[0][index] == parsed
        got, fast = by_tarstream(bytes(data), tmp=tmp_path)
        assert got == want and fast == len(want)


def gnu_tar_sparse(tmp: Path) -> list[tuple[str, bytes]]:
    if shutil.which("tar") is None:  # pragma: no cover - GNU tar is on every test machine
        return []
    src = tmp / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.seek(3 << 20)
        f.write(b"middle")
        f.seek(9 << 20)
        f.write(b"end")
    (src / "plain").write_bytes(b"plain")
    out = []
    for label, args in [("gnu-sparse", ["--format=gnu"]), ("pax-sparse-0.0", ["--format=posix", "--sparse-version=0.0"]),
                        ("pax-sparse-0.1", ["--format=posix", "--sparse-version=0.1"]),
                        ("pax-sparse-1.0", ["--format=posix", "--sparse-version=1.0"])]:
        out.append((label, subprocess.run(["tar", "-S", *args, "-C", str(src), "-cf", "-", "sparse", "plain"],
                                          check=True, capture_output=True).stdout))
    return out


def test_unusual_dialects_fall_back_to_tarfile_and_agree(tmp_path: Path) -> None:
    cases = unusual() + gnu_tar_sparse(tmp_path)
    assert len(cases) == 10
    for label, data in cases:
        want = by_tarfile(data)
        assert want and want[-1][0] != "ReadError", label
        for seed in range(3):
            got, _fast = by_tarstream(data, seed, tmp=tmp_path)
            assert got == want, label


def test_empty_and_zero_streams_as_tarfile(tmp_path: Path) -> None:
    for data in [b"", b"\0" * 512, b"\0" * 10240, b"\0" * 100, b"not a tar" * 100]:
        assert by_tarstream(data, tmp=tmp_path)[0] == by_tarfile(data)
    assert by_tarstream(b"", tmp=tmp_path)[0][0][0] == "ReadError"


def deliberate_refusal(got: list[Any], want: list[Any]) -> bool:
    """Where the reader is stricter than tarfile on purpose: a pax record that does not end past its
    own '=' with a newline, or a long-name/pax header over 1 MiB, is a ReadError (tarfile's handling
    of those is quadratic or reads them whole). The members before it must be tarfile's."""
    last = got[-1] if got else None
    return (isinstance(last, tuple) and last[0] == "ReadError"
            and ("malformed pax record" in last[1] or "ocibox takes at most" in last[1])
            and got[:-1] == want[: len(got) - 1])


def test_corrupted_and_truncated_streams_as_tarfile(tmp_path: Path) -> None:
    """Every outcome (members, contents, where a ReadError comes or the archive silently ends) is
    tarfile's, for byte flips in headers and pax records and for truncation at any point."""
    rng = random.Random(6)
    bases = [ordinary(tarfile.PAX_FORMAT, pax=True), ordinary(tarfile.GNU_FORMAT)] + [d for _, d in unusual()]
    checked = refused = 0
    for base in bases:
        # header blocks of the archive (where corruption changes the parse)
        headers = [i for i in range(0, len(base), 512) if base[i + 257 : i + 262] == b"ustar"]
        for _ in range(150):
            data = bytearray(base)
            how = rng.random()
            if how < 0.3:
                data = data[: rng.randrange(len(data))]
            else:
                h = rng.choice(headers)
                for _ in range(rng.randint(1, 3)):
                    pos = h + rng.randrange(512 if how < 0.8 else 1024)
                    if pos < len(data):
                        data[pos] = rng.choice([0, 0x1C, 0x20, 0x2B, 0x2D, 0x30, 0x37, 0x38, 0x5F, 0x80, 0xFF,
                                                rng.randrange(256)])
                if rng.random() < 0.6:  # a valid checksum: the fields themselves are parsed
                    block = data[h : h + 512]
                    block[148:156] = b"        "
                    data[h + 148 : h + 156] = b"%06o\0 " % sum(block)
            want = by_tarfile(bytes(data))
            got, _fast = by_tarstream(bytes(data), rng.randrange(1000), tmp=tmp_path)
            if got != want and deliberate_refusal(got, want):
                refused += 1
                continue
            assert got == want, (bytes(data[h:h + 512]) if how >= 0.3 else len(data), got[len(want) - 1:][:2], want[-1])
            checked += 1
    assert checked + refused == 150 * len(bases) and refused < checked // 10


# ---------------------------------------------------------------- the review's hostile inputs
def _raw_header(name: bytes, typ: bytes, size: int) -> bytes:
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"00000000000\0"
    h[156:157] = typ
    h[257:265] = b"ustar\x0000"
    h[148:156] = b"        "
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def _pax(records: bytes) -> bytes:
    return _raw_header(b"././@PaxHeader", b"x", len(records)) + records + b"\0" * (-len(records) % 512)


def _record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + len(str(len(body)))
    n = len(body) + len(str(n))
    return b"%d" % n + body


def _members(data: bytes, chunk: int = 1 << 20) -> list[Any]:
    class Chunks:
        def __init__(self) -> None:
            self.f = io.BytesIO(data)

        def read(self, n: int = -1, /) -> bytes:
            return self.f.read(chunk)

    ts, out = TarStream(Chunks()), []
    while (m := ts.next()) is not None:
        out.append(m)
    return out


def test_entries_handed_to_tarfile_do_not_copy_the_buffer() -> None:
    """Putting back a header that tarfile must parse moves the position back: copying the rest of a
    decompressed chunk (MBs) for each such entry made a few KB of zstd cost hours."""
    data = b"".join(_raw_header(b"f%05d" % i, b"\0", 0) for i in range(2000)) + b"\0" * 1024
    ts = TarStream(io.BytesIO(data))
    ts.next()
    buf = ts._buf
    assert len(_members(data)) == 2000
    for _ in range(50):
        ts.next()
    assert ts._buf is buf  # the same 1 MB buffer throughout: nothing was copied


@pytest.mark.parametrize("records", [
    b"2 2 2 2 2 2 2 2 2 2 a=\n",  # lengths that end before the '=' (tarfile: quadratic keywords)
    b"30 path=no-newline-at-the-endxx",  # a record not ending in a newline
    b"99 path=x\n",  # longer than the header
])
def test_malformed_pax_records_are_refused(records: bytes) -> None:
    data = _pax(records) + _raw_header(b"a", b"0", 0) + b"\0" * 1024
    with pytest.raises(tarfile.ReadError, match="malformed pax record"):
        _members(data)
    # the same records behind hdrcharset (which the fast path leaves to tarfile) are refused as well
    with pytest.raises(tarfile.ReadError, match="malformed pax record"):
        _members(_pax(b"21 hdrcharset=BINARY\n" + records) + _raw_header(b"a", b"0", 0) + b"\0" * 1024)


@pytest.mark.parametrize("typ", [b"L", b"K", b"x", b"g"])
def test_long_name_and_pax_headers_are_capped(typ: bytes) -> None:
    """A GNU long name or pax header is read whole: one that claims 512 MiB is refused at once."""
    data = _raw_header(b"././@LongLink", typ, 512 << 20) + b"a" * 4096
    with pytest.raises(tarfile.ReadError, match=r"ocibox takes at most 1048576"):
        _members(data)


def test_sparse_holes_stay_holes(tmp_path: Path) -> None:
    """A pax GNU sparse 0.0 member that claims 1 GiB and stores nothing: a sparse file, not 1 GiB of
    zeros (a 2.5 KB layer could otherwise fill the store's disk)."""
    recs = _record(b"GNU.sparse.size", b"%d" % (1 << 30)) + _record(b"GNU.sparse.name", b"big")
    data = _pax(recs) + _raw_header(b"big", b"0", 0) + b"\0" * 1024
    ts = TarStream(io.BytesIO(data))
    m = ts.next()
    assert m is not None and not isinstance(m, Member) and m.sparse is not None
    fd = os.open(tmp_path / "big", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        assert ts.write_data(m, fd) == 1 << 30
    finally:
        os.close(fd)
    st = os.stat(tmp_path / "big")
    assert st.st_size == 1 << 30 and st.st_blocks * 512 < 1 << 20
