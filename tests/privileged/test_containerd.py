"""ocibox-runtime under real containerd (Debian's 1.6 and its io.containerd.runc.v2 shim), driven by ctr as
containerd drives runc: a private containerd (own root, state, socket and config; see tests/ctd.py),
``ctr run --runc-binary`` a wrapper running this checkout's ocibox-runtime. Covers run with and without a
tty and exit codes, exec (tty, failing, killed), kill and kill --all, pause/resume, metrics, rm -f, a PID 1
that ignores SIGTERM, an OOM kill (the task's OOM event and 137), --with-ns network, a pod-like container
joining another's pid/ipc/uts/net namespaces by path, and containers that keep running through a
containerd restart. A leak check after the module: no shim, mount, cgroup, process or state dir left."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import ctd
import pytest

pytestmark = [pytest.mark.privileged,
              pytest.mark.skipif(shutil.which("containerd") is None, reason="needs Debian's containerd package")]

NS = f"ocibox-rt-{os.getpid()}"


class Env:
    def __init__(self, c: ctd.Containerd, binary: Path, calls: Path) -> None:
        self.c, self.binary, self.calls = c, binary, calls
        self.n = 0

    def name(self, what: str) -> str:
        self.n += 1
        return f"{what}-{self.n}"

    def run(self, cid: str, *cmd: str, flags: tuple[str, ...] = (), check: bool = False,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.c.ctr("run", "--rm", *self.c.runc_args(self.binary), *flags, ctd.IMAGE, cid, *cmd,
                          check=check, timeout=timeout)

    def detached(self, cid: str, *cmd: str, flags: tuple[str, ...] = ()) -> int:
        """``ctr run -d``: the task's host pid once it runs."""
        self.c.ctr("run", "-d", *self.c.runc_args(self.binary), *flags, ctd.IMAGE, cid, *cmd)
        return self.pid(cid)

    @contextlib.contextmanager
    def running(self, what: str, *cmd: str) -> Iterator[tuple[str, int]]:
        """A container named after ``what`` run detached: (its id, the task's host pid); removed at the end."""
        cid = self.name(what)
        pid = self.detached(cid, *cmd)
        try:
            yield cid, pid
        finally:
            self.remove(cid)

    def pid(self, cid: str) -> int:
        for line in self.c.ctr("task", "ls").stdout.splitlines()[1:]:
            parts = line.split()
            if parts[0] == cid:
                return int(parts[1])
        raise AssertionError(f"no task {cid}")

    def status(self, cid: str) -> str:
        for line in self.c.ctr("task", "ls").stdout.splitlines()[1:]:
            parts = line.split()
            if parts[0] == cid:
                return parts[2]
        return "GONE"

    def wait_status(self, cid: str, want: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.status(cid) != want:
            assert time.monotonic() < deadline, f"{cid} is {self.status(cid)}, not {want}"
            time.sleep(0.05)

    def remove(self, cid: str) -> None:
        self.c.ctr("task", "rm", "-f", cid, check=False)
        self.c.ctr("container", "rm", cid, check=False)

    def state(self, cid: str) -> dict[str, object]:
        r = subprocess.run([str(self.binary), "--root", str(self.c.runc_root / NS), "state", cid],
                           capture_output=True, text=True, timeout=30, check=True)
        return json.loads(r.stdout)  # type: ignore[no-any-return]


def _cgroup_dirs() -> list[str]:
    """Cgroups under /NS in every hierarchy (cgroupsPath is /<namespace>/<id>)."""
    out = []
    for hier in Path("/sys/fs/cgroup").iterdir():
        d = hier / NS
        if d.is_dir():
            out += [str(p) for p in d.iterdir() if p.is_dir()]
    return out


def _processes_in(ns_dirs: list[str]) -> list[int]:
    pids: list[int] = []
    for d in ns_dirs:
        for f in Path(d).rglob("cgroup.procs"):
            pids += [int(x) for x in f.read_text().split()]
    return pids


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("containerd")
    c = ctd.Containerd(base, NS).start()
    calls = base / "calls.log"
    binary = ctd.wrapper(base / "ocibox-runtime", calls)
    c.import_image(ctd.busybox_archive(base / "busybox.tar"))
    e = Env(c, binary, calls)
    try:
        yield e
    finally:
        # The leak check of the module: every container removed leaves nothing behind.
        left = [line.split()[0] for line in c.ctr("container", "ls", "-q", check=False).stdout.splitlines() if line]
        for cid in left:
            e.remove(cid)
        deadline = time.monotonic() + 10
        while c.shims() and time.monotonic() < deadline:
            time.sleep(0.1)
        shims = c.shims()
        c.ctr("image", "rm", ctd.IMAGE, check=False)
        c.stop()
        cgroups = _cgroup_dirs()
        procs = _processes_in(cgroups)
        mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(base) in line]
        states = sorted(str(p) for p in (c.runc_root / NS).iterdir()) if (c.runc_root / NS).is_dir() else []
        for hier in Path("/sys/fs/cgroup").iterdir():  # the namespace's parent cgroup (made by the runtime)
            if (hier / NS).is_dir() and not cgroups:
                (hier / NS).rmdir()
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", m.split()[4]], check=False)
        assert left == [], "a test left containers behind"
        assert shims == [], "a shim is left"
        assert cgroups == [], "container cgroups are left"
        assert procs == [], "container processes are left"
        assert mounts == [], "mounts are left"
        assert states == [], "runtime state dirs are left"


