"""gzip inflate and zstd decompress speed on a ~200 MB layer-like tar, streaming in
256 KiB input chunks as ocibox's unpacker does. Prints a table of seconds and ratios.

    .venv/bin/python benchmarks/decompress.py [--size-mb 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_tar(size_mb: int) -> bytes:
    """A tar of host files (binaries, libraries, text), like an OS image layer."""
    out = subprocess.run(
        ["tar", "-c", "--ignore-failed-read", "-f", "-", "/usr/lib", "/usr/share", "/usr/bin"],
        capture_output=True, check=False,
    ).stdout
    return out[: size_mb << 20]


def stream(make: Callable[[], object], blob: bytes) -> int:
    d = make()
    total = 0
    src = io.BytesIO(blob)
    while True:
        chunk = src.read(256 * 1024)
        if not chunk:
            break
        while chunk:
            out = d.decompress(chunk, 1 << 20)  # type: ignore[attr-defined]
            total += len(out)
            chunk = d.unconsumed_tail  # type: ignore[attr-defined]
            if d.eof:  # type: ignore[attr-defined]
                break
    return total


def ocibox_reader(blob: bytes, compression: str) -> int:
    from ocibox.layers._decompress import decompressing_reader

    r = decompressing_reader(io.BytesIO(blob), compression, "bench")
    total = 0
    while True:
        b = r.read(1 << 20)
        if not b:
            return total
        total += len(b)


def timeit(fn: Callable[[], int], runs: int, expect: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t)
        assert n == expect, (n, expect)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    tar = make_tar(args.size_mb)
    gz = gzip.compress(tar, compresslevel=6)
    zs = zstandard.ZstdCompressor(level=3).compress(tar)
    print(f"tar {len(tar) / 1e6:.0f} MB, gzip -6 {len(gz) / 1e6:.0f} MB, zstd -3 {len(zs) / 1e6:.0f} MB")
    cases: list[tuple[str, Callable[[], int]]] = [
        ("zlib (stdlib)", lambda: stream(lambda: zlib.decompressobj(31), gz)),
    ]
    try:
        from zlib_ng import zlib_ng

        cases.append(("zlib_ng", lambda: stream(lambda: zlib_ng.decompressobj(31), gz)))
    except ImportError:
        print("zlib_ng not installed")
    try:
        from isal import isal_zlib

        cases.append(("isal (isal_zlib)", lambda: stream(lambda: isal_zlib.decompressobj(31), gz)))
    except ImportError:
        print("isal not installed")
    cases.append(("ocibox gzip reader", lambda: ocibox_reader(gz, "gzip")))
    cases.append(("ocibox zstd reader", lambda: ocibox_reader(zs, "zstd")))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.gz"
        p.write_bytes(gz)
        cases.append(("gzip -dc (binary)", lambda: len(subprocess.run(["gzip", "-dc", str(p)],
                                                                        capture_output=True).stdout)))
        results = [(name, timeit(fn, args.runs, len(tar))) for name, fn in cases]
    base = results[0][1]
    print(f"{'decompressor':<22} {'median s':>9} {'MB/s out':>9} {'vs zlib':>8}")
    for name, t in results:
        print(f"{name:<22} {t:>9.3f} {len(tar) / t / 1e6:>9.0f} {base / t:>7.2f}x")
    os.sync()


if __name__ == "__main__":
    main()
