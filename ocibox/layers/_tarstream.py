"""A streaming tar reader: a fast path for ordinary ustar/pax entries, ``tarfile`` for the rest.

``tarfile`` stays the reference parser. This module reads the common entries of
container layers itself -- ustar headers (POSIX or GNU magic) of regular files,
directories, symlinks and hardlinks, each optionally preceded by one pax
extended header -- and computes exactly what ``tarfile`` would (same field
decoding, same pax rules, same checksum); file contents go from its buffer to
the output fd with no copy. Anything else -- a bad or signed checksum, base-256
numbers, global pax headers, ``hdrcharset``, GNU sparse keys, GNU long names,
old GNU sparse files, devices, FIFOs, V7 headers, the end of the archive -- is
pushed back and parsed by ``tarfile.TarInfo.fromtarfile`` on this same stream,
with ``TarFile.next``'s error handling; its contents are read through
``tarfile.ExFileObject`` (sparse maps included).

Why: ``TarFile``'s header parsing and its layered file objects (``_Stream``,
``BufferedReader``, ``_FileInFile``) cost more than the file creation itself for
layers of many small files (see ``benchmarks/unpack.py --profile``).
"""

from __future__ import annotations

import os
import re
import tarfile
from typing import Any

from ocibox.digest import Readable

BLOCK = tarfile.BLOCKSIZE
_FAST_TYPES = frozenset((tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE))
_MAGICS = (tarfile.POSIX_MAGIC, tarfile.GNU_MAGIC)  # b"ustar\x0000", b"ustar  \x00"
_NUMBERS = ((100, 108), (108, 116), (116, 124), (124, 136), (136, 148), (329, 337), (337, 345))
_PAX_RECORD = re.compile(rb"(\d+) ([^=]+)=")  # tarfile's
#: GNU long names/links and pax headers are read whole into memory: their size is capped
MAX_META = 1 << 20
_META_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
               tarfile.SOLARIS_XHDTYPE)
_PAX_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


def _check_pax_record(buf: bytes, match: re.Match[bytes], length: int) -> None:
    """A pax record "LEN KEY=VALUE\n" must end past its '=' with a newline, within the header.
    tarfile accepts shorter lengths and then re-reads the rest of the record as new keywords:
    quadratic in time and memory (68 KB of such records made 1 GB of keywords)."""
    end = match.start(1) + length
    if end <= match.end(2) or end > len(buf) or buf[end - 1 : end] != b"\n":
        raise tarfile.ReadError(f"malformed pax record at offset {match.start(1)} (length {length}): "
                                "a hostile or broken layer")


_PAX_NAME_FIELDS = frozenset({"path", "linkpath", "uname", "gname"})


def _pax_decode(value: bytes) -> str:
    """tarfile's decoding of a pax name field: UTF-8, else tarfile's encoding, with surrogateescape."""
    try:
        return value.decode("utf-8", "strict")
    except UnicodeDecodeError:
        return value.decode(_ENCODING, _ERRORS)
_ENCODING = tarfile.ENCODING
_ERRORS = "surrogateescape"


class Member:
    """A tar entry parsed by the fast path: the attributes of ``tarfile.TarInfo`` that matter here."""

    __slots__ = (
        "devmajor",
        "devminor",
        "gid",
        "linkname",
        "mode",
        "mtime",
        "name",
        "pax_headers",
        "size",
        "sparse",
        "type",
        "uid",
    )

    name: str
    linkname: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: float | int
    devmajor: int
    devminor: int
    pax_headers: dict[str, str]
    sparse: None

    def isreg(self) -> bool:
        return self.type == tarfile.REGTYPE

    def isdir(self) -> bool:
        return self.type == tarfile.DIRTYPE

    def issym(self) -> bool:
        return self.type == tarfile.SYMTYPE

    def islnk(self) -> bool:
        return self.type == tarfile.LNKTYPE

    def ischr(self) -> bool:
        return False

    def isblk(self) -> bool:
        return False

    def isfifo(self) -> bool:
        return False


def _nts(b: bytes) -> str:
    p = b.find(b"\0")
    if p != -1:
        b = b[:p]
    return b.decode(_ENCODING, _ERRORS)


