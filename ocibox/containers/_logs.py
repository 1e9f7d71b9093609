"""``ocibox logs``: a detached container's output from the files its monitor writes (the CRI format:
"<RFC 3339 time> <stdout|stderr> <F|P> <bytes>", rotated as ctr.log.N ... ctr.log.1, ctr.log), with the
lines that a read split into partial entries put back together, stdout and stderr kept apart."""

from __future__ import annotations

import os
import time
from collections import deque

from ocibox import errors
from ocibox import store as st
from ocibox.run import LOG, monitored

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


def _files(cdir: Path) -> list[Path]:
    """The log files, oldest first."""
    rotated = []
    for name in os.listdir(cdir):
        if name.startswith(LOG + ".") and name[len(LOG) + 1:].isdigit():
            rotated.append((int(name[len(LOG) + 1:]), cdir / name))
    return [p for _, p in sorted(rotated, reverse=True)] + [cdir / LOG]


class _Assembler:
    """Entries in, whole lines out (per stream)."""

    def __init__(self) -> None:
        self.partial: dict[bytes, list[bytes]] = {}

    def feed(self, entry: bytes) -> tuple[bytes, bytes, bytes] | None:
        """(timestamp, stream, line with its newline) once a line is complete; None for a partial entry."""
        ts, _, rest = entry.partition(b" ")
        stream, _, rest = rest.partition(b" ")
        tag, _, content = rest.partition(b" ")
        if content.endswith(b"\n"):
            content = content[:-1]
        if tag == b"P":
            self.partial.setdefault(stream, []).append(content)
            return None
        parts = self.partial.pop(stream, [])
        return ts, stream, b"".join(parts) + content + b"\n"

    def flush(self) -> Iterator[tuple[bytes, bytes, bytes]]:
        """Partial lines left when the output ended without a newline (written as they are)."""
        for stream, parts in self.partial.items():
            yield b"", stream, b"".join(parts)
        self.partial.clear()


def _parse_time(text: str, what: str) -> float:
    from ocibox.units import parse_until

    try:
        return parse_until(text)
    except errors.UsageError:
        raise errors.UsageError(f"invalid {what} {text!r}: use a duration (10m), a unix time or an RFC 3339 date") from None


def _ts_seconds(ts: bytes) -> float:
    from ocibox.units import parse_time

    t = parse_time(ts.decode(errors="replace"))
    return t if t is not None else 0.0


def logs(store: st.Store, rec: st.ContainerRecord, out: Callable[[bytes, bytes], None], *, follow: bool = False,
         tail: int = -1, since: str = "", until: str = "", timestamps: bool = False) -> None:
    """Write the container's log lines through ``out(stream, data)`` (stream b"stdout" or b"stderr").
    ``follow``: keep going, across rotations, until the container exits."""
    cdir = store.container_dir(rec.id)
    if not rec.detached or (not (cdir / LOG).exists() and not _files_exist(cdir)):
        raise errors.UsageError(f"container {rec.name} has no logs: only a detached container (run -d) logs its "
                                "output; a foreground container's output went to its terminal")
    lo = _parse_time(since, "--since") if since else None
    hi = _parse_time(until, "--until") if until else None

    def emit(item: tuple[bytes, bytes, bytes]) -> None:
        ts, stream, line = item
        if (lo is not None or hi is not None) and ts:
            t = _ts_seconds(ts)
            if (lo is not None and t < lo) or (hi is not None and t > hi):
                return
        out(stream, (ts + b" " + line) if timestamps and ts else line)

    asm = _Assembler()
    files = _files(cdir)
    if tail >= 0:
        last: deque[tuple[bytes, bytes, bytes]] = deque(maxlen=tail) if tail else deque(maxlen=0)
        for path in files:
            for item in _read(path, asm):
                last.append(item)
        for item in last:
            emit(item)
    else:
        for path in files[:-1]:
            for item in _read(path, asm):
                emit(item)
    if not follow:
        if tail < 0:
            for item in _read(files[-1], asm):
                emit(item)
        for item in asm.flush():
            emit(item)
        return
    _follow(cdir, rec, asm, emit, skip_existing=tail >= 0)


def _files_exist(cdir: Path) -> bool:
    try:
        return any(n.startswith(LOG) for n in os.listdir(cdir))
    except OSError:
        return False


def _read(path: Path, asm: _Assembler) -> Iterator[tuple[bytes, bytes, bytes]]:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    with f:
        for entry in f:
            if not entry.endswith(b"\n"):
                break  # being written: the rest comes with the next read (follow)
            item = asm.feed(entry)
            if item is not None:
                yield item


def _follow(cdir: Path, rec: st.ContainerRecord, asm: _Assembler,
            emit: Callable[[tuple[bytes, bytes, bytes]], None], skip_existing: bool) -> None:
    """Read ctr.log as it grows. When the monitor rotates it, the open file is read to its end (it lives
    on under its new name, or unlinked), then every newer file in order (more than one when several
    rotations happened between two reads), then the new ctr.log; stop once the container has exited and
    everything is read."""
    path = cdir / LOG
    f = _open(path)
    if f is not None and skip_existing:
        f.seek(0, os.SEEK_END)
    pending = b""
    idle = 0.0

    def drain(fh) -> None:  # type: ignore[no-untyped-def]
        nonlocal pending
        while data := fh.read(1 << 20):
            pending += data
            *entries, pending = pending.split(b"\n")
            for entry in entries:
                item = asm.feed(entry + b"\n")
                if item is not None:
                    emit(item)

    while True:
        if f is None:
            f = _open(path)
            if f is None:
                if not monitored(cdir):
                    break
                time.sleep(0.01)
                continue
        before = f.tell()
        drain(f)
        if f.tell() != before:
            idle = 0.0
            continue
        if _rotated(f, path):
            for name in _newer(cdir, os.fstat(f.fileno()).st_ino):
                f.close()
                f = _open(name)
                if f is not None:
                    drain(f)
            f.close()
            f = _open(path)
            continue
        if not monitored(cdir) and idle >= 0.2:
            break
        time.sleep(0.01)
        idle += 0.01
    if f is not None:
        f.close()
    for item in asm.flush():
        emit(item)


def _newer(cdir: Path, inode: int) -> list[Path]:
    """The rotated files newer than the one with ``inode`` (oldest first); all of them if it is gone."""
    files = _files(cdir)[:-1]  # oldest first, without ctr.log
    inodes = []
    for p in files:
        try:
            inodes.append(os.stat(p).st_ino)
        except FileNotFoundError:
            inodes.append(-1)
    return files[inodes.index(inode) + 1:] if inode in inodes else files


def _open(path: Path):  # type: ignore[no-untyped-def]
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _rotated(f, path: Path) -> bool:  # type: ignore[no-untyped-def]
    """The name now belongs to another file (rotation), or this one was truncated (max-file 1)."""
    try:
        st_name = os.stat(path)
    except FileNotFoundError:
        return True
    st_fd = os.fstat(f.fileno())
    return (st_name.st_ino, st_name.st_dev) != (st_fd.st_ino, st_fd.st_dev) or st_fd.st_size < f.tell()
