"""Parsing of the network flags, pure: docker's -p/--publish, -P, --network, --add-host, --dns*,
--ip, --mac-address and --network-alias become one ``NetworkRequest``. Nothing here touches the host
(``check`` does); bad input raises ``UsageError`` with one line that says what was wrong and what the
flag expects. Addresses are parsed by hand, without ``ipaddress`` (its import is ~4 ms)."""

from __future__ import annotations

import re

from ocibox.errors import UsageError
from ocibox.network._model import DEFAULT_NETWORK, RESERVED_NAMES, USER_MODES, NetworkRequest, PortMapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

#: network names as docker and podman take them
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
#: a DNS name: labels of letters, digits and hyphens (and underscores, which resolvers accept)
_DNS_NAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                          r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_PROTOCOLS = ("tcp", "udp")
PUBLISH_FORM = "[IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp] (ports or ranges like 8000-8010)"


# ------------------------------------------------------------------------------------ addresses
def parse_ipv4(text: str) -> int | None:
    """The IPv4 address ``text`` as an int, None if it is not one (dotted quad, no leading zeros)."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for p in parts:
        if not p.isdigit() or not p.isascii() or (len(p) > 1 and p[0] == "0") or int(p) > 255:
            return None
        value = value << 8 | int(p)
    return value


def format_ipv4(value: int) -> str:
    return ".".join(str(value >> s & 0xFF) for s in (24, 16, 8, 0))


def is_ipv6(text: str) -> bool:
    """A loose check for an IPv6 literal (hex groups and colons, an optional IPv4 tail)."""
    if ":" not in text or text.count("::") > 1:
        return False
    head, _, tail = text.rpartition(":")
    groups = head.split(":")
    if "." in tail:
        if parse_ipv4(tail) is None:
            return False
    else:
        groups.append(tail)
    ok = all(g == "" or (len(g) <= 4 and all(c in "0123456789abcdefABCDEF" for c in g)) for g in groups)
    return ok and len(groups) <= 8


def is_ip(text: str) -> bool:
    return parse_ipv4(text) is not None or is_ipv6(text)


def parse_cidr(text: str) -> tuple[int, int] | None:
    """``10.1.0.0/16`` -> (address int, prefix length); None if not an IPv4 CIDR."""
    addr, slash, plen = text.partition("/")
    a = parse_ipv4(addr)
    if a is None or not slash or not plen.isdigit() or not plen.isascii() or int(plen) > 32:
        return None
    return a, int(plen)


# ------------------------------------------------------------------------------------ -p / -P
def _port_range(text: str, what: str, value: str) -> tuple[int, int]:
    lo_s, dash, hi_s = text.partition("-")
    try:
        lo = int(lo_s) if lo_s.isdigit() and lo_s.isascii() else -1
        hi = (int(hi_s) if hi_s.isdigit() and hi_s.isascii() else -1) if dash else lo
    except ValueError:  # pragma: no cover - isdigit guards int()
        lo = hi = -1
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
        raise UsageError(f"invalid -p/--publish value {value!r}: {what} {text!r} is not a port (1-65535) "
                         f"or a range of them; expected {PUBLISH_FORM}")
    if hi < lo:
        raise UsageError(f"invalid -p/--publish value {value!r}: the {what} range {text!r} ends before it "
                         f"starts; expected {PUBLISH_FORM}")
    return lo, hi


def parse_publish(text: str) -> tuple[PortMapping, ...]:
    """docker's ``-p/--publish [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]``, one mapping per container
    port. An empty HOST_PORT is a random free port (0 until ``check``); a host range against one
    container port asks for one free port of the range; two ranges pair up and must be as long."""
    value = text.strip()
    body, slash, proto = value.rpartition("/") if "/" in value else (value, "", "tcp")
    proto = proto.lower()
    if slash and proto not in _PROTOCOLS:
        raise UsageError(f"invalid -p/--publish value {text!r}: protocol {proto!r} is not tcp or udp")
    if body.startswith("["):
        raise UsageError(f"invalid -p/--publish value {text!r}: IPv6 host addresses are not supported "
                         f"(ocibox's networks are IPv4); publish on an IPv4 address or on all of them")
    parts = body.split(":")
    if len(parts) > 3:
        raise UsageError(f"invalid -p/--publish value {text!r}: too many ':'; expected {PUBLISH_FORM}")
    ip, host = "", ""
    if len(parts) == 3:
        ip, host, ctr = parts
        if parse_ipv4(ip) is None:
            raise UsageError(f"invalid -p/--publish value {text!r}: {ip!r} is not an IPv4 address; "
                             f"expected {PUBLISH_FORM}")
        if ip == "0.0.0.0":
            ip = ""
    elif len(parts) == 2:
        host, ctr = parts
    else:
        (ctr,) = parts
    if not ctr:
        raise UsageError(f"invalid -p/--publish value {text!r}: no container port; expected {PUBLISH_FORM}")
    c_lo, c_hi = _port_range(ctr, "container port", text)
    n = c_hi - c_lo + 1
    if not host:
        return tuple(PortMapping(p, proto, ip) for p in range(c_lo, c_hi + 1))
    h_lo, h_hi = _port_range(host, "host port", text)
    m = h_hi - h_lo + 1
    if n == 1:
        if m == 1:
            return (PortMapping(c_lo, proto, ip, h_lo),)
        return (PortMapping(c_lo, proto, ip, h_lo, h_hi),)
    if m != n:
        raise UsageError(f"invalid -p/--publish value {text!r}: the host range {host!r} and the container "
                         f"range {ctr!r} differ in length; give ranges of the same length, or one container port")
    return tuple(PortMapping(c_lo + i, proto, ip, h_lo + i) for i in range(n))


def publish_all(exposed_ports: Iterable[str]) -> tuple[PortMapping, ...]:
    """-P/--publish-all: each port of the image's ``ExposedPorts`` (``80/tcp``, ``53/udp``, ``8000-8002``)
    on a random host port."""
    out: list[PortMapping] = []
    for key in exposed_ports:
        port, _, proto = key.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in _PROTOCOLS:
            continue  # sctp and the like: nothing ocibox can publish; docker skips them too
        try:
            lo, hi = _port_range(port, "exposed port", key)
        except UsageError:
            raise UsageError(f"the image exposes {key!r}, which is not a port or a range of ports: "
                             f"publish its ports with -p instead of -P") from None
        out += [PortMapping(p, proto) for p in range(lo, hi + 1)]
    return tuple(sorted(set(out)))


def merge_ports(explicit: Iterable[PortMapping], automatic: Iterable[PortMapping] = ()) -> tuple[PortMapping, ...]:
    """-p mappings (``explicit``) and -P's (``automatic``) together: a port that -p publishes is not
    published again by -P; repeated identical mappings count once; two -p of one host port (on the same
    address, or one of them on all addresses) are refused."""
    out: list[PortMapping] = []
    for p in explicit:
        if p in out:
            continue
        if p.chosen:
            for q in out:
                if (q.chosen and q.protocol == p.protocol and q.host_port == p.host_port
                        and (not q.host_ip or not p.host_ip or q.host_ip == p.host_ip)):
                    raise UsageError(f"host port {p.host_port}/{p.protocol} is published twice (container ports "
                                     f"{q.container_port} and {p.container_port}); give each -p its own host port")
        out.append(p)
    mapped = {(p.container_port, p.protocol) for p in out}
    out += [p for p in automatic if (p.container_port, p.protocol) not in mapped]
    return tuple(out)


# ------------------------------------------------------------------------------------ other flags
def parse_add_host(text: str) -> tuple[str, str]:
    """docker's ``--add-host NAME:IP`` (or ``NAME=IP``; IP may be IPv6 or ``host-gateway``)."""
    sep = "=" if "=" in text else ":"
    name, found, ip = text.partition(sep)
    name, ip = name.strip(), ip.strip()
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if not found or not name or not ip:
        raise UsageError(f"invalid --add-host value {text!r}: expected NAME:IP")
    if not _DNS_NAME_RE.match(name):
        raise UsageError(f"invalid --add-host value {text!r}: {name!r} is not a host name")
    if ip != "host-gateway" and not is_ip(ip):
        raise UsageError(f"invalid --add-host value {text!r}: {ip!r} is not an IP address (or host-gateway)")
    return name, ip


