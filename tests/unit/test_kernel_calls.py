"""The raw syscalls through the C extension (ocibox/linux/_kernel.c) and through ctypes (the fallback
where it is not built) are the same calls: each of these, made through both, gives the same result or
the same -errno. The calls that change the process (mount, pivot_root, capset, seccomp...) are made by
the container tests, which run with each (tests/privileged/test_run.py runs a container with
OCIBOX_CTYPES=1)."""

from __future__ import annotations

import errno
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ocibox.linux import _ctypes_kernel, syscalls
from ocibox.linux._build import build


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The C extension, built now from the source as it is (into a temporary directory)."""
    path = build(dest_dir=str(tmp_path_factory.mktemp("kernel")))
    spec = importlib.util.spec_from_file_location("ocibox.linux._kernel", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.STAMP == syscalls.source_stamp() != ""
    return mod


CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("child_subreaper", ()),
    ("capget", ()),
    ("personality", (0xFFFFFFFF,)),  # a query: the current persona
    ("prctl", (3, 0, 0, 0, 0)),  # PR_GET_DUMPABLE
    ("prctl", (-1, 0, 0, 0, 0)),  # no such option: -EINVAL
    ("umount2", ("/nonexistent-ocibox", 0)),  # -ENOENT
    ("mount", (None, "/nonexistent-ocibox", None, 0, None)),
    ("pivot_root", ("/nonexistent-ocibox", "/nonexistent-ocibox")),
    ("setns", (-1, 0)),  # -EBADF
    ("unshare", (1,)),  # not a namespace flag: -EINVAL
    ("close_range", (1 << 20, (1 << 20) + 10, 0)),  # no fds there: 0
    ("close_range", (10, 5, 0)),  # last < first: -EINVAL
    ("openat2", (-100, "/nonexistent-ocibox", os.O_RDONLY | os.O_CLOEXEC, 0, 0x10)),  # -ENOENT
    ("seccomp_filter", (b"",)),  # an empty program: -EINVAL (and nothing installed)
    ("libseccomp_version", ()),
]


@pytest.mark.parametrize("name,args", CALLS, ids=[f"{n}{a}"[:40] for n, a in CALLS])
def test_both_make_the_same_call(kernel: Any, name: str, args: tuple[Any, ...]) -> None:
    got, want = getattr(kernel, name)(*args), getattr(_ctypes_kernel, name)(*args)
    assert got == want


def test_fds_and_errnos(kernel: Any) -> None:
    for k in (kernel, _ctypes_kernel):
        fd = k.openat2(-100, "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0, 0x10)
        assert fd >= 0
        os.close(fd)
        s = k.socket(2, 2 | os.O_CLOEXEC, 0)
        assert s >= 0
        os.close(s)
        assert k.setns(-1, 0) == -errno.EBADF
        assert k.sethostname("x" * 100) == -errno.EINVAL  # longer than a host name may be


def test_the_wrappers_raise_oserror_with_the_call_named() -> None:
    with pytest.raises(OSError) as e:
        syscalls.umount("/nonexistent-ocibox")
    assert e.value.errno == errno.ENOENT and "umount /nonexistent-ocibox" in str(e.value)


def test_a_build_of_another_source_is_not_used(tmp_path: Path) -> None:
    """Built from another version of _kernel.c (its STAMP differs), or with OCIBOX_CTYPES=1: ctypes."""
    code = ("from ocibox.linux import syscalls; print(syscalls.K.__name__)")
    env = {**os.environ, "OCIBOX_CTYPES": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ocibox.linux._ctypes_kernel"
    stale = ("import sys, types; from ocibox.linux import _ctypes_kernel\n"
             "fake = types.ModuleType('ocibox.linux._kernel'); fake.STAMP = '1 2'\n"
             "sys.modules['ocibox.linux._kernel'] = fake\n"
             "from ocibox.linux import syscalls; print(syscalls.K.__name__)")
    env.pop("OCIBOX_CTYPES")
    out = subprocess.run([sys.executable, "-c", stale], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ocibox.linux._ctypes_kernel"
