"""ocibox against its peers, side by side, on loopback.

usage: .venv/bin/python benchmarks/run.py [--runs N] [--cases a,b,...] [--quick] [--keep]
       .venv/bin/python benchmarks/run.py --serve --cases ...   (registry + fixtures only, for profiling)

Sets up Debian's docker-registry on 127.0.0.1 (storage cached under /var/cache/ocibox-bench), pushes the
fixture images with skopeo (benchmarks/fixtures.py, built once and cached), then measures each case: one
warm-up round, then N rounds; in each round every tool runs once, in the same order (A B C A B C ...), each
from a fresh directory under one scratch directory. Prints markdown tables (median, min, max per tool, the
median of the per-round ratios ocibox/peer, peak memory of the whole process tree) and writes them to
benchmarks/results/latest.md (raw samples: latest.json).

Cases (--cases): pull-busybox, pull-debian-gzip, pull-debian-zstd, pull-files50k, zstd-after-gzip,
run-warm, run-cold, mem-2g. --quick: pull-busybox, pull-debian-gzip, run-warm, run-cold with 3 runs.

Host facts honoured (PEERS.md): the disk is ext4 with discard, so nothing is deleted between runs: each
case's scratch is removed when the case is done (the 50,000-file and 2 GB cases would not fit otherwise),
and every case starts with a warm-up round. podman needs --ulimit nofile=20000:20000 --ulimit
nproc=32768:32768 to run containers; crun refuses hybrid cgroups (recorded as a failure in the table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))

import fixtures  # noqa: E402
from measure import Meter, Sample  # noqa: E402
from registry import Registry  # noqa: E402

OCIBOX = [str(REPO / ".venv/bin/ocibox")] if (REPO / ".venv/bin/ocibox").exists() else \
    [str(REPO / ".venv/bin/python"), "-m", "ocibox"]
ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
PODMAN_BIC = Path("/var/lib/containers/cache")  # containers/image's blob-info cache, shared by all stores

ALL_CASES = ["pull-busybox", "pull-debian-gzip", "pull-debian-zstd", "zstd-after-gzip", "run-warm",
             "run-cold", "pull-files50k", "mem-2g"]
QUICK_CASES = ["pull-busybox", "pull-debian-gzip", "run-warm", "run-cold"]
CASE_IMAGES = {
    "pull-busybox": ["busybox"], "pull-debian-gzip": ["debian-gzip"], "pull-debian-zstd": ["debian-zstd"],
    "pull-files50k": ["files50k"], "zstd-after-gzip": ["debian-gzip", "debian-zstd"],
    "run-warm": ["busybox"], "run-cold": ["busybox", "debian-gzip"], "mem-2g": ["busybox", "big2g"],
}

# Targets of issue 6: (case, peer key) -> maximum ratio ocibox/peer of the medians
TARGETS: dict[tuple[str, str], float] = {
    ("pull-debian-gzip", "podman"): 0.6,
    ("pull-debian-zstd", "podman"): 0.6,
    ("pull-files50k", "podman"): 0.5,
    ("pull-files50k", "tar"): 1.3,
    ("run-warm", "podman-crun"): 0.5,
}
#: the host is hybrid when a cgroup2 hierarchy is mounted beside the v1 ones (crun refuses it)
HYBRID = os.path.ismount("/sys/fs/cgroup/unified") and not os.path.exists("/sys/fs/cgroup/cgroup.controllers")
CRUN_NOTE = "; hybrid host: run with /sys/fs/cgroup/unified unmounted in a private mount namespace" if HYBRID else ""
ISSUE_PODMAN_CRUN_WARM = 0.12  # s, the issue's measured podman+crun `run --rm --network none ... true`


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- tools and cases
@dataclass
class Tool:
    key: str
    label: str
    argv: Callable[[Path], list[str]] | None
    na: str = ""  # why this tool is not run
    mem: bool = True
    pre: Callable[[Path], None] | None = None  # untimed, before each timed run, in the run's dir
    post: Callable[[Path, Sample], dict] | None = None  # extra figures after each run (untimed)
    env: dict[str, str] | None = None  # the whole environment of the timed command (None: this one's)


@dataclass
class CaseResult:
    key: str
    title: str
    tools: list[Tool]
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    extras: dict[str, list[dict]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    runs: int = 0
    targets: dict[str, float] = field(default_factory=dict)  # peer key -> max ratio (else TARGETS)
    lines: list[str] = field(default_factory=list)  # more markdown after the table
    summary: list[str] = field(default_factory=list)  # more rows of the targets table
    timed: bool = True  # False: no timing table, only ``lines`` (a case that measures something else)


class SetupFailed(Exception):
    """Raised by a tool's ``pre`` or ``post`` when the tool did not do what the case needs: the tool is
    marked failed with this message."""


class Bench:
    #: wait for what each command leaves running before the next starts (see measure.Meter)
    SETTLE = True

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.scratch = Path(tempfile.mkdtemp(prefix="ocibox-bench.", dir="/var/tmp"))
        self.meter = Meter(str(os.getpid()), settle=self.SETTLE and not getattr(args, "back_to_back", False))
        self.registry: Registry | None = None
        self.refs: dict[str, str] = {}
        self.ocibox_pull = self.ocibox_run = "not checked"
        self.results: list[CaseResult] = []
        self.runroot_base = Path(f"/run/obench{os.getpid()}")
        self.runroots: dict[Path, Path] = {}
        self.rev_start = git_rev()

    # ------------------------------------------------------------------ setup
    def start_registry(self, images: list[str]) -> None:
        for name in images:  # build (or find cached) layouts before the registry starts
            fixtures.layout(name)
        reg = Registry(self.scratch / "registry")
        data = fixtures.CACHE / "registry"
        data.mkdir(parents=True, exist_ok=True)
        reg.config.write_text(reg.config.read_text().replace(str(reg.root / "data"), str(data)))
        self.registry = reg.start()
        for name in images:
            self.refs[name] = fixtures.ensure_pushed(name, reg.host)
        say(f"registry on {reg.host}; images: {', '.join(self.refs)}")

    @property
    def host(self) -> str:
        assert self.registry is not None
        return self.registry.host

    def log_offset(self) -> int:
        assert self.registry is not None
        return self.registry.log.stat().st_size

    def log_since(self, offset: int) -> str:
        assert self.registry is not None
        time.sleep(0.2)  # the registry writes its access log line after the response
        with open(self.registry.log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def check_ocibox(self) -> None:
        """Is ``ocibox pull`` / ``ocibox run`` working yet? Other engineers are writing them right now."""
        d = self.scratch / "ready"
        d.mkdir()
        ref = self.refs["busybox"]
        s = self.meter.run(self.ocibox(d / "store", "pull", ref), log=d / "pull.log", mem=False, timeout=300)
        self.ocibox_pull = "ready" if s.rc == 0 else "not ready: " + first_error(s.out)
        if s.rc == 0:
            s = self.meter.run(self.ocibox(d / "store", "run", "--rm", "--network", "none", ref, "true"),
                               log=d / "run.log", mem=False, timeout=120)
            self.ocibox_run = "ready" if s.rc == 0 else "not ready: " + first_error(s.out)
        else:
            self.ocibox_run = "not ready: pull does not work yet"
        say(f"ocibox pull: {self.ocibox_pull}; ocibox run: {self.ocibox_run}")

    # ------------------------------------------------------------------ command builders
    def ocibox(self, root: Path, *verb: str) -> list[str]:
        return [*OCIBOX, "--root", str(root), "--insecure-registry", self.host, *verb]

    def podman(self, d: Path) -> list[str]:
        # podman refuses a runroot longer than 50 characters: runroots live in /run/obenchPID/N (tmpfs,
        # where podman's default /run/containers/storage is too)
        if d not in self.runroots:
            self.runroots[d] = self.runroot_base / str(len(self.runroots))
        return ["podman", "--root", str(d / "p-root"), "--runroot", str(self.runroots[d]), "--tmpdir",
                str(d / "p-tmp"), "--storage-driver", "overlay"]

    @staticmethod
    def private_bic(d: Path, argv: list[str]) -> list[str]:
        """Run podman with its own empty blob-info cache (bind-mounted in a private mount namespace).

        containers/image keeps one cache of digest -> diff id for all stores in /var/lib/containers/cache;
        without this, what one run learned would change what the next one downloads.
        """
        (d / "bic").mkdir(exist_ok=True)
        return ["unshare", "-m", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" ' + str(PODMAN_BIC) + ' && exec "$@"', str(d / "bic"), *argv]

    @staticmethod
    def v1_view(argv: list[str]) -> list[str]:
        """crun 1.8 refuses a hybrid host ("cgroups in hybrid mode not supported") because of the
        cgroup2 mount at /sys/fs/cgroup/unified (which holds only hugetlb here). In a private mount
        namespace without that mount the host is plain cgroup v1 to it, as it is to ocibox and runc:
        crun then runs, with the same v1 controllers. Costs one unshare and one sh exec (~3 ms),
        counted against crun. Elsewhere (pure v1 or v2 hosts) argv is returned as it is."""
        if not HYBRID:
            return argv
        return ["unshare", "-m", "--propagation", "private", "sh", "-c",
                'umount /sys/fs/cgroup/unified && exec "$@"', "sh", *argv]

    # ------------------------------------------------------------------ the measuring loop
    def run_case(self, key: str, title: str, tools: list[Tool], runs: int) -> CaseResult:
        res = CaseResult(key, title, tools, runs=runs)
        case_dir = self.scratch / key
        case_dir.mkdir()
        for t in tools:
            res.samples[t.key] = []
            res.extras[t.key] = []
        self.wait_idle()
        say(f"case {key}: {title}; 1 warm-up + {runs} rounds")
        load0 = os.getloadavg()[0]
        for rnd in range(1 + runs):
            for t in tools:
                if t.na or t.argv is None or t.key in res.failed:
                    continue
                d = case_dir / f"{t.key}-{rnd}"
                d.mkdir()
                if t.pre and not self._hook(res, t, t.pre, d)[0]:
                    continue
                s = self.meter.run(t.argv(d), log=d / "out.log", mem=t.mem, env=t.env)
                if s.rc != 0:
                    res.failed[t.key] = f"exit {s.rc}: {first_error(s.out)}"
                    say(f"  {t.label}: FAILED {res.failed[t.key]}")
                    continue
                ok, extra = self._hook(res, t, t.post, d, s) if t.post else (True, {})
                if not ok:
                    continue
                if rnd == 0:
                    continue
                res.samples[t.key].append(s)
                res.extras[t.key].append(extra)
            if rnd:
                say(f"  round {rnd}: " + ", ".join(
                    f"{t.key} {res.samples[t.key][-1].wall:.3f}s" for t in tools if res.samples[t.key]))
        load1 = os.getloadavg()[0]
        res.notes.append(f"load average (1 min) at the start / end of the case: {load0:.2f} / {load1:.2f} "
                         f"on {os.cpu_count()} CPUs" + (" -- other work was running: figures inflated"
                                                       if max(load0, load1) > 1.5 else ""))
        self.results.append(res)
        if not self.args.keep:
            clean_tree(case_dir)
        return res

    @staticmethod
    def _hook(res: CaseResult, t: Tool, hook: Callable[..., object], *args: object) -> tuple[bool, Any]:
        """Run a tool's untimed pre or post step: (True, what it returned), or on failure mark the tool
        failed and say (False, None)."""
        try:
            return True, hook(*args)
        except subprocess.CalledProcessError as e:
            out = e.stderr or e.stdout or b""
            out = out.decode(errors="replace") if isinstance(out, bytes) else out
            res.failed[t.key] = f"`{' '.join(map(str, e.cmd[:6]))} ...` exit {e.returncode}: " + first_error(out)
        except SetupFailed as e:
            res.failed[t.key] = str(e)
        say(f"  {t.label}: FAILED {res.failed[t.key]}")
        return False, None

    def wait_idle(self) -> None:
        """With --wait-idle S: wait up to S seconds for the 1-minute load average to fall below 1."""
        deadline = time.monotonic() + self.args.wait_idle
        said = False
        while os.getloadavg()[0] >= 1.0 and time.monotonic() < deadline:
            if not said:
                say(f"waiting for the machine to be idle (load {os.getloadavg()[0]:.2f})")
                said = True
            time.sleep(5)

    # ------------------------------------------------------------------ cases
    def pull_tools(self, image: str) -> list[Tool]:
        ref = self.refs[image]
        blobs = fixtures.layer_blobs(image)
        zstd = image.endswith("zstd")
        if zstd:
            floor = " && ".join(f"zstd -dc {b} | tar -x -C \"$0\"" for b in blobs)
            floor_label = "`zstd -dc | tar -x` (floor)"
        else:
            floor = " && ".join(f"tar -xzf {b} -C \"$0\"" for b in blobs)
            floor_label = "`tar -xzf` (floor)"
        return [
            self.ocibox_tool("ocibox", "`ocibox pull`", lambda d: self.ocibox(d / "store", "pull", ref), "pull"),
            Tool("podman", "`podman pull` (overlay, fresh store)",
                 lambda d: self.private_bic(d, [*self.podman(d), "pull", "--tls-verify=false", ref])),
            Tool("skopeo-umoci", "`skopeo copy` + `umoci unpack`",
                 lambda d: ["sh", "-c", 'skopeo copy --quiet --src-tls-verify=false "docker://$1" "oci:$0/oci:t"'
                            ' && umoci unpack --image "$0/oci:t" "$0/bundle"', str(d), ref]),
            Tool("skopeo", "`skopeo copy` (download only, no unpack)",
                 lambda d: ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}",
                            f"oci:{d}/oci:t"]),
            Tool("tar", floor_label, lambda d: ["bash", "-c", "set -o pipefail; mkdir \"$0\" && " + floor,
                                                str(d / "rootfs")]),
        ]

    def ocibox_tool(self, key: str, label: str, argv: Callable[[Path], list[str]], verb: str, **kw: object) -> Tool:
        state = self.ocibox_pull if verb == "pull" else self.ocibox_run
        return Tool(key, label, argv, na="" if state == "ready" else f"n/a ({state})", **kw)  # type: ignore[arg-type]

    def case_pull(self, image: str, runs: int) -> None:
        st = fixtures.unpacked_stats(image)
        title = (f"cold pull of {image} to a usable rootfs ({len(fixtures.layer_blobs(image))} layer(s), "
                 f"{st['blob_bytes'] / 1e6:.1f} MB compressed, {st['bytes'] / 1e6:.0f} MB / {st['entries']:,} "
                 "entries unpacked), empty store each run")
        self.run_case(f"pull-{image}", title, self.pull_tools(image), runs)

    def case_run_warm(self, runs: int) -> None:
        ref = self.refs["busybox"]
        w = self.scratch / "warm"
        w.mkdir()
        notes = []
        # one-time set-up, untimed: each tool's store holds the image
        if self.ocibox_run == "ready":
            subprocess.run(self.ocibox(w / "store", "pull", ref), check=True, capture_output=True)
        subprocess.run([*self.podman(w), "pull", "-q", "--tls-verify=false", ref], check=True, capture_output=True)
        subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}",
                        f"oci:{w}/oci:t"], check=True)
        subprocess.run(["umoci", "unpack", "--image", f"{w}/oci:t", str(w / "bundle")], check=True,
                       capture_output=True)
        cfg_path = w / "bundle/config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["process"]["args"], cfg["process"]["terminal"] = ["true"], False
        cfg_path.write_text(json.dumps(cfg))
        n = [0]

        def cid(prefix: str) -> str:
            n[0] += 1
            return f"{prefix}-{os.getpid()}-{n[0]}"

        prun = [*self.podman(w), "run", "--rm", "--network", "none", *ULIMITS]
        tools = [
            self.ocibox_tool("ocibox", "`ocibox run --rm --network none`",
                             lambda d: self.ocibox(w / "store", "run", "--rm", "--network", "none", ref, "true"),
                             "run", mem=False),
            Tool("podman-crun", "`podman run --rm --network none` (crun" + CRUN_NOTE + ")",
                 lambda d: self.v1_view([*prun, "--runtime", "crun", ref, "true"]), mem=False),
            Tool("podman-runc", "`podman run --rm --network none` (runc)",
                 lambda d: [*prun, "--runtime", "runc", ref, "true"], mem=False),
            Tool("runc", "`runc run` of a prepared bundle",
                 lambda d: ["runc", "--root", str(w / "runc-state"), "run", "-b", str(w / "bundle"), cid("b")],
                 mem=False),
            Tool("crun", "`crun run` of a prepared bundle" + CRUN_NOTE,
                 lambda d: self.v1_view(["crun", "--root", str(w / "crun-state"), "run", "-b", str(w / "bundle"),
                                         cid("c")]), mem=False),
        ]
        res = self.run_case("run-warm", "warm `run ... true` of busybox, image already in each tool's store",
                            tools, runs)
        res.notes += notes
        if not self.args.keep:
            clean_tree(w)

    def case_run_cold(self, runs: int) -> None:
        for image in ("busybox", "debian-gzip"):
            if image not in self.refs:
                continue
            ref = self.refs[image]
            tools = [
                self.ocibox_tool("ocibox", "`ocibox run --rm --network none` (pulls)",
                                 lambda d, ref=ref: self.ocibox(d / "store", "run", "--rm", "--network", "none",  # type: ignore[misc]
                                                                ref, "true"), "run", mem=False),
                Tool("podman-runc", "`podman run --rm --network none` (runc, pulls)",
                     lambda d, ref=ref: self.private_bic(d, [*self.podman(d), "run", "--rm", "--network",  # type: ignore[misc]
                                                             "none", "--tls-verify=false", *ULIMITS, "--runtime",
                                                             "runc", ref, "true"]), mem=False),
            ]
            self.run_case(f"run-cold-{image}", f"cold run of {image} (pull + run `true` in one command), "
                          "empty store each run", tools, runs)

    def case_zstd_after_gzip(self, runs: int) -> None:
        gz, zs = self.refs["debian-gzip"], self.refs["debian-zstd"]
        marks: dict[Path, tuple[int, int]] = {}

        def layer_count(d: Path, which: str) -> int:
            p = d / ("store/layers" if which == "ocibox" else "p-root/overlay")
            if not p.is_dir():
                return 0
            return sum(1 for x in p.iterdir() if x.name != "l" and x.is_dir())

        def pre(which: str) -> Callable[[Path], None]:
            def f(d: Path) -> None:
                argv = (self.ocibox(d / "store", "pull", gz) if which == "ocibox"
                        else self.private_bic(d, [*self.podman(d), "pull", "--tls-verify=false", gz]))
                subprocess.run(argv, check=True, capture_output=True)
                marks[d] = (self.log_offset(), layer_count(d, which))
            return f

        def post(which: str) -> Callable[[Path, Sample], dict]:
            def f(d: Path, s: Sample) -> dict:
                off, before = marks[d]
                gets = blob_gets(self.log_since(off))
                return {**gets, "layers_before": before, "layers_after": layer_count(d, which)}
            return f

        tools = [
            self.ocibox_tool("ocibox", "`ocibox pull` zstd after gzip",
                             lambda d: self.ocibox(d / "store", "pull", zs), "pull", pre=pre("ocibox"),
                             post=post("ocibox")),
            Tool("podman", "`podman pull` zstd after gzip",
                 lambda d: self.private_bic(d, [*self.podman(d), "pull", "--tls-verify=false", zs]),
                 pre=pre("podman"), post=post("podman")),
        ]
        self.run_case("zstd-after-gzip", "pull of Debian zstd right after Debian gzip into the same store "
                      "(same diff ids); the gzip pull is untimed", tools, runs)

    def case_mem_2g(self, runs: int) -> None:
        big, small = self.refs["big2g"], self.refs["busybox"]
        st = fixtures.unpacked_stats("big2g")
        tools = [
            self.ocibox_tool("ocibox-small", "`ocibox pull` busybox",
                             lambda d: self.ocibox(d / "store", "pull", small), "pull"),
            self.ocibox_tool("ocibox-big", "`ocibox pull` 2 GB layer",
                             lambda d: self.ocibox(d / "store", "pull", big), "pull"),
            Tool("podman-small", "`podman pull` busybox",
                 lambda d: self.private_bic(d, [*self.podman(d), "pull", "--tls-verify=false", small])),
            Tool("podman-big", "`podman pull` 2 GB layer",
                 lambda d: self.private_bic(d, [*self.podman(d), "pull", "--tls-verify=false", big])),
        ]
        self.run_case("mem-2g", f"peak memory: pull of a one-layer image of {st['bytes'] / 1e9:.2f} GB "
                      f"({st['blob_bytes'] / 1e9:.2f} GB gzip) vs busybox, empty store each run", tools, runs)

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        if self.registry is not None:
            self.registry.stop()
            self.registry = None
        bad = self.meter.cleanup()
        for b in bad:
            say(f"WARNING: cgroup left behind: {b}")
        clean_tree(self.runroot_base)
        if self.args.keep:
            say(f"scratch kept in {self.scratch}")
        else:
            clean_tree(self.scratch)


def first_error(out: str) -> str:
    lines = [ln.strip() for ln in out.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.search(r"error|Error|ERRO|failed|not supported|No module|Traceback", ln):
            return ln[:200]
    return (lines[-1] if lines else "no output")[:200]


_ACCESS = re.compile(r'"(GET|HEAD) (/v2/[^ ]+) HTTP/[0-9.]+" (\d{3}) (\d+)')


def blob_gets(log: str) -> dict:
    """Count the registry's blob and manifest requests (and bytes sent) in an access-log excerpt."""
    out = {"blob_gets": 0, "blob_bytes": 0, "manifest_gets": 0, "requests": 0}
    for m in _ACCESS.finditer(log):
        method, path, status, size = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
        out["requests"] += 1
        if method != "GET" or status >= 400:
            continue
        if "/blobs/" in path:
            out["blob_gets"] += 1
            out["blob_bytes"] += size
        elif "/manifests/" in path:
            out["manifest_gets"] += 1
    return out


