"""The ocibox CLI as the tests drive it: a subprocess on one store."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def argv(root: Path | None, *args: str) -> list[str]:
    """``ocibox [--root ROOT] ARGS`` as this interpreter runs it (``python -m ocibox``)."""
    return [sys.executable, "-m", "ocibox", *(["--root", str(root)] if root is not None else []), *args]


def ocibox(root: Path | None, *args: str, check: bool = False, timeout: float = 120, text: bool = True,
           env: Mapping[str, str] | None = None, **kw: Any) -> subprocess.CompletedProcess[Any]:
    """``ocibox --root ROOT ARGS`` run to its end, stdout and stderr captured (as text unless ``text`` is
    false). ``check``: fail the test (naming the verb, its exit status and stderr) unless it exits 0.
    ``kw`` goes to subprocess.run (``input``, ``cwd``, ...)."""
    r = subprocess.run(argv(root, *args), capture_output=True, text=text, timeout=timeout, env=env, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"ocibox {' '.join(args)} exited {r.returncode}: {r.stderr}")
    return r


def ocibox_popen(root: Path | None, *args: str, **kw: Any) -> subprocess.Popen[Any]:
    """``ocibox --root ROOT ARGS`` started, not waited for: stdout and stderr piped, as text, unless ``kw``
    (which goes to subprocess.Popen) says otherwise."""
    opts: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **kw}
    return subprocess.Popen(argv(root, *args), **opts)


class Ctl:
    """The CLI on one store."""

    def __init__(self, root: Path, ref: str) -> None:
        self.root, self.ref = root, ref

    def argv(self, *args: str) -> list[str]:
        return argv(self.root, *args)

    def __call__(self, *args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        return ocibox(self.root, *args, timeout=timeout, **kw)

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
