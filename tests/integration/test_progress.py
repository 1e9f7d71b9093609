"""What ``ocibox pull`` shows on a terminal: tqdm bars per layer and a total on stderr, docker's
status lines on stdout; nothing but the digest with ``--quiet``. The terminal is a real pty; the
image (two layers of random bytes, so that gzip keeps them big) is pushed by skopeo."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
from pathlib import Path

import oci
import pytest
from cli import ocibox_popen
from registry import Registry


@pytest.fixture(scope="module")
def big_ref(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    layers = [oci.Layer(oci.make_tar([oci.Entry(f"blob{i}", data=os.urandom(6 << 20))])) for i in range(2)]
    oci.push_image(tmp_path_factory.mktemp("progress"), registry.host, "progress:latest", layers)
    shorts = [oci.sha256(layer.blob).removeprefix("sha256:")[:12] for layer in layers]
    return f"{registry.host}/progress:latest", shorts


def _pull_on_a_pty(root: Path, ref: str, *flags: str, size: tuple[int, int] | None) -> tuple[str, str, int]:
    """Run the pull with stderr on a pty (of ``size`` rows x columns, or never sized); return what
    the terminal received, stdout, and the exit status."""
    master, slave = pty.openpty()
    if size is not None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    p = ocibox_popen(root, "pull", *flags, ref, stdin=subprocess.DEVNULL, stderr=slave, text=False)
    os.close(slave)
    screen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the last writer closed the pty
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    assert p.stdout is not None
    out = p.stdout.read().decode()
    return screen.decode(errors="replace"), out, p.wait(timeout=120)


@pytest.mark.parametrize("size", [(24, 100), None], ids=["sized", "unsized"])
def test_bars_on_a_terminal(big_ref: tuple[str, list[str]], tmp_path: Path, size: tuple[int, int] | None) -> None:
    ref, shorts = big_ref
    screen, out, code = _pull_on_a_pty(tmp_path / "s", ref, size=size)
    assert code == 0, screen
    for short in shorts:  # a bar per layer, with tqdm's percentage and sizes
        assert f"{short}:" in screen and "/6.0" in screen, screen[:2000]
    assert "total:" in screen and "%|" in screen and "\x1b[A" in screen  # stacked bars, cursor moved up
    lines = out.splitlines()
    assert lines[0] == "latest: Pulling from progress" and lines[-2].startswith("Digest: sha256:"), out
    assert lines[-1] == f"Status: Downloaded newer image for {ref}" and "Pulling fs layer" not in out


def test_quiet_draws_nothing(big_ref: tuple[str, list[str]], tmp_path: Path) -> None:
    ref, _ = big_ref
    screen, out, code = _pull_on_a_pty(tmp_path / "s", ref, "--quiet", size=(24, 100))
    assert code == 0 and screen == "" and out.startswith("sha256:") and out.count("\n") == 1, (screen, out)
