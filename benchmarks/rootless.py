"""Rootless ocibox against rootless podman, as the same unprivileged user, side by side in one run.

usage: .venv/bin/python benchmarks/rootless.py [--runs N] [--cases a,b,...]      (as root: it makes the user)

A user with a subordinate range is made for the run (tests/rootless.py; removed at the end, with
/etc/subuid and /etc/subgid restored). Debian's docker-registry serves the fixture images
(benchmarks/fixtures.py, cached under /var/cache/ocibox-bench) on 127.0.0.1. Each case: one warm-up
round, then N rounds; in each round every tool runs once, in the same order, each cold pull into a
fresh directory (podman with a fresh HOME too: its store, blob-info cache and config are per run).

Nothing is deleted between the timed pulls of a case: a case's directories are removed at its end, and
the next pull case starts 61 s after that. This host's root filesystem is ext4 without a journal, where
allocating an inode skips every inode of its block group deleted in the last 60 s (300 s while the
inode table block is dirty: ``recently_deleted`` in fs/ext4/ialloc.c). Removing the previous tool's tree
(10,000 or 50,000 inodes) right before the next tool's pull made that pull pay for the scan, 30-60 %
of its time in the kernel, and unevenly: a tool whose directories sat in the block groups just emptied
paid most (the rootless tools, whose trees share the user's home). A ``sync`` before each timed run
keeps one tool's dirty pages from being written back during the next one's.
Figures: median wall time, and the median of the per-round ratios ocibox/peer.

Cases (--cases): pull-debian (the 3-layer Debian image, gzip), pull-files50k (one layer of 50,000 files
+ 10 x 50 MB), run-none (warm `run --rm --network none IMAGE true`), run-net (warm `run --rm IMAGE true`,
each tool's default network: ocibox's slirp4netns, podman 4.3's slirp4netns; pasta beside for both).
Each pull case also runs ocibox's rooted pull (as root, the same image) for the rootless/rooted ratio.

Host facts: crun refuses this hybrid-cgroup host, so podman runs with --runtime runc; podman needs
--ulimit nofile=20000:20000 --ulimit nproc=32768:32768 here (PEERS.md). ocibox runs as the user with
the system's python3 of the same version as the venv's (the venv's interpreter is under /root, which the
user cannot enter), with -S (no site: the venv's interpreter does not read the system's site either)
and PYTHONPATH naming this checkout and the venv's site-packages; its bytecode is compiled first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))

import fixtures  # noqa: E402
from registry import Registry  # noqa: E402
from rootless import User, Users  # noqa: E402

ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
CASES = ["pull-debian", "pull-files50k", "run-none", "run-net", "net-throughput"]
IMAGES = {"pull-debian": "debian-gzip", "pull-files50k": "files50k", "run-none": "busybox", "run-net": "busybox",
          "net-throughput": "busybox"}
THROUGHPUT_MB = 1024
#: ext4 without a journal skips inodes deleted less than this long ago (clean inode table blocks)
RECENTLY_DELETED = 61.0
#: (case, peer) -> the issue's maximum ratio ocibox/peer
TARGETS = {("pull-debian", "podman"): 0.5, ("pull-files50k", "podman"): 0.5, ("run-none", "podman"): 0.5,
           ("run-net", "podman"): 0.7, ("pull-debian", "rooted"): 1.3, ("pull-files50k", "rooted"): 1.3}
ISSUE = {"pull-debian": 2.6, "run-net": 0.14}  # the issue's rootless podman figures (s), another day


def say(msg: str) -> None:
    print(f"[rootless-bench] {msg}", file=sys.stderr, flush=True)


class Tool:
    def __init__(self, key: str, label: str, argv, *, user: User | None, pre=None) -> None:  # type: ignore[no-untyped-def]
        self.key, self.label, self.argv, self.user, self.pre = key, label, argv, user, pre


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.users = Users(prefix="oxbench", base=500000)
        self.user = self.users.add("u")
        self.scratch = Path(tempfile.mkdtemp(prefix="ocibox-rootless-bench.", dir="/var/tmp"))
        os.chmod(self.scratch, 0o755)
        self.uscratch = self.user.home / "bench"
        self.run_as("mkdir", "-p", str(self.uscratch))
        self.registry: Registry | None = None
        self.refs: dict[str, str] = {}
        self.results: list[dict] = []
        self.last_removal = 0.0  # monotonic time of the last removal of a case's trees
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "ocibox")], check=True)
        subprocess.run([sys.executable, "-m", "ocibox.monitor"], check=True, capture_output=True)

    # ------------------------------------------------------------------ helpers
    def run_as(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        e = env or self.user.env()
        return subprocess.run(["runuser", "-u", self.user.name, "--", "env", "-i", *(f"{k}={v}" for k, v in e.items()),
                               *argv], capture_output=True, text=True, timeout=1800, cwd=str(self.user.home))

    def ocibox_user(self, *args: str) -> list[str]:
        e = self.user.env()
        return ["runuser", "-u", self.user.name, "--", "env", "-i", *(f"{k}={v}" for k, v in e.items()),
                self.user.python, "-S", "-m", "ocibox", *args]

    def podman_user(self, home: Path, *args: str) -> list[str]:
        """rootless podman with ``home`` as HOME (its store, config and blob-info cache below it), a runroot
        of its own (short: podman refuses one over 50 characters) and one runtime directory for the run
        (its pause process, which holds its user namespace, is started once)."""
        roots: dict[Path, Path] = self.__dict__.setdefault("_runroots", {})
        runroot = roots.setdefault(home, Path(f"/tmp/ob{self.user.uid}-{len(roots)}"))
        runtime = Path(f"/tmp/ob{self.user.uid}-rt")
        e = self.user.env(HOME=str(home), XDG_RUNTIME_DIR=str(runtime), XDG_DATA_HOME=str(home / ".local/share"),
                          XDG_CONFIG_HOME=str(home / ".config"))
        return ["runuser", "-u", self.user.name, "--", "env", "-i", *(f"{k}={v}" for k, v in e.items()),
                "sh", "-c", f'mkdir -p -m 700 {runtime} {runroot} {home} && exec "$@"', "sh",
                "podman", "--storage-driver", "overlay", "--runtime", "runc", "--root", str(home / "storage"),
                "--runroot", str(runroot), *args]

    def start_registry(self, images: list[str]) -> None:
        for name in images:
            fixtures.layout(name)
        reg = Registry(self.scratch / "registry")
        data = fixtures.CACHE / "registry"
        data.mkdir(parents=True, exist_ok=True)
        reg.config.write_text(reg.config.read_text().replace(str(reg.root / "data"), str(data)))
        self.registry = reg.start()
        for name in images:
            self.refs[name] = fixtures.ensure_pushed(name, reg.host)
        say(f"registry on {reg.host}; images: {', '.join(self.refs)}")

    def timed(self, argv: list[str]) -> tuple[float, int, str]:
        t = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
        return time.perf_counter() - t, r.returncode, (r.stderr or r.stdout)[-500:]

    def clean(self, d: Path) -> None:
        """Remove a per-run directory of the user's (files of subordinate ids: in its namespace)."""
        if not d.exists():
            return
        if str(d).startswith(str(self.user.home)):
            subprocess.run(self.ocibox_user("unshare", "rm", "-rf", str(d)), capture_output=True, timeout=600)
        shutil.rmtree(d, ignore_errors=True)

    # ------------------------------------------------------------------ one case
    def case(self, key: str, title: str, tools: list[Tool], runs: int) -> None:
        say(f"case {key}: {title}")
        samples: dict[str, list[float]] = {t.key: [] for t in tools}
        failed: dict[str, str] = {}
        made: list[Path] = []
        if "pull" in key and self.last_removal:
            # inodes deleted less than 60 s ago slow down every allocation in their block groups
            time.sleep(max(0.0, self.last_removal + RECENTLY_DELETED - time.monotonic()))
        for rnd in range(1 + runs):
            for t in tools:
                if t.key in failed:
                    continue
                base = (self.uscratch if t.user else self.scratch) / f"{key}-{t.key}-{rnd}"
                if t.pre:
                    t.pre(base)
                os.sync()
                wall, rc, out = self.timed(t.argv(base))
                if rc != 0:
                    failed[t.key] = f"exit {rc}: {out.strip().splitlines()[-1] if out.strip() else ''}"
                    say(f"  {t.key} FAILED: {failed[t.key]}")
                elif rnd:
                    samples[t.key].append(wall)
                if "pull" in key:
                    made.append(base)  # removed after the case (see the module's docstring)
            if rnd:
                say(f"  round {rnd}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in samples.items() if v))
        if made:
            for d in made:
                self.clean(d)
            os.sync()
            self.last_removal = time.monotonic()
        self.results.append({"key": key, "title": title, "labels": {t.key: t.label for t in tools},
                             "samples": samples, "failed": failed, "load": os.getloadavg()[0]})

    def pull_case(self, key: str) -> None:
        ref = self.refs[IMAGES[key]]
        st = fixtures.unpacked_stats(IMAGES[key])
        title = (f"cold pull of {IMAGES[key]} ({st.get('blob_bytes', 0) / 1e6:.0f} MB compressed, "
                 f"{st.get('bytes', 0) / 1e6:.0f} MB / {st.get('entries', 0):,} entries unpacked), empty store each run")
        tools = [
            Tool("ocibox", "rootless `ocibox pull`", lambda d: self.ocibox_user("--root", str(d), "pull", "-q", ref),
                 user=self.user),
            Tool("podman", "rootless `podman pull` (overlay, fresh HOME)",
                 lambda d: self.podman_user(d, "pull", "-q", "--tls-verify=false", ref), user=self.user),
            Tool("rooted", "`ocibox pull` as root",
                 lambda d: [sys.executable, "-m", "ocibox", "--root", str(d), "pull", "-q", ref], user=None),
        ]
        self.case(key, title, tools, self.args.runs)

    def warm(self) -> tuple[str, Path, Path]:
        """busybox in the user's ocibox store and podman store, for the warm cases (once)."""
        ref = self.refs["busybox"]
        store = self.uscratch / "warm-ocibox"
        phome = self.uscratch / "warm-podman"
        if not getattr(self, "_warm", False):
            r = subprocess.run(self.ocibox_user("--root", str(store), "pull", "-q", ref), capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            r = subprocess.run(self.podman_user(phome, "pull", "-q", "--tls-verify=false", ref), capture_output=True,
                               text=True)
            assert r.returncode == 0, r.stderr
            self._warm = True
        return ref, store, phome

    def run_case(self, key: str) -> None:
        ref, store, phome = self.warm()
        if key == "run-none":
            tools = [
                Tool("ocibox", "rootless `ocibox run --rm --network none`",
                     lambda d: self.ocibox_user("--root", str(store), "run", "--rm", "--network", "none", ref, "true"),
                     user=self.user),
                Tool("podman", "rootless `podman run --rm --network none` (runc)",
                     lambda d: self.podman_user(phome, "run", "--rm", "--network", "none", *ULIMITS, ref, "true"),
                     user=self.user),
                Tool("rooted", "`ocibox run --rm --network none` as root",
                     lambda d: [sys.executable, "-m", "ocibox", "--root", str(self.scratch / "warm-rooted"), "run",
                                "--rm", "--network", "none", ref, "true"], user=None),
            ]
            subprocess.run([sys.executable, "-m", "ocibox", "--root", str(self.scratch / "warm-rooted"), "pull", "-q",
                            ref], check=True, capture_output=True)
            title = "warm `run --rm --network none busybox true`"
        else:
            tools = [
                Tool("ocibox", "rootless `ocibox run --rm` (default: slirp4netns)",
                     lambda d: self.ocibox_user("--root", str(store), "run", "--rm", ref, "true"), user=self.user),
                Tool("podman", "rootless `podman run --rm` (default: slirp4netns, runc)",
                     lambda d: self.podman_user(phome, "run", "--rm", *ULIMITS, ref, "true"), user=self.user),
                Tool("ocibox-pasta", "rootless `ocibox run --rm --network pasta`",
                     lambda d: self.ocibox_user("--root", str(store), "run", "--rm", "--network", "pasta", ref, "true"),
                     user=self.user),
            ]
            title = ("warm `run --rm busybox true` with each tool's default network (and ocibox with pasta; podman 4.3 "
                     "has no pasta: it came with 4.4)")
        self.case(key, title, tools, self.args.runs * 3)

    def throughput_case(self) -> None:
        """TCP out of the container: 1 GiB from busybox's nc to a server in a namespace standing for the
        world (tests/outside.py), received and timed there; each tool's start of the stack as well."""
        from outside import OUT_PEER, outside_namespace

        ref, store, phome = self.warm()
        stacks = [("ocibox-slirp4netns", "rootless ocibox, slirp4netns",
                   lambda port: self.ocibox_user("--root", str(store), "run", "--rm", "--network", "slirp4netns", ref,
                                                 "sh", "-c", _SEND.format(peer=OUT_PEER, port=port))),
                  ("ocibox-pasta", "rootless ocibox, pasta",
                   lambda port: self.ocibox_user("--root", str(store), "run", "--rm", "--network", "pasta", ref,
                                                 "sh", "-c", _SEND.format(peer=OUT_PEER, port=port))),
                  ("podman-slirp4netns", "rootless podman, slirp4netns",
                   lambda port: self.podman_user(phome, "run", "--rm", *ULIMITS, ref, "sh", "-c",
                                                 _SEND.format(peer=OUT_PEER, port=port)))]
        say("case net-throughput")
        rates: dict[str, list[float]] = {k: [] for k, _, _ in stacks}
        failed: dict[str, str] = {}
        with outside_namespace() as ns:
            for rnd in range(1 + self.args.runs):
                for key, _, argv in stacks:
                    if key in failed:
                        continue
                    server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", _RECEIVE, OUT_PEER],
                                              stdout=subprocess.PIPE, text=True)
                    assert server.stdout is not None
                    port = int(server.stdout.readline())
                    r = subprocess.run(argv(port), capture_output=True, text=True, timeout=600)
                    out = server.communicate(timeout=600)[0].split()
                    if r.returncode != 0 or not out or int(out[0]) < THROUGHPUT_MB << 20:
                        failed[key] = f"exit {r.returncode}: {r.stderr.strip()[-200:]}"
                        continue
                    if rnd:
                        rates[key].append(int(out[0]) * 8 / float(out[1]) / 1e9)
                say("  " + ", ".join(f"{k} {v[-1]:.2f} Gbit/s" for k, v in rates.items() if v))
        self.results.append({"key": "net-throughput", "title": f"TCP out of the container, {THROUGHPUT_MB} MiB, Gbit/s "
                             "(higher is better)", "labels": {k: label for k, label, _ in stacks},
                             "samples": rates, "failed": failed, "load": os.getloadavg()[0], "unit": "Gbit/s"})

    # ------------------------------------------------------------------ report
    def report(self) -> str:
        lines = ["# rootless ocibox against rootless podman, as the same user", "",
                 f"Command: `benchmarks/rootless.py --runs {self.args.runs}`; run "
                 f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} CPUs, kernel "
                 f"{platform.release()}; ocibox {git_rev()}; {version('podman')}, {version('slirp4netns')}, "
                 f"passt/pasta {pasta_version()}.", "",
                 "Ratios: median over rounds of ocibox/peer (each round runs every tool once, side by side).", ""]
        targets = []
        for res in self.results:
            unit = res.get("unit", "s")
            lines += [f"## {res['key']}: {res['title']}", "",
                      f"| tool | median {unit} | min {unit} | max {unit} | ocibox / tool |", "|---|---|---|---|---|"]
            base = res["samples"].get("ocibox", [])
            for k, label in res["labels"].items():
                if k in res["failed"]:
                    lines.append(f"| {label} | failed: {res['failed'][k]} | | | |")
                    continue
                s = res["samples"][k]
                if not s:
                    continue
                ratio = ""
                if k != "ocibox" and base and len(base) == len(s):
                    r = statistics.median(a / b for a, b in zip(base, s, strict=True))
                    ratio = f"{r:.2f}x"
                    want = TARGETS.get((res["key"], k))
                    if want is not None:
                        met = "met" if r <= want else "**MISSED**"
                        targets.append(f"| {res['key']}: ocibox / {label} | <= {want}x | {r:.2f}x | {met} |")
                lines.append(f"| {label} | {statistics.median(s):.3f} | {min(s):.3f} | {max(s):.3f} | {ratio} |")
            if res["key"] in ISSUE and base:
                r = statistics.median(base) / ISSUE[res["key"]]
                lines.append(f"| (the issue's rootless podman: {ISSUE[res['key']]} s) | | | | {r:.2f}x |")
            lines += ["", f"- load average at the end of the case: {res['load']:.2f}", ""]
        return "\n".join(["# Targets", "", "| target | wanted | measured | |", "|---|---|---|---|", *targets, "",
                          *lines])

    def close(self) -> None:
        if self.registry is not None:
            self.registry.stop()
        problems = self.users.close()
        for d in Path("/tmp").glob(f"ob{self.user.uid}-*"):
            shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(self.scratch, ignore_errors=True)
        for p in problems:
            say(f"cleanup: {p}")


_SEND = "dd if=/dev/zero bs=1M count=" + str(THROUGHPUT_MB) + " 2>/dev/null | busybox nc {peer} {port}"
_RECEIVE = r"""
import socket, sys, time
s = socket.socket(); s.bind((sys.argv[1], 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); n = 0; t = time.perf_counter()
while True:
    b = c.recv(1 << 20)
    if not b:
        break
    n += len(b)
print(n, time.perf_counter() - t)
"""


def version(cmd: str) -> str:
    try:
        return subprocess.run([cmd, "--version"], capture_output=True, text=True).stdout.splitlines()[0].strip()
    except (OSError, IndexError):
        return f"{cmd} ?"


def pasta_version() -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "passt"], capture_output=True, text=True).stdout
        return out.strip() or "?"
    except OSError:
        return "?"


def git_rev() -> str:
    r = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    return r.stdout.strip()[:80]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    if os.geteuid() != 0:
        ap.error("run as root: it makes the unprivileged user it measures as")
    cases = [c for c in args.cases.split(",") if c]
    bench = Bench(args)
    try:
        bench.start_registry(sorted({IMAGES[c] for c in cases} | {"busybox"}))
        for c in cases:
            if c.startswith("pull-"):
                bench.pull_case(c)
            elif c == "net-throughput":
                bench.throughput_case()
            else:
                bench.run_case(c)
        text = bench.report()
    finally:
        bench.close()
    print(text)
    out = HERE / "results"
    (out / "rootless-latest.md").write_text(text + "\n")
    (out / "rootless-latest.json").write_text(json.dumps(bench.results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
