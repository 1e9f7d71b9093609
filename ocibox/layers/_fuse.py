"""The rootfs of a container without root where the kernel refuses overlayfs in a user namespace
(before Linux 5.11, or a store on a filesystem it does not take): fuse-overlayfs, as podman falls back.

Which one a store gets is probed once per kernel (``rootless_overlay``: a real mount of each, as root of
a user namespace with the user's ids) and kept in ``<store>/overlay-rootless.json``;
``OCIBOX_ROOTLESS_OVERLAY=kernel|fuse`` forces one (tests). Where neither mounts, a RootlessError says so.

With fuse-overlayfs the mount cannot be made in the container's own mount namespace by its PID 1 (the
FUSE daemon would be a process of the container). ``FuseRootfs`` starts a holder process H instead: root
of a new user namespace with the container's maps and of a new mount namespace, where it runs
fuse-overlayfs in the foreground (tied to H by PR_SET_PDEATHSIG) on the container's rootfs directory.
The container then joins, by path (the OCI config's way), H's user namespace and a copy of H's mount namespace
held by a child of H: PID 1's mounts and pivot_root happen there, out of the daemon's way (a pivot_root
moves the root of every process of its mount namespace, and the daemon opens the layers by path). H is told PID 1's pid
(``attach``) and exits when PID 1 does (a pidfd), taking the daemon and the mount with it; if it is
never told, it exits when its creator closes the pipe or dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from ocibox.errors import RootlessError
from ocibox.store import ImageRecord, Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

FUSE = "fuse-overlayfs"
STATE = "overlay-rootless.json"
_MOUNT_TIMEOUT = 10.0


def _binary() -> str | None:
    for d in ("/usr/bin", "/bin", "/usr/local/bin"):
        p = os.path.join(d, FUSE)
        if os.access(p, os.X_OK):
            return p
    return None


def _probe() -> str:
    """In a user namespace: "kernel" if overlayfs mounts with userxattr, else "fuse" if fuse-overlayfs
    does, else "none: WHY"."""
    import tempfile

    from ocibox.layers._mount import overlay_options
    from ocibox.linux import syscalls

    probe = tempfile.mkdtemp(prefix="overlay-probe-")
    why = []
    try:
        for d in ("l1", "l2", "u", "w", "m"):
            os.mkdir(os.path.join(probe, d))
        try:
            syscalls.mount("overlay", f"{probe}/m", "overlay", 0,
                           overlay_options([f"{probe}/l1", f"{probe}/l2"], f"{probe}/u", f"{probe}/w", userxattr=True))
            syscalls.umount(f"{probe}/m", syscalls.MNT_DETACH)
            return "kernel"
        except OSError as e:
            why.append(f"overlayfs: {e.strerror}")
        binary = _binary()
        if binary is None:
            why.append(f"{FUSE} is not installed")
        else:
            import subprocess

            r = subprocess.run([binary, "-o", f"lowerdir={probe}/l1:{probe}/l2,upperdir={probe}/u,workdir={probe}/w",
                                f"{probe}/m"], capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                subprocess.run(["fusermount3", "-u", f"{probe}/m"], capture_output=True)
                with contextlib.suppress(OSError):
                    syscalls.umount(f"{probe}/m", syscalls.MNT_DETACH)
                return "fuse"
            why.append(f"{FUSE}: {(r.stderr.strip().splitlines() or ['exit ' + str(r.returncode)])[-1]}")
        return "none: " + "; ".join(why)
    finally:
        import shutil

        shutil.rmtree(probe, ignore_errors=True)


def rootless_overlay(store: Store) -> str:
    """ "kernel" or "fuse" for this store and kernel; a RootlessError when neither works."""
    forced = os.environ.get("OCIBOX_ROOTLESS_OVERLAY", "")
    if forced in ("kernel", "fuse"):
        return forced
    release = os.uname().release
    path = Path(store.root) / STATE
    try:
        with open(path) as f:
            known = json.load(f)
        mode = str(known["mode"]) if known.get("kernel") == release else ""
    except (OSError, ValueError, KeyError):
        mode = ""
    if not mode:
        from ocibox.rootless import in_userns, in_userns_call

        store.ensure()
        mode = _probe() if in_userns() else in_userns_call(_probe)
        with contextlib.suppress(OSError):
            tmp = path.with_name(f".{STATE}.{os.getpid()}")
            tmp.write_text(json.dumps({"kernel": release, "mode": mode}))
            os.replace(tmp, path)
    if mode.startswith("none"):
        raise RootlessError(f"no overlay filesystem can be mounted without root here ({mode[6:]}): Linux 5.11 or later "
                            f"mounts overlayfs in a user namespace; else install {FUSE} (apt-get install {FUSE})")
    return mode


class FuseRootfs:
    """The holder of a container's fuse-overlayfs rootfs (see the module's docstring)."""

    def __init__(self, store: Store, record: ImageRecord, target: Path, upper: Path, work: Path) -> None:
        from ocibox.layers._mount import image_lowerdirs

        binary = _binary()
        if binary is None:
            raise RootlessError(f"{FUSE} is not installed (apt-get install {FUSE})")
        self.binary = binary
        lowers = ":".join(str(p) for p in image_lowerdirs(store, record))
        self.options = f"lowerdir={lowers},upperdir={upper},workdir={work}"
        self.target = str(target)
        self.pid = self.copy = 0
        self._ctl = -1

    def start(self) -> None:
        """Start H and wait until the rootfs is mounted in its mount namespace."""
        from ocibox import errors
        from ocibox.rootless import enter, namespace_maps

        maps = namespace_maps()  # before the fork: the child is in the namespace when it would read them
        ctl_r, self._ctl = os.pipe2(os.O_CLOEXEC)
        rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - H
            code = 0
            try:
                os.close(self._ctl)
                os.close(rep_r)
                # Not the caller's stdio: H outlives a `run -d`, whose caller may wait for EOF on its output.
                null = os.open("/dev/null", os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.close(null)
                enter(maps)
                daemon = self._mount()
                copy = self._copy_namespace()
                os.write(rep_w, f"M{copy}\n".encode())
                os.close(rep_w)
                self._hold(ctl_r, daemon)
            except BaseException as e:
                line, code = errors.to_wire(e, "the fuse-overlayfs rootfs: ")
                with contextlib.suppress(OSError):
                    os.write(rep_w, line)
            os._exit(code)
        os.close(ctl_r)
        os.close(rep_w)
        answer = b""
        while not answer.endswith(b"\n") and (chunk := os.read(rep_r, 4096)):  # a line (H's children hold
            answer += chunk                                                     # the pipe: no EOF then)
        os.close(rep_r)
        if not answer.startswith(b"M"):
            os.waitpid(pid, 0)
            os.close(self._ctl)
            self._ctl = -1
            raise errors.from_wire(answer, RootlessError) or RootlessError(f"{FUSE} could not mount the rootfs")
        self.pid, self.copy = pid, int(answer[1:].strip())

    def _mount(self) -> int:  # pragma: no cover - in H
        """fuse-overlayfs in the foreground, tied to H; returns once the rootfs is mounted."""
        import signal

        from ocibox.linux import proc, syscalls

        daemon = os.fork()
        if daemon == 0:
            try:
                syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
                null = os.open("/dev/null", os.O_RDWR)
                for fd in (0, 1, 2):  # it says "unknown argument ignored: lazytime" on every mount
                    os.dup2(null, fd)
                os.execv(self.binary, [FUSE, "-f", "-o", self.options, self.target])
            finally:
                os._exit(127)
        deadline = time.monotonic() + _MOUNT_TIMEOUT
        while not proc.is_mount_point(Path(self.target)):
            got, status = os.waitpid(daemon, os.WNOHANG)
            if got:
                raise RootlessError(f"{FUSE} exited with status {os.waitstatus_to_exitcode(status)} before mounting "
                                    f"the rootfs")
            if time.monotonic() > deadline:
                raise RootlessError(f"{FUSE} did not mount the rootfs in {_MOUNT_TIMEOUT:g} s")
            time.sleep(0.002)
        return daemon

    @staticmethod
    def _copy_namespace() -> int:  # pragma: no cover - in H
        """A process in a copy of H's mount namespace (the rootfs mounted there too), for the container to
        join: its pivot_root then moves the root of that copy's processes only, not the daemon's (which
        would lose the layer paths it opens)."""
        import signal

        from ocibox.linux import syscalls

        ready_r, ready_w = os.pipe()
        hold_r, hold_w = os.pipe()  # H keeps the write end: EOF when H is gone
        pid = os.fork()
        if pid == 0:
            try:
                syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
                os.close(hold_w)
                os.close(ready_r)
                syscalls.unshare(syscalls.CLONE_NEWNS)
                os.write(ready_w, b"C")
                os.close(ready_w)
                os.read(hold_r, 1)
            finally:
                os._exit(0)
        os.close(ready_w)
        os.close(hold_r)
        if os.read(ready_r, 1) != b"C":
            raise RootlessError("the copy of the rootfs's mount namespace could not be made")
        os.close(ready_r)
        return pid

    @staticmethod
    def _hold(ctl: int, daemon: int) -> None:  # pragma: no cover - in H
        """Wait for PID 1's pid, then for its end; or for EOF (the creator is gone)."""
        import select

        data = b""
        while chunk := os.read(ctl, 64):
            data += chunk
        if data.startswith(b"P"):
            with contextlib.suppress(OSError, ValueError):
                pidfd = os.pidfd_open(int(data[1:]))
                select.select([pidfd], [], [])

    @property
    def joined(self) -> dict[str, str]:
        """H's user and mount namespaces by path (for the config: joined, not made)."""
        return {"user": f"/proc/{self.copy}/ns/user", "mount": f"/proc/{self.copy}/ns/mnt"}

    def attach(self, pid1: int) -> None:
        """The container's PID 1 joined: H stays while it lives."""
        if self._ctl >= 0:
            with contextlib.suppress(OSError):
                os.write(self._ctl, f"P{pid1}".encode())
            os.close(self._ctl)
            self._ctl = -1

    def then(self, started: Callable[[int], None]) -> Callable[[int], None]:
        """``started`` after ``attach``: the on-start callback of a container on this rootfs."""
        def both(pid1: int) -> None:
            self.attach(pid1)
            started(pid1)
        return both

    def close(self) -> None:
        """Let H go (if not attached: now) and reap it when it has gone."""
        if self._ctl >= 0:
            os.close(self._ctl)
            self._ctl = -1
        if self.pid:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(self.pid, os.WNOHANG)
