"""Streaming decompression of layer blobs: gzip (isal), zstd (zstandard), or none.

Each reader pulls the compressed stream to its very end (the puller's verifying
reader checks the blob's digest only at EOF) and refuses trailing garbage and
truncated streams. Output per ``read`` is bounded, so a compression bomb costs
time, never unbounded memory.

gzip: ``isal.isal_zlib`` inflates about 2x faster than ``zlib`` and faster than
``zlib_ng`` on layer tars (see ``benchmarks/decompress.py``); ``zlib`` is the
fallback when isal is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ocibox.digest import Readable
from ocibox.errors import LayerError

_IN_CHUNK = 256 * 1024  # compressed bytes read from the blob at a time


def _gzip_factory() -> Callable[[], Any]:
    try:
        from isal import isal_zlib

        return lambda: isal_zlib.decompressobj(31)
    except ImportError:  # pragma: no cover - isal is a dependency
        import zlib

        return lambda: zlib.decompressobj(31)


class _Plain:
    def __init__(self, raw: Readable) -> None:
        self._raw = raw

    def read(self, n: int = -1, /) -> bytes:
        return self._raw.read(n if n > 0 else _IN_CHUNK)


class _Gzip:
    """Multi-member gzip, bounded output via ``max_length``/``unconsumed_tail``."""

    def __init__(self, raw: Readable, what: str) -> None:
        self._raw = raw
        self._what = what
        self._new = _gzip_factory()
        self._d = self._new()
        self._pending = b""  # compressed input not yet given to self._d
        self._eof = False
        self._any = False

    def read(self, n: int = -1, /) -> bytes:
        if n is None or n <= 0:
            n = 1 << 20
        while not self._eof:
            if not self._pending:
                self._pending = self._raw.read(_IN_CHUNK)
                if not self._pending:
                    self._eof = True
                    if not self._any:
                        raise LayerError(f"{self._what}: gzip stream is empty")
                    if not self._d.eof:
                        raise LayerError(f"{self._what}: gzip stream is truncated")
                    break
            if self._d.eof:
                # another member follows
                self._d = self._new()
            try:
                out = self._d.decompress(self._pending, n)
            except Exception as e:  # zlib.error / isal_zlib.error
                raise LayerError(f"{self._what}: corrupt gzip data ({e})") from None
            self._any = True
            if self._d.eof:
                self._pending = self._d.unused_data
            else:
                self._pending = self._d.unconsumed_tail
            if out:
                return bytes(out)
        return b""


class _Counting:
    """A reader that counts what passed."""

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self.seen = 0

    def read(self, n: int = -1, /) -> bytes:
        data = self._raw.read(n)
        self.seen += len(data)
        return data


class _Zstd:
    """Multi-frame zstd, at most ``n`` bytes out per read.

    Not ``decompressobj``: it returns everything one input piece holds, and a few KB of zstd can
    hold GBs (RLE blocks: 16 KB of zstd made 512 MiB in one call). zstandard's stream reader is
    bounded; it ends quietly where a stream is cut mid-frame, and then the tar reader finds the tar
    cut short and the diff_id check refuses the layer. A stream with no bytes at all is an error.
    """

    def __init__(self, raw: Readable, what: str) -> None:
        import zstandard

        self._zstd = zstandard
        self._what = what
        self._src = _Counting(raw)
        self._r = zstandard.ZstdDecompressor().stream_reader(self._src, read_size=_IN_CHUNK,  # type: ignore[arg-type]
                                                              read_across_frames=True)

    def read(self, n: int = -1, /) -> bytes:
        if n is None or n <= 0:
            n = 1 << 20
        try:
            out = self._r.read(n)
        except self._zstd.ZstdError as e:
            raise LayerError(f"{self._what}: corrupt zstd data ({e})") from None
        if not out and not self._src.seen:
            raise LayerError(f"{self._what}: zstd stream is empty")
        return bytes(out)


def decompressing_reader(raw: Readable, compression: str, what: str) -> Readable:
    """A reader of the uncompressed bytes of ``raw``."""
    if compression == "gzip":
        return _Gzip(raw, what)
    if compression == "zstd":
        return _Zstd(raw, what)
    if compression == "none":
        return _Plain(raw)
    raise LayerError(f"{what}: unknown compression {compression!r} (expected gzip, zstd or none)")


class Prefetcher:
    """Reads ``inner`` in a thread of its own, a bounded queue of chunks ahead of the consumer.

    Decompression (isal, zstandard) and sha256 release the GIL, so with the decompressing and
    hashing readers inside the thread they run beside the tar parsing and the per-entry work of
    the consumer: for one big layer that is most of a core. At most ``depth`` chunks of
    ``chunk`` bytes are buffered. ``close()`` stops the thread and waits for it, so that nobody
    reads ``inner`` once it returns. An exception in the thread is raised by the consumer's
    next ``read``.
    """

    def __init__(self, inner: Readable, chunk: int = 1 << 20, depth: int = 8) -> None:
        import queue
        import threading

        self._inner = inner
        self._chunk = chunk
        self._q: queue.Queue[bytes | BaseException] = queue.Queue(depth)
        self._full = queue.Full
        self._stop = threading.Event()
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: bytes | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except self._full:
                continue
        return False

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._inner.read(self._chunk)
                if not self._put(data) or not data:
                    return
        except BaseException as e:  # handed to the consumer
            self._put(e)

    def read(self, n: int = -1, /) -> bytes:
        while self._pos >= len(self._buf):
            if self._eof:
                return b""
            item = self._q.get()
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            if not item:
                self._eof = True
                return b""
            self._buf, self._pos = item, 0
        end = len(self._buf) if n < 0 else min(len(self._buf), self._pos + n)
        out = self._buf[self._pos : end]
        self._pos = end
        return out

    def drain(self) -> None:
        while self.read(self._chunk):
            pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
