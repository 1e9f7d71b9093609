"""process.terminal with process.consoleSize: the pty that the runtime sends over --console-socket (as
containerd's shim asks for it) has the size the config gives, under ocibox-runtime as under runc, on the
same bundle. The caller's side (receive the master, start, read, reap, delete) runs in a child that is a
child subreaper, as the shim is: the container's PID 1 is its to reap, never left to the host's init."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import bundle
import pytest

pytestmark = pytest.mark.privileged

CALLER = r"""
import ctypes, json, os, socket, subprocess, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER, as the shim
runtime, state, bundle_dir, cid, sock, pid_file = json.loads(sys.argv[1]), *sys.argv[2:]
rt = [*runtime, "--root", state]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sock)
srv.listen(1)
create = subprocess.Popen([*rt, "create", "--bundle", bundle_dir, "--console-socket", sock, "--pid-file", pid_file,
                           cid], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
srv.settimeout(30)
conn, _ = srv.accept()
_, fds, _, _ = socket.recv_fds(conn, 1024, 1)
conn.close()
master = fds[0]
_, err = create.communicate(timeout=30)
assert create.returncode == 0, err
assert subprocess.run([*rt, "start", cid], capture_output=True).returncode == 0
out = b""
while True:
    try:
        chunk = os.read(master, 4096)
    except OSError:  # EIO: every slave fd is closed
        break
    if not chunk:
        break
    out += chunk
pid = int(open(pid_file).read())
os.waitpid(pid, 0)  # ours: this process is the subreaper PID 1 was handed to
subprocess.run([*rt, "delete", "--force", cid], capture_output=True, check=True)
sys.stdout.write(out.decode(errors="replace"))
"""


@pytest.mark.parametrize("who", ["runc", "ocibox"])
def test_console_size_of_the_pty_sent_over_the_console_socket(who: str, tmp_path: Path) -> None:
    root = bundle.rootfs(tmp_path / "rootfs")
    b = bundle.make(tmp_path / "bundle", root, ["busybox", "stty", "size"],
                    **{"process.terminal": True, "process.consoleSize": {"height": 33, "width": 101}})
    runtime = ["runc"] if who == "runc" else bundle.runtime_cmd()
    cp = subprocess.run([sys.executable, "-c", CALLER, json.dumps(runtime), str(tmp_path / "state"), str(b),
                         f"console-{who}-{os.getpid()}", str(tmp_path / "console.sock"), str(tmp_path / "pid")],
                        capture_output=True, text=True, timeout=90,
                        env={**os.environ, "PYTHONPATH": str(bundle.REPO)})
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split() == ["33", "101"], cp.stdout
