from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry import Registry


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-HTTP distribution registry on 127.0.0.1 shared by the session.

    scripts/test (and so CI) starts one and names it in $OCIBOX_TEST_REGISTRY; otherwise the
    session starts its own.
    """
    ext = os.environ.get("OCIBOX_TEST_REGISTRY")
    if ext:
        yield Registry.external(ext, Path(os.environ.get("OCIBOX_TEST_REGISTRY_LOG", "/dev/null")))
        return
    reg = Registry(tmp_path_factory.mktemp("registry")).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session", autouse=True)
def network_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's own network config directory ($OCIBOX_CONFIG_DIR): containers run by the tests
    (the default network is a bridge) never touch /etc/ocibox, and every network the session made,
    with its bridge and rules, is removed at its end."""
    old = os.environ.get("OCIBOX_CONFIG_DIR")
    config = tmp_path_factory.mktemp("ocibox-config")
    os.environ["OCIBOX_CONFIG_DIR"] = str(config)
    try:
        yield config
    finally:
        if (config / "networks").is_dir() and os.geteuid() == 0:
            from ocibox import network
            from ocibox.errors import OciboxError
            from ocibox.settings import Settings

            settings = Settings(root=tmp_path_factory.mktemp("network-teardown"))
            for n in network.ls(settings):
                try:
                    network.rm(settings, [n.name])
                except OciboxError as e:
                    print(f"network {n.name} left behind: {e}", file=sys.stderr)
        if old is None:
            os.environ.pop("OCIBOX_CONFIG_DIR", None)
        else:
            os.environ["OCIBOX_CONFIG_DIR"] = old


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process of no importance (``sleep 120``), killed after the test: a pid that is running."""
    p = subprocess.Popen(["sleep", "120"])
    yield p
    p.kill()
    p.wait()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="privileged tests need root")
        for item in items:
            if "privileged" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def busybox_ref(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/oci.busybox_layer() pushed (by skopeo) to the session registry as busybox:latest;
    returns ``127.0.0.1:PORT/busybox:latest``."""
    import oci

    oci.push_image(tmp_path_factory.mktemp("busybox-layout"), registry.host, "busybox:latest",
                   [oci.Layer(oci.busybox_layer())])
    return f"{registry.host}/busybox:latest"


@pytest.fixture
def pulled_busybox(store_root: Path, busybox_ref: str) -> tuple[Path, str]:
    """busybox pulled into ``store_root`` by the CLI (a subprocess); returns (store_root, ref)."""
    from cli import ocibox

    ocibox(store_root, "pull", "-q", busybox_ref, check=True)
    return store_root, busybox_ref


# ----------------------------------------------------------------------------- a real Debian image
DEBIAN_CACHE = Path(os.environ.get("OCIBOX_TEST_CACHE", "/var/cache/ocibox-tests"))
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_COMPLETE = ".ocibox-complete"


def _umount_under(path: Path) -> None:
    """Detach whatever an interrupted debootstrap left mounted under ``path`` (its /proc, /sys)."""
    prefix = str(path.resolve())
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for mp in sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], check=False, capture_output=True)


