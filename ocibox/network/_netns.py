"""Persistent network namespaces, as ``ip netns add`` makes them: a file under /run/netns with the
namespace bind-mounted on it, so it outlives the process that made it (CNI plugins enter it by path,
the container joins it through its config's ``linux.namespaces`` path, and a later ocibox command can
still DEL a dead container's interfaces in it).

/run/netns is made a shared mount first, as iproute2 does: the bind mounts then propagate to mount
namespaces cloned later, and their unmount reaches those copies too, so no copy keeps a removed
namespace alive. ``new_netns`` must be called in the host's mount namespace.
"""

from __future__ import annotations

import errno
import os

from ocibox.errors import NetworkError
from ocibox.network._paths import NETNS_DIR

CLONE_NEWNET = 0x40000000


def _shared_dir() -> None:
    """/run/netns exists and is a shared mount (bind-mounted on itself if it was not a mount point)."""
    from ocibox.linux import syscalls as k

    os.makedirs(NETNS_DIR, mode=0o755, exist_ok=True)
    try:
        k.mount(None, NETNS_DIR, None, k.MS_SHARED | k.MS_REC)
        return
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
    k.mount(NETNS_DIR, NETNS_DIR, None, k.MS_BIND | k.MS_REC)
    k.mount(None, NETNS_DIR, None, k.MS_SHARED | k.MS_REC)


def _loopback_up() -> None:
    """ip link set lo up in the current network namespace: SIOCGIFFLAGS / SIOCSIFFLAGS on a socket."""
    import fcntl
    import struct

    from ocibox.linux import syscalls as k

    s = k.socket(2, 2)  # AF_INET, SOCK_DGRAM
    try:
        ifr = fcntl.ioctl(s, 0x8913, struct.pack("16sH22x", b"lo", 0))  # SIOCGIFFLAGS
        flags = struct.unpack("16sH", ifr[:18])[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 0x1))  # SIOCSIFFLAGS, IFF_UP
    finally:
        os.close(s)


def create_netns(path: str) -> None:
    """A new network namespace with loopback up, bind-mounted on ``path`` (a new file under
    /run/netns). The calling thread enters the new namespace for three syscalls and returns to its
    own; nothing else of the process changes."""
    from ocibox.linux import syscalls as k

    try:
        _shared_dir()
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0)
        os.close(fd)
    except FileExistsError:
        raise NetworkError(f"network namespace {path} already exists: another container of this id is "
                           f"being set up, or a stale one is left; run 'ocibox ps -a' to tidy up") from None
    except OSError as e:
        raise NetworkError(f"cannot create network namespace {path}: {e.strerror or e}") from None
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            k.unshare(CLONE_NEWNET)
        except OSError as e:
            _unlink(path)
            raise NetworkError(f"cannot create a network namespace: {e.strerror or e} (ocibox needs root "
                               f"for bridge networks; use --network none or host)") from None
        try:
            k.mount("/proc/thread-self/ns/net", path, None, k.MS_BIND)
            _loopback_up()
        except OSError as e:
            _release(path)
            raise NetworkError(f"cannot bind-mount the network namespace on {path}: {e.strerror or e}") from None
        finally:
            k.setns(own, CLONE_NEWNET)
    finally:
        os.close(own)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _release(path: str) -> None:
    from ocibox.linux import syscalls as k

    try:
        k.umount(path, k.MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    _unlink(path)


def remove_netns(path: str) -> None:
    """Unmount and delete a namespace file made by ``new_netns``; the namespace goes when no process is
    left in it. Harmless when it is already gone."""
    try:
        _release(path)
    except OSError as e:
        raise NetworkError(f"cannot remove network namespace {path}: {e.strerror or e}") from None


def netns_exists(path: str) -> bool:
    """Whether a namespace is mounted on ``path`` (not just a leftover empty file): the file's device
    is then nsfs's, not that of the directory."""
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev
    except OSError:
        return False
