"""Platform parsing, normalisation, matching and index selection (arm64 = arm64/v8)."""

from __future__ import annotations

import json

import pytest

from ocibox.errors import ManifestError, UsageError
from ocibox.image import OCI_INDEX, OCI_MANIFEST, Index, Platform


def P(s: str) -> Platform:
    return Platform.parse(s)


def test_parse_and_normalise() -> None:
    assert P("linux/amd64") == Platform("linux", "amd64", "")
    assert P("linux/arm64") == Platform("linux", "arm64", "v8")
    assert P("linux/arm64/v8") == Platform("linux", "arm64", "v8")
    assert P("linux/aarch64") == Platform("linux", "arm64", "v8")
    assert P("linux/x86_64") == Platform("linux", "amd64", "")
    assert P("linux/arm") == Platform("linux", "arm", "v7")
    assert P("Linux/ARM/V6") == Platform("linux", "arm", "v6")
    assert str(P("linux/arm/v7")) == "linux/arm/v7"
    for bad in ("linux", "linux/", "/amd64", "a/b/c/d", ""):
        with pytest.raises(UsageError):
            P(bad)


@pytest.mark.parametrize(("want", "have", "ok"), [
    ("linux/amd64", "linux/amd64", True),
    ("linux/amd64", "linux/arm64", False),
    ("linux/amd64", "windows/amd64", False),
    ("linux/arm64", "linux/arm64/v8", True),
    ("linux/arm64/v8", "linux/arm64", True),
    ("linux/arm/v7", "linux/arm/v7", True),
    ("linux/arm/v7", "linux/arm/v6", False),
    ("linux/arm", "linux/arm/v7", True),
])
def test_matches(want: str, have: str, ok: bool) -> None:
    assert P(want).matches(P(have)) is ok


def _index(platforms: list[dict[str, str] | None]) -> Index:
    ms = []
    for i, p in enumerate(platforms):
        d = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + f"{i:x}" * 64, "size": 10}
        if p is not None:
            d["platform"] = p
        ms.append(d)
    return Index.parse(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": ms}).encode(), "idx")


def test_select() -> None:
    idx = _index([{"os": "linux", "architecture": "amd64"},
                  {"os": "linux", "architecture": "arm64", "variant": "v8"},
                  {"os": "linux", "architecture": "arm", "variant": "v6"},
                  {"os": "linux", "architecture": "arm", "variant": "v7"}])
    assert idx.select(P("linux/amd64"), "x") == idx.manifests[0]
    assert idx.select(P("linux/arm64"), "x") == idx.manifests[1]
    assert idx.select(P("linux/arm/v7"), "x") == idx.manifests[3]
    assert idx.select(P("linux/arm/v6"), "x") == idx.manifests[2]
    with pytest.raises(ManifestError, match=r"no image for platform linux/s390x .*available: .*linux/amd64"):
        idx.select(P("linux/s390x"), "x")


def test_select_arm64_without_variant() -> None:
    idx = _index([{"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm64"}])
    assert idx.select(P("linux/arm64/v8"), "x") == idx.manifests[1]


def test_host_platform_is_normalised() -> None:
    h = Platform.host()
    assert h == h.normalized() or h.architecture not in ("arm64", "arm")
    assert h.os == "linux"
