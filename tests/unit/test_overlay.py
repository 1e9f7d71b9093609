"""Overlay mount options: a pure function, tested by exact string."""

from __future__ import annotations

import pytest

from ocibox.layers import overlay_options
from ocibox.layers._mount import OPTIONS_LIMIT
from ocibox.store import SHORT_LEN


def test_lowers_only() -> None:
    assert overlay_options(["l/TOP", "l/MID", "l/BASE"]) == "lowerdir=l/TOP:l/MID:l/BASE"


def test_single_lower() -> None:
    assert overlay_options(["/s/layers/abc/diff"]) == "lowerdir=/s/layers/abc/diff"


def test_upper_and_work() -> None:
    assert (overlay_options(["l/B", "l/A"], "../containers/c1/upper", "../containers/c1/work")
            == "lowerdir=l/B:l/A,upperdir=../containers/c1/upper,workdir=../containers/c1/work")


def test_escapes_separators() -> None:
    assert overlay_options(["/a:b", "/c,d", "/e\\f"], "/u:1", "/w,2") == (
        "lowerdir=/a\\:b:/c\\,d:/e\\\\f,upperdir=/u\\:1,workdir=/w\\,2"
    )


def test_refuses_half_an_upper_and_no_lowers() -> None:
    with pytest.raises(ValueError):
        overlay_options(["l/A"], "/u", None)
    with pytest.raises(ValueError):
        overlay_options(["l/A"], None, "/w")
    with pytest.raises(ValueError):
        overlay_options([])


def test_128_layers_fit_in_one_page() -> None:
    shorts = [f"{i:0{SHORT_LEN}x}" for i in range(128)]
    lowers = [f"l/{s}" for s in reversed(shorts)]
    opts = overlay_options(lowers, "../containers/" + "c" * 64 + "/upper", "../containers/" + "c" * 64 + "/work")
    assert opts == (
        "lowerdir=" + ":".join(f"l/{s}" for s in reversed(shorts))
        + ",upperdir=../containers/" + "c" * 64 + "/upper,workdir=../containers/" + "c" * 64 + "/work"
    )
    assert opts.startswith("lowerdir=l/" + "0" * (SHORT_LEN - 2) + "7f:l/")
    assert opts.split(",")[0].endswith(":l/" + "0" * SHORT_LEN)
    assert len(opts.encode()) <= OPTIONS_LIMIT < 4096
    assert len(opts) == 3138  # lowerdir= 2952, upperdir 94, workdir 92