def _calls(env: Env, cid: str) -> list[str]:
    return [line.split("\t", 1)[1] for line in env.calls.read_text().splitlines() if cid in line.split()]


def _read_pty(master: int, done: Callable[[], bool], timeout: float = 60) -> bytes:
    """What was written to the pty's other side: up to EOF (or EIO, the last writer gone), or until
    nothing comes for 0.2 s once ``done()``."""
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif done():
            break
    return out


def test_run_exit_codes_and_output(env: Env) -> None:
    cid = env.name("run")
    r = env.run(cid, "sh", "-c", "echo out; echo err >&2; id -u; exit 3")
    assert r.returncode == 3, r.stderr
    assert r.stdout.split() == ["out", "0"]
    assert "err" in r.stderr
    r = env.run(env.name("run"), "true")
    assert r.returncode == 0, r.stderr
    r = env.run(env.name("run"), "sh", "-c", "exit 255")
    assert r.returncode == 255
    # what the shim asked: create (pid file, no tty), start, delete, then delete --force again
    seq = [c.split(" --log-format json ", 1)[1].split()[0] for c in _calls(env, cid)]
    assert seq == ["create", "start", "delete", "delete"], seq
    assert env.status(cid) == "GONE"


def test_run_with_tty(env: Env) -> None:
    master, slave = pty.openpty()
    cid = env.name("tty")
    p = subprocess.Popen(["ctr", "--address", str(env.c.sock), "-n", NS, "run", "--rm", "-t",
                          *env.c.runc_args(env.binary), ctd.IMAGE, cid, "sh", "-c",
                          "tty; test -t 0 && echo stdin-tty; exit 4"],
                         stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = _read_pty(master, lambda: p.poll() is not None)
    rc = p.wait(30)
    os.close(master)
    text = out.decode(errors="replace")
    assert rc == 4, text
    assert "/dev/pts/0" in text and "stdin-tty" in text, text
    create = next(c for c in _calls(env, cid) if " create " in c)
    assert "--console-socket" in create


def test_exec_with_and_without_tty_and_failing(env: Env) -> None:
    with env.running("exec", "sleep", "1000") as (cid, _):
        r = env.c.ctr("task", "exec", "--exec-id", "e1", cid, "sh", "-c", "echo hi; cat /proc/1/cmdline; exit 5",
                      check=False)
        assert r.returncode == 5 and r.stdout.startswith("hi\nsleep"), r
        r = env.c.ctr("task", "exec", "--exec-id", "e2", cid, "no-such-command", check=False)
        assert r.returncode != 0
        assert "no-such-command" in r.stderr and "OCI runtime exec failed" in r.stderr, r.stderr
        master, slave = pty.openpty()
        p = subprocess.run(["ctr", "--address", str(env.c.sock), "-n", NS, "task", "exec", "-t", "--exec-id", "e3",
                            cid, "sh", "-c", "tty; exit 6"], stdin=slave, stdout=slave, stderr=slave, timeout=60,
                           start_new_session=True)
        os.close(slave)
        out = _read_pty(master, lambda: True)  # ctr has exited: what it left in the pty
        os.close(master)
        assert p.returncode == 6 and b"/dev/pts/" in out, out
        exec_calls = [c for c in _calls(env, cid) if " exec " in c]
        assert len(exec_calls) == 3 and all("--detach" in c and "--process" in c for c in exec_calls)
        assert "--console-socket" in exec_calls[2] and "--console-socket" not in exec_calls[0]
        assert env.status(cid) == "RUNNING"


def test_kill_of_an_exec(env: Env) -> None:
    with env.running("execkill", "sleep", "1000") as (cid, _):
        p = subprocess.Popen(["ctr", "--address", str(env.c.sock), "-n", NS, "task", "exec", "--exec-id", "long",
                              cid, "sleep", "1000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while "long" not in env.c.ctr("task", "ps", cid).stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        env.c.ctr("task", "kill", "--exec-id", "long", "-s", "SIGKILL", cid)
        assert p.wait(20) == 137
        assert env.status(cid) == "RUNNING"
        assert not [c for c in _calls(env, cid) if " kill " in c], "killing an exec makes no runtime call"


def test_kill_and_kill_all(env: Env) -> None:
    with env.running("kill", "sh", "-c", "trap 'exit 7' TERM; sleep 1000 & wait") as (cid, pid):
        assert env.state(cid)["status"] == "running" and env.state(cid)["pid"] == pid
        env.c.ctr("task", "kill", cid)  # SIGTERM
        env.wait_status(cid, "STOPPED")
        assert "kill " + cid + " 15" in "\n".join(_calls(env, cid))
    with env.running("killall", "sh", "-c", "sleep 1000 & sleep 1000 & wait") as (cid, _):
        deadline = time.monotonic() + 10
        while len(json.loads(subprocess.run([str(env.binary), "--root", str(env.c.runc_root / NS), "ps", "--format",
                                             "json", cid], capture_output=True, text=True).stdout)) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        env.c.ctr("task", "kill", "--all", "-s", "SIGKILL", cid)
        env.wait_status(cid, "STOPPED")
        assert any("kill --all " + cid + " 9" in c for c in _calls(env, cid))


def test_pid1_that_ignores_sigterm(env: Env) -> None:
    with env.running("noterm", "sh", "-c", "trap '' TERM; while true; do sleep 1; done") as (cid, _):
        env.c.ctr("task", "kill", cid)
        time.sleep(1.0)
        assert env.status(cid) == "RUNNING"
        env.c.ctr("task", "kill", "-s", "SIGKILL", cid)
        env.wait_status(cid, "STOPPED")


def test_pause_resume_and_metrics(env: Env) -> None:
    with env.running("pause", "sh", "-c", "while true; do sleep 0.1; done") as (cid, _):
        env.c.ctr("task", "pause", cid)
        assert env.status(cid) == "PAUSED"
        assert env.state(cid)["status"] == "paused"
        env.c.ctr("task", "resume", cid)
        assert env.status(cid) == "RUNNING"
        m = env.c.ctr("task", "metrics", cid).stdout
        assert "memory.usage_in_bytes" in m or "memory.usage" in m, m
        assert "pids.current" in m, m
        ps = env.c.ctr("task", "ps", cid).stdout
        assert str(env.pid(cid)) in ps


def test_rm_force_of_a_running_task(env: Env) -> None:
    cid = env.name("rmf")
    pid = env.detached(cid, "sleep", "1000")
    env.c.ctr("task", "rm", "-f", cid)
    env.c.ctr("container", "rm", cid)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert not (env.c.runc_root / NS / cid).exists()


def test_oom_kill_is_the_tasks_oom_event_and_137(env: Env) -> None:
    events = subprocess.Popen(["ctr", "--address", str(env.c.sock), "events"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        cid = env.name("oom")
        r = env.run(cid, "sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
                    flags=("--memory-limit", str(32 << 20)), timeout=120)
        assert r.returncode == 137, r
        assert "survived" not in r.stdout
        time.sleep(0.5)
    finally:
        events.terminate()
        out, _ = events.communicate(timeout=10)
    assert any("/tasks/oom" in line and cid in line for line in out.splitlines()), out


def test_with_ns_network_by_path(env: Env) -> None:
    with env.running("netowner", "sleep", "1000") as (_, pid):
        want = os.readlink(f"/proc/{pid}/ns/net")
        r = env.run(env.name("netjoin"), "readlink", "/proc/self/ns/net",
                    flags=("--with-ns", f"network:/proc/{pid}/ns/net"))
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == want


def test_pod_like_container_joins_pid_ipc_uts_net(env: Env) -> None:
    with env.running("sandbox", "sleep", "1000") as (sandbox, pid):
        flags = tuple(x for kind, name in (("pid", "pid"), ("ipc", "ipc"), ("uts", "uts"), ("network", "net"))
                      for x in ("--with-ns", f"{kind}:/proc/{pid}/ns/{name}"))
        member = env.name("member")
        r = env.run(member, "sh", "-c", "ps -o pid,args; for n in pid ipc uts net; do "
                    "readlink /proc/self/ns/$n; done", flags=flags)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert any(line.split()[:2] == ["1", "sleep"] for line in lines), r.stdout  # the sandbox's PID 1
        for name in ("pid", "ipc", "uts", "net"):
            assert os.readlink(f"/proc/{pid}/ns/{name}") in lines
        # PID 1 of a joined pid namespace is not the member's: the shim kills the rest with kill --all
        assert any("kill --all " + member + " 9" in c for c in _calls(env, member)), _calls(env, member)
        assert env.status(sandbox) == "RUNNING"


def test_containers_keep_running_through_a_containerd_restart(env: Env) -> None:
    with env.running("restart", "sleep", "1000") as (cid, pid):
        env.c.stop()
        assert Path(f"/proc/{pid}").exists() and env.c.shims()
        env.c.start()
        assert env.status(cid) == "RUNNING" and env.pid(cid) == pid
        r = env.c.ctr("task", "exec", "--exec-id", "after", cid, "cat", "/proc/1/cmdline", check=False)
        assert r.returncode == 0 and r.stdout.startswith("sleep"), r
        env.c.ctr("task", "kill", "-s", "SIGKILL", cid)
        env.wait_status(cid, "STOPPED")


def test_delete_force_of_a_gone_id_is_harmless(env: Env) -> None:
    r = subprocess.run([str(env.binary), "--root", str(env.c.runc_root / NS), "--log-format", "json",
                        "delete", "--force", "never-was"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_runtimeclass_handler_config_is_accepted(tmp_path: Path) -> None:
    """A node's RuntimeClass handler (runtime_type io.containerd.runc.v2, options.BinaryName = ocibox-runtime)
    loads in containerd's CRI plugin. Pods themselves are not driven here: that takes a CRI client
    (crictl), which Debian 12 does not package; ctr's --runc-binary above exercises the same shim calls."""
    binary = ctd.wrapper(tmp_path / "ocibox-runtime")
    c = ctd.Containerd(tmp_path, "k8s.io", cri_runtimes={"ocibox": str(binary)}).start()
    try:
        cri = [line.split() for line in c.ctr("plugins", "ls").stdout.splitlines() if " cri " in f" {line} "]
        assert cri and cri[0][-1] == "ok", cri
        assert 'BinaryName = "' + str(binary) in c.config.read_text()
    finally:
        c.stop()
