"""Small pure helpers of the cache verbs: sizes, durations, times, and ``du`` as the filesystem counts it."""

from __future__ import annotations

import os
import re
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

from ocibox.errors import UsageError

# ----------------------------------------------------------------------------- sizes

_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_BINARY = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str) -> int:
    """``512``, ``100k``, ``1.5g``, ``10GB``, ``2GiB`` -> bytes. Like docker's ``RAMInBytes``:
    the units are binary (1k = 1024) whether written ``k``, ``kb`` or ``kib``."""
    m = _SIZE_RE.match(text)
    if not m or (m.group(3) and not m.group(2) and m.group(3).lower() != "b"):
        raise UsageError(f"invalid size {text!r}: use a number with an optional unit b, k, m, g or t (e.g. 2g)")
    return int(float(m.group(1)) * _BINARY[m.group(2).lower()])


def human_size(n: float, precision: int = 3) -> str:
    """docker's ``units.HumanSizeWithPrecision``: decimal units, ``precision`` significant digits."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    n = float(n)
    while abs(n) >= 1000 and i < len(units) - 1:
        n /= 1000.0
        i += 1
    return f"{n:.{precision}g}{units[i]}"


# ----------------------------------------------------------------------------- durations and times

_DUR_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")
_DUR_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration (``10m``, ``24h``, ``1h30m``, ``90s``) in seconds."""
    s = text.strip()
    if not s:
        raise UsageError("invalid duration '': use e.g. 10m, 24h or 1h30m")
    pos, total = 0, 0.0
    for m in _DUR_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DUR_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise UsageError(f"invalid duration {text!r}: use a number and a unit h, m, s or ms, e.g. 10m, 24h, 1h30m")
    return total


def parse_until(text: str, now: float | None = None) -> float:
    """docker's ``until=`` value: a duration before now, a unix timestamp, or an RFC 3339 date.
    Returns the cut-off as a unix time."""
    now = time.time() if now is None else now
    if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", text):
        return float(text)
    try:
        return now - parse_duration(text)
    except UsageError:
        pass
    t = parse_time(text)
    if t is None:
        raise UsageError(f"invalid until={text!r}: use a duration (10m, 24h), a unix timestamp or an RFC 3339 date")
    return t


def parse_time(text: str) -> float | None:
    """An RFC 3339 time as images write it (nanoseconds, ``Z``) -> unix time, None if unparsable."""
    if not text:
        return None
    s = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    # Python takes at most 6 fraction digits; Go writes up to 9.
    s = re.sub(r"(\.[0-9]{6})[0-9]+", r"\1", s)
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def human_duration(seconds: float) -> str:
    """docker's ``units.HumanDuration`` ("About a minute", "3 hours", "2 years")."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def since(t: float | None, now: float | None = None) -> str:
    if t is None:
        return "N/A"
    now = time.time() if now is None else now
    return human_duration(max(0.0, now - t)) + " ago"


# ----------------------------------------------------------------------------- du


class DiskUsage:
    """Bytes on disk as ``du -x`` counts them: ``st_blocks * 512`` of every entry (directories
    too), each inode once however many hard links it has, not crossing into other filesystems.

    One instance shares its set of seen inodes across calls, so summing the results of
    several calls over disjoint trees equals ``du -sx`` of their common parent.
    """

    def __init__(self) -> None:
        self.seen: set[tuple[int, int]] = set()

    def entry(self, path: str | Path, dev: int | None = None) -> int:
        """One entry only (no descent)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return 0
        return self._count(st, dev)

    def _count(self, st: os.stat_result, dev: int | None) -> int:
        if dev is not None and st.st_dev != dev:
            return 0
        if st.st_nlink > 1 or stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in self.seen:
                return 0
            self.seen.add(key)
        return int(st.st_blocks) * 512

    def tree(self, path: str | Path, dev: int | None = None) -> int:
        """A whole tree, the top entry included. ``dev`` limits it to one filesystem
        (by default the top entry's)."""
        try:
            top = os.lstat(path)
        except FileNotFoundError:
            return 0
        if dev is None:
            dev = top.st_dev
        total = self._count(top, dev)
        if not stat.S_ISDIR(top.st_mode) or top.st_dev != dev:
            return total
        stack = [os.fspath(path)]
        while stack:
            d = stack.pop()
            try:
                it = os.scandir(d)
            except (FileNotFoundError, NotADirectoryError):
                continue
            with it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if st.st_dev != dev:
                        continue  # a mount point: du -x leaves it out
                    total += self._count(st, dev)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(e.path)
        return total


def du(path: str | Path) -> int:
    return DiskUsage().tree(path)


def fs_free(path: str | Path) -> int:
    """Free bytes of the filesystem holding ``path`` (statvfs ``f_bfree * f_frsize``)."""
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize
