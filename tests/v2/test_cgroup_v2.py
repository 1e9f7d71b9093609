"""cgroup v2: the runner's checks (tests/v2/v2_checks.py) run inside the pure-v2 VM that
/work/shared/v2vm/run-in-v2vm.sh boots (this host is hybrid, i.e. v1). Skipped, saying so, when
the script is not there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(os.environ.get("OCIBOX_V2VM", REPO.parent / "shared" / "v2vm" / "run-in-v2vm.sh"))


def _in_vm(checks: str) -> str:
    """Run tests/v2/CHECKS inside the pure cgroup-v2 VM; its stdout (the exit status asserted)."""
    if os.environ.get("V2VM") == "1":
        pytest.skip(f"already inside the v2 VM: run tests/v2/{checks} directly")
    if not SCRIPT.is_file():
        pytest.skip(f"cgroup v2 tests NOT RUN: {SCRIPT} is missing (set OCIBOX_V2VM to run-in-v2vm.sh)")
    r = subprocess.run([str(SCRIPT), sys.executable, str(Path(__file__).with_name(checks))],
                       cwd=REPO, capture_output=True, text=True, timeout=900,
                       env=dict(os.environ, V2VM_RW=str(REPO), V2VM_MEM="2G"))
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    return r.stdout


@pytest.mark.privileged
@pytest.mark.v2vm
def test_cgroup_v2_in_vm() -> None:
    out = _in_vm("v2_checks.py")
    assert "FAIL" not in out and out.count("ok  ") == 7 + 8  # 8: the rootless checks (v2_rootless.py)


@pytest.mark.privileged
@pytest.mark.v2vm
def test_runtime_on_cgroup_v2_in_vm() -> None:
    """ocibox-runtime's cgroup v2 checks (tests/v2/runtime_checks.py) inside the same VM."""
    out = _in_vm("runtime_checks.py")
    assert "FAIL" not in out and out.count("ok  ") >= 10
