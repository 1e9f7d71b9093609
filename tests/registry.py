"""Start Debian's docker-registry (the CNCF distribution registry) on 127.0.0.1 for tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """One registry process. ``auth`` is a YAML fragment for the ``auth:`` section, or empty;
    ``extra`` is more top-level YAML appended to the config (e.g. a ``validation:`` section)."""

    def __init__(self, root: Path, auth: str = "", port: int | None = None, extra: str = "") -> None:
        self.root = root
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "config.yml"
        self.config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
            + (f"auth:\n{auth}" if auth else "")
            + extra
        )
        self.log = root / "registry.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def external(cls, host: str, log: Path) -> Registry:
        """A registry started outside the tests (scripts/test); never stopped by them."""
        reg = cls.__new__(cls)
        reg.root = log.parent
        reg.host = host
        reg.port = int(host.rsplit(":", 1)[1])
        reg.config = log.parent / "config.yml"
        reg.log = log
        reg.proc = None
        return reg

    def start(self) -> Registry:
        exe = shutil.which("docker-registry") or "/usr/bin/docker-registry"
        logf = open(self.log, "ab")  # noqa: SIM115 - handed to the child, closed by stop()
        self.proc = subprocess.Popen([exe, "serve", str(self.config)], stdout=logf,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://{self.host}/v2/", timeout=1)
                return self
            except httpx.HTTPError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"registry exited: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.05)
        raise RuntimeError("registry did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def access_log(self) -> str:
        return self.log.read_text(errors="replace")
