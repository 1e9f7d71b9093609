import hashlib
import io

import pytest

from ocibox.digest import Digest, VerifyingReader, verify_bytes
from ocibox.errors import DigestMismatch, UsageError

DATA = b"hello world" * 1000
D = Digest("sha256", hashlib.sha256(DATA).hexdigest())


def test_parse_roundtrip() -> None:
    assert Digest.parse(str(D)) == D
    assert D.short == D.hex[:12]


@pytest.mark.parametrize(
    "text",
    ["", "sha256", "sha256:", "sha256:abc", "md5:" + "0" * 32, "sha256:" + "G" * 64, "sha256:" + "A" * 64,
     "sha512:" + "0" * 64],
)
def test_parse_invalid(text: str) -> None:
    with pytest.raises(UsageError):
        Digest.parse(text)


def read_all(r: VerifyingReader, n: int = 7) -> bytes:
    out = b""
    while chunk := r.read(n):
        out += chunk
    return out


def test_verifying_reader_ok() -> None:
    r = VerifyingReader(io.BytesIO(DATA), D, len(DATA), "blob")
    assert read_all(r) == DATA
    assert r.verified


def test_verifying_reader_never_reads_past_size() -> None:
    inner = io.BytesIO(DATA + b"EXTRA")
    r = VerifyingReader(inner, D, len(DATA), "blob")
    with pytest.raises(DigestMismatch, match="longer than its descriptor"):
        read_all(r, 1 << 20)
    # it read at most one byte past the end to detect it
    assert inner.tell() == len(DATA) + 1


def test_verifying_reader_short() -> None:
    r = VerifyingReader(io.BytesIO(DATA[:-1]), D, len(DATA), "blob x")
    with pytest.raises(DigestMismatch, match="ended after"):
        read_all(r)


def test_verifying_reader_changed_bytes() -> None:
    bad = bytearray(DATA)
    bad[5] ^= 1
    r = VerifyingReader(io.BytesIO(bytes(bad)), D, len(DATA), "blob x")
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        read_all(r)


def test_verify_bytes() -> None:
    verify_bytes(DATA, D, len(DATA), "x")
    with pytest.raises(DigestMismatch):
        verify_bytes(DATA + b"1", D, None, "x")
