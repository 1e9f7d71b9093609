from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from registry import Registry


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    """tests/faultproxy.py's proxy in front of the session registry, doing nothing until told."""
    p = FaultProxy(registry.host).start()
    yield p
    p.stop()


@pytest.fixture
def isolated_creds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No credentials from the machine: every lookup location points into tmp_path."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    return tmp_path
