"""ocibox without root, for real: two unprivileged users made for this module (``tests/rootless.py``),
one with a subordinate id range in /etc/subuid and /etc/subgid and one without, run the CLI (runuser,
a clean environment) against the session registry. Everything they made is removed at the end, and
/etc/subuid and /etc/subgid are restored.

What is checked: pull and run of busybox, an image of several owners and the Debian image; ids in the
container and owners on the host (the subordinate ids); -u; volumes rw and ro; the denials (a 0600
root file stays unreadable, another user's file unwritable, a setuid binary gives no privilege, no host
process is visible, another user's store is out of reach, no mount reaches the host); the network
(out to a namespace that stands for the world, -p, the host's loopback only when asked); limits
refused on this cgroup-v1 host; the hostile layer corpus, unpacked as the user; the verbs around
(images, inspect, system df, verify, export, rmi, prune, run -d and the container verbs, unshare).
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oci
import pytest
from outside import OUT_PEER, outside_namespace
from rootless import User, Users, owned_by

pytestmark = pytest.mark.privileged

SETUID_NOTE = "no_new_privs and the user namespace"


def _one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    lines = [x for x in r.stderr.splitlines() if x.strip() and not x.startswith("ocibox: warning")]
    assert r.returncode == 125 and len(lines) == 1, (r.returncode, r.stdout, r.stderr)
    return lines[0]


def _root_only_layer() -> bytes:
    """busybox with every file root's (what a user without subordinate ids can unpack)."""
    data = Path(oci.BUSYBOX).read_bytes()
    entries = [oci.Entry("bin", "dir"), oci.Entry("bin/busybox", data=data, mode=0o755)]
    entries += [oci.Entry(f"bin/{a}", "symlink", linkname="busybox") for a in ("sh", "id", "ls", "cat", "echo", "true")]
    entries += [oci.Entry("etc", "dir"), oci.Entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n"),
                oci.Entry("etc/group", data=b"root:x:0:\n"), oci.Entry("tmp", "dir", mode=0o1777)]
    return oci.make_tar(entries)


def _owners_layers() -> list[oci.Layer]:
    """busybox, then a layer of several owners, a setuid copy of busybox, a whiteout and an opaque
    directory (of the lower layer's files), and a directory only its owner may enter."""
    lower = oci.make_tar([oci.Entry("gone", data=b"lower\n"), oci.Entry("opq", "dir"),
                          oci.Entry("opq/old", data=b"old\n"), oci.Entry("keep", "dir"), oci.Entry("keep/a", data=b"a")])
    data = Path(oci.BUSYBOX).read_bytes()
    upper = oci.make_tar([
        oci.Entry("srv", "dir", uid=33, gid=33, mode=0o700), oci.Entry("srv/www", data=b"www\n", uid=33, gid=33),
        oci.Entry("data", "dir", uid=1000, gid=1000), oci.Entry("data/f", data=b"f\n", uid=1000, gid=1000, mode=0o600),
        oci.Entry("shadowish", data=b"s\n", uid=0, gid=42, mode=0o640),
        oci.Entry("suid", "dir"), oci.Entry("suid/busybox", data=data, mode=0o4755),
        oci.Entry(".wh.gone", data=b""), oci.Entry("opq", "dir"), oci.Entry("opq/.wh..wh..opq", data=b""),
        oci.Entry("opq/new", data=b"new\n"),
    ])
    return [oci.Layer(oci.busybox_layer()), oci.Layer(lower), oci.Layer(upper)]


class Env:
    def __init__(self, users: Users, ranged: User, single: User, refs: dict[str, str], host: str) -> None:
        self.users, self.ranged, self.single, self.refs, self.host = users, ranged, single, refs, host


