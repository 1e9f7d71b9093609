"""ocibox.units: one size parser for every caller (``run --memory``, ``prune --keep-storage``), and the
sizes and ages the CLI prints."""

from __future__ import annotations

import pytest

from ocibox.errors import UsageError
from ocibox.units import human_duration, human_size, parse_size, since


@pytest.mark.parametrize("text,want", [
    ("512", 512), ("1k", 1024), ("1KB", 1024), ("1KiB", 1024), ("1ki", 1024), ("64M", 64 << 20), ("1.5g", 3 << 29),
    ("512mb", 512 << 20), ("10b", 10), (" 2 g ", 2 << 30), ("1t", 1 << 40), ("1e3", 1000), ("0", 0),
])
def test_sizes_are_binary_whatever_the_spelling(text: str, want: int) -> None:
    assert parse_size(text) == want == parse_size(text, "--memory")


@pytest.mark.parametrize("text", ["", "ten", "1x", "12q", "m", "1i", "1ib", "1kbb", "inf", "nan", "1e999"])
def test_what_is_no_size_is_refused_with_the_option_named(text: str) -> None:
    with pytest.raises(UsageError, match=r"use a number with an optional unit b, k, m, g or t \(e.g. 2g\)"):
        parse_size(text)
    with pytest.raises(UsageError, match=f"invalid size {text!r} for --memory: use a number"):
        parse_size(text, "--memory")


def test_minus_one_is_unlimited_unless_refused() -> None:
    assert parse_size("-1") == parse_size(" -1 ", "--memory-swap") == -1
    with pytest.raises(UsageError, match="invalid size '-1': use a number"):
        parse_size("-1", unlimited=False)
    with pytest.raises(UsageError, match="for --memory: it must not be negative"):
        parse_size("-1m", "--memory")
    with pytest.raises(UsageError):
        parse_size("-2")


def test_human_sizes_and_ages() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 4270, 1234567, 2 * 10**12)] == \
        ["0B", "999B", "1kB", "4.27kB", "1.23MB", "2TB"]
    assert human_duration(59) == "59 seconds" and human_duration(3600) == "About an hour"
    assert since(1000.0, now=1180.0) == "3 minutes ago" and since(None) == "N/A"