def _nti(b: bytes) -> int:
    """tarfile's ``nti`` for octal fields; ValueError for base-256 (left to tarfile) or garbage."""
    if b[0] in (0o200, 0o377):
        raise ValueError("base-256 number")
    p = b.find(b"\0")
    if p != -1:
        b = b[:p]
    return int(b.decode("ascii").strip() or "0", 8)


def _block(n: int) -> int:
    return (n + BLOCK - 1) // BLOCK * BLOCK


class _Shim:
    """What ``TarInfo.fromtarfile`` and ``ExFileObject`` use of a ``TarFile``."""

    def __init__(self, stream: TarStream) -> None:
        self.fileobj = stream
        self.encoding = _ENCODING
        self.errors = _ERRORS
        self.pax_headers: dict[str, str] = {}  # global pax headers ('g' entries), as in TarFile
        self.offset = 0


class TarStream:
    """Members of an uncompressed tar stream, in order, read once (no seeking back).

    ``next()`` returns a :class:`Member` or a ``tarfile.TarInfo``, or None at the end; raises
    ``tarfile.ReadError`` where ``TarFile.next`` would. ``write_data(member, fd)`` writes the
    current member's contents to ``fd``; contents not read are skipped by the next ``next()``.
    """

    def __init__(self, src: Readable) -> None:
        self._src = src
        self._buf = b""
        self._view = memoryview(self._buf)
        self._pos = 0
        self._offset = 0  # stream offset of self._buf[self._pos]
        self._eof = False
        self._shim = _Shim(self)
        self._end = 0  # stream offset where the next header starts
        self._data = 0  # stream offset of the current member's data

    # ----- file-object surface for tarfile (read, tell, seek forward) ------------------------------
    def read(self, n: int = -1, /) -> bytes:
        if n < 0:
            raise ValueError("TarStream.read needs a size")
        end = self._pos + n
        if end <= len(self._buf):
            out = self._buf[self._pos : end]
            self._pos = end
            self._offset += n
            return out
        parts = []
        while n > 0:
            if self._pos >= len(self._buf) and not self._fill():
                break
            take = min(n, len(self._buf) - self._pos)
            parts.append(self._buf[self._pos : self._pos + take])
            self._pos += take
            self._offset += take
            n -= take
        return b"".join(parts)

    def tell(self) -> int:
        return self._offset

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence != 0 or pos < self._offset:
            raise tarfile.StreamError("seeking backwards is not allowed")
        self._skip(pos - self._offset)
        return self._offset

    def seekable(self) -> bool:
        return False

    # ----- internals -------------------------------------------------------------------------------
    def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = self._src.read(-1)
        if not chunk:
            self._eof = True
            return False
        self._buf, self._view, self._pos = chunk, memoryview(chunk), 0
        return True

    def _skip(self, n: int) -> bool:
        """Skip ``n`` bytes; False if the stream ended first."""
        while n > 0:
            if self._pos >= len(self._buf) and not self._fill():
                return False
            take = min(n, len(self._buf) - self._pos)
            self._pos += take
            self._offset += take
            n -= take
        return True

    def _unread(self, data: bytes) -> None:
        """Put back ``data``, the bytes just read. When they all came from the current buffer the
        position moves back (no copy: a buffer can be a whole decompressed chunk of many MB, and
        copying its rest for every entry handed to tarfile made such layers quadratic)."""
        n = len(data)
        if self._pos >= n and self._view[self._pos - n : self._pos] == data:
            self._pos -= n
        else:
            self._buf = data + self._buf[self._pos :]
            self._view, self._pos = memoryview(self._buf), 0
        self._offset -= n

    # ----- members ---------------------------------------------------------------------------------
    def next(self) -> Member | tarfile.TarInfo | None:
        if self._offset != self._end:  # as TarFile.next: seek(end - 1), then read(1)
            if self._end == 0:
                return None
            if self._end - 1 < self._offset:
                raise tarfile.StreamError("seeking backwards is not allowed")
            if not self._skip(self._end - self._offset):
                raise tarfile.ReadError("unexpected end of data")
        start = self._offset
        m = self._fast() if not self._shim.pax_headers else None
        if m is not None:
            return m
        if self._offset != start:  # pragma: no cover - _fast puts back what it read
            raise tarfile.ReadError("internal error: fast path moved the stream")
        return self._slow()

    def _fast(self) -> Member | None:
        """The next member if the fast path can parse it; else None, with nothing consumed."""
        hdr = self.read(BLOCK)
        if hdr[156:157] == tarfile.XHDTYPE:
            pax_data = self._fast_pax(hdr)
            if pax_data is None:
                self._unread(hdr)
                return None
            nxt = self.read(BLOCK)
            m = self._header(nxt)
            headers = self._pax_records(pax_data) if m is not None else None
            if m is None or headers is None:
                self._unread(hdr + pax_data + nxt)
                return None
            _apply_pax(m, headers)
            if m.size < 0:
                self._unread(hdr + pax_data + nxt)
                return None
        else:
            m = self._header(hdr)
            if m is None:
                self._unread(hdr)
                return None
        self._data = self._offset
        self._end = self._offset + (_block(m.size) if m.type == tarfile.REGTYPE else 0)
        return m

    def _header(self, hdr: bytes) -> Member | None:
        """A Member from one ustar header block, exactly as ``TarInfo.frombuf`` + ``_proc_builtin``
        would make it, or None for anything the fast path leaves to tarfile."""
        if len(hdr) != BLOCK:
            return None
        t = hdr[156:157]
        if t not in _FAST_TYPES or hdr[257:265] not in _MAGICS:
            return None
        try:
            chksum = _nti(hdr[148:156])
            if chksum != 256 + sum(hdr[:148]) + sum(hdr[156:]):
                return None  # tarfile also accepts the signed sum; let it decide
            m = Member()
            m.mode = _nti(hdr[100:108])
            m.uid = _nti(hdr[108:116])
            m.gid = _nti(hdr[116:124])
            m.size = _nti(hdr[124:136])
            m.mtime = _nti(hdr[136:148])
            m.devmajor = _nti(hdr[329:337])
            m.devminor = _nti(hdr[337:345])
        except ValueError:
            return None
        if m.size < 0:
            return None
        name = _nts(hdr[0:100])
        if t == tarfile.DIRTYPE:
            name = name.rstrip("/")
        prefix = _nts(hdr[345:500])
        if prefix:
            name = prefix + "/" + name
        if t == tarfile.DIRTYPE:
            name = name.rstrip("/")  # _proc_builtin
        m.name = name
        m.linkname = _nts(hdr[157:257])
        m.type = t
        m.pax_headers = {}
        m.sparse = None
        return m

    def _fast_pax(self, hdr: bytes) -> bytes | None:
        """The data blocks of a pax extended header the fast path can take, else None (nothing read)."""
        if len(hdr) != BLOCK or hdr[257:265] not in _MAGICS:
            return None
        try:
            if _nti(hdr[148:156]) != 256 + sum(hdr[:148]) + sum(hdr[156:]):
                return None
            for a, b in _NUMBERS:  # frombuf parses every numeric field, of a pax header too
                _nti(hdr[a:b])
            size = _nti(hdr[124:136])
        except ValueError:
            return None
        if size <= 0 or size > (1 << 20):
            return None
        data = self.read(_block(size))
        if len(data) != _block(size) or b"hdrcharset" in data or b"GNU.sparse" in data:
            self._unread(data)
            return None
        return data

    @staticmethod
    def _pax_records(buf: bytes) -> dict[str, str] | None:
        """tarfile's ``_proc_pax`` record loop (utf-8, surrogateescape), or None to leave it to tarfile."""
        headers: dict[str, str] = {}
        pos = 0
        while True:
            match = _PAX_RECORD.match(buf, pos)
            if not match:
                break
            length = int(match.group(1))
            if length == 0:
                return None
            _check_pax_record(buf, match, length)
            value = buf[match.end(2) + 1 : match.start(1) + length - 1]
            key = match.group(2).decode("utf-8", _ERRORS)
            headers[key] = _pax_decode(value) if key in _PAX_NAME_FIELDS else value.decode("utf-8", _ERRORS)
            pos += length
        return headers

    def _vet_meta_header(self) -> None:
        """Before tarfile reads the next header: a GNU long name/link or a pax header is read by it
        whole into memory, so one over ``MAX_META`` bytes is refused (a few KB of compressed stream
        could claim GBs); pax records that do not reach their own '=' make tarfile's record loop
        quadratic in time and memory, so they are refused too. Nothing is consumed."""
        hdr = self.read(BLOCK)
        try:
            if len(hdr) != BLOCK or hdr[156:157] not in _META_TYPES:
                return
            try:
                size = _nti(hdr[124:136])
            except ValueError:  # base-256: far beyond the cap anyway
                size = MAX_META + 1
            if size > MAX_META:
                raise tarfile.ReadError(f"a {hdr[156:157].decode(errors='replace')!r} header of {size} bytes "
                                        f"(ocibox takes at most {MAX_META}): a hostile or broken layer")
            if hdr[156:157] in _PAX_TYPES and size > 0:
                data = self.read(size)
                try:
                    pos = 0
                    while (match := _PAX_RECORD.match(data, pos)) is not None:
                        length = int(match.group(1))
                        if length == 0:
                            break
                        _check_pax_record(data, match, length)
                        pos += length
                finally:
                    self._unread(data)
        finally:
            self._unread(hdr)

    def _slow(self) -> tarfile.TarInfo | None:
        """The next member by ``tarfile``, with ``TarFile.next``'s handling of header errors."""
        self._vet_meta_header()
        shim = self._shim
        shim.offset = self._offset
        try:
            ti = tarfile.TarInfo.fromtarfile(shim)  # type: ignore[arg-type]
        except tarfile.EOFHeaderError:  # type: ignore[attr-defined]
            return None
        except tarfile.InvalidHeaderError as e:  # type: ignore[attr-defined]
            if shim.offset == 0:
                raise tarfile.ReadError(str(e)) from None
            return None
        except tarfile.EmptyHeaderError:  # type: ignore[attr-defined]
            if shim.offset == 0:
                raise tarfile.ReadError("empty file") from None
            return None
        except tarfile.TruncatedHeaderError as e:  # type: ignore[attr-defined]
            if shim.offset == 0:
                raise tarfile.ReadError(str(e)) from None
            return None
        except tarfile.SubsequentHeaderError as e:  # type: ignore[attr-defined]
            raise tarfile.ReadError(str(e)) from None
        self._data = ti.offset_data
        self._end = shim.offset
        return ti

    def write_data(self, m: Member | tarfile.TarInfo, fd: int) -> int:
        """Write the contents of ``m``, the member ``next()`` just returned, to ``fd``; their size."""
        if not isinstance(m, Member):
            src = tarfile.ExFileObject(self._shim, m)  # type: ignore[arg-type]
            if m.sparse is not None:
                return self._write_sparse(m, src, fd)
            total = 0
            while chunk := src.read(1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                total += len(chunk)
            return total
        if self._offset != self._data:
            raise tarfile.StreamError("member data already read")
        n = m.size
        while n > 0:
            if self._pos >= len(self._buf) and not self._fill():
                raise tarfile.ReadError("unexpected end of data")
            take = min(n, len(self._buf) - self._pos)
            view = self._view[self._pos : self._pos + take]
            while view:
                view = view[os.write(fd, view) :]
            self._pos += take
            self._offset += take
            n -= take
        return m.size


    @staticmethod
    def _write_sparse(m: tarfile.TarInfo, src: Any, fd: int) -> int:
        """A GNU sparse member: its data segments at their offsets, the holes left holes (what
        tarfile's own extraction does). Written out as zeros, a few KB of layer that claims a
        terabyte file would fill the store's disk."""
        segments: list[tuple[int, int]] = getattr(m, "sparse", None) or []  # typeshed: int
        src = src.raw  # tarfile's _FileInFile: it seeks within the member without seeking the stream
        for offset, size in segments:
            src.seek(offset)
            os.lseek(fd, offset, os.SEEK_SET)
            while size > 0:
                chunk = src.read(min(size, 1 << 20))
                if not chunk:
                    raise tarfile.ReadError("unexpected end of data")
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                size -= len(chunk)
        os.ftruncate(fd, m.size)
        return int(m.size)


def _apply_pax(m: Member, headers: dict[str, str]) -> None:
    """``TarInfo._apply_pax_info`` for a Member (GNU.sparse keys never get here)."""
    conv: dict[str, Any] = tarfile.PAX_NUMBER_FIELDS
    for keyword, value in headers.items():
        if keyword in tarfile.PAX_FIELDS:
            v: Any = value
            if keyword in conv:
                try:
                    v = conv[keyword](value)
                except ValueError:
                    v = 0
            if keyword == "path":
                m.name = v.rstrip("/")
            elif keyword == "linkpath":
                m.linkname = v
            elif keyword in ("uname", "gname"):
                pass  # not kept
            else:
                setattr(m, keyword, v)
    m.pax_headers = headers