def parse_dns(values: Iterable[str]) -> tuple[str, ...]:
    out = []
    for v in values:
        if not is_ip(v.strip()):
            raise UsageError(f"invalid --dns value {v!r}: not an IP address")
        out.append(v.strip())
    return tuple(out)


def parse_dns_search(values: Iterable[str]) -> tuple[str, ...]:
    """``--dns-search``: domains; ``.`` alone means no search domains at all."""
    out = []
    for v in values:
        v = v.strip()
        if v != "." and not _DNS_NAME_RE.match(v):
            raise UsageError(f"invalid --dns-search value {v!r}: not a domain name")
        out.append(v)
    return tuple(out)


def parse_dns_options(values: Iterable[str]) -> tuple[str, ...]:
    out = []
    for v in values:
        v = v.strip()
        if not v or any(c.isspace() for c in v):
            raise UsageError(f"invalid --dns-option value {v!r}: one resolv.conf option, like ndots:2")
        out.append(v)
    return tuple(out)


def validate_name(name: str, what: str = "network name") -> str:
    if not NAME_RE.match(name) or len(name) > 200:
        raise UsageError(f"invalid {what} {name!r}: use letters, digits, '_', '.' and '-', starting with a "
                         f"letter or digit")
    return name


def parse_network(values: Iterable[str]) -> tuple[str, tuple[str, ...], str]:
    """``--network`` values (repeatable; names may also be comma-separated) -> (mode, networks, target).
    ``bridge`` (and podman's ``default`` and ``private``) is the default network."""
    items = [v.strip() for value in values for v in (value.split(",") if ":" not in value else [value])]
    items = [v for v in items if v]
    if not items:
        return "bridge", (DEFAULT_NETWORK,), ""
    special = [v for v in items if v in ("none", "host", *USER_MODES) or v.startswith(("container:", "ns:"))
               or v.partition(":")[0] in USER_MODES]
    if special:
        if len(items) > 1:
            raise UsageError(f"--network {special[0]} cannot be combined with other networks")
        v = special[0]
        if v in ("none", "host"):
            return v, (), ""
        if v.partition(":")[0] in USER_MODES:  # a user-mode network stack; target: its options
            kind, _, options = v.partition(":")
            parse_user_mode(kind, options)
            return kind, (), options
        kind, _, target = v.partition(":")
        if not target:
            raise UsageError(f"--network {v}: name the {'container' if kind == 'container' else 'netns path'}")
        if kind == "ns" and not target.startswith("/"):
            raise UsageError(f"--network {v}: the netns path must be absolute (like /run/netns/NAME)")
        return kind, (), target
    names: list[str] = []
    for v in items:
        name = DEFAULT_NETWORK if v in ("bridge", "default", "private") else v
        if ":" in name:
            raise UsageError(f"unknown --network mode {v!r}: use bridge, none, host, container:NAME|ID, "
                             f"ns:PATH or a network name")
        validate_name(name)
        if name in names:
            raise UsageError(f"--network {v} is given twice")
        names.append(name)
    return "bridge", tuple(names), ""


