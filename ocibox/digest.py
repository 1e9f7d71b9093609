"""Content digests and readers that verify size and digest while streaming."""

from __future__ import annotations

from ocibox._record import record
from ocibox.errors import DigestMismatch, UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (5 ms of ocibox run)

if TYPE_CHECKING:
    import hashlib
    from typing import Protocol

#: the digest algorithms ocibox accepts, with the number of hex digits of each
ALGORITHMS = {"sha256": 64, "sha512": 128}
#: as text: compiled (and re imported) only for a digest that is not well formed
_DIGEST_RE = r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$"


@record(order=True)
class Digest:
    """``algorithm:hex``, e.g. ``sha256:e3b0...``. Only sha256 and sha512 are accepted."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        algo, _, hexpart = text.partition(":")
        if len(hexpart) == ALGORITHMS.get(algo) and not hexpart.strip("0123456789abcdef"):
            return cls(algo, hexpart)  # well formed: no re (with enum, ~5 ms of a warm run)
        import re  # the rules, to say which one the text breaks

        m = re.match(_DIGEST_RE, text)
        if not m:
            raise UsageError(f"invalid digest {text!r}: expected ALGORITHM:HEX, e.g. sha256:<64 hex digits>")
        algo, hexpart = m.group(1), m.group(2)
        if algo not in ALGORITHMS:
            raise UsageError(f"invalid digest {text!r}: unsupported algorithm {algo!r} (use sha256 or sha512)")
        if len(hexpart) != ALGORITHMS[algo] or not re.fullmatch(r"[0-9a-f]+", hexpart):
            raise UsageError(
                f"invalid digest {text!r}: {algo} needs {ALGORITHMS[algo]} lowercase hex digits"
            )
        return cls(algo, hexpart)

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        import hashlib  # here, not at import: a warm 'ocibox run' parses digests but hashes nothing

        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        import hashlib

        return hashlib.new(self.algorithm)

    @property
    def short(self) -> str:
        """The first 12 hex digits, as docker shows image ids."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


if TYPE_CHECKING:

    class Readable(Protocol):
        def read(self, n: int = -1, /) -> bytes: ...

else:

    class Readable:
        """Anything with ``read(n) -> bytes`` (a Protocol for mypy; typing is not imported at runtime)."""


def verify_bytes(data: bytes, digest: Digest, size: int | None, what: str) -> None:
    """Raise :class:`DigestMismatch` unless ``data`` has ``size`` and ``digest``."""
    if size is not None and len(data) != size:
        raise DigestMismatch(f"{what}: expected {size} bytes, got {len(data)}")
    import hashlib

    got = hashlib.new(digest.algorithm, data).hexdigest()
    if got != digest.hex:
        raise DigestMismatch(f"{what}: digest mismatch, expected {digest}, got {digest.algorithm}:{got}")


class VerifyingReader:
    """Wraps a reader; counts and hashes what passes, never reads past ``size``.

    At EOF of the inner stream (or once ``size`` bytes have passed) the size and
    digest are checked, and :class:`DigestMismatch` is raised on the read that
    reaches the end. A stream longer than ``size`` is detected by reading one
    byte past the end once, and is an error too.
    """

    def __init__(self, inner: Readable, digest: Digest, size: int | None, what: str) -> None:
        self._inner = inner
        self.digest = digest
        self.size = size
        self.what = what
        self._hash = digest.hasher()
        self.count = 0
        self._done = False

    def read(self, n: int = -1, /) -> bytes:
        if self._done:
            return b""
        if self.size is not None:
            left = self.size - self.count
            if left <= 0:
                self._finish(extra=self._inner.read(1))
                return b""
            n = left if n < 0 else min(n, left)
        data = self._inner.read(n)
        if not data:
            self._finish(extra=b"")
            return b""
        self.count += len(data)
        self._hash.update(data)
        return data

    def _finish(self, extra: bytes) -> None:
        self._done = True
        if extra:
            raise DigestMismatch(f"{self.what}: stream is longer than its descriptor's {self.size} bytes")
        if self.size is not None and self.count != self.size:
            raise DigestMismatch(f"{self.what}: stream ended after {self.count} of {self.size} bytes")
        got = self._hash.hexdigest()
        if got != self.digest.hex:
            raise DigestMismatch(
                f"{self.what}: digest mismatch, expected {self.digest}, got {self.digest.algorithm}:{got}"
            )

    def verify_to_end(self) -> None:
        """Drain what is left (e.g. tar padding after the end marker) and check."""
        while self.read(1 << 16):
            pass

    @property
    def verified(self) -> bool:
        return self._done
