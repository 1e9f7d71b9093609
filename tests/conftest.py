from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from registry import Registry


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-HTTP distribution registry on 127.0.0.1 shared by the session.

    scripts/test (and so CI) starts one and names it in $OCIBOX_TEST_REGISTRY; otherwise the
    session starts its own.
    """
    ext = os.environ.get("OCIBOX_TEST_REGISTRY")
    if ext:
        yield Registry.external(ext, Path(os.environ.get("OCIBOX_TEST_REGISTRY_LOG", "/dev/null")))
        return
    reg = Registry(tmp_path_factory.mktemp("registry")).start()
    yield reg
    reg.stop()


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    return tmp_path / "store"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="privileged tests need root")
        for item in items:
            if "privileged" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def busybox_ref(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/oci.busybox_layer() pushed (by skopeo) to the session registry as busybox:latest;
    returns ``127.0.0.1:PORT/busybox:latest``."""
    import oci

    oci.push_image(tmp_path_factory.mktemp("busybox-layout"), registry.host, "busybox:latest",
                   [oci.Layer(oci.busybox_layer())])
    return f"{registry.host}/busybox:latest"


@pytest.fixture
def pulled_busybox(store_root: Path, busybox_ref: str) -> tuple[Path, str]:
    """busybox pulled into ``store_root`` by the CLI (a subprocess); returns (store_root, ref)."""
    import subprocess

    subprocess.run([sys.executable, "-m", "ocibox", "--root", str(store_root), "pull", "-q", busybox_ref],
                   check=True, capture_output=True, timeout=120)
    return store_root, busybox_ref
