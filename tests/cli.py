"""The ocibox CLI as the tests drive it: a subprocess on one store."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path


class Ctl:
    """The CLI on one store."""

    def __init__(self, root: Path, ref: str) -> None:
        self.root, self.ref = root, ref

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ocibox", "--root", str(self.root), *args]

    def __call__(self, *args: str, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload, no-any-return]

    def ok(self, *args: str, timeout: float = 60) -> str:
        r = self(*args, timeout=timeout)
        assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
        return r.stdout

    def detach(self, *args: str) -> str:
        """run -d ... ; the container's id."""
        out = self.ok("run", "-d", *args).strip()
        assert re.fullmatch(r"[0-9a-f]{64}", out), out
        return out

    def inspect(self, name: str) -> dict:  # type: ignore[type-arg]
        return json.loads(self.ok("container", "inspect", name))[0]  # type: ignore[no-any-return]

    def wait_for(self, what: str, cond, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)
