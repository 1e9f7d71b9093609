"""Containers that outlive the command, for real: `run -d` under ocibox's monitor, then ps, logs, exec,
attach, stop, kill, start, restart, pause, wait, rm, inspect, top, stats; restart policies; OOM; the
monitor or ocibox killed; a simulated reboot; 50 at once. Busybox images pushed by skopeo, the CLI run
as a subprocess, the kernel's namespaces, cgroups and processes; a leak check after the module."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import oci
import pytest
from cli import Ctl

pytestmark = pytest.mark.privileged


@pytest.fixture(scope="module")
def ctl(busybox_ref: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctl]:
    root = tmp_path_factory.mktemp("containers") / "store"
    c = Ctl(root, busybox_ref)
    c.ok("pull", "-q", busybox_ref, timeout=120)
    yield c
    # the leak check of the whole module: every container removed leaves nothing behind
    leftovers = c("ps", "-aq", "--no-trunc").stdout.split()
    for cid in leftovers:
        c("rm", "-f", cid)
    assert leftovers == [], "a test left containers behind"
    assert str(root) not in Path("/proc/self/mountinfo").read_text()
    assert list((root / "containers").iterdir()) == []
    assert _container_processes(root) == []
    assert _cgroups_of_store() == []


def _container_processes(root: Path) -> list[str]:
    """Processes that belong to this store's containers: monitors (their exit command names the store) and
    anything in an ocibox-<id> cgroup of a container this store made."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "ocibox-monitor" in cmdline and str(root) in cmdline:
            out.append(f"{pid} {cmdline}")
    return out


_OWN_CGROUPS: set[str] = set()


def _cgroups_of_store() -> list[str]:
    return [p for p in _OWN_CGROUPS if any(Path("/sys/fs/cgroup", h, p.lstrip("/")).exists()
                                           for h in ("memory", "pids", "cpu", "devices", "freezer"))]


def _remember(ctl: Ctl, name: str) -> str:
    path = json.loads(_row(ctl, name)["cgroup"])["path"]
    _OWN_CGROUPS.add(path)
    return path  # type: ignore[no-any-return]


def _row(ctl: Ctl, name: str) -> dict:  # type: ignore[type-arg]
    import sqlite3

    db = sqlite3.connect(ctl.root / "ocibox.db")
    try:
        cur = db.execute("SELECT id, pid, cgroup, state FROM containers WHERE name=? OR id=?", (name, name))
        row = cur.fetchone()
    finally:
        db.close()
    assert row is not None, name
    return {"id": row[0], "pid": row[1], "cgroup": row[2], "state": row[3]}


def _monitor_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