def clean_tree(path: Path) -> None:
    """Unmount whatever is mounted below ``path`` (deepest first), then remove it."""
    if not path.exists():
        return
    prefix = str(path).rstrip("/") + "/"
    for _ in range(3):
        mounts = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mp = line.split()[4].replace("\\040", " ")
            if mp.startswith(prefix) or mp == str(path):
                mounts.append(mp)
        if not mounts:
            break
        for mp in sorted(mounts, key=len, reverse=True):
            if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mp], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():  # immutable bits or busy files: report, do not hide
        say(f"WARNING: could not remove all of {path}")
    subprocess.run(["sync"])


# ----------------------------------------------------------------------------- report
def mib(b: int | None) -> str:
    return "" if b is None else f"{b / 2**20:.0f}"


def fmt_s(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.2f}"


def ratio_median(a: list[Sample], b: list[Sample]) -> float | None:
    n = min(len(a), len(b))
    if n == 0:
        return None
    return statistics.median(a[i].wall / b[i].wall for i in range(n))


def table(res: CaseResult, summary: list[str]) -> list[str]:
    summary += res.summary
    if not res.timed:
        return [f"### {res.title}", "", *res.lines, *(f"- {n}" for n in res.notes), ""]
    ours = res.samples.get("ocibox", [])
    show_mem = any(t.mem for t in res.tools)
    head = "| tool | median s | min s | max s |" + (" peak RSS tree MiB |" if show_mem else "") + \
        " ocibox / tool (median of per-round ratios) | target |"
    lines = [f"### {res.title}", "", head, "|" + "---|" * (head.count("|") - 1)]
    for t in res.tools:
        ss = res.samples[t.key]
        target = res.targets.get(t.key) or TARGETS.get((res.key, t.key))
        tgt = f"<= {target}x" if target else ""
        if t.na or (t.key in res.failed and not ss):
            why = t.na or f"failed: {res.failed[t.key]}"
            if target:
                summary.append(f"| {res.key}: ocibox / {t.label} | <= {target}x | peer {why[:90]} | "
                               "not measurable |")
            lines.append(f"| {t.label} | {why} | | |" + (" |" if show_mem else "") + f" | {tgt} |")
            continue
        walls = [s.wall for s in ss]
        mem = ""
        if show_mem:
            rss = [s.tree_rss for s in ss if s.tree_rss]
            mem = f" {mib(int(statistics.median(rss))) if rss else ''} |"
        r = ratio_median(ours, ss) if t.key != "ocibox" else None
        rtxt = "" if r is None else f"{r:.2f}x"
        if target and r is not None:
            tgt += " **met**" if r <= target else " **MISSED**"
            summary.append(f"| {res.key}: ocibox / {t.label} | <= {target}x | {r:.2f}x | "
                           f"{'met' if r <= target else '**MISSED**'} |")
        elif target:
            summary.append(f"| {res.key}: ocibox / {t.label} | <= {target}x | "
                           "ocibox not measured | not measurable |")
        lines.append(f"| {t.label} | {fmt_s(statistics.median(walls))} | {fmt_s(min(walls))} | "
                     f"{fmt_s(max(walls))} |{mem} {rtxt} | {tgt} |")
    if res.key == "run-warm" and ours:
        med = statistics.median(s.wall for s in ours)
        r = med / ISSUE_PODMAN_CRUN_WARM
        lines.append(f"| (issue's podman+crun figure, {ISSUE_PODMAN_CRUN_WARM} s, from an idle machine) | | | |"
                     f" {r:.2f}x | <= 0.5x {'**met**' if r <= 0.5 else '**MISSED**'} |")
        summary.append(f"| run-warm: ocibox / podman+crun as the issue quotes it ({ISSUE_PODMAN_CRUN_WARM} s, "
                       f"another machine state, not this run) | <= 0.5x | {r:.2f}x ({med:.3f} s) | "
                       f"{'met' if r <= 0.5 else '**MISSED**'} |")
    if res.key == "zstd-after-gzip":
        lines += ["", "| tool | blob GETs | blob bytes downloaded | manifest GETs | layer dirs before -> after |",
                  "|---|---|---|---|---|"]
        for t in res.tools:
            ex = res.extras[t.key]
            if not ex:
                continue
            e = ex[-1]
            if t.key == "ocibox":
                only = e["blob_gets"] <= 1 and e["manifest_gets"] <= 2 and e["layers_after"] == e["layers_before"]
                summary.append(f"| zstd-after-gzip: ocibox downloads only manifest + config | that only | "
                               f"{e['blob_gets']} blob GET(s), {e['blob_bytes']:,} bytes, layers "
                               f"{e['layers_before']} -> {e['layers_after']} | {'met' if only else '**MISSED**'} |")
            lines.append(f"| {t.label} | {e['blob_gets']} | {e['blob_bytes']:,} | {e['manifest_gets']} | "
                         f"{e['layers_before']} -> {e['layers_after']} |")
    if res.key == "mem-2g":
        lines += ["", "| tool | peak RSS tree MiB (median) | peak anon (cgroup) MiB | cgroup peak incl. page cache MiB "
                  "|", "|---|---|---|---|"]
        for t in res.tools:
            ss = res.samples[t.key]
            if not ss:
                continue

            def med(attr: str, ss: list[Sample] = ss) -> str:
                v = [getattr(s, attr) for s in ss if getattr(s, attr)]
                return mib(int(statistics.median(v))) if v else ""
            lines.append(f"| {t.label} | {med('tree_rss')} | {med('anon')} | {med('cgroup_peak')} |")
        lines.append("")
        for who in ("ocibox", "podman"):
            a, b = res.samples.get(f"{who}-big", []), res.samples.get(f"{who}-small", [])
            if a and b:
                ra = statistics.median(s.tree_rss or 0 for s in a) / statistics.median(s.tree_rss or 1 for s in b)
                tgt = f" (target <= 1.5x: {'**met**' if ra <= 1.5 else '**MISSED**'})" if who == "ocibox" else ""
                if who == "ocibox":
                    summary.append(f"| mem-2g: ocibox peak RSS, 2 GB layer / busybox | <= 1.5x | {ra:.2f}x | "
                                   f"{'met' if ra <= 1.5 else '**MISSED**'} |")
                lines.append(f"- {who}: peak RSS 2 GB layer / busybox = {ra:.2f}x{tgt}")
    lines += res.lines
    for note in res.notes:
        lines.append(f"- {note}")
    failed_after = [k for k in res.failed if res.samples[k]]
    for k in failed_after:
        lines.append(f"- {k} failed in a later round: {res.failed[k]}")
    lines.append("")
    return lines