def build_debian_rootfs(dest: Path = DEBIAN_CACHE / "debian-bookworm") -> Path:
    """``debootstrap --variant=minbase --include=python3-minimal bookworm`` into ``dest``, once per machine.

    Built in a temporary sibling directory, renamed into place, and only then marked complete (a file
    written last), so an interrupted build is never taken as complete: without the marker the tree is
    deleted and built again. A failed build fails the calling test with the tail of debootstrap's log.
    """
    import fcntl
    import shutil
    import tempfile

    if (dest / DEBIAN_COMPLETE).exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f"{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session on this machine may be building it
        if (dest / DEBIAN_COMPLETE).exists():
            return dest
        for stale in [dest, *dest.parent.glob(f"{dest.name}.tmp-*")]:
            if stale.exists():
                _umount_under(stale)
                shutil.rmtree(stale)
        tmp = Path(tempfile.mkdtemp(prefix=f"{dest.name}.tmp-", dir=dest.parent))
        log = dest.parent / f"{dest.name}.debootstrap.log"
        cmd = ["debootstrap", "--variant=minbase", "--include=python3-minimal", "bookworm", str(tmp), DEBIAN_MIRROR]
        try:
            with open(log, "wb") as out:
                rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=1800).returncode
        except subprocess.TimeoutExpired:
            rc = -1
        if rc != 0:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            inner = tmp / "debootstrap/debootstrap.log"
            if inner.exists():
                tail += ["--- debootstrap/debootstrap.log:", *inner.read_text(errors="replace").splitlines()[-15:]]
            _umount_under(tmp)
            shutil.rmtree(tmp, ignore_errors=True)
            pytest.fail(f"{' '.join(cmd)} failed (exit {rc}); log {log}:\n" + "\n".join(tail), pytrace=False)
        _umount_under(tmp)
        shutil.rmtree(tmp / "var/cache/apt/archives", ignore_errors=True)
        (tmp / "var/cache/apt/archives/partial").mkdir(parents=True)
        (tmp / "etc/resolv.conf").write_text("")  # debootstrap copied the host's; the image must not carry it
        for lst in (tmp / "var/lib/apt/lists").iterdir():  # 49 MB of package lists, dropped as Docker's are
            if lst.is_file() and lst.name != "lock":
                lst.unlink()
        os.chmod(tmp, 0o755)  # mkdtemp made it 0700; it becomes the image's /
        os.rename(tmp, dest)
        os.sync()  # the tree on disk before the marker says it is complete
        with open(dest / DEBIAN_COMPLETE, "w") as f:
            f.write(" ".join(cmd) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return dest


@pytest.fixture(scope="session")
def debian_rootfs() -> Path:
    """A debootstrap minbase bookworm rootfs with python3, cached in /var/cache/ocibox-tests (see
    build_debian_rootfs; ~90 s the first time on a machine, nothing after). Treat it as read-only."""
    return build_debian_rootfs()


def _debian_layer(root: Path, members: list[str], exclude: list[str]) -> tuple[bytes, str]:
    """GNU tar (pax, numeric owners) of ``members`` under ``root``; returns (zstd level 1 blob, diff id)."""
    import hashlib

    import zstandard

    cmd = ["tar", "-C", str(root), "--format=pax", "--numeric-owner", "--anchored", "-cf", "-"]
    cmd += [f"--exclude={e}" for e in exclude] + members
    tar = subprocess.run(cmd, check=True, capture_output=True, timeout=300).stdout
    blob = zstandard.ZstdCompressor(level=1, threads=-1).compress(tar)
    return blob, "sha256:" + hashlib.sha256(tar).hexdigest()


@pytest.fixture(scope="session")
def debian_image(debian_rootfs: Path, registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``debian_rootfs`` as a 3-layer image (base / usr/share / usr/lib, zstd level 1, GNU tar with
    ./-prefixed names as docker's are) pushed by skopeo to the session registry; returns
    ``127.0.0.1:PORT/debian:bookworm``. /dev, /proc and /sys go in empty, as in Docker's Debian images."""
    import json

    import oci

    split = ["./usr/share", "./usr/lib"]
    empty = ["./dev/*", "./proc/*", "./sys/*", f"./{DEBIAN_COMPLETE}"]
    layers = [_debian_layer(debian_rootfs, ["."], split + empty)] + [_debian_layer(debian_rootfs, [p], [])
                                                                      for p in split]
    lay = oci.Layout(tmp_path_factory.mktemp("debian-layout"))
    config = oci.image_config([d for _, d in layers], config={
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["bash"]})
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
        "config": {"mediaType": oci.OCI_CONFIG, "digest": lay.put(config), "size": len(config)},
        "layers": [{"mediaType": oci.LAYER_TYPES["zstd"], "digest": lay.put(b), "size": len(b)} for b, _ in layers],
    }).encode()
    lay.tag({"mediaType": oci.OCI_MANIFEST, "digest": lay.put(manifest), "size": len(manifest)}, "t")
    oci.skopeo_push(lay.path, "t", f"{registry.host}/debian:bookworm")
    return f"{registry.host}/debian:bookworm"
