"""The forked unpacker: a child process per layer, publishing only on the parent's word."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import signal
from pathlib import Path

import pytest
from oci import Entry, make_tar

from ocibox.digest import Digest, VerifyingReader
from ocibox.errors import DigestMismatch, HostileLayerError, LayerError
from ocibox.layers import Unpackers
from ocibox.store import Store, has_layer


def layer(entries: list[Entry]) -> tuple[bytes, Digest, Digest]:
    tar = make_tar(entries)
    blob = gzip.compress(tar)
    return blob, Digest("sha256", hashlib.sha256(blob).hexdigest()), Digest("sha256", hashlib.sha256(tar).hexdigest())


def start(store: Store, diff_id: Digest, key: int = 0) -> Unpackers:
    u = Unpackers()
    u.start(key, store, compression="gzip", diff_id=diff_id, chain_id=diff_id, parent=None, what="layer x")
    return u


def test_child_publishes_after_the_blob_verified(tmp_path: Path) -> None:
    store = Store(tmp_path / "s").ensure()
    blob, digest, diff_id = layer([Entry("a", data=b"hello"), Entry("d", "dir")])
    u = start(store, diff_id)
    child = u.take(0)
    assert child is not None
    assert child.run(VerifyingReader(io.BytesIO(blob), digest, len(blob), "blob")) == 5
    assert has_layer(store, diff_id)
    assert (store.layer_dir(diff_id) / "diff" / "a").read_bytes() == b"hello"
    u.close()


def test_child_publishes_nothing_when_the_blob_does_not_verify(tmp_path: Path) -> None:
    store = Store(tmp_path / "s").ensure()
    blob, _, diff_id = layer([Entry("a", data=b"hello")])
    wrong = Digest("sha256", "0" * 64)
    child = start(store, diff_id).take(0)
    assert child is not None
    with pytest.raises(DigestMismatch):
        child.run(VerifyingReader(io.BytesIO(blob), wrong, len(blob), "blob"))
    assert not has_layer(store, diff_id)
    assert not store.layer_dir(diff_id).exists()
    assert list(store.tmp.iterdir()) == []  # the child removed its work


def test_child_error_comes_back_as_its_class(tmp_path: Path) -> None:
    store = Store(tmp_path / "s").ensure()
    blob, digest, diff_id = layer([Entry("../escape", data=b"x")])
    child = start(store, diff_id).take(0)
    assert child is not None
    with pytest.raises(HostileLayerError, match="escape"):
        child.run(VerifyingReader(io.BytesIO(blob), digest, len(blob), "blob"))
    assert not store.layer_dir(diff_id).exists()


def test_untaken_children_are_reaped(tmp_path: Path) -> None:
    store = Store(tmp_path / "s").ensure()
    _, _, diff_id = layer([Entry("a", data=b"x")])
    u = start(store, diff_id, 0)
    u.start(1, store, compression="gzip", diff_id=diff_id, chain_id=diff_id, parent=None, what="layer y")
    pids = [c.pid for c in u.children.values()]
    u.close()
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    assert not store.layer_dir(diff_id).exists()


def test_a_killed_child_is_an_error_not_a_hang(tmp_path: Path) -> None:
    store = Store(tmp_path / "s").ensure()
    blob, digest, diff_id = layer([Entry("a", data=b"x" * 100)])
    child = start(store, diff_id).take(0)
    assert child is not None
    os.kill(child.pid, signal.SIGKILL)
    with pytest.raises(LayerError, match=r"unpacker process died|signal"):
        child.run(VerifyingReader(io.BytesIO(blob), digest, len(blob), "blob"))
    assert not has_layer(store, diff_id)
