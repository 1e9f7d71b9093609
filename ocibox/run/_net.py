"""The lifecycle core's share of networking: a container on CNI networks gets a netns of the network
room's (joined by path), its CNI ADD runs in a child process while the container is being created
(PID 1 mounts its rootfs meanwhile), and its /etc/hosts and /etc/resolv.conf, which need the addresses
that ADD gave, reach PID 1 with the go-ahead (``create(late_etc=...)``). --network none and host import
nothing of this."""

from __future__ import annotations

import contextlib
import os

from ocibox import errors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ocibox import ocispec
    from ocibox.settings import Settings
    from ocibox.store import Store


class PendingAttach:
    """CNI ADD of a container's networks in a forked child (no thread beside the forks of create)."""

    def __init__(self, settings: Settings, request: Any, cid: str, name: str, netns: str,
                 store: Store | None = None) -> None:
        from ocibox import network
        from ocibox.linux.proc import start_time

        self.request, self.netns = request, netns
        # The record's owner is this process, which lives until PID 1 is recorded (a repair in between
        # must not take the network of a container being made).
        owner = [os.getpid(), start_time(os.getpid())]
        r, w = os.pipe2(os.O_CLOEXEC)
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child
            code = 0
            try:
                os.close(r)
                att = network.attach(settings, request, cid, name, netns, owner=owner)
                _write(w, b"A" + att.to_json().encode())
                os.close(w)
                w = -1
                if store is not None:  # the container goes on; meanwhile, dead containers' networks
                    _repair_others(settings, store, cid)
            except BaseException as e:
                line, code = errors.to_wire(e, "network setup failed: ")
                if w >= 0:
                    with contextlib.suppress(OSError):
                        _write(w, line)
            os._exit(code)
        os.close(w)
        self._r = r
        self._result: Any = None

    def result(self) -> Any:
        """The Attachments (waits for the ADD); its error raised. Called in the process that forked
        the child or in a child of that process (the detached face's creator); the fork's parent reaps
        it with ``cancel`` (it may go on repairing other containers' networks)."""
        if self._result is not None:
            return self._result
        if self._r < 0:
            raise errors.NetworkError("network setup failed: its result was already read")
        data = b""
        try:
            while chunk := os.read(self._r, 65536):
                data += chunk
        finally:
            os.close(self._r)
            self._r = -1
        if not data.startswith(b"A"):
            raise errors.from_wire(data, errors.NetworkError) or errors.NetworkError(
                "network setup failed: its process died")
        from ocibox import network

        self._result = network.Attachments.from_json(data[1:])
        return self._result

    def _reap(self) -> None:
        if self.pid > 0:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = -1

    def cancel(self) -> None:
        """Wait for the child (reaped) if nobody took its result; the detach that follows cleans up."""
        if self._result is None and self._r >= 0:
            with contextlib.suppress(errors.OciboxError, OSError):
                self.result()
        self._reap()


def _repair_others(settings: Settings, store: Store, cid: str) -> None:
    """Take dead containers (a run killed with SIGKILL, a reboot) off their networks: what ``ps`` and
    ``rm`` do, done by each ``run`` on a network after its own ADD (off the container's path)."""
    from ocibox import network
    from ocibox import store as st
    recorded = network.recorded(settings) - {cid}
    if not recorded:
        return
    live = {c.id for c in st.live_containers(store)} | {cid}
    if recorded - live:
        with contextlib.suppress(errors.OciboxError):
            network.repair(settings, live, still_live=lambda other: st.container_live(store, other))


