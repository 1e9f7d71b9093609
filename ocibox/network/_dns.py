"""Names on user networks: aardvark-dns (podman's DNS server, Debian package aardvark-dns).

One aardvark-dns process serves every network of a store. Its configuration directory
(``<store>/networks/aardvark/``) holds one file per network: the gateway address it listens on (port
53), then one line per container: ``ID IPV4S IPV6S NAMES[ DNS_SERVERS]``. It answers a container's
query with the names of the networks *that* container is on (it knows the asker by its source
address), so a container never resolves names of a network it is not on; other names it forwards to
the container's own --dns servers, else to the host's resolvers. It reloads on SIGHUP.

ocibox starts it when the first container of a network registers, SIGHUPs it on every change, and
stops it (SIGTERM) when the last network file goes: no daemon stays behind. All changes happen under
``<store>/networks/aardvark.lock``; files are written beside the directory and renamed into it, so a
reload never reads half a file.
"""

from __future__ import annotations

import os
import signal
import time

from ocibox.errors import NetworkError
from ocibox.network._paths import aardvark_dir, flock, state_dir, write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from ocibox.settings import Settings

PATHS = ("/usr/lib/podman/aardvark-dns", "/usr/libexec/podman/aardvark-dns")
PACKAGE = "aardvark-dns"
PIDFILE = "aardvark.pid"
PORT = 53
START_TIMEOUT = 5.0


def binary() -> str | None:
    """``$OCIBOX_AARDVARK`` if set (a path, or empty for none), else Debian's and Fedora's places, else
    $PATH."""
    env = os.environ.get("OCIBOX_AARDVARK")
    if env is not None:
        return env if env and os.access(env, os.X_OK) else None
    for p in PATHS:
        if os.access(p, os.X_OK):
            return p
    import shutil

    return shutil.which("aardvark-dns")


def require() -> str:
    b = binary()
    if b is None:
        raise NetworkError(f"aardvark-dns, the DNS server of user networks, is not installed: install the "
                           f"Debian package {PACKAGE}")
    return b


def _lock(settings: Settings) -> Path:
    return state_dir(settings) / "aardvark.lock"


