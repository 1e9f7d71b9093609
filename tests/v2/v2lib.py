"""What the scripts run inside the v2 VM share (v2_checks.py, v2_rootless.py, runtime_checks.py): a line
per check, and a container's stdout and stderr captured through files on fds 1 and 2."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path


class Checks:
    """``check(name, ok, detail)`` prints ``ok  NAME`` or ``FAIL NAME: DETAIL`` (after ``prefix``);
    ``failed`` lists what failed (the script exits 1 if any did)."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.failed: list[str] = []

    def __call__(self, name: str, ok: bool, detail: str = "") -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {self.prefix}{name}" + ("" if ok else f": {detail}"), flush=True)
        if not ok:
            self.failed.append(name)


def captured(work: Path, cid: str, run: Callable[[], int]) -> tuple[int, str, str]:
    """``run()`` (a container's whole life, in this process) with fds 1 and 2 on work/CID.out and
    work/CID.err; its exit status, stdout and stderr."""
    out, err = work / f"{cid}.out", work / f"{cid}.err"
    saved = os.dup(1), os.dup(2)
    with open(out, "wb") as o, open(err, "wb") as e:
        sys.stdout.flush()
        os.dup2(o.fileno(), 1)
        os.dup2(e.fileno(), 2)
        try:
            code = run()
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
    return code, out.read_text(), err.read_text()