def parse_user_mode(kind: str, text: str) -> tuple[bool, tuple[str, ...]]:
    """(host loopback allowed, extra helper arguments) of ``--network KIND:OPTIONS``. slirp4netns takes
    podman's ``allow_host_loopback=true|false``, ``mtu=N``, ``enable_ipv6=true|false`` and
    ``port_handler=slirp4netns``; pasta takes its own command-line options, comma-separated (``--map-gw``
    allows the host's loopback)."""
    opts = [o for o in text.split(",") if o] if text else []
    if kind == "pasta":
        for o in opts:
            if not o.startswith("-"):
                raise UsageError(f"--network pasta:{text}: {o!r} is not a pasta option (like --map-gw)")
            if o.split("=")[0] in ("--netns", "--userns", "-P", "--pid", "-f", "--foreground", "--config-net"):
                raise UsageError(f"--network pasta:{text}: {o} is set by ocibox")
        return "--map-gw" in opts, tuple(opts)
    allow, extra = False, []
    for o in opts:
        key, _, value = o.partition("=")
        if key == "allow_host_loopback" and value in ("true", "false"):
            allow = value == "true"
        elif key == "mtu" and value.isdigit():
            extra.append(f"--mtu={value}")
        elif key == "enable_ipv6" and value in ("true", "false"):
            if value == "true":
                extra.append("--enable-ipv6")
        elif key == "port_handler" and value == "slirp4netns":
            pass  # the only one ocibox has (podman's rootlesskit handler is not)
        else:
            raise UsageError(f"--network slirp4netns:{text}: unknown option {o!r} (allow_host_loopback=true|false, "
                             "mtu=N, enable_ipv6=true|false, port_handler=slirp4netns)")
    return allow, tuple(extra)