# ----------------------------------------------------------------------------- a server, and the basics
def test_detached_server_reached_through_its_network_namespace(ctl: Ctl, tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("hello from the container\n")
    cid = ctl.detach("--name", "web", "-v", f"{tmp_path / 'www'}:/www:ro", ctl.ref, "busybox", "httpd", "-f",
                     "-p", "8080", "-h", "/www")
    _remember(ctl, "web")
    try:
        pid = ctl.inspect("web")["State"]["Pid"]
        assert pid > 0 and Path(f"/proc/{pid}").exists()
        # its monitor is PID 1's parent, and ocibox itself is gone
        assert "ocibox-monitor" in Path(f"/proc/{_monitor_of(pid)}/cmdline").read_text()

        def fetch() -> subprocess.CompletedProcess[str]:
            return subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "/bin/busybox", "wget", "-qO-",
                                   "http://127.0.0.1:8080/"], capture_output=True, text=True, timeout=10)

        ctl.wait_for("httpd to answer", lambda: fetch().returncode == 0)
        assert fetch().stdout == "hello from the container\n"
        ps = ctl.ok("ps")
        assert re.search(rf"^{cid[:12]}\s+\S+\s+\"busybox httpd -f -p…\"\s+.*\s+Up .*web$", ps, re.M), ps
        assert ctl.ok("ps", "-q", "--no-trunc").split() == [cid]
        assert json.loads(ctl.ok("ps", "--format", "json").splitlines()[0])["Names"] == "web"
        assert ctl.ok("ps", "--format", "{{.Names}}:{{.State}}").strip() == "web:running"
        top = ctl.ok("top", "web")
        assert "busybox httpd -f -p 8080" in top and top.startswith("UID")
        st = ctl.ok("stats", "--no-stream", "web").splitlines()
        assert st[0].split()[:3] == ["CONTAINER", "ID", "NAME"] and st[1].split()[1] == "web"
        info = ctl.inspect("web")
        assert info["State"]["Status"] == "running" and info["Name"] == "/web" and info["Id"] == cid
        assert info["Config"]["Cmd"] == ["busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
    finally:
        assert ctl.ok("stop", "-t", "1", "web").strip() == "web"
    info = ctl.inspect("web")
    assert info["State"]["Status"] == "exited" and info["State"]["Running"] is False
    assert re.search(r"Exited \(137\) .* ago", ctl.ok("ps", "-a")), "httpd as PID 1 ignores SIGTERM: killed"
    assert ctl.ok("ps", "-q") == ""
    assert ctl.ok("rm", "web").strip() == "web"
    assert ctl("ps", "-aq").stdout == ""


def test_start_keeps_the_writable_layer_and_restart(ctl: Ctl) -> None:
    ctl.detach("--name", "keep", ctl.ref, "sh", "-c", "echo run >> /state; sleep 100")
    _remember(ctl, "keep")
    try:
        ctl.ok("stop", "-t", "0", "keep")
        assert ctl.ok("start", "keep").strip() == "keep"
        ctl.wait_for("two runs", lambda: ctl("exec", "keep", "cat", "/state").stdout == "run\nrun\n")
        first = ctl.inspect("keep")["State"]["Pid"]
        assert ctl.ok("restart", "-t", "0", "keep").strip() == "keep"
        assert ctl.inspect("keep")["State"]["Pid"] != first
        ctl.wait_for("three runs", lambda: ctl("exec", "keep", "cat", "/state").stdout == "run\nrun\nrun\n")
        # start of a running container is a no-op, as docker's
        assert ctl.ok("start", "keep").strip() == "keep"
    finally:
        ctl.ok("rm", "-f", "keep")


def test_exec_joins_with_the_containers_hardening(ctl: Ctl) -> None:
    ctl.detach("--name", "ex", "-e", "FROM_RUN=1", "-w", "/tmp", ctl.ref, "sleep", "100")
    try:
        out = ctl.ok("exec", "-e", "FROM_EXEC=2", "ex", "sh", "-c",
                     "echo $$ $FROM_RUN $FROM_EXEC $(pwd); grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status;"
                     " cat /proc/1/cmdline | tr '\\0' ' '")
        lines = out.splitlines()
        assert lines[0].split()[1:] == ["1", "2", "/tmp"] and int(lines[0].split()[0]) > 1
        assert lines[1:4] == ["CapEff:\t00000000800405fb", "NoNewPrivs:\t1", "Seccomp:\t2"]
        assert lines[4].strip() == "sleep 100"  # the same pid namespace as the container's PID 1
        assert ctl("exec", "ex", "sh", "-c", "exit 42").returncode == 42
        r = ctl("exec", "ex", "no-such-command")
        assert r.returncode == 127 and "no-such-command" in r.stderr and len(r.stderr.splitlines()) == 1
        r = ctl("exec", "ex", "/etc/passwd")
        assert r.returncode == 126
        assert ctl.ok("exec", "-u", "nobody", "ex", "id", "-u").strip() == "65534"
        assert ctl.ok("exec", "--privileged", "ex", "grep", "^Seccomp:", "/proc/self/status").split() == ["Seccomp:", "0"]
        ctl.ok("exec", "-d", "ex", "sh", "-c", "echo detached > /tmp/d")
        ctl.wait_for("exec -d to run", lambda: ctl("exec", "ex", "cat", "/tmp/d").stdout == "detached\n")
        ctl.ok("stop", "-t", "0", "ex")
        r = ctl("exec", "ex", "true")
        assert r.returncode == 125 and "is not running" in r.stderr and len(r.stderr.splitlines()) == 1
    finally:
        ctl.ok("rm", "-f", "ex")


def _pty_run(argv: list[str], script: list[bytes], timeout: float = 30) -> tuple[bytes, int]:
    """Run ``argv`` on a real pty; send each chunk of ``script`` after the previous output settles."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execv(argv[0], argv)
    out = b""
    deadline = time.monotonic() + timeout
    pending = list(script)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            out += data
            quiet_since = time.monotonic()
        elif pending and time.monotonic() - quiet_since > 0.5:
            os.write(fd, pending.pop(0))
            quiet_since = time.monotonic()
        _, status = os.waitpid(pid, os.WNOHANG)
        if _:
            os.close(fd)
            return out, os.waitstatus_to_exitcode(status)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return out, os.waitstatus_to_exitcode(status)


def test_exec_it_through_a_real_pty_and_attach(ctl: Ctl) -> None:
    ctl.detach("--name", "tt", "-it", ctl.ref, "sh")
    try:
        out, code = _pty_run(ctl.argv("exec", "-it", "tt", "sh"), [b"echo $((6*7)) $(busybox tty)\n", b"exit 3\n"])
        assert code == 3 and b"42 /dev/pts/" in out, out
        # attach to the container's own shell, type, then leave it with ctrl-p ctrl-q
        out, code = _pty_run(ctl.argv("attach", "tt"), [b"echo attached-$((2+3))\n", b"\x10\x11"])
        assert code == 0 and b"attached-5" in out, out
        assert ctl.inspect("tt")["State"]["Running"] is True  # detaching left it running
        logs = subprocess.run(ctl.argv("logs", "tt"), capture_output=True, timeout=30).stdout
        assert b"attached-5\r\n" in logs  # a terminal's output, as docker logs a -t container
    finally:
        ctl.ok("rm", "-f", "tt")


# ----------------------------------------------------------------------------- logs
def _lines(seed: int, total: int) -> bytes:
    """Lines of every length from 0 up to past the monitor's 64 KiB reads, in a fixed pseudo-random order."""
    import random

    rnd = random.Random(seed)
    out = bytearray()
    n = 0
    while len(out) < total:
        length = rnd.choice([0, 1, 2, 79, 80, 81, 4095, 4096, 65535, 65536, 65537, 200_000]) if n % 7 == 0 \
            else rnd.randrange(0, 3000)
        out += bytes([97 + (n % 26)]) * length + b"\n"
        n += 1
    return bytes(out)


def test_logs_of_100_mb_keep_every_line_and_the_streams_apart(ctl: Ctl, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    out, err = _lines(1, 80 << 20), _lines(2, 20 << 20)
    (data / "out").write_bytes(out)
    (data / "err").write_bytes(err)
    ctl.detach("--name", "loud", "-v", f"{data}:/d:ro", ctl.ref, "sh", "-c",
               "cat /d/err >&2 & cat /d/out; wait")
    try:
        assert ctl.ok("wait", "loud", timeout=120).strip() == "0"
        r = subprocess.run(ctl.argv("logs", "loud"), capture_output=True, timeout=120)
        assert r.returncode == 0
        assert r.stdout == out, "stdout lost, cut or mixed"
        assert r.stderr == err, "stderr lost, cut or mixed"
        tail = subprocess.run(ctl.argv("logs", "--tail", "3", "loud"), capture_output=True, timeout=60).stdout
        assert tail == b"".join(out.splitlines(keepends=True)[-3:])
        stamped = subprocess.run(ctl.argv("logs", "-t", "--tail", "1", "loud"), capture_output=True).stdout
        assert re.match(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ", stamped)
    finally:
        ctl.ok("rm", "-f", "loud")


def test_log_rotation_and_follow(ctl: Ctl) -> None:
    ctl.detach("--name", "rot", "--log-opt", "max-size=64k", "--log-opt", "max-file=3", ctl.ref, "sh", "-c",
               "sleep 1; i=0; while [ $i -lt 8000 ]; do echo line-$i; i=$((i+1)); [ $((i % 400)) = 0 ] && sleep 0.05;"
               " done; sleep 1; echo last")
    try:
        f = subprocess.Popen(ctl.argv("logs", "-f", "rot"), stdout=subprocess.PIPE, text=True)  # before the lines
        out, _ = f.communicate(timeout=60)  # ends when the container exits
        assert f.returncode == 0 and out.endswith("line-7999\nlast\n")
        cdir = ctl.root / "containers" / ctl.inspect("rot")["Id"]
        files = sorted(p.name for p in cdir.iterdir() if p.name.startswith("ctr.log"))
        assert files == ["ctr.log", "ctr.log.1", "ctr.log.2"]  # rotated, the oldest dropped
        assert all(p.stat().st_size <= 64 * 1024 for p in cdir.glob("ctr.log*"))
        kept = ctl.ok("logs", "rot").splitlines()
        assert kept[-1] == "last" and kept[-2] == "line-7999" and len(kept) < 8001
        numbers = [int(x.split("-")[1]) for x in kept[:-1]]
        assert numbers == list(range(numbers[0], 8000))  # what is kept is whole and in order
        # -f followed the rotations (a log file lasts 2 rotations more: -f keeps up with a writer that does
        # not outrun it by more than that): every line came through it
        assert out.splitlines()[:3] == ["line-0", "line-1", "line-2"] and len(out.splitlines()) == 8001
    finally:
        ctl.ok("rm", "-f", "rot")


# ----------------------------------------------------------------------------- stop, kill, restart, OOM
def test_stop_of_a_pid1_that_ignores_sigterm_and_of_one_that_obeys(ctl: Ctl) -> None:
    ctl.detach("--name", "deaf", ctl.ref, "sh", "-c", "trap '' TERM; sleep 100 & wait")
    ctl.detach("--name", "polite", ctl.ref, "sh", "-c", "trap 'exit 7' TERM; sleep 100 & wait")
    try:
        t = time.monotonic()
        ctl.ok("stop", "-t", "1", "deaf")
        assert 1.0 <= time.monotonic() - t < 6
        assert ctl.inspect("deaf")["State"]["ExitCode"] == 137
        t = time.monotonic()
        ctl.ok("stop", "-t", "5", "polite")
        assert time.monotonic() - t < 3
        assert ctl.inspect("polite")["State"]["ExitCode"] == 7
    finally:
        ctl.ok("rm", "-f", "deaf", "polite")


def test_stop_signal_kill_and_wait(ctl: Ctl) -> None:
    ctl.detach("--name", "sig", "--stop-signal", "USR1", ctl.ref, "sh", "-c", "trap 'exit 10' USR1; sleep 100 & wait")
    ctl.detach("--name", "killme", ctl.ref, "sleep", "100")
    try:
        assert ctl.inspect("sig")["Config"]["StopSignal"] == "USR1"
        ctl.ok("stop", "sig")
        assert ctl.inspect("sig")["State"]["ExitCode"] == 10
        waiter = subprocess.Popen(ctl.argv("wait", "killme"), stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        assert waiter.poll() is None
        ctl.ok("kill", "-s", "TERM", "killme")  # sleep as PID 1 ignores TERM: nothing happens
        time.sleep(0.3)
        assert waiter.poll() is None
        assert ctl.ok("kill", "killme").strip() == "killme"
        assert waiter.communicate(timeout=20)[0].strip() == "137"
        r = ctl("kill", "killme")
        assert r.returncode == 1 and "is not running" in r.stderr
    finally:
        ctl.ok("rm", "-f", "sig", "killme")


def test_restart_policies(ctl: Ctl) -> None:
    # fails twice, then stays up: on-failure restarts it with its writable layer kept
    script = "n=$(cat /n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /n; [ $n -ge 3 ] && exec sleep 100; exit 1"
    ctl.detach("--name", "flaky", "--restart", "on-failure:5", ctl.ref, "sh", "-c", script)
    ctl.detach("--name", "capped", "--restart", "on-failure:1", ctl.ref, "sh", "-c", "exit 3")
    ctl.detach("--name", "always", "--restart", "always", ctl.ref, "sh", "-c",
               "n=$(cat /n 2>/dev/null || echo 0); echo $((n+1)) > /n; [ $n -ge 1 ] && exec sleep 100; exit 0")
    try:
        ctl.wait_for("flaky to settle", lambda: ctl.inspect("flaky")["RestartCount"] == 2
                     and ctl.inspect("flaky")["State"]["Running"])
        assert ctl.ok("exec", "flaky", "cat", "/n").strip() == "3"
        ctl.wait_for("capped to give up", lambda: ctl.inspect("capped")["RestartCount"] == 1
                     and ctl.inspect("capped")["State"]["Status"] == "exited", timeout=10)
        time.sleep(0.5)
        info = ctl.inspect("capped")
        assert (info["RestartCount"], info["State"]["ExitCode"]) == (1, 3)
        ctl.wait_for("always to restart after exit 0", lambda: ctl.inspect("always")["RestartCount"] == 1
                     and ctl.inspect("always")["State"]["Running"])
        ctl.ok("stop", "-t", "0", "always")  # stop disables the policy
        time.sleep(0.5)
        assert ctl.inspect("always")["State"]["Status"] == "exited"
    finally:
        ctl.ok("rm", "-f", "flaky", "capped", "always")


def test_oom_in_a_detached_container(ctl: Ctl) -> None:
    ctl.detach("--name", "hog", "-m", "16m", "--memory-swap", "16m", ctl.ref, "sh", "-c",
               "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived")
    try:
        assert ctl.ok("wait", "hog", timeout=60).strip() == "137"
        state = ctl.inspect("hog")["State"]
        assert state["OOMKilled"] is True and state["ExitCode"] == 137
    finally:
        ctl.ok("rm", "-f", "hog")


def test_pause_and_unpause(ctl: Ctl) -> None:
    ctl.detach("--name", "frozen", ctl.ref, "sh", "-c", "while true; do busybox date +%s > /t; sleep 0.05; done")
    try:
        ctl.wait_for("a tick", lambda: ctl("exec", "frozen", "cat", "/t").returncode == 0)
        ctl.ok("pause", "frozen")
        assert ctl.inspect("frozen")["State"]["Status"] == "paused"
        assert "(Paused)" in ctl.ok("ps")
        pid = ctl.inspect("frozen")["State"]["Pid"]
        assert Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("D", "S")
        r = ctl("exec", "frozen", "true")
        assert r.returncode == 125 and "paused" in r.stderr
        ctl.ok("unpause", "frozen")
        assert ctl.inspect("frozen")["State"]["Status"] == "running"
        ctl.ok("stop", "-t", "0", "frozen")
    finally:
        ctl.ok("rm", "-f", "frozen")


# ----------------------------------------------------------------------------- crashes, reboots
def test_monitor_killed_the_container_stays_manageable(ctl: Ctl) -> None:
    ctl.detach("--name", "orphan", ctl.ref, "sleep", "100")
    cg = _remember(ctl, "orphan")
    pid = ctl.inspect("orphan")["State"]["Pid"]
    os.kill(_monitor_of(pid), signal.SIGKILL)
    time.sleep(0.2)
    assert Path(f"/proc/{pid}").exists()  # the container runs on
    assert ctl.inspect("orphan")["State"]["Running"] is True
    assert ctl.ok("exec", "orphan", "echo", "still here").strip() == "still here"
    assert ctl.ok("rm", "-f", "orphan").strip() == "orphan"
    assert not Path(f"/proc/{pid}").exists() or "sleep" not in Path(f"/proc/{pid}/cmdline").read_text()
    assert not any(Path("/sys/fs/cgroup", h, cg.lstrip("/")).exists() for h in ("memory", "pids", "cpu", "freezer"))
    assert ctl("ps", "-aq").stdout == ""


def test_ocibox_killed_during_run_d_leaves_no_half_made_running_container(ctl: Ctl) -> None:
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2):
        p = subprocess.Popen(ctl.argv("run", "-d", ctl.ref, "sleep", "100"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        time.sleep(delay)
        p.kill()
        p.wait()
    time.sleep(0.5)
    rows = [json.loads(line) for line in ctl.ok("ps", "-a", "--format", "json").splitlines()]
    for r in rows:  # whatever came of each: a monitored running container, or one not running
        info = ctl.inspect(r["ID"])
        if info["State"]["Running"]:
            assert "ocibox-monitor" in Path(f"/proc/{_monitor_of(info['State']['Pid'])}/cmdline").read_text()
        else:
            assert r["State"] in ("created", "exited")
    for r in rows:
        ctl.ok("rm", "-f", r["ID"])
    assert ctl("ps", "-aq").stdout == ""


def test_a_reboot_leaves_exited_containers_that_start_again(ctl: Ctl) -> None:
    ctl.detach("--name", "boot1", ctl.ref, "sh", "-c", "echo before > /mark; sleep 100")
    ctl.detach("--name", "boot2", "--restart", "always", ctl.ref, "sleep", "100")
    try:
        ctl.wait_for("the mark", lambda: ctl("exec", "boot1", "cat", "/mark").stdout == "before\n")
        # a reboot, simulated: every process of both containers and their monitors killed at once
        # (the containers' mounts live in their own mount namespaces: nothing is mounted on the host)
        victims = []
        for name in ("boot1", "boot2"):
            pid = ctl.inspect(name)["State"]["Pid"]
            victims += [pid, _monitor_of(pid)]
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
        ps = ctl.ok("ps", "-a", "--format", "{{.Names}} {{.State}}").split("\n")
        assert sorted(x for x in ps if x) == ["boot1 exited", "boot2 exited"]
        assert ctl.ok("ps", "-q") == ""
        ctl.ok("start", "boot1", "boot2")
        assert ctl.ok("exec", "boot1", "cat", "/mark").strip() == "before"  # its writable layer
        assert ctl.inspect("boot2")["State"]["Running"] is True
    finally:
        ctl.ok("rm", "-f", "boot1", "boot2")


# ----------------------------------------------------------------------------- images, prune, df
def test_images_of_containers_stay_in_use(ctl: Ctl, registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    oci.push_image(tmp_path, registry.host, "kept:1", [oci.Layer(oci.busybox_layer())],
                   config_obj={"Cmd": ["sleep", "100"], "Labels": {"which": "kept"}})
    ref = f"{registry.host}/kept:1"
    ctl.ok("pull", "-q", ref)
    iid = json.loads(ctl.ok("image", "inspect", ref))[0]["Id"]
    ctl.detach("--name", "user", ref)
    ctl.ok("stop", "-t", "0", "user")
    r = ctl("rmi", ref)
    assert r.returncode == 125 and "stopped container" in r.stderr
    ctl.ok("prune", "-a", "-f")
    assert iid in ctl.ok("images", "-a", "--no-trunc")  # prune keeps what a stopped container uses
    assert "Untagged" in ctl.ok("rmi", "-f", ref)  # -f untags only
    assert iid in ctl.ok("images", "-a", "--no-trunc")
    df = json.loads(ctl.ok("system", "df", "--format", "json"))
    assert next(t for t in df["Types"] if t["Type"] == "Containers")["Total"] >= 1
    out = ctl.ok("container", "prune", "-f")
    assert out.startswith("Deleted Containers:") and "Total reclaimed space" in out
    ctl.ok("prune", "-a", "-f")
    assert iid not in ctl.ok("images", "-a", "--no-trunc")


# ----------------------------------------------------------------------------- bad input
def test_bad_input_one_line_and_nothing_changed(ctl: Ctl) -> None:
    ctl.detach("--name", "only", ctl.ref, "sleep", "100")
    try:
        before = ctl.ok("ps", "-a", "--format", "{{.ID}} {{.Names}} {{.State}}")
        cases = [
            (("stop", "nosuch"), 1, "no such container: nosuch"),
            (("logs", "nosuch"), 1, "no such container"),
            (("run", "-d", "--name", "only", ctl.ref, "true"), 125, "already in use"),
            (("run", "-d", "--restart", "bogus", ctl.ref, "true"), 125, "invalid --restart 'bogus'"),
            (("run", "-d", "--log-opt", "max-size=1m", "--log-opt", "colour=red", ctl.ref, "true"), 125,
             "invalid --log-opt"),
            (("run", "-d", "--rm", "--restart", "always", ctl.ref, "true"), 125, "conflicting options"),
            (("rename", "only", "bad name!"), 1, "invalid container name"),
            (("stop", "--bogus", "only"), 125, "unrecognized option"),
        ]
        for args, code, text in cases:
            r = ctl(*args)
            assert r.returncode == code and text in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r)
        r = ctl("run", "--name", "fg", ctl.ref, "true")  # a foreground container keeps no logs
        assert r.returncode == 0
        r = ctl("logs", "fg")
        assert r.returncode == 1 and "has no logs" in r.stderr
        ctl.ok("rm", "fg")
        r = ctl("run", "-d", ctl.ref, "no-such-command")  # docker's run -d: 127, the container stays Created
        assert r.returncode == 127 and "no-such-command" in r.stderr
        created = [x for x in ctl.ok("ps", "-a", "--format", "{{.ID}} {{.Status}}").splitlines() if "Created" in x]
        assert len(created) == 1
        ctl.ok("rm", created[0].split()[0])
        assert ctl.ok("ps", "-a", "--format", "{{.ID}} {{.Names}} {{.State}}") == before
    finally:
        ctl.ok("rm", "-f", "only")


def test_ambiguous_id_prefix(ctl: Ctl) -> None:
    ids = [ctl.detach(ctl.ref, "sleep", "100") for _ in range(18)]  # 18 ids share a first digit for sure
    try:
        first = {}
        for i in ids:
            first.setdefault(i[0], []).append(i)
        prefix = next(p for p, v in first.items() if len(v) > 1)
        r = ctl("stop", prefix)
        assert r.returncode == 1 and "ambiguous" in r.stderr
        assert ctl.ok("ps", "-q").count("\n") == 18
    finally:
        ctl.ok("rm", "-f", *ids)


# ----------------------------------------------------------------------------- 50 at once
def test_fifty_at_once(ctl: Ctl) -> None:
    n = 50
    with ThreadPoolExecutor(n) as pool:
        runs = list(pool.map(lambda i: ctl("run", "-d", "--name", f"many{i}", ctl.ref, "sleep", "300", timeout=120),
                             range(n)))
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs if r.returncode]
    ids = [r.stdout.strip() for r in runs]
    for cid in ids:
        _OWN_CGROUPS.add(json.loads(_row(ctl, cid)["cgroup"])["path"])
    assert sorted(ctl.ok("ps", "-q", "--no-trunc").split()) == sorted(ids)
    with ThreadPoolExecutor(n) as pool:
        stops = list(pool.map(lambda c: ctl("stop", "-t", "1", c, timeout=120), ids))
    assert all(r.returncode == 0 for r in stops), [r.stderr for r in stops if r.returncode]
    assert ctl.ok("ps", "-q") == ""
    with ThreadPoolExecutor(n) as pool:
        rms = list(pool.map(lambda c: ctl("rm", c, timeout=120), ids))
    assert all(r.returncode == 0 for r in rms), [r.stderr for r in rms if r.returncode]
    assert ctl("ps", "-aq").stdout == ""
    assert list((ctl.root / "containers").iterdir()) == []
    assert _container_processes(ctl.root) == [] and _cgroups_of_store() == []
