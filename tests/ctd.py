"""A private containerd 1.6 (Debian's) for tests and benchmarks: its own root, state, socket and config
file, a busybox image imported into it from an OCI archive made by tests/oci.py, and ``ctr`` bound to
its address. ocibox-runtime reaches the shim as ``--runc-binary`` through a small wrapper script that
runs this checkout's ``ocibox.runtime`` with this interpreter (and logs each call's arguments).

Nothing here uses ocibox code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import oci

REPO = Path(__file__).resolve().parents[1]
IMAGE = "docker.io/library/busybox:latest"
PAUSE = "docker.io/library/pause:latest"


def wrapper(path: Path, calls: Path | None = None, python: str = sys.executable, repo: Path = REPO) -> Path:
    """A runc-compatible binary path that runs ocibox-runtime from ``repo``; each call appended to ``calls``."""
    log = f'printf "%s\\t%s\\n" "$PWD" "$*" >> {calls}\n' if calls else ""
    path.write_text(f"#!/bin/sh\n{log}PYTHONPATH={repo} exec {python} -m ocibox.runtime \"$@\"\n")
    path.chmod(0o755)
    return path


def busybox_archive(dest: Path, name: str = IMAGE, cmd: list[str] | None = None) -> Path:
    """An OCI archive (what ``ctr image import`` reads) of tests/oci.py's busybox layer, named ``name``."""
    lay = oci.Layout(dest.with_suffix(".layout"))
    cfg = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": cmd or ["/bin/sh"]}
    desc = dict(lay.add_manifest([oci.Layer(oci.busybox_layer())], config_obj=cfg))
    desc["annotations"] = {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest"}
    (lay.path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    with tarfile.open(dest, "w") as tf:
        tf.add(str(lay.path), arcname=".")
    return dest


class Containerd:
    """One private containerd. ``ctr(...)`` runs ctr against it in namespace ``ns``; ``runc_args`` are the
    flags that make ``ctr run`` use ``binary`` with a private runtime root."""

    def __init__(self, base: Path, ns: str = "ocibox-test", cri_runtimes: dict[str, str] | None = None) -> None:
        self.base, self.ns = base, ns
        self.sock = base / "ctd.sock"
        self.runc_root = base / "runc-root"
        self.fifo = base / "fifo"
        self.log = base / "containerd.log"
        self.config = base / "config.toml"
        self.proc: subprocess.Popen[bytes] | None = None
        cri = ""
        if cri_runtimes is None:
            disabled = 'disabled_plugins = ["io.containerd.grpc.v1.cri"]'
        else:
            disabled = ""
            (base / "cni").mkdir(exist_ok=True)
            cri = (f'[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "{PAUSE}"\n'
                   '  restrict_oom_score_adj = true\n  disable_apparmor = true\n'
                   f'[plugins."io.containerd.grpc.v1.cri".cni]\n  conf_dir = "{base}/cni"\n  bin_dir = "{base}/cni"\n')
            # naming the runtimes replaces the default table: the default must be one of them
            cri += (f'[plugins."io.containerd.grpc.v1.cri".containerd]\n'
                    f'  default_runtime_name = "{next(iter(cri_runtimes))}"\n')
            for name, binary in cri_runtimes.items():
                key = f'[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}'
                cri += (f'{key}]\n  runtime_type = "io.containerd.runc.v2"\n'
                        f'{key}.options]\n  BinaryName = "{binary}"\n  Root = "{self.runc_root}"\n')
        self.config.write_text(f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\n{disabled}\n'
                               f'[grpc]\n  address = "{self.sock}"\n[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
                               f'[debug]\n  level = "info"\n{cri}')

    def start(self) -> Containerd:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["containerd", "--config", str(self.config)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            if self.sock.exists() and self.ctr("version", check=False).returncode == 0:
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM to containerd alone: shims and their containers keep running."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def ctr(self, *args: str, check: bool = True, timeout: float = 60, ns: str | None = None,
            **kw: object) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["ctr", "--address", str(self.sock), "-n", ns or self.ns, *args], capture_output=True,
                           text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
        if check and r.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)}: rc {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r  # type: ignore[no-any-return]

    def import_image(self, archive: Path, ns: str | None = None) -> None:
        self.ctr("image", "import", str(archive), ns=ns, timeout=120)

    def runc_args(self, binary: Path | str) -> list[str]:
        return ["--runc-binary", str(binary), "--runc-root", str(self.runc_root), "--fifo-dir", str(self.fifo)]

    def shims(self) -> list[int]:
        """Pids of the shims that serve this containerd (their command line names its address)."""
        out = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and str(self.sock).encode() in cmd:
                out.append(int(pid))
        return out