def build_request(network: Iterable[str] = (), publish: Iterable[str] = (), publish_all_ports: bool = False,
                  exposed_ports: Iterable[str] = (), dns: Iterable[str] = (), dns_search: Iterable[str] = (),
                  dns_options: Iterable[str] = (), add_host: Iterable[str] = (), ip: str = "", mac: str = "",
                  hostname: str = "", aliases: Iterable[str] = (),
                  warn: Callable[[str], None] | None = None) -> NetworkRequest:
    """All network flags of ``run``/``create`` as one request, with docker's conflicts refused:
    ports, --ip and --mac-address need a bridge network (with --network host ports are dropped, with a
    warning, as docker does); container:X takes no DNS, hosts or hostname flags of its own."""
    mode, networks, target = parse_network(network)
    ports: list[PortMapping] = []
    for p in publish:
        ports += parse_publish(p)
    merged = merge_ports(ports, publish_all(exposed_ports) if publish_all_ports else ())
    if merged and mode not in ("bridge", *USER_MODES):
        if mode == "host":
            if warn is not None:
                warn("published ports are discarded with --network host (the container uses the host's ports)")
            merged = ()
        else:
            raise UsageError(f"conflicting options: -p/--publish and --network {_mode_text(mode, target)} "
                             f"(ports are published on bridge networks only)")
    if ip:
        if parse_ipv4(ip) is None:
            raise UsageError(f"invalid --ip value {ip!r}: not an IPv4 address")
        if mode != "bridge":
            raise UsageError(f"conflicting options: --ip and --network {_mode_text(mode, target)}")
    if mac:
        if not _MAC_RE.match(mac) or int(mac[:2], 16) & 1:
            raise UsageError(f"invalid --mac-address value {mac!r}: expected a unicast MAC like 02:42:ac:11:00:02")
        if mode != "bridge":
            raise UsageError(f"conflicting options: --mac-address and --network {_mode_text(mode, target)}")
        mac = mac.lower()
    dns_t, search_t, opts_t = parse_dns(dns), parse_dns_search(dns_search), parse_dns_options(dns_options)
    hosts_t = tuple(parse_add_host(h) for h in add_host)
    alias_t = tuple(aliases)
    for a in alias_t:
        if not _DNS_NAME_RE.match(a):
            raise UsageError(f"invalid --network-alias value {a!r}: not a DNS name")
    if mode == "container":
        for flag, given in (("--dns", dns_t), ("--dns-search", search_t), ("--dns-option", opts_t),
                            ("--add-host", hosts_t), ("--hostname", hostname), ("--network-alias", alias_t)):
            if given:
                raise UsageError(f"conflicting options: {flag} and --network container:{target} "
                                 f"(the container shares the other one's network and its files)")
    elif alias_t and (mode != "bridge" or networks == (DEFAULT_NETWORK,)):
        raise UsageError("--network-alias needs a user network (ocibox network create NAME); the default "
                         "network has no names")
    return NetworkRequest(mode=mode, networks=networks, target=target, ports=merged, ip=ip, mac=mac,
                          dns=dns_t, dns_search=search_t, dns_options=opts_t, extra_hosts=hosts_t,
                          aliases=alias_t, hostname=hostname)


def _mode_text(mode: str, target: str) -> str:
    return f"{mode}:{target}" if target else mode


def reserved(name: str) -> bool:
    return name in RESERVED_NAMES
