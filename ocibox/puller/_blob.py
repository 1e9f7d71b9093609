"""A blob as a byte stream that resumes (the layer download's hot path: no work per chunk beyond
counting, teeing to the partial file and the progress callback)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ocibox.errors import RegistryError, TransportError
from ocibox.image import Descriptor
from ocibox.puller._httpx import httpx

if TYPE_CHECKING:
    from ocibox.puller._client import RegistryClient

CHUNK = 1 << 20


class BlobStream:
    """A blob as a stream with ``read(n)``; resumes with ``Range`` after a broken connection.

    - Serves the bytes of a ``partial`` file (an earlier, interrupted download of the same blob)
      first, then asks the registry for the rest with ``Range: bytes=N-``.
    - Tees what comes from the network to ``partial`` so a later process can resume.
    - Never reads past ``desc.size`` (+1 byte, to notice a longer stream); the caller wraps it in
      a ``VerifyingReader`` which checks size and digest at EOF over all the bytes.
    - Foreign layers: the descriptor's ``urls`` are tried first, without credentials.
    """

    def __init__(self, client: RegistryClient, repository: str, desc: Descriptor, what: str, *,
                 partial: Path | None = None, on_bytes: Callable[[int], None] | None = None) -> None:
        self.client = client
        self.repository = repository
        self.desc = desc
        self.what = what
        self.on_bytes = on_bytes
        self.pos = 0
        self.resumed_from = 0  # bytes taken from the partial file
        self.ranges: list[int] = []  # offsets of Range requests made (for tests and the debug log)
        self._buf = b""
        self._resp: httpx.Response | None = None
        self._iter: Iterator[bytes] | None = None
        self._failures = 0
        self._partial_in: IO[bytes] | None = None
        self._tee: IO[bytes] | None = None
        self.partial = partial
        if partial is not None:
            try:
                size = partial.stat().st_size
            except FileNotFoundError:
                size = -1
            if size > desc.size:
                partial.unlink()
                size = -1
            if size > 0:
                self._partial_in = open(partial, "rb")  # noqa: SIM115 - closed in close()/read()
                self.resumed_from = size
            self._tee = open(partial, "ab")  # noqa: SIM115 - closed in close()
        self._sources = [u for u in desc.urls if u.startswith(("http://", "https://"))]

    # ------------------------------------------------------------------ network
    def _open(self) -> None:
        headers = {"Accept-Encoding": "identity"}
        if self.pos:
            headers["Range"] = f"bytes={self.pos}-"
            self.ranges.append(self.pos)
        errors: list[str] = []
        for url in self._sources:
            try:
                resp = self.client.send("GET", "", self.what, headers=headers, url=url, use_auth=False)
            except TransportError as e:
                errors.append(str(e))
                continue
            if resp.status_code in (200, 206):
                self._accept(resp)
                return
            errors.append(f"{url}: {resp.status_code}")
            resp.close()
        resp = self.client.send("GET", f"/v2/{self.repository}/blobs/{self.desc.digest}", self.what,
                                headers=headers)
        self.client.check(resp, self.what + (f" (foreign URLs failed: {'; '.join(errors)})" if errors else ""))
        self._accept(resp)

    def _accept(self, resp: httpx.Response) -> None:
        self._resp = resp
        self._iter = resp.iter_raw()
        if self.pos and resp.status_code == 200:
            # The server ignored Range: skip what we already have.
            skip = self.pos
            while skip > 0:
                chunk = next(self._iter, b"")
                if not chunk:
                    break
                if len(chunk) > skip:
                    self._buf = chunk[skip:]
                    skip = 0
                else:
                    skip -= len(chunk)
        elif self.pos and resp.status_code == 206:
            cr = resp.headers.get("content-range", "")
            start = cr.removeprefix("bytes ").split("-")[0]
            if not start.isdigit() or int(start) != self.pos:
                resp.close()
                raise RegistryError(f"{self.what}: asked for bytes from {self.pos}, got range {cr!r}")

    def _close_resp(self) -> None:
        if self._resp is not None:
            with contextlib.suppress(Exception):
                self._resp.close()
        self._resp = None
        self._iter = None

    def _next_chunk(self) -> bytes:
        while True:
            if self._iter is None:
                self._open()
            assert self._iter is not None
            try:
                chunk = next(self._iter, b"")
                if chunk or self.pos >= self.desc.size:
                    return chunk
                why = "the body ended early"
            except httpx.TransportError as e:
                why = type(e).__name__
            # Cut mid-body: back off and resume from where we are.
            self._close_resp()
            self._failures += 1
            if not self.client.policy.should_retry(self._failures):
                raise TransportError(
                    f"{self.what}: connection broke after {self.pos} of {self.desc.size} bytes"
                    f" ({why}), {self._failures} times; try again later (the download resumes)",
                    temporary=True) from None
            self.client.sleep(self.client.policy.delay(self._failures))

    # ------------------------------------------------------------------ reader
    def read(self, n: int = -1, /) -> bytes:
        if n < 0:
            n = CHUNK
        if self._partial_in is not None:
            data = self._partial_in.read(min(n, self.resumed_from - self.pos))
            if data:
                self.pos += len(data)
                if self.on_bytes:
                    self.on_bytes(len(data))
                return data
            self._partial_in.close()
            self._partial_in = None
        if not self._buf:
            # at the end: one read past the size is allowed, to notice a longer stream
            if self.pos >= self.desc.size and self._iter is None:
                return b""
            self._buf = self._next_chunk()
            if not self._buf:
                return b""
        data, self._buf = self._buf[:n], self._buf[n:]
        self.pos += len(data)
        if self._tee is not None:
            try:
                self._tee.write(data)
            except OSError as e:
                from ocibox.store import disk_error

                raise disk_error(e, f"{self.what}: saving the download") from None
        if self.on_bytes:
            self.on_bytes(len(data))
        return data

    def close(self) -> None:
        self._close_resp()
        for f in (self._partial_in, self._tee):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        self._partial_in = self._tee = None

    def __enter__(self) -> BlobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

