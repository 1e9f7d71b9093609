"""Unpack layers in forked child processes, fed by the parent's download threads.

Why processes: extraction is GIL-bound Python (tarfile's header parsing and the
per-entry work of ``_extract``), so in threads all the layers of an image share
one core. A child per layer uses every core, while the parent's threads keep
downloading, verifying the compressed digest and feeding the children.

Per child, three pipes:

* data (parent -> child): the compressed stream, exactly as downloaded;
* control (parent -> child): one byte ``C`` once the parent has verified the
  compressed blob's size and digest. The child publishes only then, so nothing
  becomes visible before every byte was verified; EOF without ``C`` aborts;
* result (child -> parent): one JSON line, ``{"size": N}`` or
  ``{"error": CLASS, "message": TEXT}``, re-raised in the parent as that
  :mod:`ocibox.errors` class.

The children are forked from the main thread before any download thread starts:
``fork`` in a threaded process copies locks other threads may hold (the import
lock, SQLite's mutexes). Every child closes the parent's ends of the pipes of
the children forked before it, so that each child sees EOF when the parent
closes its data pipe. A child that loses its parent reads EOF and cleans up;
its ``tmp/`` directory carries its own pid, so a SIGKILL leaves garbage that
``Store.clean_tmp`` recognises.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

from ocibox import errors
from ocibox.digest import Digest, Readable
from ocibox.errors import LayerError, OciboxError
from ocibox.store import Store

_CHUNK = 1 << 20


class _FdReader:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, n: int = -1, /) -> bytes:
        return os.read(self.fd, _CHUNK if n < 0 else n)


@dataclass
class Child:
    """One forked unpacker, as the parent sees it."""

    pid: int
    what: str
    data_w: int
    ctl_w: int
    res_r: int
    _done: bool = False

    def run(self, reader: Readable) -> int:
        """Feed ``reader`` to the child to its end; commit when the reader verified.

        ``reader`` is a :class:`~ocibox.digest.VerifyingReader`: it raises at EOF when the
        blob does not match its digest, and then the child is told to abort.
        """
        broken = False
        try:
            while chunk := reader.read(_CHUNK):
                if not broken:
                    try:
                        _write_all(self.data_w, chunk)
                    except BrokenPipeError:
                        # The child stopped reading: it failed, and says why in finish().
                        broken = True
                        break
        except BaseException:
            with contextlib.suppress(OciboxError):
                self.finish(commit=False)
            raise
        verified = bool(getattr(reader, "verified", False)) and not broken
        return self.finish(commit=verified)

    def finish(self, *, commit: bool) -> int:
        """Close the data pipe, commit or abort, and return the child's result (or raise its error)."""
        if self._done:
            raise LayerError(f"{self.what}: unpacker already finished")
        self._done = True
        _close(self.data_w)
        if commit:
            with contextlib.suppress(BrokenPipeError):
                os.write(self.ctl_w, b"C")
        _close(self.ctl_w)
        chunks = []
        while True:
            try:
                b = os.read(self.res_r, 65536)
            except InterruptedError:
                continue
            if not b:
                break
            chunks.append(b)
        _close(self.res_r)
        _, status = os.waitpid(self.pid, 0)
        result = b"".join(chunks)
        if result.startswith(b"S"):
            return int(result[1:])
        error = errors.from_wire(result, LayerError)
        if error is not None:
            raise error
        raise LayerError(f"{self.what}: the unpacker process died ({_describe(status)}); pull again")

    def cancel(self) -> None:
        if not self._done:
            with contextlib.suppress(OciboxError):
                self.finish(commit=False)


@dataclass
class Unpackers:
    """The forked unpackers of one pull, by key (the layer's index)."""

    children: dict[int, Child] = field(default_factory=dict)
    _parent_fds: list[int] = field(default_factory=list)

    def start(self, key: int, store: Store, *, compression: str, diff_id: Digest, chain_id: Digest,
              parent: Digest | None, what: str, ignore_chown_errors: bool = False) -> None:
        """Fork a child that waits for the layer's bytes. Call from the main thread only."""
        data_r, data_w = os.pipe()
        _grow_pipe(data_w)
        ctl_r, ctl_w = os.pipe()
        res_r, res_w = os.pipe()
        # Imported here, before the fork, so that no child pays for (or races on) the import.
        from ocibox.layers import _decompress, _extract, _unpack  # noqa: F401

        pid = os.fork()
        if pid == 0:  # child
            status = 0
            try:
                for fd in (data_w, ctl_w, res_r, *self._parent_fds):
                    _close(fd)
                _child(data_r, ctl_r, res_w, Store(store.root), compression=compression, diff_id=diff_id,
                       chain_id=chain_id, parent=parent, what=what, ignore_chown_errors=ignore_chown_errors)
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        for fd in (data_r, ctl_r, res_w):
            os.close(fd)
        self._parent_fds += [data_w, ctl_w, res_r]
        self.children[key] = Child(pid, what, data_w, ctl_w, res_r)

    def take(self, key: int) -> Child | None:
        return self.children.pop(key, None)

    def close(self) -> None:
        """Abort and reap every child that was not taken."""
        for child in self.children.values():
            child.cancel()
        self.children.clear()


def _child(data_r: int, ctl_r: int, res_w: int, store: Store, *, compression: str, diff_id: Digest,
           chain_id: Digest, parent: Digest | None, what: str, ignore_chown_errors: bool = False) -> None:
    from ocibox.layers._unpack import unpack_layer

    def before_publish() -> None:
        if os.read(ctl_r, 1) != b"C":
            raise LayerError(f"{what}: the download did not verify; nothing published")

    try:
        size = unpack_layer(store, _FdReader(data_r), compression=compression, diff_id=diff_id,
                            chain_id=chain_id, parent=parent, what=what, before_publish=before_publish,
                            ignore_chown_errors=ignore_chown_errors)
        msg = f"S{size}\n".encode()
    except BaseException as e:
        msg, _ = errors.to_wire(e, f"{what}: ")
    with contextlib.suppress(OSError):
        _write_all(res_w, msg)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _grow_pipe(fd: int) -> None:
    """A 1 MiB pipe instead of 64 KiB: the parent's 1 MiB writes go in at once, and the child
    reads (and wakes up) a sixteenth as often. Best effort: above pipe-max-size it stays as it is."""
    import fcntl

    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _CHUNK)


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
