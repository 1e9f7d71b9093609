"""Detached containers (issue 12) and networking (issue 13): ocibox against podman 4.3 (runc), side by side.

usage: .venv/bin/python benchmarks/lifecycle.py [--runs N] [--cases a,b,...] [--keep] [--wait-idle S]

The house style of run.py (whose Bench, Tool and report this script uses): Debian's docker-registry on
127.0.0.1 serves the fixture images; every tool's store holds them before a case starts (untimed); each case
is one warm-up round, then N rounds, every tool once per round in the same order; medians, min, max and the
median of the per-round ratios ocibox/peer; tables to benchmarks/results/lifecycle.md (raw: .json).

Cases (--cases, default all):
  detach       `run -d --network none busybox sleep` until the id is printed (the container removed after)
  exec         `exec CONTAINER true` into one running container
  stop         `stop -t 1` of a PID 1 that ignores SIGTERM (the 1 s grace is in both figures)
  ps100        `ps` with 100 running containers
  monitor-mem  PSS (/proc/PID/smaps_rollup) of the monitor of each of 20 idle containers: ocibox-monitor
               vs conmon (the parent of the container's PID 1 in both), and of one container alone
  run-bridge   warm `run --rm busybox true` on each tool's default bridge network (podman with netavark,
               its default for a new store, and with CNI, what this host's default store uses), and with
               `--network none` for reference
  transfer-1g  1 GiB from a server in a Debian container (python3, 1 MiB sendall) to a client on the host:
               through a port published at 127.0.0.1 vs straight to the container's address; the client
               times connect -> EOF itself (its interpreter's start-up is not in the figure)
  names20      20 `run -d` at once on one user network (`network create`), then, untimed, every container
               looks up all 20 names with `busybox nslookup` and connects to each (nc to a port each serves)

podman runs with its own --root/--runroot/--tmpdir and its own containers.conf ($CONTAINERS_CONF: network
backend, a network config directory in the scratch dir, and a default subnet free on this host), with
--runtime runc, --ulimit nofile=20000:20000 --ulimit nproc=32768:32768, and --network none except where the
case is about networking. ocibox runs with its own store and $OCIBOX_CONFIG_DIR in the scratch dir. Every
container, network and store is removed at the end; leftover links, netns files, iptables rules, DNS
servers, processes and cgroups of the containers made are looked for and reported.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import run  # noqa: E402
from outside import HostNet  # noqa: E402
from run import ULIMITS, Bench, CaseResult, SetupFailed, Tool, fmt_s, say  # noqa: E402

CASES = ["detach", "exec", "stop", "ps100", "monitor-mem", "run-bridge", "transfer-1g", "names20"]
IDLE = ["sleep", "1000000"]
#: a PID 1 that ignores SIGTERM (as a PID 1 with no handler would anyway)
DEAF = ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"]
GiB = 1 << 30
SERVER = """
import socket
buf = bytes(1 << 20)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5000))
s.listen(4)
while True:
    c, _ = s.accept()
    try:
        for _ in range(1024):
            c.sendall(buf)
    except OSError:  # a probe that only connected
        pass
    c.close()
"""
CLIENT = """
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
view = memoryview(bytearray(1 << 20))
got = 0
t0 = time.perf_counter()
with socket.create_connection((host, port), timeout=30) as s:
    while n := s.recv_into(view):
        got += n
print(got, time.perf_counter() - t0)
"""
#: run in each of the 20 containers: every name resolves (busybox's own resolver: the static busybox's
#: libc resolver would go through NSS) and its address answers on port 7000; retried for up to 10 s
CHECK = """
for n in "$@"; do
  i=0
  until ip=$(busybox nslookup "$n" 2>/dev/null | sed -n '/^Name:/,$ s/^Address: *\\([0-9.]*\\)$/\\1/p' | head -n 1) &&
        [ -n "$ip" ] && busybox nc -w 2 "$ip" 7000 </dev/null; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "$(hostname): $n unreachable (address '$ip')"; exit 1; }; sleep 0.1
  done
