"""ocibox-runtime against runc (Debian's 1.1) side by side, alternating the two each round after a warm-up:

1. lifecycle: ``create`` + ``start`` + wait + ``delete`` of a prepared busybox bundle (runc spec's default
   config.json running ``true``), timed per phase (issue 15's target: at most 3x runc);
2. ``ctr run --rm`` of busybox ``true`` through a private containerd 1.6 (tests/ctd.py), ``--runc-binary``
   runc or ocibox-runtime (target: at most 1.5x);
3. where ocibox-runtime's time goes: the interpreter's start, its imports (``python -X importtime``), and
   the phases above.

ocibox-runtime is the installed script, what containerd's BinaryName names (this venv's
``bin/ocibox-runtime``, when that venv has this checkout installed; else ``python -m ocibox.runtime``,
through a shell wrapper for ctr, and the table says so).

Usage (root): ``.venv/bin/python benchmarks/runtime.py [--rounds N] [--python PY]``; writes
benchmarks/results/runtime.md. ``--python``: time the ocibox-runtime of another venv's interpreter (one
with this checkout installed, e.g. a venv of Debian's python3 beside the pyenv one).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

import bundle  # noqa: E402
import ctd  # noqa: E402

PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def installed(py: str) -> Path | None:
    """The ocibox-runtime script of ``py``'s venv, if that venv runs this checkout's ocibox without
    PYTHONPATH (as containerd's shim runs it)."""
    script = Path(py).parent / "ocibox-runtime"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([py, "-c", "import ocibox; print(ocibox.__file__)"], env=env, capture_output=True, text=True)
    here = Path(r.stdout.strip()).resolve().parent.parent == REPO.resolve() if r.returncode == 0 else False
    return script if script.is_file() and here else None


INSTALLED = installed(PY)
OCIBOX = [str(INSTALLED)] if INSTALLED else [PY, "-m", "ocibox.runtime"]


def lifecycle(runtime: list[str], root: Path, b: Path, cid: str) -> dict[str, float]:
    """One create/start/wait/delete; seconds per phase. This process is the subreaper that waits."""
    t: dict[str, float] = {}
    pidfile = root / f"{cid}.pid"

    def call(*args: str) -> None:
        # stderr to a file, not a pipe: the created container keeps it open until it exits
        with tempfile.TemporaryFile() as err:
            r = subprocess.run([*runtime, "--root", str(root), *args], env=ENV, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=err)
            if r.returncode:
                err.seek(0)
                raise RuntimeError(f"{runtime[0]} {args[0]}: {err.read().decode()}")

    t0 = time.perf_counter()
    call("create", "--bundle", str(b), "--pid-file", str(pidfile), cid)
    t1 = time.perf_counter()
    call("start", cid)
    t2 = time.perf_counter()
    os.waitpid(int(pidfile.read_text()), 0)
    t3 = time.perf_counter()
    call("delete", cid)
    t4 = time.perf_counter()
    t.update(create=t1 - t0, start=t2 - t1, wait=t3 - t2, delete=t4 - t3, total=t4 - t0)
    return t


def ctr_run(c: ctd.Containerd, binary: str, cid: str) -> float:
    t0 = time.perf_counter()
    c.ctr("run", "--rm", *c.runc_args(binary), ctd.IMAGE, cid, "true")
    return time.perf_counter() - t0


def importtime() -> list[tuple[int, str]]:
    """The heaviest top-level imports of ``ocibox-runtime delete --force`` of a gone id (cumulative
    microseconds): what every call pays before its own work."""
    entry = [str(INSTALLED)] if INSTALLED else ["-m", "ocibox.runtime"]
    r = subprocess.run([PY, "-X", "importtime", *entry, "--root", "/nonexistent", "delete", "--force", "x"],
                       env=ENV, capture_output=True, text=True)
    rows = []
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cum, name = (x.strip() for x in line.removeprefix("import time:").split("|"))
        if cum.isdigit() and not name.startswith(" ") and name.count(".") <= 1:
            rows.append((int(cum), name))
    return sorted(rows, reverse=True)[:8]


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", default=str(HERE / "results" / "runtime.md"))
    ap.add_argument("--python", default=sys.executable, help="whose venv's ocibox-runtime to time (default: this one)")
    opts = ap.parse_args()
    global PY, INSTALLED, OCIBOX
    if opts.python != PY:
        PY = opts.python
        INSTALLED = installed(PY)
        OCIBOX = [str(INSTALLED)] if INSTALLED else [PY, "-m", "ocibox.runtime"]
    # bytecode ahead of time, as scripts/install-deps does (PYTHONDONTWRITEBYTECODE may be set)
    subprocess.run([PY, "-m", "compileall", "-q", str(REPO / "ocibox")], check=True)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: PID 1 of each container is reparented to us
    work = Path(tempfile.mkdtemp(prefix="ocibox-bench-rt-"))
    lines: list[str] = []
    try:
        rootfs = bundle.rootfs(work / "rootfs")
        bundles = {who: bundle.make(work / f"b-{who}", rootfs, ["true"]) for who in ("runc", "ocibox")}
        tools = {"runc": ["runc"], "ocibox": OCIBOX}
        phases: dict[str, dict[str, list[float]]] = {w: {} for w in tools}
        for i in range(opts.rounds + 1):
            for who, cmd in tools.items():
                t = lifecycle(cmd, work / f"state-{who}", bundles[who], f"bench-{who}-{i}")
                if i == 0:
                    continue  # warm-up
                for k, v in t.items():
                    phases[who].setdefault(k, []).append(v)
        ratios = [o / r for o, r in zip(phases["ocibox"]["total"], phases["runc"]["total"], strict=True)]
        # the interpreter alone, and the imports
        bare = []
        for _ in range(opts.rounds):
            t0 = time.perf_counter()
            subprocess.run([PY, "-c", "pass"], check=True)
            bare.append(time.perf_counter() - t0)

        (work / "ctd").mkdir()
        c = ctd.Containerd(work / "ctd", ns="bench").start()
        try:
            c.import_image(ctd.busybox_archive(work / "busybox.tar"))
            wrapper = INSTALLED or ctd.wrapper(work / "ocibox-runtime", python=PY, repo=REPO)
            runs: dict[str, list[float]] = {"runc": [], "ocibox": []}
            for i in range(opts.rounds + 1):
                for who, binary in (("runc", shutil.which("runc") or "runc"), ("ocibox", str(wrapper))):
                    t = ctr_run(c, binary, f"ctr-{who}-{i}")
                    if i:
                        runs[who].append(t)
            ctr_ratios = [o / r for o, r in zip(runs["ocibox"], runs["runc"], strict=True)]
        finally:
            c.stop()
            for hier in Path("/sys/fs/cgroup").iterdir():  # the namespace's parent cgroup, made by the runtimes
                if (hier / "bench").is_dir():
                    subprocess.run(["rmdir", str(hier / "bench")], check=False, capture_output=True)

        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        runc_v = subprocess.run(["runc", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        py_v = subprocess.run([PY, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                              text=True).stdout.strip()
        lines += [
            f"# ocibox-runtime vs runc ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, ocibox at {rev}, "
            f"{runc_v}, containerd 1.6, {opts.rounds} rounds after a warm-up, medians; ocibox-runtime run as "
            + ("the installed script" if INSTALLED else "`python -m ocibox.runtime`") + f" of {PY}, Python {py_v})", "",
            "| case | ocibox-runtime | runc | ratio (median of per-round ratios) | target |",
            "|---|---|---|---|---|",
            f"| create+start+wait+delete, busybox `true` | {med(phases['ocibox']['total']) * 1000:.1f} ms | "
            f"{med(phases['runc']['total']) * 1000:.1f} ms | {med(ratios):.2f}x | <= 3x: "
            f"{'met' if med(ratios) <= 3 else 'NOT met'} |",
            f"| `ctr run --rm` busybox `true` | {med(runs['ocibox']) * 1000:.0f} ms | {med(runs['runc']) * 1000:.0f} ms"
            f" | {med(ctr_ratios):.2f}x | <= 1.5x: {'met' if med(ctr_ratios) <= 1.5 else 'NOT met'} |", "",
            "Per phase (median ms):", "",
            "| phase | ocibox-runtime | runc |", "|---|---|---|",
            *(f"| {k} | {med(phases['ocibox'][k]) * 1000:.1f} | {med(phases['runc'][k]) * 1000:.1f} |"
              for k in ("create", "start", "wait", "delete")),
            "", f"`python -c pass`: {med(bare) * 1000:.1f} ms (each of the 4 calls pays it). Heaviest imports of "
            "`ocibox-runtime delete --force` of a gone id (cumulative us): "
            + ", ".join(f"{name} {us}" for us, name in importtime()), "",
            "Command: `sudo .venv/bin/python benchmarks/runtime.py --rounds " + str(opts.rounds)
            + (f" --python {PY}" if sys.executable != PY else "") + "`",
        ]
        text = "\n".join(lines) + "\n"
        Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
        Path(opts.out).write_text(text)
        sys.stdout.write(text)
        sys.stdout.write(json.dumps({"phases": phases, "ctr": runs}) + "\n" if os.environ.get("BENCH_RAW") else "")
    finally:
        for m in reversed([ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()
                           if str(work) in ln]):
            subprocess.run(["umount", "-l", m], check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