def git_rev() -> str:
    r = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "ocibox"],
                           capture_output=True, text=True).stdout.strip()
    return r.stdout.strip()[:100] + (" + uncommitted changes in ocibox/" if dirty else "")


def machine_facts(meter: Meter, rev_start: str) -> list[str]:
    def out(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    mem = next((ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")), "")
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "?")
    rootfs = next((ln for ln in Path("/proc/mounts").read_text().splitlines() if ln.split()[1] == "/"), "?")
    rev = git_rev()
    facts = [
        f"- machine: {os.cpu_count()} CPUs ({cpu}), {int(mem.split()[1]) / 2**20:.1f} GiB RAM, "
        f"kernel {platform.release()}, / is `{' '.join(rootfs.split()[2:4])}`",
        f"- cgroups: {'hybrid (v1 controllers + unified)' if Path('/sys/fs/cgroup/unified').is_dir() else 'see /proc/mounts'}; "
        f"memory measured by {meter.how}",
        f"- ocibox: {rev}, Python {platform.python_version()}" + (
            f" (WARNING: the checkout moved during the run; it started at {rev_start})" if rev != rev_start else ""),
        "- peers: " + "; ".join([
            out(["podman", "--version"]), out(["skopeo", "--version"]), out(["umoci", "--version"]),
            out(["runc", "--version"]), out(["crun", "--version"]), out(["tar", "--version"]),
            out(["zstd", "--version"]).replace("*", "").strip(), out(["gzip", "--version"]),
            out(["docker-registry", "--version"]).replace("github.com/docker/distribution ", ""),
        ]),
    ]
    return facts


METHOD = ("Each case: 1 warm-up round, then the given rounds, tools alternating A B C ... within a round, each "
          "started once every process the previous command left behind has exited (podman's conmon and "
          "`podman container cleanup` outlive `podman run --rm`; the harness is their subreaper and waits; "
          "not with --back-to-back), "
          "from a fresh empty directory on the ext4 disk; registry: Debian's docker-registry on 127.0.0.1. Ratios "
          "are medians of the per-round ratios ocibox/peer. Peak RSS is the max over 20 ms samples of the summed "
          "VmRSS of every process of the command's tree (found through a fresh memory cgroup). podman pulls run "
          "with a private, empty blob-info cache (bind mount in a private mount namespace: `unshare -m`).")


def report(bench: Bench, argv: list[str], started: float, *, script: str = "run.py",
           heading: str = "Targets of issue 6", method: str = METHOD) -> str:
    lines = ["# ocibox benchmarks", "",
             f"Command: `.venv/bin/python benchmarks/{script} {' '.join(argv)}`", "",
             f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, "
             f"took {(time.time() - started) / 60:.1f} min. {method}",
             "", *machine_facts(bench.meter, bench.rev_start),
             f"- ocibox readiness at start: pull {bench.ocibox_pull}; run {bench.ocibox_run}", ""]
    summary: list[str] = []
    body: list[str] = []
    for res in bench.results:
        body += [f"## {res.key} ({res.runs} runs)", "", *table(res, summary)]
    if summary:
        lines += [f"## {heading}", "", "| target | wanted | measured (median) | |", "|---|---|---|---|",
                  *summary, ""]
    lines += body
    return "\n".join(lines) + "\n"


def raw(bench: Bench) -> dict:
    return {r.key: {"title": r.title, "failed": r.failed, "extras": r.extras,
                    "samples": {k: [asdict(s) | {"out": ""} for s in v] for k, v in r.samples.items()}}
            for r in bench.results}


# ----------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=None, help="timed rounds per case (default 5; --quick: 3)")
    ap.add_argument("--cases", default="", help="comma-separated: " + ",".join(ALL_CASES))
    ap.add_argument("--quick", action="store_true", help="busybox + Debian gzip cases, 3 runs")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (debugging)")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="S",
                    help="before each case wait up to S seconds for the 1-min load average to drop below 1")
    ap.add_argument("--serve", action="store_true",
                    help="only start the registry with the fixtures, print their references, wait (for profiling)")
    ap.add_argument("--out", default=str(HERE / "results" / "latest.md"), help="where to write the tables")
    ap.add_argument("--back-to-back", action="store_true",
                    help="start each command as soon as the previous returned, even while what it left behind "
                         "still runs (podman's cleanup): the method of the issues' first figures")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("Error: the benchmarks need root (podman, runc, mounts, cgroups); run them as root", file=sys.stderr)
        return 2
    cases = [c for c in args.cases.split(",") if c] or (QUICK_CASES if args.quick else ALL_CASES)
    unknown = [c for c in cases if c not in ALL_CASES]
    if unknown:
        print(f"Error: unknown case(s) {', '.join(unknown)}; choose from {', '.join(ALL_CASES)}", file=sys.stderr)
        return 2
    runs = args.runs or (3 if args.quick else 5)
    started = time.time()
    images = ["busybox", *sorted({i for c in cases for i in CASE_IMAGES[c]} - {"busybox"})]

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    bench = Bench(args)
    try:
        bench.start_registry(images)
        if args.serve:
            for ref in bench.refs.values():
                print(ref, flush=True)
            say("serving; Ctrl-C or SIGTERM to stop")
            signal.pause()
        bench.check_ocibox()
        for c in cases:
            if c.startswith("pull-"):
                bench.case_pull(c[len("pull-"):], runs)
            elif c == "run-warm":
                bench.case_run_warm(runs)
            elif c == "run-cold":
                bench.case_run_cold(runs)
            elif c == "zstd-after-gzip":
                bench.case_zstd_after_gzip(runs)
            elif c == "mem-2g":
                bench.case_mem_2g(min(runs, 3))
    except KeyboardInterrupt:
        say("interrupted; writing what was measured")
    finally:
        text = report(bench, sys.argv[1:], started)
        bench.close()
    if args.serve:
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(raw(bench), indent=1))
    print(text)
    say(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
