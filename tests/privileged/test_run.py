"""``ocibox run`` for real: images pushed by skopeo to the session registry, pulled by the CLI, run
through the CLI as root. What the container sees is reported by busybox inside it."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oci
import pytest
from cli import argv, ocibox

pytestmark = pytest.mark.privileged

# podman's default capabilities: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
# NET_BIND_SERVICE SYS_CHROOT SETFCAP (bits 0 1 3 4 5 6 7 8 10 18 31)
DEFAULT_CAP_MASK = "00000000800405fb"
CFG = {
    "Entrypoint": ["/bin/echo", "ep"], "Cmd": ["cmd"], "Env": ["PATH=/bin", "GREETING=hello"],
    "User": "app", "WorkingDir": "/home/app/work",
}
REPORT = 'echo "$GREETING|$(id -u)|$(id -G)|$(pwd)|$HOME"'


class Box:
    def __init__(self, root: Path, ref: str, cfg_ref: str) -> None:
        self.root, self.ref, self.cfg_ref = root, ref, cfg_ref

    def cmd(self, *args: str) -> list[str]:
        return argv(self.root, "run", *args)

    def run(self, *args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        return ocibox(self.root, "run", *args, timeout=timeout, **kw)

    def sh(self, script: str, *flags: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run(*flags, self.ref, "sh", "-c", script, **kw)


@pytest.fixture(scope="module")
def box(busybox_ref: str, registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    tmp = tmp_path_factory.mktemp("run")
    layer = oci.Layer(oci.busybox_layer())
    oci.push_image(tmp, registry.host, "cfgbox:latest", [layer], config_obj=CFG)
    cfg_ref = f"{registry.host}/cfgbox:latest"
    root = tmp / "store"
    for ref in (busybox_ref, cfg_ref):
        ocibox(root, "pull", "-q", ref, check=True)
    yield Box(root, busybox_ref, cfg_ref)


def status(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_pid1_hostname_and_namespaces(box: Box) -> None:
    r = box.sh("echo $$; hostname; cat /proc/net/dev | tail -n +3 | cut -d: -f1", "--hostname", "boxy",
               "--network", "none")
    assert r.returncode == 0, r.stderr
    pid, host, *ifaces = r.stdout.split()
    assert (pid, host, ifaces) == ("1", "boxy", ["lo"])  # a new network namespace: loopback only
    r = box.sh("hostname; ip link show lo")
    assert re.fullmatch(r"[0-9a-f]{12}", r.stdout.split()[0])  # docker: the short container id
    assert "UP" in r.stdout  # loopback is up without an ip binary on the host side


def test_network_host_sees_host_interfaces(box: Box) -> None:
    # A veth of an earlier test's bridge container can go (its CNI DEL finishes in the background)
    # between the two reads: compared again until both reads see the same host.
    for _ in range(20):
        r = box.sh("cat /proc/net/dev | tail -n +3 | cut -d: -f1", "--network", "host")
        host = [ln.split(":")[0].strip() for ln in Path("/proc/net/dev").read_text().splitlines()[2:]]
        if sorted(r.stdout.split()) == sorted(host):
            break
        time.sleep(0.2)
    assert sorted(r.stdout.split()) == sorted(host)


def test_mountinfo_shows_no_host_path(box: Box) -> None:
    r = box.sh("cat /proc/self/mountinfo")
    assert r.returncode == 0, r.stderr
    points = [ln.split()[4] for ln in r.stdout.splitlines()]
    roots = [ln.split()[3] for ln in r.stdout.splitlines()]
    assert points[0] == "/" and " overlay " in r.stdout.splitlines()[0]
    assert str(box.root) not in r.stdout
    for p in points + roots:
        assert not p.startswith(("/tmp/", "/work", "/var/lib", "/root")), p
    for want in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/etc/hosts", "/etc/hostname",
                 "/etc/resolv.conf"):
        assert want in points


def test_capabilities_and_no_new_privs(box: Box) -> None:
    st = status(box.sh("cat /proc/self/status").stdout)
    assert (st["CapEff"], st["CapPrm"], st["CapBnd"]) == (DEFAULT_CAP_MASK,) * 3
    assert (st["CapInh"], st["CapAmb"], st["NoNewPrivs"]) == ("0000000000000000", "0000000000000000", "1")
    st = status(box.sh("cat /proc/self/status", "--cap-add", "NET_ADMIN", "--cap-drop", "chown").stdout)
    assert int(st["CapEff"], 16) == (int(DEFAULT_CAP_MASK, 16) | 1 << 12) & ~1
    st = status(box.sh("cat /proc/self/status", "-u", "app").stdout)  # non-root: nothing effective
    assert (st["CapEff"], st["CapBnd"], st["Uid"].split()[0]) == ("0000000000000000", DEFAULT_CAP_MASK, "1000")


def test_masked_and_readonly_paths(box: Box) -> None:
    r = box.sh("for p in /proc/keys /proc/timer_list /proc/interrupts /proc/kcore; do [ -e $p ] && wc -c < $p; done;"
               "ls -A /sys/firmware | wc -l")
    assert r.stdout.split() and all(n == "0" for n in r.stdout.split()), r.stdout  # masked: empty
    for script in ("touch /sys/firmware/x", "echo 1 > /proc/sys/vm/drop_caches", "echo x > /proc/sys/kernel/hostname",
                   "echo x > /proc/sysrq-trigger", "touch /proc/fs/x"):
        r = box.sh(script)
        if "No such file" in r.stderr or "nonexistent" in r.stderr:  # no sysrq-trigger on some kernels
            continue
        assert r.returncode != 0 and "Read-only file system" in r.stderr, (script, r.stderr)


def test_only_std_fds(box: Box) -> None:
    extra = os.open("/dev/null", os.O_RDONLY)  # an inheritable fd in ocibox must not reach the container
    os.set_inheritable(extra, True)
    try:
        # "; true": busybox sh would exec a lone command, and ls would list its own directory fd
        r = box.run(box.ref, "sh", "-c", "ls /proc/$$/fd; true", pass_fds=(extra,))
    finally:
        os.close(extra)
    assert r.stdout.split() == ["0", "1", "2"], r.stderr


@pytest.mark.parametrize("args,want", [
    ([], "ep cmd"),
    (["x", "y"], "ep x y"),
    (["--entrypoint", "/bin/sh", "@", "-c", REPORT], "hello|1000|1000 2000|/home/app/work|/home/app"),
    (["-u", "0", "-w", "/tmp", "-e", "GREETING=bye", "--entrypoint", "/bin/sh", "@", "-c", REPORT],
     "bye|0|0|/tmp|/root"),
    (["-u", "1234:55", "--entrypoint", "/bin/sh", "@", "-c", REPORT], "hello|1234|55|/home/app/work|/"),
    (["--entrypoint", "", "@", "echo", "plain"], "plain"),
    (["--env-file", "@envfile", "--entrypoint", "/bin/sh", "@", "-c", "echo $GREETING"], "from-file"),
])
def test_entrypoint_cmd_env_user_workdir(box: Box, tmp_path: Path, args: list[str], want: str) -> None:
    (tmp_path / "env").write_text("GREETING=from-file\n")
    if "@" not in args:
        args = [box.cfg_ref, *args]
    argv = [box.cfg_ref if a == "@" else str(tmp_path / "env") if a == "@envfile" else a for a in args]
    r = box.run(*argv)
    assert (r.returncode, r.stdout.strip()) == (0, want), r.stderr


@pytest.mark.parametrize("args,code,err", [
    (["sh", "-c", "exit 3"], 3, ""),
    (["sh", "-c", "sleep 10 & kill -9 $!; wait $!"], 137, ""),
    (["nosuchcommand"], 127, "not found"),
    (["/no/such/path"], 127, "no such file"),
    (["/etc/passwd"], 126, "Permission denied"),
    (["/tmp"], 126, "Permission denied"),
])
def test_exit_status(box: Box, args: list[str], code: int, err: str) -> None:
    r = box.run(box.ref, *args)
    assert r.returncode == code and err in r.stderr, r.stderr


def test_exit_status_ocibox_failures(box: Box) -> None:
    assert box.run("-u", "nosuch", box.ref, "true").returncode == 125
    assert box.run("--bogus-flag", box.ref, "true").returncode == 125
    r = box.run("--pull", "never", "127.0.0.1:1/none:latest", "true")
    assert r.returncode == 125 and "pull" in r.stderr


def test_init_reaps_and_reports_signal_deaths(box: Box) -> None:
    r = box.run("--init", box.ref, "sh", "-c", "echo $$; kill -TERM $$")
    assert (r.returncode, r.stdout.strip()) == (143, "2")  # the command is PID 2, 128+SIGTERM


def test_signals_are_forwarded_to_pid1(box: Box) -> None:
    p = subprocess.Popen(box.cmd(box.ref, "sh", "-c", 'trap "echo got TERM; exit 7" TERM; echo ready;'
                                 " while :; do sleep 0.05; done"), stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 7
        assert p.stdout.read().strip() == "got TERM"
    finally:
        p.kill()
        p.wait()


def _read_until(fd: int, needle: bytes, timeout: float = 20) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.2)[0]:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
    return buf


def test_tty_is_a_real_pty_that_follows_the_window_size(box: Box) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 99, 0, 0))
    p = subprocess.Popen(box.cmd("-it", box.ref, "sh"), stdin=slave, stdout=slave, stderr=slave,
                         start_new_session=True)
    os.close(slave)
    try:
        # busybox's interactive shell flushes pending input when it starts: wait for its prompt
        assert b"# " in _read_until(master, b"# ")
        os.write(master, b"busybox stty size; test -t 0 && echo IS-A-$((1+1))TTY\n")
        out = _read_until(master, b"IS-A-2TTY")
        assert b"33 99" in out and b"IS-A-2TTY" in out, out
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        p.send_signal(signal.SIGWINCH)
        time.sleep(0.3)
        os.write(master, b"busybox stty size; exit 5\n")
        out = _read_until(master, b"40 120\r")
        assert b"40 120" in out, out
        assert p.wait(timeout=20) == 5
    finally:
        p.kill()
        p.wait()
        os.close(master)


def test_stdin_passes_through_with_i(box: Box) -> None:
    r = box.run("-i", box.ref, "sh", "-c", "tr a-z A-Z", input="hello\n")
    assert r.stdout == "HELLO\n"
    r = box.run(box.ref, "sh", "-c", "cat", input="ignored\n")  # docker without -i: empty stdin
    assert r.stdout == ""


def test_volumes_rw_ro_and_tmpfs(box: Box, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("from host\n")
    r = box.sh("cat /data/in.txt; echo from container > /data/out.txt", "-v", f"{tmp_path}:/data")
    assert r.returncode == 0 and r.stdout == "from host\n", r.stderr
    assert (tmp_path / "out.txt").read_text() == "from container\n"
    r = box.sh("touch /data/new", "-v", f"{tmp_path}:/data:ro")
    assert r.returncode != 0 and "Read-only" in r.stderr and not (tmp_path / "new").exists()
    r = box.sh("grep ' /scratch ' /proc/self/mountinfo; touch /scratch/x", "--tmpfs", "/scratch:size=1m")
    assert r.returncode == 0 and "tmpfs" in r.stdout and "noexec" in r.stdout


def test_read_only_root(box: Box) -> None:
    r = box.sh("touch /x 2>&1; touch /dev/shm/ok && echo shm-ok; touch /scratch/ok && echo tmpfs-ok",
               "--read-only", "--tmpfs", "/scratch")
    assert "Read-only file system" in r.stdout and "shm-ok" in r.stdout and "tmpfs-ok" in r.stdout


def test_writable_layer_is_private_and_removed(box: Box) -> None:
    assert box.sh("echo x > /root/file").returncode == 0
    assert box.sh("test -e /root/file").returncode == 1  # a fresh upper dir per container
    assert list((box.root / "containers").iterdir()) == []


def test_memory_limit_kills_with_137_and_a_message(box: Box) -> None:
    r = box.sh("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived", "-m", "32m", timeout=120)
    assert r.returncode == 137, r.stderr
    assert "OOM" in r.stderr and "32 MiB" in r.stderr and "survived" not in r.stdout


def test_pids_limit_holds_a_fork_bomb(box: Box) -> None:
    r = box.sh("cat /sys/fs/cgroup/pids/pids.max; i=0; while [ $i -lt 60 ]; do sleep 2 & i=$((i+1)); done;"
               "cat /sys/fs/cgroup/pids/pids.current", "--pids-limit", "16", timeout=120)
    # busybox sh gives up at the first failed fork (status 2): the limit held at 16 tasks
    assert (r.returncode, r.stdout.split()) == (2, ["16"]) and "can't fork" in r.stderr, r.stdout + r.stderr


def test_cpu_limits_visible(box: Box) -> None:
    r = box.sh("cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us "
               "/sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/memory/memory.limit_in_bytes",
               "--cpus", "0.5", "--cpu-shares", "512", "-m", "64m")
    assert r.stdout.split() == ["50000", "100000", "512", str(64 << 20)], r.stderr


def test_debug_shows_cgroup_writes(box: Box) -> None:
    r = ocibox(box.root, "--debug", "run", "--pids-limit", "9", box.ref, "true", timeout=60)
    assert re.search(r"wrote 9 to /sys/fs/cgroup/pids/(.*/)?ocibox-[0-9a-f]{64}/pids.max", r.stderr), r.stderr


def _own_cgroup_dirs(parent: str) -> list[Path]:
    # every v1 hierarchy the runner writes to, devices included (the hardening's device rules)
    return [Path("/sys/fs/cgroup") / h / parent.lstrip("/") for h in ("memory", "cpu", "pids", "devices", "freezer")]


def test_a_container_made_through_ctypes(box: Box) -> None:
    """With OCIBOX_CTYPES=1 the raw syscalls go through ctypes (the fallback where the C extension of
    ocibox.linux is not built): the container is the same (capabilities, seccomp, hostname, mounts)."""
    script = 'grep -E "^(CapEff|Seccomp|NoNewPrivs):" /proc/self/status; hostname; grep -c "^[^ ]* [^ ]* [^ ]* / / .* - overlay " /proc/self/mountinfo'
    runs = [box.run("--rm", "--network", "none", "--hostname", "h1", box.ref, "sh", "-c", script,
                    env={**os.environ, "OCIBOX_CTYPES": flag}) for flag in ("1", "")]
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    assert runs[0].stdout == runs[1].stdout
    assert runs[0].stdout.split() == ["CapEff:", DEFAULT_CAP_MASK, "NoNewPrivs:", "1", "Seccomp:", "2", "h1", "1"]


def test_a_warm_run_imports_no_heavy_module(box: Box) -> None:
    """``ocibox run`` of a cached image, started as installed (the venv's script), imports neither the
    registry client nor the stdlib modules that cost most of a start here (re, enum, functools,
    collections, contextlib, json's pure-Python parts, signal's enum, typing...): -X importtime names
    every module imported, in the parent and in the container's PID 1 before it execs."""
    script = Path(sys.executable).parent / "ocibox"
    cp = subprocess.run([sys.executable, "-X", "importtime", str(script), "--root", str(box.root), "run", "--rm",
                         "--network", "none", box.ref, "echo", "ran"], capture_output=True, text=True, timeout=60)
    assert (cp.returncode, cp.stdout) == (0, "ran\n"), cp.stderr
    imported = {line.split("|")[2].strip() for line in cp.stderr.splitlines() if line.startswith("import time:")}
    assert {"ocibox.run._main", "_sqlite3", "pathlib"} <= imported  # the report is real
    heavy = {"re", "enum", "functools", "collections", "contextlib", "json", "json.decoder", "signal", "typing",
             "dataclasses", "fnmatch", "warnings", "urllib.parse", "ipaddress", "httpx", "ocibox.puller", "tqdm",
             "ctypes"}  # ctypes: where ocibox.linux's C extension is built (scripts/install-deps builds it)
    assert imported & heavy == set()


def test_many_runs_leave_nothing_behind(box: Box) -> None:
    n = int(os.environ.get("OCIBOX_RUN_LOOPS", "30"))
    parent = f"/ocibox-test-{os.getpid()}"
    try:
        t0 = time.monotonic()
        for i in range(n):
            r = box.run("--cgroup-parent", parent, "-m", "64m", "--pids-limit", "50", box.ref,
                        "sh", "-c", "sleep 5 & sleep 5 & echo $$")
            assert (r.returncode, r.stdout.strip()) == (0, "1"), (i, r.stderr)
        elapsed = time.monotonic() - t0
        for d in _own_cgroup_dirs(parent):
            assert [c.name for c in d.iterdir() if c.is_dir()] == [], d
        assert str(box.root) not in Path("/proc/self/mountinfo").read_text()
        assert list((box.root / "containers").iterdir()) == []
        for pid in filter(str.isdigit, os.listdir("/proc")):  # the background sleeps died with PID 1
            try:
                cg = Path(f"/proc/{pid}/cgroup").read_text()
            except OSError:
                continue
            assert parent not in cg, pid
        print(f"{n} runs: {elapsed / n * 1000:.0f} ms each")
    finally:
        for d in _own_cgroup_dirs(parent):
            if d.exists():
                d.rmdir()


def test_same_view_as_runc(box: Box, tmp_path: Path) -> None:
    """runc on the same rootfs, with the same capabilities: same capability sets, NoNewPrivs, lo only."""
    if shutil.which("runc") is None:
        pytest.fail("runc is not installed (apt-get install runc)")
    bundle = tmp_path / "bundle"
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    import io

    with tarfile.open(fileobj=io.BytesIO(oci.busybox_layer())) as tf:
        oci.extractall(tf, rootfs)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    script = "grep -E '^(Cap|NoNewPrivs)' /proc/self/status; cat /proc/net/dev | tail -n +3 | cut -d: -f1"
    spec["process"]["args"] = ["sh", "-c", script]
    spec["process"]["terminal"] = False
    caps = [f"CAP_{c}" for c in ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
                                 "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "SETFCAP")]
    spec["process"]["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
    (bundle / "config.json").write_text(json.dumps(spec))
    name = f"ocibox-cmp-{os.getpid()}"
    theirs = subprocess.run(["runc", "run", "--bundle", str(bundle), name], capture_output=True, text=True,
                            timeout=60)
    subprocess.run(["runc", "delete", "-f", name], capture_output=True)
    assert theirs.returncode == 0, theirs.stderr
    ours = box.sh(script, "--network", "none")  # runc's spec has a new, empty network namespace
    assert ours.stdout == theirs.stdout


def test_missing_image_is_pulled_first(busybox_ref: str, tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    r = ocibox(root, "run", "--rm", busybox_ref, "echo", "pulled-and-ran")
    assert (r.returncode, r.stdout) == (0, "pulled-and-ran\n"), r.stderr
    r = ocibox(root, "run", "--pull", "never", busybox_ref, "true", timeout=60)
    assert r.returncode == 0, r.stderr  # now in the store
