"""Sizes, durations and times, parsed from what people type and written for people to read.

One set for every caller: ``--memory 512m`` and ``--keep-storage 2GB`` parse alike, and ``images``,
``system df`` and ``prune`` print sizes and ages alike (docker's ``go-units``). Pure functions.
``ocibox run`` imports this module, so ``re`` is imported by the parsers that use it, not at
module level (``re`` and the enum module behind it are ~5 ms of a warm run), and ``datetime`` when
a time is parsed.
"""

from __future__ import annotations

import time

from ocibox.errors import UsageError

# ----------------------------------------------------------------------------- sizes

#: binary units (docker's RAMInBytes: 1k = 1024 whether written k, kb or kib)
SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
#: patterns as text: compiled (and cached by re) on first use
_SIZE_RE = r"^(.*?)\s*([kmgtp]?)(i?b?)$"
_NUMBER_RE = r"^[+-]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:e[+-]?[0-9][0-9_]*)?$"


def parse_size(text: str, what: str | None = None, *, unlimited: bool = True) -> int:
    """``512``, ``100k``, ``1.5g``, ``512mb``, ``10GB``, ``2GiB`` -> bytes (binary units, as docker's
    ``RAMInBytes``). ``-1`` is -1 (docker's "unlimited") when ``unlimited``; any other negative
    size is refused. ``what`` names the option in the error (``invalid size '12q' for --memory``)."""
    import re

    t = text.strip().lower()
    if t == "-1" and unlimited:
        return -1
    m = re.match(_SIZE_RE, t)
    number, unit, tail = (m.group(1), m.group(2), m.group(3)) if m else ("", "", "")
    try:
        value = float(number) if re.match(_NUMBER_RE, number) else None
    except ValueError:
        value = None
    if value is None or not abs(value) < float("inf") or (tail and not unit and tail != "b"):
        if what is None:
            raise UsageError(f"invalid size {text!r}: use a number with an optional unit b, k, m, g or t (e.g. 2g)")
        raise UsageError(f"invalid size {text!r} for {what}: use a number with an optional unit b, k, m, g")
    if value < 0:
        if what is None:
            raise UsageError(f"invalid size {text!r}: use a number with an optional unit b, k, m, g or t (e.g. 2g)")
        raise UsageError(f"invalid size {text!r} for {what}: it must not be negative")
    return int(value * SIZE_UNITS[unit])


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

_DUR_PART = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)"
_DUR_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration (``10m``, ``24h``, ``1h30m``, ``90s``) in seconds."""
    import re

    s = text.strip()
    if not s:
        raise UsageError("invalid duration '': use e.g. 10m, 24h or 1h30m")
    pos, total = 0, 0.0
    for m in re.finditer(_DUR_PART, s):
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
    import re

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
    import re

    if not text:
        return None
    from datetime import UTC, datetime

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
    """``3 minutes ago`` (``N/A`` when the time is unknown)."""
    if t is None:
        return "N/A"
    now = time.time() if now is None else now
    return human_duration(max(0.0, now - t)) + " ago"
