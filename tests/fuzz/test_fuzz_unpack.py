"""Bounded hypothesis fuzzing of the layer unpacker (part of the normal suite, ~200 examples each).

Generated tar streams (names with ``..``, absolute names, names through symlinks, symlinks and
hardlinks aimed at the canary directory next to the store, whiteouts, opaque markers, PAX headers
with xattrs, path/linkpath/uid overrides, devices) are unpacked by ``ocibox.layers.unpack_layer``
into a store that sits next to canary files: it either succeeds with everything inside the layer
directory or raises an OciboxError, never anything else, and never changes the canary area
(names, contents, modes, owners, mtimes, link counts, xattrs). A longer run: tests/fuzz/long_fuzz.py.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import tarfuzz
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="owners, devices and trusted xattrs need root")

BOUNDED = settings(max_examples=int(os.environ.get("OCIBOX_FUZZ_EXAMPLES", "200")), deadline=None, derandomize=False, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
OUTCOMES: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def area() -> Iterator[None]:
    tarfuzz.make_area()
    yield
    shutil.rmtree(tarfuzz.AREA)


def _note(outcome: str) -> None:
    OUTCOMES[outcome] = OUTCOMES.get(outcome, 0) + 1


@BOUNDED
@given(tarfuzz.ENTRIES)
def test_generated_tar_streams(entries: list[dict[str, Any]]) -> None:
    data = tarfuzz.build_tar(entries)
    assume(data is not None)
    assert data is not None
    _note(tarfuzz.check_unpack(data))


@BOUNDED
@given(tarfuzz.ENTRIES, st.sampled_from(["gzip", "zstd"]))
def test_generated_compressed(entries: list[dict[str, Any]], compression: str) -> None:
    data = tarfuzz.build_tar(entries)
    assume(data is not None)
    assert data is not None
    _note(tarfuzz.check_unpack(data, compression))


@BOUNDED
@given(tarfuzz.ENTRIES, st.data())
def test_mutated_tar_bytes(entries: list[dict[str, Any]], data: st.DataObject) -> None:
    """Valid streams with bytes changed, cut short, or garbage appended: tarfile sees broken
    headers, sizes and checksums; the unpacker still only ever raises our errors."""
    tar = tarfuzz.build_tar(entries)
    assume(tar is not None)
    assert tar is not None
    b = bytearray(tar)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(b) - 1))
        b[i] = data.draw(st.integers(0, 255))
    how = data.draw(st.sampled_from(["flip", "cut", "append"]))
    if how == "cut":
        b = b[: data.draw(st.integers(0, len(b)))]
    elif how == "append":
        b += data.draw(st.binary(min_size=1, max_size=1024))
    _note(tarfuzz.check_unpack(bytes(b)))


@BOUNDED
@given(st.binary(max_size=4096), st.sampled_from(["none", "gzip", "zstd"]))
def test_random_bytes(blob: bytes, compression: str) -> None:
    _note(tarfuzz.check_unpack(blob, compression))


def test_some_examples_unpacked_and_some_refused() -> None:
    """The generators reach both sides of the property (runs after the ones above)."""
    assert OUTCOMES.get("ok", 0) > 20, OUTCOMES
    assert OUTCOMES.get("HostileLayerError", 0) > 20, OUTCOMES