@pytest.fixture(scope="module")
def env(registry: Any, busybox_ref: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    # the monitor of detached containers, built as install-deps does (the users cannot write beside it)
    subprocess.run([sys.executable, "-m", "ocibox.monitor"], check=True, capture_output=True, timeout=120)
    tmp = tmp_path_factory.mktemp("rootless-images")
    refs = {"busybox": busybox_ref}
    for name, layers in (("owners", _owners_layers()), ("rootonly", [oci.Layer(_root_only_layer())]),
                         ("bigid", [oci.Layer(_root_only_layer()),
                                    oci.Layer(oci.make_tar([oci.Entry("far", data=b"x", uid=70000, gid=0)]))]),
                         ("hugeid", [oci.Layer(_root_only_layer()),
                                     oci.Layer(oci.make_tar([oci.Entry("minus1", data=b"x", uid=4294967294)]))])):
        oci.push_image(tmp, registry.host, f"rootless/{name}:v1", layers, config_obj={"Env": ["PATH=/bin"]})
        refs[name] = f"{registry.host}/rootless/{name}:v1"
    users = Users()
    try:
        ranged = users.add("r")
        single = users.add("s", subid_count=0)
        yield Env(users, ranged, single, refs, registry.host)
    finally:
        problems = users.close()
        assert problems == []


@pytest.fixture(scope="module")
def pulled(env: Env) -> Env:
    for name in ("busybox", "owners"):
        env.ranged.ok("pull", "-q", env.refs[name])
    return env


# ----------------------------------------------------------------------------- ids and owners
def test_pull_and_run_busybox(pulled: Env) -> None:
    u = pulled.ranged
    out = u.ok("run", "--rm", "--network", "none", pulled.refs["busybox"], "sh", "-c",
               "id; cat /proc/self/uid_map /proc/self/gid_map")
    lines = out.splitlines()
    assert lines[0].startswith("uid=0(root) gid=0(root)"), out
    assert lines[1].split() == ["0", str(u.uid), "1"] and lines[2].split() == ["1", str(u.subid[0]), "65536"]
    assert lines[3].split() == ["0", str(u.gid), "1"] and lines[4].split() == ["1", str(u.subid[0]), "65536"]
    # the store is the user's, at the XDG default; nothing of it is root's on the host
    assert (u.store / "ocibox.db").exists() and not owned_by(u.store, {0})


def test_owners_in_the_container_and_on_the_host(pulled: Env) -> None:
    u = pulled.ranged
    base = u.subid[0] - 1  # container id N (N >= 1) is host id base + N
    out = u.ok("run", "--rm", "--network", "none", pulled.refs["owners"], "sh", "-c",
               "stat -c '%n %u:%g %a' /srv /srv/www /data /data/f /shadowish /suid/busybox /bin/busybox;"
               "ls /; ls /opq")
    got = dict(line.split(" ", 1) for line in out.splitlines()[:7])
    assert got == {"/srv": "33:33 700", "/srv/www": "33:33 644", "/data": "1000:1000 755", "/data/f": "1000:1000 600",
                   "/shadowish": "0:42 640", "/suid/busybox": "0:0 4755", "/bin/busybox": "0:0 755"}, out
    listing = out.splitlines()[7:]
    assert "gone" not in listing and "keep" in listing  # the whiteout hides the lower file
    assert listing[-1] == "new"  # the opaque directory hides opq/old
    # on the host: the layer as ls -ln shows it, subordinate ids for every owner but root
    layer = next(d for d in (u.store / "layers").iterdir() if (d / "diff" / "srv").exists()) / "diff"
    ls = subprocess.run(["ls", "-ln", str(layer)], capture_output=True, text=True, check=True).stdout
    rows = {line.split()[-1]: line.split() for line in ls.splitlines()[1:]}
    assert rows["srv"][2:4] == [str(base + 33)] * 2 and rows["data"][2:4] == [str(base + 1000)] * 2
    assert rows["shadowish"][2:4] == [str(u.uid), str(base + 42)]
    assert (layer / "suid").stat().st_uid == u.uid
    # whiteout and opaque directory in overlayfs' userxattr form
    assert stat.S_ISCHR(os.lstat(layer / "gone").st_mode) and os.lstat(layer / "gone").st_rdev == 0
    assert os.getxattr(layer / "opq", "user.overlay.opaque") == b"y"
    with pytest.raises(OSError):
        os.getxattr(layer / "opq", "trusted.overlay.opaque")


def test_user_option_and_volumes(pulled: Env) -> None:
    u = pulled.ranged
    shared, ro = u.home / "shared", u.home / "ro"
    for d in (shared, ro):
        u.sh(f"mkdir -p {d} && chmod 777 {d}")
    u.sh(f"echo mine > {ro}/file")
    out = u.ok("run", "--rm", "--network", "none", "-u", "1000", "-v", f"{shared}:/shared", "-v", f"{ro}:/ro:ro",
               pulled.refs["busybox"], "sh", "-c",
               "id; echo by-1000 > /shared/from-1000; cat /ro/file; echo x > /ro/other 2>&1 || echo ro-refused")
    assert out.splitlines()[0].startswith("uid=1000(app) gid=1000(app)"), out
    assert "mine" in out and "ro-refused" in out, out
    assert not (ro / "other").exists()
    st = (shared / "from-1000").stat()
    assert (st.st_uid, st.st_gid) == (u.subid[0] + 999, u.subid[0] + 999)  # a subordinate id on the host
    # as root of the user's namespace (ocibox unshare) the user can remove it; outside they cannot
    assert u.sh(f"rm -f {shared}/from-1000").returncode == 0 or (shared / "from-1000").exists()
    u.ok("unshare", "rm", "-f", str(shared / "from-1000"))
    assert not (shared / "from-1000").exists()
    # as root in the container, into a directory of the user's
    u.ok("run", "--rm", "--network", "none", "-v", f"{shared}:/shared", pulled.refs["busybox"], "sh", "-c",
         "echo root > /shared/by-root")
    assert (shared / "by-root").stat().st_uid == u.uid


def test_unmapped_user_is_named(pulled: Env) -> None:
    r = pulled.ranged.ocibox("run", "--rm", "--network", "none", "-u", "70000", pulled.refs["busybox"], "id")
    line = _one_line_error(r)
    assert "70000" in line and "not mapped" in line, line


# ----------------------------------------------------------------------------- without a subordinate range
def test_single_id_map(env: Env) -> None:
    u = env.single
    r = u.ocibox("pull", "-q", env.refs["rootonly"])
    assert r.returncode == 0, r.stderr
    assert "no subordinate ids" in r.stderr and "usermod --add-subuids" in r.stderr  # said once...
    r = u.ocibox("run", "--rm", "--network", "none", env.refs["rootonly"], "sh", "-c", "id; cat /proc/self/uid_map")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr  # ...and not again
    assert r.stdout.splitlines()[0].startswith("uid=0(root)") and r.stdout.split()[-3:] == ["0", str(u.uid), "1"]
    # an image with files of other owners: one line naming the first such file and how to get a range
    r = u.ocibox("pull", "-q", env.refs["busybox"])
    line = _one_line_error(r)
    assert "home/app" in line and "1000" in line and "usermod --add-subuids" in line and u.name in line, line
    assert "--ignore-chown-errors" in line
    # unless every owner is squashed to root (podman's ignore_chown_errors), by flag or by config
    u.ok("--ignore-chown-errors", "pull", "-q", env.refs["busybox"])
    out = u.ok("run", "--rm", "--network", "none", env.refs["busybox"], "stat", "-c", "%u:%g", "/home/app")
    assert out.strip() == "0:0"
    u.ok("rmi", env.refs["busybox"])
    cfg = u.home / ".config/ocibox"
    u.sh(f"mkdir -p {cfg} && printf '[storage]\\nignore_chown_errors = true\\n' > {cfg}/config.toml")
    try:
        u.ok("pull", "-q", env.refs["busybox"])
    finally:
        u.sh(f"rm -rf {cfg}")
    r = u.ocibox("run", "--rm", "--network", "none", "-u", "1000", env.refs["busybox"], "id")
    assert "not mapped" in _one_line_error(r)


def test_owner_outside_the_range(env: Env) -> None:
    for name, entry, value in (("bigid", "far", "70000"), ("hugeid", "minus1", "4294967294")):
        r = env.ranged.ocibox("pull", "-q", env.refs[name])
        line = _one_line_error(r)
        assert entry in line and value in line and "0-65536" in line, line


# ----------------------------------------------------------------------------- denials
def test_root_file_stays_unreadable(pulled: Env, tmp_path: Path) -> None:
    secret = Path(f"/tmp/ocibox-rootless-secret-{os.getpid()}")
    secret.write_text("root only\n")
    os.chmod(secret, 0o600)
    try:
        r = pulled.ranged.ocibox("run", "--rm", "--network", "none", "-v", f"{secret}:/secret", pulled.refs["busybox"],
                                 "sh", "-c", "cat /secret; echo status=$?")
        assert "root only" not in r.stdout and "status=1" in r.stdout, (r.stdout, r.stderr)
        assert "Permission denied" in r.stderr
    finally:
        secret.unlink()


def test_other_users_file_stays_unwritable(pulled: Env) -> None:
    other = pulled.single.home / "theirs"
    pulled.single.sh(f"echo theirs > {other} && chmod 644 {other} && chmod 755 {pulled.single.home}")
    r = pulled.ranged.ocibox("run", "--rm", "--network", "none", "-v", f"{other}:/theirs", pulled.refs["busybox"],
                             "sh", "-c", "cat /theirs; echo more >> /theirs; echo status=$?")
    assert "theirs" in r.stdout and "status=1" in r.stdout, (r.stdout, r.stderr)
    assert other.read_text() == "theirs\n"


def test_setuid_binary_gives_no_privilege(pulled: Env) -> None:
    u = pulled.ranged
    out = u.ok("run", "--rm", "--network", "none", "-u", "1000", pulled.refs["owners"], "/suid/busybox", "id")
    assert out.startswith("uid=1000(app) gid=1000(app)") and "euid" not in out, out  # no_new_privs
    # and on the host the file belongs to the user, so even without no_new_privs it gives nothing more
    layer = next(d for d in (u.store / "layers").iterdir() if (d / "diff" / "suid/busybox").exists())
    st = os.lstat(layer / "diff" / "suid/busybox")
    assert st.st_uid == u.uid and st.st_mode & stat.S_ISUID


def test_no_host_process_is_visible(pulled: Env) -> None:
    out = pulled.ranged.ok("run", "--rm", "--network", "none", pulled.refs["busybox"], "sh", "-c",
                           "ls /proc | grep -c '^[0-9]'; cat /proc/1/cmdline | tr '\\0' ' '")
    count, cmd = out.splitlines()
    assert int(count) <= 3 and cmd.startswith("sh -c"), out


def test_other_users_store_is_out_of_reach(pulled: Env) -> None:
    theirs = pulled.ranged.store
    r = pulled.single.ocibox("--root", str(theirs), "images")
    assert r.returncode == 125 and "ocibox.db" not in r.stdout, (r.stdout, r.stderr)
    r = pulled.single.ocibox("--root", str(theirs), "run", "--rm", "--network", "none", pulled.refs["busybox"], "id")
    assert r.returncode == 125
    assert pulled.single.sh(f"ls {theirs}/layers").returncode != 0


def test_no_mount_reaches_the_host(pulled: Env) -> None:
    def mounts() -> list[str]:
        return sorted(" ".join(x.split()[3:5]) for x in Path("/proc/self/mountinfo").read_text().splitlines())

    before = mounts()
    r = pulled.ranged.ocibox("run", "--rm", "--network", "none", "--cap-add", "SYS_ADMIN", pulled.refs["busybox"],
                             "sh", "-c", "mount -t tmpfs none /mnt && echo mounted; mount --make-shared / 2>&1;"
                             "mount -o remount,rw /proc/sys 2>&1; echo done")
    assert "done" in r.stdout, r.stderr
    assert mounts() == before
    # and the user's own mounts, without a container: only in ocibox unshare's namespace
    r = pulled.ranged.ocibox("image", "mount", pulled.refs["busybox"])
    assert "ocibox unshare" in _one_line_error(r)
    out = pulled.ranged.ok("unshare", "sh", "-c", f"p=$({pulled.ranged.python} -m ocibox image mount "
                           f"{pulled.refs['busybox']}) && ls $p/bin | grep -c busybox")
    assert out.strip() == "1"
    assert mounts() == before


# ----------------------------------------------------------------------------- network
def _serve(port: int = 0, bind: str = "127.0.0.1") -> tuple[subprocess.Popen[bytes], int]:
    s = socket.socket()
    s.bind((bind, port))
    port = s.getsockname()[1]
    s.close()
    p = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", bind, str(port)], cwd="/tmp",
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection((bind, port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return p, port


@pytest.mark.parametrize("mode", ["default", "slirp4netns", "pasta"])
def test_network_out_and_host_loopback(pulled: Env, mode: str) -> None:
    u = pulled.ranged
    net = [] if mode == "default" else ["--network", mode]
    gateway = "192.0.2.1" if mode == "pasta" else "10.0.2.2"
    local, port = _serve()
    try:
        with outside_namespace() as ns:
            world = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", "--bind",
                                      OUT_PEER, "8000"], cwd="/etc", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(1.0)
                fetch = (f"timeout 5 wget -q -O- http://{OUT_PEER}:8000/hostname; echo out=$?;"
                         f"timeout 3 wget -q -O- http://{gateway}:{port}/ >/dev/null 2>&1; echo loop=$?")
                out = u.ok("run", "--rm", *net, pulled.refs["busybox"], "sh", "-c", fetch)
                assert "out=0" in out and "loop=0" not in out, out  # the world yes, the host's loopback no
                allow = {"default": "slirp4netns:allow_host_loopback=true",
                         "slirp4netns": "slirp4netns:allow_host_loopback=true", "pasta": "pasta:--map-gw"}[mode]
                out = u.ok("run", "--rm", "--network", allow, pulled.refs["busybox"], "sh", "-c", fetch)
                assert "out=0" in out and "loop=0" in out, out
            finally:
                world.kill()
                world.wait()
    finally:
        local.kill()
        local.wait()


@pytest.mark.parametrize("mode", ["slirp4netns", "pasta"])
def test_publish(pulled: Env, mode: str) -> None:
    u = pulled.ranged
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    cid = u.ok("run", "-d", "--network", mode, "-p", f"127.0.0.1:{port}:80", pulled.refs["busybox"], "sh", "-c",
               "mkdir -p /www && echo hello-$(hostname) > /www/index.html && exec busybox httpd -f -p 80 -h /www").strip()
    try:
        body = ""
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                    c.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
                    data = b""
                    while chunk := c.recv(4096):
                        data += chunk
                    body = data.decode(errors="replace")
                if body:
                    break
            except OSError:
                time.sleep(0.05)
        assert f"hello-{cid[:12]}" in body, body
    finally:
        u.ok("rm", "-f", cid)
    helpers = [p for p in u.pids() if _comm(p) in ("slirp4netns", "passt.avx2", "passt", "pasta")]
    for _ in range(50):
        helpers = [p for p in helpers if _comm(p) and "Z" not in _state(p)]
        if not helpers:
            break
        time.sleep(0.1)
    assert helpers == []


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "Z"


def test_user_networks_need_root(pulled: Env) -> None:
    r = pulled.ranged.ocibox("run", "--rm", "--network", "blue", pulled.refs["busybox"], "true")
    assert "need root" in _one_line_error(r)


# ----------------------------------------------------------------------------- cgroups
def test_limits_refused_on_cgroup_v1(pulled: Env) -> None:
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        pytest.skip("a cgroup v2 host: tests/v2 checks limits with a delegated cgroup")
    for flags in (["-m", "64m"], ["--pids-limit", "10"], ["--cpus", "0.5"]):
        r = pulled.ranged.ocibox("run", "--rm", "--network", "none", *flags, pulled.refs["busybox"], "true")
        line = _one_line_error(r)
        assert "cgroup v1" in line and "delegat" in line and "drop the limits" in line, line
    # without limits the container runs in the user's own cgroup
    out = pulled.ranged.ok("run", "--rm", "--network", "none", pulled.refs["busybox"], "cat", "/proc/self/cgroup")
    mine = Path("/proc/self/cgroup").read_text()
    assert "ocibox-" not in out and out.split("\n")[0].split(":")[2] == mine.split("\n")[0].split(":")[2]


# ----------------------------------------------------------------------------- the verbs around
def test_store_verbs(pulled: Env, tmp_path: Path) -> None:
    u = pulled.ranged
    assert "rootless/owners" in u.ok("images")
    info = json.loads(u.ok("image", "inspect", pulled.refs["owners"]))
    assert info
    assert "Images" in u.ok("system", "df")
    assert u.ok("verify").strip() == ""
    out = u.home / "owners.tar"
    u.ok("export", "-o", str(out), pulled.refs["owners"])
    import tarfile

    with tarfile.open(out) as tf:
        members = {m.name.lstrip("./"): m for m in tf.getmembers()}
    assert members["srv/www"].uid == 33 and members["data/f"].uid == 1000  # the container's ids, all of them read
    assert "gone" not in members and "opq/old" not in members and "opq/new" in members
    # rmi and prune remove layers with files of subordinate owners
    u.ok("rmi", pulled.refs["owners"])
    u.ok("prune")
    assert not owned_by(u.store / "layers", {u.subid[0] + 32})  # www-data's files were the owners image's only
    u.ok("pull", "-q", pulled.refs["owners"])


def test_detached_container_and_its_verbs(pulled: Env) -> None:
    u = pulled.ranged
    cid = u.ok("run", "-d", "--name", "rl-web", pulled.refs["busybox"], "sh", "-c",
               "echo started; trap 'exit 3' TERM; while true; do sleep 0.1; done").strip()
    try:
        assert re.fullmatch(r"[0-9a-f]{64}", cid)
        assert "rl-web" in u.ok("ps")
        for _ in range(50):
            if "started" in u.ok("logs", "rl-web"):
                break
            time.sleep(0.1)
        assert u.ok("exec", "rl-web", "id", "-u").strip() == "0"
        assert u.ok("exec", "-u", "1000", "rl-web", "id", "-u").strip() == "1000"
        assert "sh -c" in u.ok("top", "rl-web")
        r = u.ocibox("pause", "rl-web")
        assert r.returncode != 0 and "needs the container's own cgroup" in r.stderr, r.stderr
        u.ok("stop", "-t", "5", "rl-web")
        assert "Exited (3)" in u.ok("ps", "-a")
        u.ok("start", "rl-web")
        assert "Up" in u.ok("ps")
    finally:
        u.ok("rm", "-f", "rl-web")
    assert "rl-web" not in u.ok("ps", "-a")
    assert not list((u.store / "containers").glob(f"{cid}*"))


def test_unshare(pulled: Env) -> None:
    u = pulled.ranged
    out = u.ok("unshare", "sh", "-c", "id -u; cat /proc/self/uid_map")
    assert out.split()[:4] == ["0", "0", str(u.uid), "1"], out
    # the store's files as containers see their owners
    layer = next(d for d in (u.store / "layers").iterdir() if (d / "diff" / "srv").exists())
    assert u.ok("unshare", "stat", "-c", "%u", str(layer / "diff" / "srv" / "www")).strip() == "33"
    # a run from inside it works as well (its maps are the namespace's own)
    assert u.ok("unshare", u.python, "-m", "ocibox", "run", "--rm", "--network", "none", pulled.refs["busybox"],
                "id", "-u").strip() == "0"


def test_debian_image(env: Env, debian_image: str) -> None:
    u = env.ranged
    u.ok("pull", "-q", debian_image, timeout=600)
    out = u.ok("run", "--rm", "--network", "none", debian_image, "sh", "-c",
               "python3 -c 'print(6*7)'; stat -c '%U:%G' /etc/shadow; apt-get --version | head -1")
    lines = out.splitlines()
    assert lines[0] == "42" and lines[1] == "root:shadow" and lines[2].startswith("apt"), out
    shadow = next(p for p in (u.store / "layers").glob("*/diff/etc/shadow"))
    st = os.lstat(shadow)
    assert (st.st_uid, st.st_gid) == (u.uid, u.subid[0] + 41)  # gid 42 (shadow) is subordinate id 42
    u.ok("rmi", debian_image)


# ----------------------------------------------------------------------------- the hostile corpus, as the user
HOSTILE_SCRIPT = r'''
import io, json, os, sys
sys.path.insert(0, sys.argv[3])
from hostile import corpus
from ocibox import rootless
from ocibox.digest import Digest
from ocibox.errors import HostileLayerError, LayerError
from ocibox.layers import unpack_layer
from ocibox.store import Store
import hashlib
rootless.enter()
store = Store(sys.argv[1])
out = {}
for case in corpus(sys.argv[2]):
    diff = Digest.parse("sha256:" + hashlib.sha256(case.tar).hexdigest())
    chain = Digest.parse("sha256:" + hashlib.sha256(case.id.encode() + case.tar).hexdigest())
    try:
        unpack_layer(store, io.BytesIO(case.tar), compression="none", diff_id=diff, chain_id=chain, parent=None,
                     what=case.id)
        out[case.id] = "confined"
    except HostileLayerError:
        out[case.id] = "hostile"
    except LayerError:
        out[case.id] = "layer-error"
print(json.dumps(out))
'''


def test_hostile_corpus_as_the_user(env: Env, tmp_path: Path) -> None:
    from hostile import corpus

    u = env.ranged
    outside = u.home / "outside"
    u.sh(f"mkdir -p {outside} && echo canary > {outside}/canary")
    script = u.home / "hostile_run.py"
    script.write_text(HOSTILE_SCRIPT)
    os.chmod(script, 0o644)

    def snap() -> dict[str, tuple[int, int, bytes]]:
        return {p.name: (p.stat().st_mode, p.stat().st_mtime_ns, p.read_bytes()) for p in outside.iterdir()}

    before = snap()
    r = subprocess.run(["runuser", "-u", u.name, "--", "env", "-i", *(f"{k}={v}" for k, v in u.env().items()),
                       u.python, str(script), str(u.home / "hostile-store"), str(outside),
                       str(Path(__file__).resolve().parents[1])], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout)
    want = {c.id: c.expect for c in corpus(str(outside))}
    assert got == want
    assert snap() == before, "the canary directory changed"
    # nothing outside the store's layers: no file of the user's subordinate ids anywhere in its home
    assert not [p for p in owned_by(u.home, set(range(u.subid[0], u.subid[0] + u.subid[1])))
                if "/hostile-store/" not in p and "/.local/share/ocibox/" not in p]
    u.ok("--root", str(u.home / "hostile-store"), "prune")


# ----------------------------------------------------------------------------- fuse-overlayfs
def test_fuse_overlayfs_fallback(pulled: Env) -> None:
    """Where the kernel refuses overlayfs in a user namespace, fuse-overlayfs (forced here: this kernel
    takes overlayfs) mounts the rootfs, outside the container's processes, for run and run -d."""
    u = pulled.ranged
    env = u.env(OCIBOX_ROOTLESS_OVERLAY="fuse")
    r = u.ocibox("run", "--rm", "--network", "none", pulled.refs["owners"], "sh", "-c",
                 "mount | head -1; ls /; ls /opq; echo x > /new && cat /new; stat -c %u /srv/www; ps -o comm", env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "fuse-overlayfs on / type fuse.fuse-overlayfs" in lines[0], r.stdout
    assert "gone" not in lines and "new" in lines and "x" in lines and "33" in lines
    assert "fuse-overlayfs" not in lines[1:]  # its daemon is no process of the container
    cid = u.ok("run", "-d", "--network", "none", pulled.refs["busybox"], "sleep", "30", env=env).strip()
    assert u.ok("exec", cid, "sh", "-c", "mount | head -1", env=env).startswith("fuse-overlayfs on /")
    u.ok("rm", "-f", cid, env=env)
    for _ in range(50):
        if not [p for p in u.pids() if _comm(p) == "fuse-overlayfs" and "Z" not in _state(p)]:
            break
        time.sleep(0.1)
    assert not [p for p in u.pids() if _comm(p) == "fuse-overlayfs" and "Z" not in _state(p)]
    assert (u.store / "overlay-rootless.json").exists()  # the probe's answer, kept for this kernel
