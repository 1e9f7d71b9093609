"""The container's /etc/resolv.conf and /etc/hosts, as docker writes them.

resolv.conf: the host's, with loopback resolvers (systemd-resolved's 127.0.0.53, a local dnsmasq's
127.0.0.1) replaced by the upstream ones they front (systemd-resolved lists them in
/run/systemd/resolve/resolv.conf) or, when none is known, by docker's public fallback 8.8.8.8 and
8.8.4.4; IPv6 resolvers are dropped on bridge networks, which are IPv4. --dns, --dns-search and
--dns-option replace the host's values. On a network with names the only resolver is the network's
DNS server (its gateway), which forwards other names to the --dns servers or to the host's.
With --network host the host's file is used as it is, unless --dns* flags change it.

hosts: localhost and the IPv6 names, --add-host entries (``host-gateway`` = the first network's
gateway), and the container's own address with its hostname and name.

The pure builders (``build_resolv_conf``, ``build_hosts``) take the host's texts; the public
``resolv_conf`` / ``hosts`` read them.
"""

from __future__ import annotations

from ocibox.network._model import Attachments, NetworkRequest
from ocibox.network._parse import is_ipv6, parse_ipv4

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

HOST_RESOLV = "/etc/resolv.conf"
RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"
HOST_HOSTS = "/etc/hosts"
FALLBACK_DNS = ("8.8.8.8", "8.8.4.4")
LOCAL_HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
               "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return ""


def parse_resolv(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a resolv.conf; ``domain`` counts as search when no
    ``search`` line is given (the resolver's rule: the last of them wins)."""
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        f = line.split()
        if not f or f[0].startswith(("#", ";")):
            continue
        if f[0] == "nameserver" and len(f) > 1:
            servers.append(f[1])
        elif f[0] in ("search", "domain"):
            search = f[1:]
        elif f[0] == "options":
            options += f[1:]
    return servers, search, options


def is_loopback(ip: str) -> bool:
    v = parse_ipv4(ip)
    if v is not None:
        return v >> 24 == 127
    return ip.split("%")[0] in ("::1", "0:0:0:0:0:0:0:1")


def upstream_servers(host_text: str, resolved_text: str, ipv6: bool = False) -> list[str]:
    """The resolvers a container can use in place of the host's: loopback ones replaced by the upstream
    servers systemd-resolved fronts (when it is the one on 127.0.0.53), else dropped; docker's public
    fallback when none is left."""
    servers, _, _ = parse_resolv(host_text)
    out = [s for s in servers if not is_loopback(s)]
    if any(is_loopback(s) for s in servers) and resolved_text:
        up, _, _ = parse_resolv(resolved_text)
        out += [s for s in up if not is_loopback(s) and s not in out]
    if not ipv6:
        out = [s for s in out if not is_ipv6(s)]
    return out or list(FALLBACK_DNS)


def build_resolv_conf(request: NetworkRequest, network_dns: Iterable[str], host_text: str,
                      resolved_text: str) -> str:
    """The container's resolv.conf. ``network_dns``: the DNS servers of its networks with names."""
    servers_h, search_h, options_h = parse_resolv(host_text)
    host_mode = request.mode == "host"
    if host_mode and not (request.dns or request.dns_search or request.dns_options):
        return host_text
    net_dns = list(network_dns)
    if net_dns:
        servers = net_dns
    elif request.dns:
        servers = list(request.dns)
    elif host_mode:
        servers = servers_h
    else:
        servers = upstream_servers(host_text, resolved_text)
    if request.dns_search:
        search = [] if list(request.dns_search) == ["."] else [s for s in request.dns_search if s != "."]
    else:
        search = search_h
    options = list(request.dns_options) if request.dns_options else options_h
    lines = [f"nameserver {s}" for s in servers]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def build_hosts(request: NetworkRequest, attachments: Attachments | None, hostname: str, name: str,
                host_hosts: str) -> str:
    """The container's /etc/hosts."""
    gateway = attachments.gateway if attachments is not None else ""
    extra = []
    for host, ip in request.extra_hosts:
        if ip == "host-gateway":
            ip = gateway or "127.0.0.1"  # with --network host the host is 127.0.0.1
        extra.append(f"{ip}\t{host}\n")
    if request.mode == "host":
        base = host_hosts if host_hosts.endswith("\n") or not host_hosts else host_hosts + "\n"
        return base + "".join(extra)
    names = [n for n in dict.fromkeys([hostname, hostname.split(".")[0], name]) if n]
    own = ""
    if names:
        ip = attachments.ip if attachments is not None and attachments.ip else "127.0.1.1"
        own = f"{ip}\t{' '.join(names)}\n"
    return LOCAL_HOSTS + "".join(extra) + own


def resolv_conf(request: NetworkRequest, attachments: Attachments | None = None) -> str:
    """The text of the container's /etc/resolv.conf (reads the host's files)."""
    network_dns = [e.gateway for e in (attachments.endpoints if attachments else ()) if e.dns and e.gateway]
    return build_resolv_conf(request, dict.fromkeys(network_dns), _read(HOST_RESOLV), _read(RESOLVED_UPSTREAM))


def hosts(request: NetworkRequest, attachments: Attachments | None, hostname: str, name: str = "") -> str:
    """The text of the container's /etc/hosts (reads the host's with --network host)."""
    return build_hosts(request, attachments, hostname, name, _read(HOST_HOSTS) if request.mode == "host" else "")
