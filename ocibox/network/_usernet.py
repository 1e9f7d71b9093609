"""The network of a container without root: a user-mode network stack in the host's network namespace,
connected to a tap device in the container's (podman's rootless networks):

- ``slirp4netns`` (the default): tap0 10.0.2.100/24, gateway 10.0.2.2, its own DNS forwarder at
  10.0.2.3; published ports through its API socket (``add_hostfwd``). Chosen by measurement on these
  hosts (benchmarks/rootless.py): ready 3 ms after its start against pasta's 17-30 ms, and 2.4-3.1
  Gbit/s of TCP out against pasta's 0.3-3.5 (pasta 2023-03 of Debian 12).
- ``pasta`` (``--network pasta[:OPTIONS]``): the host's addresses and routes copied into the
  container, published ports as its -t/-u options.

The host's loopback is not reachable from the container unless asked (podman's default):
``slirp4netns:allow_host_loopback=true`` (10.0.2.2 is then the host's 127.0.0.1), ``pasta:--map-gw``
(the gateway address is then the host). pasta's automatic forwarding of every port bound on either
side (its -t/-u/-T/-U ``auto``) is off.

The helper is started as soon as PID 1's namespaces exist (while PID 1 mounts its rootfs) and waited
for before PID 1 goes on, so the network is up when the command starts. It is a child of the process
that created the container with PR_SET_PDEATHSIG: it dies with it (the foreground ``ocibox run``, or a
detached container's monitor, whose exit command inherits the parent role through exec), and is killed
at the container's teardown. Its pid is kept in ``<container dir>/usernet.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

from ocibox import errors
from ocibox.network._parse import parse_user_mode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocibox.network import NetworkRequest, PortMapping

BACKENDS = ("slirp4netns", "pasta")
DEFAULT_USER_MODE = "slirp4netns"
STATE = "usernet.json"
LOG = "usernet.log"
SLIRP_DNS = "10.0.2.3"
SLIRP_GUEST = "10.0.2.100"
PASTA_DNS = "169.254.1.1"
_READY_TIMEOUT = 10.0


def _binary(name: str) -> str:
    for d in ("/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    package = {"slirp4netns": "slirp4netns", "pasta": "passt"}[name]
    raise errors.NetworkError(f"--network {name}: {name} is not installed (Debian/Ubuntu: apt-get install {package}); "
                              "or run with --network none or host")


def _host_nameservers() -> list[str]:
    try:
        with open("/etc/resolv.conf") as f:
            return [line.split()[1] for line in f if line.startswith("nameserver") and len(line.split()) > 1]
    except OSError:
        return []


def _loopback(addr: str) -> bool:
    return addr.startswith("127.") or addr == "::1"


class UserNet:
    """One container's helper: ``start(pid)`` (PID 1's namespaces exist), ``wait()`` (configured, ports
    published; the /etc files that depend on it), ``stop()``."""

    def __init__(self, request: NetworkRequest, cdir: Path, runtime: Path) -> None:
        self.kind = request.mode
        self.allow_loopback, self.extra = parse_user_mode(self.kind, request.target)
        self.request, self.cdir, self.runtime = request, Path(cdir), Path(runtime)
        self.binary = _binary(self.kind)
        self.pid = 0
        self._ready = -1
        self._api = ""
        self._ready_w = -1
        self._pidfile = ""
        self._ports: tuple[PortMapping, ...] = ()
        if request.ports:
            from ocibox.network._ports import allocate

            self._ports = allocate(request.ports, ())  # random and ranged host ports chosen now

    # ----------------------------------------------------------------------------- start
    def start(self, pid: int) -> None:
        """Start the helper on PID 1's network namespace (through its user namespace)."""
        log = str(self.cdir / LOG)
        if self.kind == "pasta":
            self.pid = _spawn(self.binary, self._pasta(pid), log=log)
        else:
            argv = self._slirp(pid)
            self.pid = _spawn(self.binary, argv, log=log, keep=self._ready_w)
            os.close(self._ready_w)
        self._save()

    def _slirp(self, pid: int) -> list[str]:
        self._ready, self._ready_w = os.pipe2(os.O_CLOEXEC)
        argv = ["slirp4netns", "--configure", "--mtu=65520", f"--ready-fd={self._ready_w}", "--netns-type=path",
                "--enable-seccomp"]
        if _other_userns(pid):
            argv.append(f"--userns-path=/proc/{pid}/ns/user")
        if not self.allow_loopback:
            argv.append("--disable-host-loopback")
        if self._ports:
            self._api = str(self.runtime / f"slirp-{os.getpid()}-{pid}.sock")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._api)
            argv.append(f"--api-socket={self._api}")
        return [*argv, *self.extra, f"/proc/{pid}/ns/net", "tap0"]

    def _pasta(self, pid: int) -> list[str]:
        # In the foreground (so that it dies with its parent), its pid file a fifo: pasta writes its pid
        # there once the container's interface is configured.
        self._pidfile = str(self.cdir / "pasta.ready")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._pidfile)
        os.mkfifo(self._pidfile, 0o600)
        self._ready = os.open(self._pidfile, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        argv = ["pasta", "--config-net", "-f", "-q", "-4", "-P", self._pidfile, "-T", "none", "-U", "none"]
        if not self.allow_loopback:
            argv.append("--no-map-gw")
        tcp = [self._pasta_spec(p) for p in self._ports if p.protocol == "tcp"]
        udp = [self._pasta_spec(p) for p in self._ports if p.protocol == "udp"]
        argv += ["-t", ",".join(tcp) if tcp else "none", "-u", ",".join(udp) if udp else "none"]
        if any(_loopback(a) for a in _host_nameservers()):
            argv += ["--dns-forward", PASTA_DNS]
        argv += [o for o in self.extra if o != "--map-gw"]
        argv += ["--netns", f"/proc/{pid}/ns/net"]
        return [*argv, "--userns", f"/proc/{pid}/ns/user"] if _other_userns(pid) else argv

    @staticmethod
    def _pasta_spec(p: PortMapping) -> str:
        where = f"{p.host_ip}/" if p.host_ip else ""
        return f"{where}{p.host_port}:{p.container_port}"

    # ----------------------------------------------------------------------------- ready
    def wait(self) -> dict[str, str]:
        """Wait until the helper configured the container's interface, publish the ports; return the
        container's resolv.conf. A helper that fails or dies is a NetworkError."""
        if self.kind == "pasta":
            self._wait_pasta()
        else:
            self._wait_slirp()
            for p in self._ports:
                self._hostfwd(p)
        return {"resolv.conf": self._resolv_conf()}

    def _wait_slirp(self) -> None:
        import select

        try:
            ready, _, _ = select.select([self._ready], [], [], _READY_TIMEOUT)
            if not ready:
                raise errors.NetworkError(f"slirp4netns did not set up the container's network in "
                                          f"{_READY_TIMEOUT:g} s")
            if not os.read(self._ready, 1):  # EOF without its byte: it died
                raise self._died(self.pid)
        finally:
            os.close(self._ready)
            self._ready = -1

    def _wait_pasta(self) -> None:
        """Its pid in the fifo: ready. A fifo nobody opened for writing yet reads as EOF too: the
        helper's own exit (its pidfd) tells a failure."""
        import select
        import time

        pidfd = os.pidfd_open(self.pid)
        deadline = time.monotonic() + _READY_TIMEOUT
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise errors.NetworkError(f"pasta did not set up the container's network in {_READY_TIMEOUT:g} s")
                ready, _, _ = select.select([self._ready, pidfd], [], [], left)
                if self._ready in ready:
                    with contextlib.suppress(BlockingIOError):
                        if os.read(self._ready, 64):
                            return
                if pidfd in ready:
                    raise self._died(self.pid)
                if self._ready in ready:
                    time.sleep(0.001)  # EOF before pasta opened the fifo: poll
        finally:
            os.close(pidfd)
            os.close(self._ready)
            self._ready = -1
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._pidfile)

    def _died(self, pid: int) -> errors.NetworkError:
        status = 0
        with contextlib.suppress(ChildProcessError, OSError):
            _, status = os.waitpid(pid, 0)
        self.pid = 0
        return errors.NetworkError(f"{self.kind} exited with status {os.waitstatus_to_exitcode(status)} before the "
                                   f"container's network was up{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            with open(self.cdir / LOG, errors="replace") as f:
                lines = [x.strip() for x in f.read().splitlines() if x.strip() and "syslog" not in x]
        except OSError:
            return ""
        return f": {lines[-1]}" if lines else ""

    def _hostfwd(self, p: PortMapping) -> None:
        import socket

        req = {"execute": "add_hostfwd", "arguments": {
            "proto": p.protocol, "host_addr": p.host_ip or "0.0.0.0", "host_port": p.host_port,
            "guest_addr": SLIRP_GUEST, "guest_port": p.container_port}}
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(_READY_TIMEOUT)
            s.connect(self._api)
            s.sendall(json.dumps(req).encode())
            s.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
        except OSError as e:
            raise errors.NetworkError(f"-p {p.host_port}:{p.container_port}: slirp4netns's API socket: {e}") from None
        finally:
            s.close()
        try:
            reply = json.loads(answer or b"{}")
        except ValueError:
            reply = {"error": {"desc": answer.decode(errors="replace")}}
        if "error" in reply or "return" not in reply:
            desc = (reply.get("error") or {}).get("desc", "no answer")
            raise errors.NetworkError(f"-p {p.host_ip or '0.0.0.0'}:{p.host_port}:{p.container_port}/{p.protocol}: "
                                      f"slirp4netns refused it: {desc}")

    def _resolv_conf(self) -> str:
        from ocibox._record import replace
        from ocibox.network._text import build_resolv_conf

        if self.kind == "slirp4netns":
            servers = [SLIRP_DNS]
        else:
            hosts = _host_nameservers()
            servers = [a for a in hosts if not _loopback(a)] + ([PASTA_DNS] if any(map(_loopback, hosts)) else [])
        try:
            with open("/etc/resolv.conf") as f:
                text = f.read()  # its search and options
        except OSError:
            text = ""
        req = replace(self.request, dns=self.request.dns or tuple(servers))
        return build_resolv_conf(req, {}, text, "")

    @property
    def ports(self) -> tuple[PortMapping, ...]:
        return self._ports

    # ----------------------------------------------------------------------------- state and stop
    def _save(self) -> None:
        from ocibox.linux.proc import start_time

        state = {"kind": self.kind, "pid": self.pid, "start": start_time(self.pid), "api": self._api,
                 "ports": [p.to_dict() for p in self._ports]}
        tmp = self.cdir / f".{STATE}.tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(state))
        os.replace(tmp, self.cdir / STATE)

    def stop(self) -> None:
        if self._ready >= 0:
            os.close(self._ready)
            self._ready = -1
        if self.pid:
            # SIGKILL: it keeps nothing worth saving. Not waited for: its exit closes the tap device, whose
            # unregistration waits for RCU grace periods (~16 ms here); whoever reaps orphans reaps it.
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(self.pid, os.WNOHANG)
            self.pid = 0
        for p in (self._pidfile, self._api, str(self.cdir / STATE)):
            if p:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)