done
"""
SERVE7000 = ["busybox", "nc", "-ll", "-p", "7000", "-e", "/bin/true"]


# ----------------------------------------------------------------------------- the two engines
class Engine:
    """One tool's command line on one store: ocibox, or podman with one network backend."""

    def __init__(self, key: str, name: str, prefix: list[str], env: dict[str, str], run_flags: list[str],
                 rm_flags: list[str]) -> None:
        self.key, self.name, self.prefix, self.env = key, name, prefix, env
        self.run_flags, self.rm_flags = run_flags, rm_flags
        self.made: set[str] = set()  # every container id this engine made (for the leak check)

    def argv(self, *verb: str) -> list[str]:
        return [*self.prefix, *verb]

    def run(self, *args: str) -> list[str]:
        return self.argv("run", *self.run_flags, *args)

    def sh(self, argv: list[str], timeout: float = 300) -> str:
        """Run an untimed command; CalledProcessError (with its output) when it fails."""
        r = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if r.returncode:
            raise subprocess.CalledProcessError(r.returncode, argv, r.stdout, r.stderr)
        return r.stdout

    def detach(self, *args: str) -> str:
        out = self.sh(self.run("-d", *args)).split()
        cid = out[-1] if out else ""
        if not re.fullmatch(r"[0-9a-f]{64}", cid):
            raise SetupFailed(f"{self.name} run -d printed {out!r}, not an id")
        self.made.add(cid)
        return cid

    def inspect(self, cid: str) -> dict:
        return dict(json.loads(self.sh(self.argv("container", "inspect", cid)))[0])

    def ids(self) -> list[str]:
        ids = self.sh(self.argv("ps", "-aq", "--no-trunc")).split()
        self.made.update(ids)
        return ids

    def rm(self, *cids: str) -> None:
        if cids:
            self.made.update(c for c in cids if len(c) == 64)
            self.sh(self.argv("rm", *self.rm_flags, *cids))

    def rm_all(self) -> None:
        self.rm(*self.ids())

    def id_in(self, log: Path) -> str:
        """The id a timed `run -d` printed (its output went to ``log``)."""
        m = re.findall(r"^[0-9a-f]{64}$", log.read_text(errors="replace"), re.M)
        if not m:
            raise SetupFailed(f"no container id in the output of {self.name} run -d")
        self.made.add(m[-1])
        return str(m[-1])


def monitor_of(pid1: int) -> tuple[int, str]:
    """The parent of a container's PID 1 (the monitor: ocibox-monitor, conmon) and its name."""
    with open(f"/proc/{pid1}/stat", "rb") as f:
        ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
    with open(f"/proc/{ppid}/cmdline", "rb") as f:
        return ppid, os.path.basename(f.read().split(b"\0")[0].decode())


