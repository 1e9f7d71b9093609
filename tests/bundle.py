"""OCI bundles for runtime tests: a busybox rootfs (tests/oci.py's layer, extracted with tarfile) and
config.json documents that start from what ``runc spec`` writes, so that the same bundle runs under
runc and under ocibox-runtime. Nothing here uses ocibox code."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import oci
from ctd import REPO


def rootfs(dest: Path) -> Path:
    """tests/oci.py's busybox layer extracted at ``dest`` (plus the dirs the runtimes mount on)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(oci.busybox_layer())) as tf:
        oci.extractall(tf, dest)
    for d in ("proc", "sys", "dev", "run"):
        (dest / d).mkdir(exist_ok=True)
    return dest


def runc_spec() -> dict[str, Any]:
    """runc's own default config.json (``runc spec``), with no terminal."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["runc", "spec", "--bundle", d], check=True, capture_output=True)
        cfg: dict[str, Any] = json.loads((Path(d) / "config.json").read_text())
    cfg["process"]["terminal"] = False
    return cfg


def make(path: Path, root: Path, args: list[str], **changes: Any) -> Path:
    """A bundle at ``path`` whose root is ``root`` (absolute), running ``args``; ``changes`` are merged
    into the runc default: a key with dots ("process.user") is set at that path."""
    cfg = runc_spec()
    cfg["root"] = {"path": str(root), "readonly": True}
    cfg["process"]["args"] = args
    for key, value in changes.items():
        obj = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            obj = obj.setdefault(p, {})
        obj[parts[-1]] = value
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(cfg, indent=1))
    return path


def runtime_cmd(python: str = sys.executable) -> list[str]:
    """The command that runs this checkout's ocibox-runtime."""
    return [python, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); from ocibox.runtime import main; main()"]


def run(runtime: list[str], root: Path, *args: str, log: Path | None = None, timeout: float = 60,
        **kw: Any) -> subprocess.CompletedProcess[str]:
    cmd = [*runtime, "--root", str(root)]
    if log is not None:
        cmd += ["--log", str(log), "--log-format", "json"]
    # stdio to files, not pipes: a created container keeps the caller's stdio (as under runc)
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        r = subprocess.run([*cmd, *args], stdout=out, stderr=err, text=True, timeout=timeout,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, **kw)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(r.args, r.returncode, out.read(), err.read())
RUNC = ["runc"]
