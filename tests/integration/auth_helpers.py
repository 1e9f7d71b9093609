"""Real registries with auth for the pull tests: htpasswd (bcrypt) users, or ``auth: token`` trusting
a :class:`faultproxy.TokenServer` (its ``registry_auth()``). The fakes themselves (fault proxy, token
server, file server) are in tests/faultproxy.py. Nothing here uses ocibox code."""

from __future__ import annotations

import subprocess
from pathlib import Path

from registry import Registry


def htpasswd_auth(workdir: Path, users: dict[str, str]) -> str:
    """The ``auth:`` fragment of a registry with htpasswd (bcrypt) users."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "htpasswd"
    lines = []
    for u, p in users.items():
        lines.append(subprocess.run(["htpasswd", "-Bbn", u, p], check=True, capture_output=True,
                                    text=True).stdout.strip())
    path.write_text("\n".join(lines) + "\n")
    return f"  htpasswd:\n    realm: ocibox-test\n    path: {path}\n"


def start_registry(root: Path, auth: str = "") -> Registry:
    """A real registry; with auth it answers 401 to the readiness probe, which is fine."""
    reg = Registry(root, auth=auth)
    return reg.start()


__all__ = ["htpasswd_auth", "start_registry"]