def _pid(d: Path) -> int | None:
    """The running aardvark-dns of directory ``d`` (checked by its command line), None if none."""
    try:
        pid = int((d / PIDFILE).read_text().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    if state == b"Z" or not any(a.endswith(b"aardvark-dns") for a in argv[:1]) or str(d).encode() not in argv:
        return None
    return pid


def running_pid(settings: Settings) -> int | None:
    return _pid(aardvark_dir(settings))


def _listening(addresses: Iterable[str]) -> bool:
    """Whether a UDP socket is bound to every ``address``:53 in this network namespace."""
    want = set()
    for a in addresses:
        parts = [int(x) for x in a.split(".")]
        want.add(f"{parts[3]:02X}{parts[2]:02X}{parts[1]:02X}{parts[0]:02X}:{PORT:04X}")
    try:
        with open("/proc/net/udp") as f:
            have = {line.split()[1] for line in f.read().splitlines()[1:] if line.strip()}
    except OSError:
        return False
    return want <= have


def _networks(d: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return out
    for n in names:
        if n == PIDFILE or n.startswith("."):
            continue
        try:
            out[n] = (d / n).read_text().splitlines()
        except OSError:
            continue
    return out


def _write(settings: Settings, network: str, lines: list[str]) -> None:
    d = aardvark_dir(settings)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = state_dir(settings) / f".aardvark-{network}"
    write_atomic(tmp, "\n".join(lines) + "\n", mode=0o644)
    os.replace(tmp, d / network)


def _start_or_reload(settings: Settings, gateways: list[str]) -> None:
    d = aardvark_dir(settings)
    pid = _pid(d)
    if pid is not None:
        os.kill(pid, signal.SIGHUP)
    else:
        import subprocess

        exe = require()
        try:
            (d / PIDFILE).unlink()
        except FileNotFoundError:
            pass
        # It forks: the child serves (and writes the pid file), the parent exits once it is ready.
        proc = subprocess.run([exe, "--config", str(d), "-p", str(PORT), "run"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                              timeout=START_TIMEOUT, check=False)
        if proc.returncode != 0:
            raise NetworkError(f"aardvark-dns did not start: {' '.join(proc.stderr.decode(errors='replace').split())[:300]}")
    deadline = time.monotonic() + START_TIMEOUT
    while not _listening(gateways):
        if time.monotonic() > deadline:
            raise NetworkError(f"aardvark-dns does not answer on {', '.join(g + ':53' for g in gateways)}: is "
                               f"another DNS server bound to port 53 of those addresses?")
        time.sleep(0.002)


def register(settings: Settings, network: str, gateway: str, container_id: str, ips: Iterable[str],
             names: Iterable[str], dns_servers: Iterable[str] = ()) -> None:
    """Make ``names`` resolve to ``ips`` for the containers of ``network`` (replacing this container's
    entry), and start or reload aardvark-dns. Returns once it listens on the network's gateway."""
    v4 = [i for i in ips if ":" not in i]
    v6 = [i for i in ips if ":" in i]
    clean = [n.lower() for n in dict.fromkeys(names) if n and " " not in n and "," not in n]
    line = f"{container_id} {','.join(v4)} {','.join(v6)} {','.join(clean)}"
    servers = [s for s in dns_servers if s]
    if servers:
        line += " " + ",".join(servers)
    with flock(_lock(settings)):
        d = aardvark_dir(settings)
        lines = _networks(d).get(network) or [gateway]
        lines = [lines[0]] + [x for x in lines[1:] if x.split(" ", 1)[0] != container_id and x.strip()] + [line]
        _write(settings, network, lines)
        gateways = [ls[0].split(" ")[0].split(",")[0] for ls in _networks(d).values() if ls]
        _start_or_reload(settings, [g for g in gateways if g])


def unregister(settings: Settings, container_id: str, networks: Iterable[str] | None = None) -> None:
    """Drop ``container_id`` from ``networks`` (all when None); a network without containers loses
    its file, and aardvark-dns stops when no network is left. Harmless when nothing is registered."""
    with flock(_lock(settings)):
        d = aardvark_dir(settings)
        current = _networks(d)
        changed = False
        for net, lines in current.items():
            if networks is not None and net not in networks:
                continue
            keep = [x for x in lines[1:] if x.strip() and x.split(" ", 1)[0] != container_id]
            if len(keep) == len([x for x in lines[1:] if x.strip()]):
                continue
            changed = True
            if keep:
                _write(settings, net, lines[:1] + keep)
            else:
                try:
                    (d / net).unlink()
                except FileNotFoundError:
                    pass
        if changed or not _networks(d):
            _settle(settings)


def _settle(settings: Settings) -> None:
    """After a change: reload aardvark-dns, or stop it when it has no network left."""
    d = aardvark_dir(settings)
    pid = _pid(d)
    if _networks(d):
        if pid is not None:
            os.kill(pid, signal.SIGHUP)
        return
    if pid is not None:
        stop_pid(pid)
    try:
        (d / PIDFILE).unlink()
    except FileNotFoundError:
        pass


def stop_pid(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM an aardvark-dns of ours and wait until it is gone (or only a zombie of its parent)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rpartition(b")")[2].split()[0] == b"Z":
                    return
        except (OSError, IndexError):
            return
        time.sleep(0.005)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def drop_network(settings: Settings, network: str) -> None:
    """Forget a removed network's names (and stop aardvark-dns if it was the last one)."""
    with flock(_lock(settings)):
        try:
            (aardvark_dir(settings) / network).unlink()
        except FileNotFoundError:
            return
        _settle(settings)


def tidy(settings: Settings, live_ids: Iterable[str]) -> None:
    """Drop entries of containers not in ``live_ids``; stop a daemon that serves nothing."""
    live = set(live_ids)
    with flock(_lock(settings)):
        d = aardvark_dir(settings)
        changed = False
        for net, lines in _networks(d).items():
            keep = [x for x in lines[1:] if x.strip() and x.split(" ", 1)[0] in live]
            if len(keep) != len([x for x in lines[1:] if x.strip()]):
                changed = True
                if keep:
                    _write(settings, net, lines[:1] + keep)
                else:
                    (d / net).unlink()
        if changed or (not _networks(d) and _pid(d) is not None):
            _settle(settings)