def _write(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def setup(settings: Settings, request: Any, cid: str, name: str) -> PendingAttach:
    """The container's netns (a file to join by path) and its ADD under way (``request`` checked)."""
    from ocibox import network

    netns = network.new_netns(settings, cid)
    return PendingAttach(settings, request, cid, name, netns)


def etc_files(request: Any, att: Any, hostname: str, name: str) -> dict[str, str]:
    """/etc/hosts and /etc/resolv.conf of a container on networks (hostname unchanged)."""
    from ocibox import network

    return {"hosts": network.hosts(request, att, hostname, name), "resolv.conf": network.resolv_conf(request, att)}


class Plan:
    """What a container's start needs of the network: ``netns`` to join by path ("" for a new empty
    one, or none with --network host), /etc files that replace the defaults (``etc``), the ones that
    wait for the ADD (``late_etc``), and whether ``network.detach`` must follow (``attached``)."""

    def __init__(self, netns: str = "", etc: dict[str, str] | None = None,
                 pending: PendingAttach | None = None, late_etc: Callable[[], dict[str, str]] | None = None,
                 usernet: Any = None) -> None:
        self.netns, self.etc, self.pending, self.late_etc = netns, etc or {}, pending, late_etc
        #: a user-mode network (ocibox.network._usernet.UserNet): started on PID 1's namespaces
        self.usernet = usernet
        self.on_namespaces: Callable[[int], None] | None = usernet.start if usernet is not None else None

    @property
    def attached(self) -> bool:
        return self.pending is not None

    def finish(self, settings: Settings, cid: str, *, background: bool = True) -> None:
        """Take the container off its networks (after it exited, or when its start failed)."""
        if self.usernet is not None:
            self.usernet.stop()
            return
        if self.pending is None:
            return
        self.pending.cancel()
        from ocibox import network

        network.detach(settings, cid, background=background)


def plan(settings: Settings, store: Store, request: Any, cid: str, name: str, hostname: str) -> Plan:
    """The network of a container about to be created (``request``: ``RunSpec.net``; None for plain
    --network none or host). Bridge mode: the request checked, a netns made and its ADD started (to be
    ended by ``Plan.finish``); container:X joins X's PID 1's netns and X's /etc files; ns:PATH joins
    PATH; --dns, --add-host... with none or host only shape the files."""
    if request is None:
        return Plan()
    from ocibox import network

    name = name or cid[:12]
    from ocibox.rootless import is_rootless

    if is_rootless():
        request = rootless_request(request)
    if request.mode in network.USER_MODES:
        from ocibox.rootless import runtime_dir

        helper = network.UserNet(request, store.container_dir(cid), runtime_dir())
        etc = {"hosts": network.hosts(request, None, hostname, name)}
        return Plan("", etc=etc, late_etc=helper.wait, usernet=helper)
    if request.uses_cni:
        request = network.check(settings, request, cid, name)
        netns = network.new_netns(settings, cid)
        try:
            pending = PendingAttach(settings, request, cid, name, netns, store)
        except BaseException:
            network.detach(settings, cid)
            raise
        return Plan(netns, pending=pending, late_etc=lambda: etc_files(request, pending.result(), hostname, name))
    if request.mode == "container":
        return _container_mode(store, request.target)
    network.check(settings, request, cid, name)
    etc = etc_files(request, None, hostname, name)
    return Plan(request.target if request.mode == "ns" else "", etc=etc)


def rootless_request(request: Any) -> Any:
    """A user without root has no bridge: the default network is the user-mode stack
    (network.DEFAULT_USER_MODE); named networks and other containers' namespaces are refused."""
    from ocibox import network
    from ocibox._record import replace
    from ocibox.network import DEFAULT_USER_MODE as DEFAULT

    if request.mode == "bridge":
        if request.networks != (network.DEFAULT_NETWORK,):
            raise errors.RootlessError(f"--network {','.join(request.networks)}: networks made with 'ocibox network "
                                       "create' need root (a bridge and firewall rules on the host); without root use "
                                       f"the default ({DEFAULT}), slirp4netns, pasta, none or host")
        if request.ip or request.mac or request.aliases:
            raise errors.RootlessError("--ip, --mac-address and --network-alias need a bridge network, which needs root")
        return replace(request, mode=DEFAULT, networks=())
    if request.mode == "container":
        raise errors.RootlessError(f"--network container:{request.target}: not supported without root (each rootless "
                                   "container has a user namespace of its own, which owns its network namespace)")
    return request


def _container_mode(store: Store, target: str) -> Plan:
    """--network container:X: X's network namespace and X's hosts and resolv.conf (docker's sharing)."""
    from ocibox import store as st

    rec = st.find_container(store, target)
    if rec.state not in ("running", "paused") or not rec.alive or not rec.pid:
        raise errors.NetworkError(f"--network container:{target}: that container is not running; start it first")
    return Plan(f"/proc/{rec.pid}/ns/net", etc=_files_of(rec.pid, ("hosts", "resolv.conf")))


def _files_of(pid: int, names: tuple[str, ...]) -> dict[str, str]:
    """/etc files as a running container sees them (its /etc is a tmpfs of its own mount namespace),
    read through its root with every path resolved inside that root (openat2 RESOLVE_IN_ROOT: a symlink
    the container made cannot point the read at a host file)."""
    from ocibox.linux import syscalls

    out: dict[str, str] = {}
    try:
        root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return out
    try:
        for name in names:
            with contextlib.suppress(OSError):
                fd = syscalls.openat2(root, f"etc/{name}", os.O_RDONLY | os.O_NOFOLLOW,
                                      resolve=syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS)
                with os.fdopen(fd, "rb") as f:
                    out[name] = f.read(1 << 20).decode("utf-8", "replace")
    finally:
        os.close(root)
    return out


def with_netns(config: ocispec.Spec, netns: str) -> ocispec.Spec:
    """``config`` with its network namespace joined at ``netns`` (a new one when "")."""
    from ocibox import ocispec
    from ocibox._record import replace

    spaces = tuple(ocispec.Namespace("network", netns) if n.type == "network" else n for n in config.linux.namespaces)
    return replace(config, linux=replace(config.linux, namespaces=spaces))
