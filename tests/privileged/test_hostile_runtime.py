"""``ocibox run`` under hostile images: configs and rootfs entries that attack the runner.

Images are busybox plus one hostile layer, built with tests/oci.py, pushed by skopeo to the session
registry and pulled by the CLI. Each case is refused with a one-line error or confined to the
container; the host is untouched: a canary directory (names, contents, modes, mtimes), the host's
mount table, the host's /etc, and the store stay as they were.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oci
import pytest
from cli import ocibox

pytestmark = pytest.mark.privileged

HOST = Path(f"/tmp/ocibox-hostile-rt-{os.getpid()}")
PATH_ENV = ["PATH=/bin"]
UP = "../" * 10


def _snap(root: Path) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirs, files in os.walk(root):
        for n in ["", *dirs, *files]:
            p = os.path.join(dirpath, n) if n else dirpath
            st = os.lstat(p)
            data = hashlib.sha256(Path(p).read_bytes()).hexdigest() if os.path.isfile(p) and not os.path.islink(p) else ""
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_mtime_ns, st.st_size, data)
    return out


def _mounts() -> list[str]:
    return sorted(" ".join(line.split()[3:5]) for line in Path("/proc/self/mountinfo").read_text().splitlines())


# name -> (extra layer entries, config)
IMAGES: dict[str, tuple[list[oci.Entry], dict[str, Any]]] = {
    **{f"wd-fd{n}": ([], {"Env": PATH_ENV, "WorkingDir": f"/proc/self/fd/{n}"}) for n in (3, 4, 5, 6, 7, 8)},
    "wd-proc-root": ([], {"Env": PATH_ENV, "WorkingDir": "/proc/1/root/../../.."}),
    "proc-to-root": ([oci.Entry("proc", "symlink", linkname="/")], {"Env": PATH_ENV}),
    "proc-to-host": ([oci.Entry("proc", "symlink", linkname=f"{UP}{str(HOST)[1:]}")], {"Env": PATH_ENV}),
    "dev-to-root": ([oci.Entry("dev", "symlink", linkname="/")], {"Env": PATH_ENV}),
    "dev-to-host": ([oci.Entry("dev", "symlink", linkname=str(HOST))], {"Env": PATH_ENV}),
    "passwd-zero": ([oci.Entry("etc", "dir"), oci.Entry("etc/passwd", "symlink", linkname="/dev/zero")],
                    {"Env": PATH_ENV, "User": "app"}),
    "passwd-host": ([oci.Entry("etc", "dir"), oci.Entry("etc/passwd", "symlink", linkname=f"{HOST}/passwd")],
                    {"Env": PATH_ENV, "User": "app"}),
    "passwd-host-rel": ([oci.Entry("etc", "dir"),
                         oci.Entry("etc/passwd", "symlink", linkname=f"{UP}{str(HOST)[1:]}/passwd")],
                        {"Env": PATH_ENV, "User": "app"}),
    "links": ([oci.Entry("link", "symlink", linkname="/etc"), oci.Entry("up", "symlink", linkname=f"{UP}{str(HOST)[1:]}"),
               oci.Entry("abs", "symlink", linkname=str(HOST))], {"Env": PATH_ENV}),
}


class Env:
    def __init__(self, root: Path, refs: dict[str, str]) -> None:
        self.root, self.refs = root, refs

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        # --network none: these images attack the file system; the default bridge's teardown finishes in
        # the background after run returns (its netns mount would race host_untouched's mount table)
        return ocibox(self.root, "run", "--rm", "--network", "none", *args, timeout=timeout)


@pytest.fixture(scope="module")
def env(registry: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    HOST.mkdir(exist_ok=True)
    (HOST / "canary").write_text("canary\n")
    (HOST / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:4242:4242:host app:/:/bin/sh\n")
    (HOST / "sub").mkdir(exist_ok=True)
    tmp = tmp_path_factory.mktemp("hostile-run")
    base = oci.Layer(oci.busybox_layer())
    refs = {}
    for name, (entries, cfg) in IMAGES.items():
        layers = [base] + ([oci.Layer(oci.make_tar(entries))] if entries else [])
        oci.push_image(tmp, registry.host, f"hostile/{name}:v1", layers, config_obj=cfg)
        refs[name] = f"{registry.host}/hostile/{name}:v1"
    root = tmp / "store"
    for ref in refs.values():
        ocibox(root, "pull", "-q", ref, check=True)
    yield Env(root, refs)
    shutil.rmtree(HOST, ignore_errors=True)


@pytest.fixture
def host_untouched(env: Env) -> Iterator[None]:
    before = (_snap(HOST), _mounts(), sorted(os.listdir("/etc")))
    yield
    after = (_snap(HOST), _mounts(), sorted(os.listdir("/etc")))
    assert after[0] == before[0], "the host canary directory changed"
    assert after[1] == before[1], "the host mount table changed"
    assert after[2] == before[2], "the host /etc changed"
    v = ocibox(env.root, "verify")
    assert v.returncode == 0 and not v.stdout.strip(), v.stdout + v.stderr


def _refused(r: subprocess.CompletedProcess[str]) -> bool:
    """Refused by ocibox: its exit codes and one line on stderr naming what was wrong."""
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    return r.returncode in (125, 126, 127) and len(lines) == 1 and not r.stdout


HOST_ONLY = ("ocibox.db", "cgroup.procs", "tasks", "canary", "vmlinuz", "lost+found")


@pytest.mark.parametrize("name", [f"wd-fd{n}" for n in (3, 4, 5, 6, 7, 8)] + ["wd-proc-root"])
def test_workdir_through_proc_is_refused_or_confined(env: Env, host_untouched: None, name: str) -> None:
    """CVE-2024-21626 (runc 'leaky vessels'): a WorkingDir of /proc/self/fd/N must not make a host
    directory (a leaked fd of the runtime) the container's cwd."""
    r = env.run(env.refs[name], "sh", "-c", "ls -a; touch ./pwned-cwd 2>/dev/null; ls -a ..")
    if _refused(r):
        return
    listing = r.stdout.split()
    assert not [n for n in HOST_ONLY if n in listing], (r.stdout, r.stderr)
    assert not list(env.root.rglob("pwned-cwd"))