def smaps_rollup(pid: int) -> dict[str, int]:
    """Pss, Rss, Pss_Anon, Private_Dirty ... of a process in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        k, v = line.split(":", 1)
        out[k] = int(v.split()[0]) * 1024
    return out


def free_subnet16(start: int = 80, stop: int = 88) -> str:
    """The first 10.N.0.0/16 (N in start..stop-1) that no route of this host overlaps."""
    routes = []
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        f = line.split()
        dst, mask = (ipaddress.IPv4Address(bytes.fromhex(x)[::-1]) for x in (f[1], f[7]))
        if int(mask):
            routes.append(ipaddress.IPv4Network(f"{dst}/{mask}"))
    for n in range(start, stop):
        net = ipaddress.IPv4Network(f"10.{n}.0.0/16")
        if not any(net.overlaps(r) for r in routes):
            return str(net)
    raise RuntimeError(f"no free 10.{start}-{stop - 1}.0.0/16 on this host")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, cond, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SetupFailed(f"timed out waiting for {what}")
        time.sleep(0.05)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# ----------------------------------------------------------------------------- the benchmark
class Life(Bench):
    #: containers outlive the `run -d` that made them, with their monitors: no waiting for them
    SETTLE = False

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        os.environ["OCIBOX_CONFIG_DIR"] = str(self.scratch / "ocibox-config")
        self.ostore = self.scratch / "ocibox"
        self.engines: dict[str, Engine] = {}
        self.host_before = HostNet.now()
        self.leaks: list[str] = []

    def make_engines(self) -> None:
        """ocibox on its store; podman with netavark and with CNI, each on its own store and config."""
        self.engines["ocibox"] = Engine("ocibox", "ocibox", self.ocibox(self.ostore), dict(os.environ), [], ["-f"])
        self.netavark_subnet = free_subnet16()
        for backend in ("netavark", "cni"):
            d = self.scratch / f"podman-{backend}"
            (d / "networks").mkdir(parents=True)
            # netavark's default network is 10.88.0.0/16 unless told: this host may have CNI's cni-podman0
            # there already; CNI's default network is kept as podman on this host makes it (cni-podman0)
            subnet = f'default_subnet = "{self.netavark_subnet}"\n' if backend == "netavark" else ""
            (d / "containers.conf").write_text(f'[network]\nnetwork_backend = "{backend}"\n'
                                               f'network_config_dir = "{d / "networks"}"\n{subnet}')
            key = "podman" if backend == "netavark" else "podman-cni"
            self.engines[key] = Engine(key, f"podman ({backend})", self.podman(d),
                                       {**os.environ, "CONTAINERS_CONF": str(d / "containers.conf")},
                                       ["--runtime", "runc", *ULIMITS], ["-f", "-t", "0"])
        say(f"podman (netavark) default subnet {self.netavark_subnet}")

    def pull(self, images: list[str]) -> None:
        for name in images:
            ref = self.refs[name]
            self.engines["ocibox"].sh(self.ocibox(self.ostore, "pull", "-q", ref))
            for key in ("podman", "podman-cni") if name == "busybox" else ("podman",):
                e = self.engines[key]
                e.sh(e.argv("pull", "-q", "--tls-verify=false", ref))

    @property
    def pair(self) -> list[Engine]:
        return [self.engines["ocibox"], self.engines["podman"]]

    def case(self, key: str, title: str, tools: list[Tool], runs: int, target: float | None = 0.5) -> CaseResult:
        res = self.run_case(key, title, tools, runs)
        if target is not None:
            res.targets.setdefault("podman", target)
        return res

    # ------------------------------------------------------------------ issue 12
    def case_detach(self, runs: int) -> None:
        ref = self.refs["busybox"]

        def tool(e: Engine) -> Tool:
            def post(d: Path, s: object) -> dict:
                cid = e.id_in(d / "out.log")
                running = e.inspect(cid)["State"]["Running"]
                e.rm(cid)
                if not running:
                    raise SetupFailed(f"{e.name}: the container was not running after run -d")
                return {}
            return Tool(e.key, f"`{e.name} run -d --network none busybox sleep`",
                        lambda d: e.run("-d", "--network", "none", ref, *IDLE), mem=False, env=e.env, post=post)

        self.case("detach", "`run -d` of a cached busybox until the id is printed (each container removed "
                  "after, untimed)", [tool(e) for e in self.pair], runs)

    def case_exec(self, runs: int) -> None:
        ref = self.refs["busybox"]
        try:
            ids = {e.key: e.detach("--network", "none", ref, *IDLE) for e in self.pair}
            self.case("exec", "`exec CONTAINER true` into a running busybox container",
                      [Tool(e.key, f"`{e.name} exec CONTAINER true`", lambda d, e=e: e.argv("exec", ids[e.key], "true"),
                            mem=False, env=e.env) for e in self.pair], runs)
        finally:
            self.remove_all()

    def case_stop(self, runs: int) -> None:
        ref = self.refs["busybox"]
        made: dict[Path, str] = {}

        def tool(e: Engine) -> Tool:
            def pre(d: Path) -> None:
                made[d] = e.detach("--network", "none", ref, *DEAF)

            def post(d: Path, s: object) -> dict:
                state = e.inspect(made[d])["State"]
                e.rm(made[d])
                if state["Running"]:
                    raise SetupFailed(f"{e.name}: still running after stop")
                return {"exit_code": state["ExitCode"]}
            return Tool(e.key, f"`{e.name} stop -t 1` (PID 1 ignores SIGTERM)",
                        lambda d: e.argv("stop", "-t", "1", made[d]), mem=False, env=e.env, pre=pre, post=post)

        res = self.case("stop", "`stop -t 1` of a container whose PID 1 ignores SIGTERM (SIGKILL after the 1 s "
                        "grace in both)", [tool(e) for e in self.pair], runs)
        o, p = ([s.wall for s in res.samples[k]] for k in ("ocibox", "podman"))
        if o and p:
            n = min(len(o), len(p))
            r = median([(o[i] - 1) / (p[i] - 1) for i in range(n)])
            ok = "met" if r <= 0.5 else "**MISSED**"
            res.lines.append(f"- time beyond the 1 s grace (median): ocibox {fmt_s(median(o) - 1)} s, podman "
                             f"{fmt_s(median(p) - 1)} s: ratio {r:.2f}x (target <= 0.5x: {ok}); the whole time "
                             "cannot reach 0.5x: both wait the same second")
            res.summary.append(f"| stop: the time beyond the 1 s grace, ocibox / podman | <= 0.5x | {r:.2f}x | {ok} |")
            codes = {k: sorted({x.get("exit_code") for x in res.extras[k]}) for k in ("ocibox", "podman")}
            res.lines.append(f"- exit codes recorded: {codes}")

    def case_ps100(self, runs: int) -> None:
        ref = self.refs["busybox"]
        try:
            for e in self.pair:
                t0 = time.monotonic()
                with ThreadPoolExecutor(4) as pool:
                    list(pool.map(lambda _, e=e: e.detach("--network", "none", ref, *IDLE), range(100)))
                say(f"  100 containers of {e.name} started in {time.monotonic() - t0:.1f} s (4 at a time)")

            def count(e: Engine) -> object:
                def post(d: Path, s: object) -> dict:
                    rows = len((d / "out.log").read_text().strip().splitlines()) - 1
                    if rows != 100:
                        raise SetupFailed(f"{e.name} ps listed {rows} containers, not 100")
                    return {}
                return post
            self.case("ps100", "`ps` with 100 running containers",
                      [Tool(e.key, f"`{e.name} ps`", lambda d, e=e: e.argv("ps"), mem=False, env=e.env,
                            post=count(e)) for e in self.pair], runs)  # type: ignore[arg-type]
        finally:
            self.remove_all()

    def case_monitor_mem(self, runs: int) -> None:
        ref = self.refs["busybox"]
        res = CaseResult("monitor-mem", "monitor memory of idle detached containers (busybox `sleep`, "
                         "--network none): the parent of each container's PID 1", [], runs=runs, timed=False)
        figures: dict[str, dict[str, list[float]]] = {e.key: {} for e in self.pair}
        names: dict[str, set[str]] = {e.key: set() for e in self.pair}
        try:
            for rnd in range(runs):
                for e in self.pair:
                    f = figures[e.key]
                    pids = []
                    for i in range(20):
                        cid = e.detach("--network", "none", ref, *IDLE)
                        pids.append(int(e.inspect(cid)["State"]["Pid"]))
                        if i == 0:
                            time.sleep(1)
                            one = smaps_rollup(monitor_of(pids[0])[0])
                            f.setdefault("alone_pss", []).append(one["Pss"])
                            f.setdefault("alone_rss", []).append(one["Rss"])
                    time.sleep(1)
                    mons = [monitor_of(p) for p in pids]
                    names[e.key].update(n for _, n in mons)
                    if len({m for m, _ in mons}) != 20:
                        raise SetupFailed(f"{e.name}: 20 containers but {len({m for m, _ in mons})} monitors")
                    sm = [smaps_rollup(m) for m, _ in mons]
                    for k in ("Pss", "Rss", "Pss_Anon", "Private_Dirty"):
                        f.setdefault(k, []).append(sum(x[k] for x in sm) / 20)
                    e.rm_all()
                say(f"  round {rnd + 1}: " + ", ".join(
                    f"{k} {v['Pss'][-1] / 2**20:.2f} MiB PSS/container" for k, v in figures.items()))
        except (SetupFailed, subprocess.CalledProcessError) as err:
            res.notes.append(f"FAILED: {err}")
        finally:
            self.remove_all()
        o, p = figures["ocibox"], figures["podman"]
        mib = 2**20
        res.lines += ["| monitor | PSS per container, 20 running (MiB) | RSS per container (MiB) | Pss_Anon (MiB) | "
                      "Private_Dirty (MiB) | PSS, 1 container alone (MiB) | RSS alone (MiB) | target |",
                      "|---|---|---|---|---|---|---|---|"]
        for e in self.pair:
            f = figures[e.key]
            if not f.get("Pss"):
                continue
            tgt = ""
            if e.key == "ocibox":
                pss = median(f["Pss"])
                tgt = f"<= 2 MiB {'**met**' if pss <= 2 * mib else '**MISSED**'}"
                res.summary.append(f"| monitor-mem: ocibox monitor PSS per idle container (20) | <= 2 MiB | "
                                   f"{pss / mib:.2f} MiB (podman's conmon {median(p.get('Pss', [])) / mib:.2f}) | "
                                   f"{'met' if pss <= 2 * mib else '**MISSED**'} |")
            res.lines.append(
                f"| {e.name}: `{', '.join(sorted(names[e.key]))}` | {median(f['Pss']) / mib:.2f} | "
                f"{median(f['Rss']) / mib:.2f} | {median(f['Pss_Anon']) / mib:.2f} | "
                f"{median(f['Private_Dirty']) / mib:.2f} | {median(f['alone_pss']) / mib:.2f} | "
                f"{median(f['alone_rss']) / mib:.2f} | {tgt} |")
        if o.get("Pss") and p.get("Pss"):
            res.lines.append(f"- ocibox / podman, PSS per container with 20: {median(o['Pss']) / median(p['Pss']):.2f}x; "
                             f"{runs} rounds, medians; each figure 1 s after the last `run -d`")
        res.notes.append("PSS shares a mapped page among every process that maps it, on the whole host: other "
                         "ocibox-monitor or conmon processes running at the time lower both figures")
        self.results.append(res)

    # ------------------------------------------------------------------ issue 13
    def settle(self, timeout: float = 30) -> float:
        """Wait until ocibox's background network teardowns (CNI DEL after `run --rm`) are done; the seconds
        waited."""
        d = self.ostore / "networks" / "containers"
        t0 = time.monotonic()
        wait_until("ocibox's background CNI DEL", lambda: not d.is_dir() or not any(d.glob("*.json")), timeout)
        return time.monotonic() - t0

    def case_run_bridge(self, runs: int) -> None:
        ref = self.refs["busybox"]
        o, p, pc = self.engines["ocibox"], self.engines["podman"], self.engines["podman-cni"]

        def settle(d: Path, s: object = None) -> dict:
            return {"del_s": self.settle()}
        tools = [
            Tool("ocibox", "`ocibox run --rm` (default network: CNI bridge)", lambda d: o.run("--rm", ref, "true"),
                 mem=False, pre=settle, post=settle),
            Tool("podman", "`podman run --rm` (default network: netavark bridge)",
                 lambda d: p.run("--rm", ref, "true"), mem=False, env=p.env),
            Tool("podman-cni", "`podman run --rm` (default network: CNI bridge `cni-podman0`)",
                 lambda d: pc.run("--rm", ref, "true"), mem=False, env=pc.env),
            Tool("ocibox-none", "`ocibox run --rm --network none`", lambda d: o.run("--rm", "--network", "none", ref,
                                                                                   "true"), mem=False),
            Tool("podman-none", "`podman run --rm --network none` (runc)",
                 lambda d: p.run("--rm", "--network", "none", ref, "true"), mem=False, env=p.env),
        ]
        res = self.case("run-bridge", "warm `run --rm busybox true` on the default network (and with "
                        "--network none for reference), image already in each tool's store", tools, runs)
        res.targets["podman-cni"] = 0.5
        dels = [x["del_s"] for x in res.extras["ocibox"] if "del_s" in x]
        if dels:
            walls = [s.wall for s in res.samples["ocibox"]]
            res.lines.append(f"- ocibox returns before its CNI DEL is done (a background child does it): the DEL "
                             f"ended a median {fmt_s(median(dels))} s after `ocibox run` returned (max "
                             f"{fmt_s(max(dels))} s); run + DEL: {fmt_s(median([w + x for w, x in zip(walls, dels, strict=False)]))} s. "
                             "Each round waits for it before the next tool starts; podman's figure includes "
                             "its teardown")

    def case_transfer(self, runs: int) -> None:
        deb = self.refs["debian-gzip"]
        addr: dict[str, tuple[str, int]] = {}
        try:
            for e in self.pair:
                port = free_port()
                cid = e.detach("-p", f"127.0.0.1:{port}:5000", deb, "python3", "-c", SERVER)
                ip = e.inspect(cid)["NetworkSettings"]["IPAddress"]
                addr[e.key], addr[e.key + "-direct"] = ("127.0.0.1", port), (ip, 5000)
                for host, prt in (addr[e.key], addr[e.key + "-direct"]):
                    wait_until(f"{e.name}'s server at {host}:{prt}", lambda h=host, q=prt: _connects(h, q))

            def post(d: Path, s: run.Sample) -> dict:
                got, secs = (d / "out.log").read_text().split()
                if int(got) != GiB:
                    raise SetupFailed(f"received {got} bytes, not {GiB}")
                s.wall = float(secs)  # the client's own connect -> EOF time
                return {"gbit_s": GiB * 8 / float(secs) / 1e9}

            tools = []
            for e in self.pair:
                for key, how in ((e.key, "published 127.0.0.1:P -> 5000"), (e.key + "-direct", "the container's address")):
                    tools.append(Tool(key, f"{e.name}: 1 GiB via {how}",
                                      lambda d, k=key: [sys.executable, "-I", "-S", "-c", CLIENT, *map(str, addr[k])],
                                      mem=False, post=post))
            res = self.case("transfer-1g", "1 GiB from a server in a container (default network) to the host, "
                            "client-timed", tools, runs, target=None)
            lines = ["", "| path | throughput Gbit/s (median) |", "|---|---|"]
            for t in tools:
                ex = [x["gbit_s"] for x in res.extras[t.key] if "gbit_s" in x]
                if ex:
                    lines.append(f"| {t.label} | {median(ex):.2f} |")
            ratio = {}
            for e in self.pair:
                a, b = res.samples[e.key], res.samples[e.key + "-direct"]
                if a and b:
                    n = min(len(a), len(b))
                    ratio[e.key] = median([b[i].wall / a[i].wall for i in range(n)])
                    lines.append(f"- {e.name}: throughput published / direct = {ratio[e.key]:.2f}x (median of rounds)")
            if "ocibox" in ratio:
                ok = "met" if ratio["ocibox"] >= 0.9 else "**MISSED**"
                res.summary.append(f"| transfer-1g: ocibox throughput via the published port / straight to the "
                                   f"container | >= 0.9x | {ratio['ocibox']:.2f}x | {ok} |")
            res.lines += lines
        finally:
            self.remove_all()

    def case_names20(self, runs: int) -> None:
        ref = self.refs["busybox"]
        names = [f"crowd{i:02d}" for i in range(20)]
        net = "obench-crowd"
        made_net: list[Engine] = []
        try:
            for e in self.pair:
                e.sh(e.argv("network", "create", net))
                made_net.append(e)

            def tool(e: Engine) -> Tool:
                launch = e.run("-d", "--network", net, "--name", "{}", ref, *SERVE7000)
                argv = ["sh", "-c", 'printf "%s\\n" ' + " ".join(names) + ' | xargs -P 20 -I{} "$@"', "sh", *launch]

                def check(n: str) -> str:
                    r = subprocess.run(e.argv("exec", n, "sh", "-c", CHECK, "sh", *names), capture_output=True,
                                       text=True, env=e.env, timeout=120)
                    return "" if r.returncode == 0 else (r.stdout + r.stderr).strip() or f"exit {r.returncode}"

                def post(d: Path, s: object) -> dict:
                    try:
                        t0 = time.monotonic()
                        with ThreadPoolExecutor(20) as pool:
                            outs = [o for o in pool.map(check, names) if o]
                        check_s = time.monotonic() - t0
                        # the names others could not reach: what addresses do those containers have?
                        for n in sorted(set(re.findall(r": (crowd\d\d) unreachable", "\n".join(outs)))):
                            r = subprocess.run(e.argv("exec", n, "ip", "-o", "-4", "addr"), capture_output=True,
                                               text=True, env=e.env, timeout=60)
                            addrs = re.findall(r"^\d+: (\S+)\s+inet (\S+)", r.stdout, re.M)
                            outs.append(f"{n} has the addresses {addrs}")
                        return {"check_s": check_s, "failures": outs}
                    finally:
                        e.rm_all()
                return Tool(e.key, f"`{e.name} run -d --network {net}` x 20 at once (xargs -P 20)", lambda d: argv,
                            mem=False, env=e.env, post=post)
            res = self.case("names20", "20 containers started at once on one user network; then each looks up "
                            "every name and connects to it (untimed, below)", [tool(e) for e in self.pair],
                            runs, target=None)
            lines = ["", "| tool | every container reached all 20 by name, in rounds | 20 x 20 lookups + connects "
                     "after the start (s, median) | start + check (s) |", "|---|---|---|---|"]
            fails: list[str] = []
            for e in self.pair:
                ex = res.extras[e.key]
                if ex:
                    ch = [x["check_s"] for x in ex]
                    bad = [x["failures"] for x in ex if x["failures"]]
                    tot = [s.wall + c for s, c in zip(res.samples[e.key], ch, strict=False)]
                    lines.append(f"| {e.name} | {len(ex) - len(bad)} of {len(ex)} | {fmt_s(median(ch))} | "
                                 f"{fmt_s(median(tot))} |")
                    res.summary.append(f"| names20: {e.name}: 20 started at once all reach each other by name | "
                                       f"every round | {len(ex) - len(bad)} of {len(ex)} rounds | "
                                       f"{'met' if not bad else '**MISSED**'} |")
                    fails += [f"- {e.name}, a round where the check failed: " + "; ".join(
                        x.splitlines()[-1][:100] for x in [*b[:2], *(y for y in b if " has the addresses " in y)])
                        for b in bad]
            lines += fails
            lines.append("- every round: 20 `exec` at once, each resolving the 20 names with `busybox nslookup` "
                         "(both answered by aardvark-dns) and connecting to port 7000 of each address with `busybox "
                         "nc`, retrying each name for up to 10 s (no ping: ocibox's default capabilities have no "
                         "NET_RAW, unlike docker's and podman 4.3's, and busybox ping needs a raw socket)")
            res.lines += lines
        finally:
            self.remove_all()
            for e in made_net:
                e.sh(e.argv("network", "rm", net))

    # ------------------------------------------------------------------ teardown and leak checks
    def remove_all(self) -> None:
        for e in self.engines.values():
            try:
                e.rm_all()
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
                say(f"WARNING: {e.name} rm: {err}")
        if "ocibox" in self.engines:
            try:
                self.settle()
            except SetupFailed as err:
                say(f"WARNING: {err}")

    def close(self) -> None:
        if self.engines:
            self.remove_all()
            o = self.engines["ocibox"]
            try:  # the default network too: its bridge and rules go with it
                nets = o.sh(o.argv("network", "ls", "--format", "{{.Name}}")).split()
                if nets:
                    o.sh(o.argv("network", "rm", *nets))
            except subprocess.CalledProcessError as err:
                self.leaks.append(f"ocibox network rm: {err.stderr.strip()}")
            for key in ("podman", "podman-cni"):
                e = self.engines[key]
                for cmd in (["pod", "rm", "-a", "-f"], ["network", "prune", "-f"]):
                    try:
                        e.sh(e.argv(*cmd))
                    except subprocess.CalledProcessError as err:
                        self.leaks.append(f"{e.name} {' '.join(cmd)}: {err.stderr.strip()}")
            # podman's predefined CNI network is never pruned: the bridge it made here goes (if it was not there)
            if "cni-podman0" not in self.host_before.links and Path("/sys/class/net/cni-podman0").exists():
                subprocess.run(["ip", "link", "del", "cni-podman0"], check=False)
            self.check_leaks()
        super().close()

    def check_leaks(self) -> None:
        """Processes, cgroups of the containers made, host network state: what is left is reported (and what is
        ours removed: our processes by pid, empty cgroup dirs)."""
        scratch = str(self.scratch)
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if scratch in cmd and ("ocibox-monitor" in cmd or "conmon" in cmd.split(" ")[0]):
                self.leaks.append(f"process {pid} left: {cmd[:150]}; killed")
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        ids = {c for e in self.engines.values() for c in e.made}
        wanted = {f"ocibox-{c}" for c in ids} | {f"libpod-{c}" for c in ids} | {f"libpod-conmon-{c}" for c in ids}
        for top in Path("/sys/fs/cgroup").iterdir():
            for dirpath, dirnames, _ in os.walk(top):
                for dn in dirnames:
                    if dn in wanted:
                        p = Path(dirpath, dn)
                        try:
                            p.rmdir()
                            self.leaks.append(f"cgroup {p} left (empty: removed)")
                        except OSError as err:
                            self.leaks.append(f"cgroup {p} left: {err.strerror}")
        after = HostNet.now().new_since(self.host_before)
        if after:
            self.leaks.append(f"host network state new since the start (other users' work included): {after}")
        say(f"leak check over {len(ids)} containers: " + ("; ".join(self.leaks) if self.leaks else "nothing left"))


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


METHOD = ("Each case: 1 warm-up round, then the given rounds, tools alternating A B C ... within a round, on one "
          "store per tool that already holds the images (pulled from Debian's docker-registry on 127.0.0.1, "
          "untimed). Ratios are medians of the per-round ratios ocibox/peer. podman 4.3 runs with runc, "
          "`--ulimit nofile=20000:20000 --ulimit nproc=32768:32768`, its own root, runroot and containers.conf; "
          "`--network none` in both tools except in the network cases.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="timed rounds per case (default 10; transfer-1g, "
                    "names20 and monitor-mem take at most 5, 5 and 3)")
    ap.add_argument("--cases", default="", help="comma-separated: " + ",".join(CASES))
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (debugging)")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="S",
                    help="before each case wait up to S seconds for the 1-min load average to drop below 1")
    ap.add_argument("--out", default=str(run.HERE / "results" / "lifecycle.md"), help="where to write the tables")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("Error: the benchmarks need root (podman, runc, mounts, cgroups, networks)", file=sys.stderr)
        return 2
    cases = [c for c in args.cases.split(",") if c] or CASES
    if unknown := [c for c in cases if c not in CASES]:
        print(f"Error: unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}", file=sys.stderr)
        return 2
    started = time.time()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    bench = Life(args)
    runs = args.runs
    try:
        bench.start_registry(["busybox", "debian-gzip"] if "transfer-1g" in cases else ["busybox"])
        bench.check_ocibox()
        bench.make_engines()
        bench.pull([i for i in ("busybox", "debian-gzip") if i in bench.refs])
        for c in cases:
            fn = getattr(bench, "case_" + c.replace("-1g", "").replace("-", "_"))
            fn(min(runs, {"transfer-1g": 5, "names20": 5, "monitor-mem": 3}.get(c, runs)))
    except KeyboardInterrupt:
        say("interrupted; writing what was measured")
    finally:
        try:
            bench.close()
        finally:
            text = run.report(bench, sys.argv[1:], started, script="lifecycle.py",
                              heading="Targets of issues 12 and 13", method=METHOD)
            text += "\n## Leak check at the end\n\n" + ("\n".join(f"- {x}" for x in bench.leaks) or
                                                         "- nothing left: containers, monitors, cgroups of the "
                                                         "containers, networks, links, netns, rules") + "\n"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(run.raw(bench), indent=1))
    print(text)
    say(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
