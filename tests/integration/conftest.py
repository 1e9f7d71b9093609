from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def isolated_creds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No credentials from the machine: every lookup location points into tmp_path."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    return tmp_path