def stop_usernet(cdir: Path) -> None:
    """Stop the helper a container's directory records (its creator is gone: a detached container's
    teardown, a repair), if it is still that process."""
    from ocibox.linux.proc import alive

    path = Path(cdir) / STATE
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return
    pid, start = int(state.get("pid", 0)), int(state.get("start", 0))
    if pid and alive(pid, start):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    api = state.get("api")
    for p in (api, str(path)):
        if p:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)


def usernet_ports(cdir: Path) -> list[PortMapping]:
    from ocibox.network import PortMapping

    try:
        with open(Path(cdir) / STATE) as f:
            return [PortMapping.from_dict(p) for p in json.load(f).get("ports", [])]
    except (OSError, ValueError):
        return []


def _other_userns(pid: int) -> bool:
    """PID 1 is in a user namespace other than ours (rootless): the helper joins it to reach its netns."""
    try:
        return os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    except OSError:
        return True


def _spawn(binary: str, argv: list[str], *, log: str, keep: int = -1, tied: bool = True) -> int:
    """fork + exec of ``binary`` in a session of its own, stdin and stdout /dev/null, stderr to ``log``;
    ``tied``: with PR_SET_PDEATHSIG SIGKILL (it dies with the thread that started it); ``keep``: an fd
    left to it besides."""
    from ocibox.linux import syscalls

    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    err = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, until exec
        try:
            if tied:
                syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.dup2(err, 2)
            if keep >= 0:
                os.set_inheritable(keep, True)
            os.setsid()
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; ignored survives exec
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            os.execv(binary, argv)
        finally:
            os._exit(127)
    os.close(null)
    os.close(err)
    return pid
