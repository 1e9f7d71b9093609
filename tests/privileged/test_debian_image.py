"""Ordinary programs of a real Debian image under ocibox's defaults (issue 8): ``apt-get``, ``python3`` and
a shell pipeline run through ``ocibox run`` with the default seccomp filter loaded, which the container
itself reports (/proc/self/status) and which still refuses ``unshare``.

The image is tests/conftest.py's ``debian_image``: ``debootstrap --variant=minbase bookworm`` plus
python3-minimal, split into 3 layers and pushed by skopeo; here it is pulled by the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli import ocibox

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(900)]


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(str(path) + "/")]


@pytest.fixture(scope="module")
def store(debian_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("debian-store") / "store"
    cp = ocibox(root, "pull", "-q", debian_image, timeout=300)
    assert cp.returncode == 0, cp.stderr
    yield root
    # every container was --rm: nothing left mounted or recorded
    assert mounts_under(root) == []
    assert not (root / "containers").exists() or os.listdir(root / "containers") == []


def run(store: Path, image: str, *argv: str) -> str:
    cp = ocibox(store, "run", "--rm", image, *argv)
    assert cp.returncode == 0, (argv, cp.returncode, cp.stdout, cp.stderr)
    return cp.stdout


def test_the_default_seccomp_filter_is_loaded(store: Path, debian_image: str) -> None:
    status = dict(line.split(":\t", 1) for line in run(store, debian_image, "cat", "/proc/self/status").splitlines()
                  if ":\t" in line)
    assert status["Seccomp"].strip() == "2"  # SECCOMP_MODE_FILTER
    assert int(status["Seccomp_filters"]) >= 1 and status["NoNewPrivs"].strip() == "1"
    # and it bites: util-linux's unshare is refused (EPERM), as the default profile says
    cp = ocibox(store, "run", "--rm", debian_image, "unshare", "--user", "true")
    assert cp.returncode != 0 and "Operation not permitted" in cp.stderr, (cp.returncode, cp.stderr)


def test_apt_get(store: Path, debian_image: str) -> None:
    out = run(store, debian_image, "apt-get", "--version")
    assert out.startswith("apt 2.6."), out  # bookworm's apt


def test_python3(store: Path, debian_image: str) -> None:
    assert run(store, debian_image, "python3", "-c", "print(6*7)") == "42\n"


def test_shell_pipeline(store: Path, debian_image: str, debian_rootfs: Path) -> None:
    out = run(store, debian_image, "sh", "-c", 'ls /usr/bin | grep -c . | tr -d " "')
    assert out == f"{len(os.listdir(debian_rootfs / 'usr/bin'))}\n"
