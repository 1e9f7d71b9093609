"""Host ports for -p/-P, checked before anything is made.

The portmap plugin publishes a port with DNAT rules, not with a socket, so two things can hold a
host port: a program listening on the host (found by trying to bind the port) and another container's
mapping (found in the network room's records, under ``<store>/networks/ports.lock``, where each
container's ports are reserved before the lock is released). A random port is one the kernel hands out
for a bind to port 0 that no container has.
"""

from __future__ import annotations

import errno

from ocibox.errors import NetworkError
from ocibox.network._model import PortMapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

RANDOM_TRIES = 64


def clash(a: PortMapping, b: PortMapping) -> bool:
    """Two fixed mappings that would take the same host port (one on all addresses counts for all)."""
    return (a.protocol == b.protocol and a.host_port == b.host_port and a.host_port != 0
            and (not a.host_ip or not b.host_ip or a.host_ip == b.host_ip))


def _bind(ip: str, port: int, proto: str) -> int:
    """Bind a socket to ip:port; the port bound (the kernel's choice for 0). ``OSError`` when taken."""
    import socket

    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        if proto == "tcp":
            # TIME_WAIT leftovers of closed connections do not hold a port; a listener does
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip or "0.0.0.0", port))
        return int(s.getsockname()[1])


def _host_free(ip: str, port: int, proto: str) -> bool:
    try:
        _bind(ip, port, proto)
    except OSError as e:
        if e.errno == errno.EADDRNOTAVAIL:
            raise NetworkError(f"cannot publish on {ip}: it is not an address of this host; use one of its "
                               f"addresses, 127.0.0.1, or none for all") from None
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            return False
        raise NetworkError(f"cannot check host port {port}/{proto}: {e.strerror}") from None
    return True


def allocate(ports: Iterable[PortMapping], taken: Iterable[tuple[PortMapping, str]]) -> tuple[PortMapping, ...]:
    """``ports`` with every host port fixed and free: given ones checked, random ones and ranges
    chosen. ``taken`` are other containers' mappings with their names. ``NetworkError`` (one line,
    nothing reserved) when a port is taken."""
    held = list(taken)
    out: list[PortMapping] = []

    def owner(p: PortMapping) -> str | None:
        for q, who in held:
            if clash(p, q):
                return who
        for q in out:
            if clash(p, q):
                return "this container"
        return None

    for p in ports:
        if p.chosen:
            who = owner(p)
            where = f"{p.host_ip or '0.0.0.0'}:{p.host_port}/{p.protocol}"
            if who is not None:
                raise NetworkError(f"host port {where} is already published by {who}: choose another host port "
                                   f"or leave it out for a random one")
            if not _host_free(p.host_ip, p.host_port, p.protocol):
                raise NetworkError(f"host port {where} is already in use on this host: choose another host port "
                                   f"or leave it out for a random one")
            out.append(p)
        elif p.host_port_end:
            for port in range(p.host_port, p.host_port_end + 1):
                q = PortMapping(p.container_port, p.protocol, p.host_ip, port)
                if owner(q) is None and _host_free(q.host_ip, port, q.protocol):
                    out.append(q)
                    break
            else:
                raise NetworkError(f"no free host port in {p.host_port}-{p.host_port_end}/{p.protocol} for container "
                                   f"port {p.container_port}: choose another range")
        else:
            for _ in range(RANDOM_TRIES):
                try:
                    port = _bind(p.host_ip, 0, p.protocol)
                except OSError as e:
                    if e.errno == errno.EADDRNOTAVAIL:
                        raise NetworkError(f"cannot publish on {p.host_ip}: it is not an address of this host; use "
                                           f"one of its addresses, 127.0.0.1, or none for all") from None
                    raise NetworkError(f"cannot choose a random host port: {e.strerror}") from None
                q = PortMapping(p.container_port, p.protocol, p.host_ip, port)
                if owner(q) is None:
                    out.append(q)
                    break
            else:
                raise NetworkError(f"no free random host port for {p.container_port}/{p.protocol}: too many are in use")
    return tuple(out)