@pytest.mark.parametrize("name", ["proc-to-root", "proc-to-host", "dev-to-root", "dev-to-host"])
def test_proc_or_dev_symlink_is_refused_or_confined(env: Env, host_untouched: None, name: str) -> None:
    r = env.run(env.refs[name], "sh", "-c", "cat /proc/self/status | head -1; ls /dev/null && echo devok")
    if _refused(r):
        assert "/" + name.split("-")[0] in r.stderr and "symlink" in r.stderr, r.stderr
        return
    assert r.returncode == 0, r.stderr
    # proc and dev are the container's own, mounted inside the rootfs
    assert r.stdout.startswith("Name:"), r.stdout
    assert "devok" in r.stdout


@pytest.mark.parametrize("name", ["passwd-zero", "passwd-host", "passwd-host-rel"])
def test_passwd_symlink_with_user(env: Env, host_untouched: None, name: str) -> None:
    """User: app with /etc/passwd a symlink to /dev/zero (must not hang or eat memory) or to a host
    file naming app as uid 4242 (must not be read: symlinks resolve in the container)."""
    r = env.run(env.refs[name], "id", "-u", timeout=60)
    assert "4242" not in r.stdout, "the host's passwd file was read"
    assert _refused(r), (r.returncode, r.stdout, r.stderr)
    assert "app" in r.stderr


@pytest.mark.parametrize("target", ["/link/x", "/up/x", "/abs/x", "/up", "/abs"])
def test_volume_target_through_symlink(env: Env, host_untouched: None, tmp_path: Path, target: str) -> None:
    """-v HOSTDIR:TARGET where TARGET passes through a symlink to /etc or out of the rootfs: the
    mount lands inside the container (or is refused); never on the host's /etc or the canary dir."""
    src = tmp_path / "vol"
    src.mkdir()
    (src / "from-volume").write_text("vol\n")
    r = env.run("-v", f"{src}:{target}", env.refs["links"], "sh", "-c",
                f"cat {target}/from-volume; echo inside > {target}/written")
    assert not (Path("/etc") / "x").exists()
    if _refused(r):
        return
    assert r.returncode == 0 and r.stdout == "vol\n", (r.stdout, r.stderr)
    assert (src / "written").read_text() == "inside\n"
