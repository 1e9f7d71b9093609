"""Conflists as data, pure: the CNI network configuration list ocibox writes for a network (bridge
with host-local IPAM and IP masquerade, portmap, firewall, tuning), the ``Network`` read back from
one, and the choice of a subnet that collides neither with another network nor with the host's
routes."""

from __future__ import annotations

from ocibox.errors import NetworkError
from ocibox.network._model import Network
from ocibox.network._parse import format_ipv4, parse_cidr, parse_ipv4

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

CNI_VERSION = "1.0.0"
#: the key of ocibox's own metadata in a conflist (ignored by CNI: it is not passed to plugins)
META = "ocibox"

Subnet = tuple[int, int]  # (address, prefix length)


def build_conflist(name: str, net_id: str, bridge: str, subnet: str, gateway: str, *, internal: bool = False,
                   dns_enabled: bool = False, created: str = "",
                   labels: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
    """The conflist of a bridge network, as podman's CNI networks are made, plus:

    - firewall's ``ingressPolicy: same-bridge``: containers on other ocibox networks cannot reach
      this bridge (docker's DOCKER-ISOLATION chains, made by the plugin);
    - ``capabilities``: ``ips`` (--ip, through host-local), ``portMappings`` (-p), ``mac`` (--mac-address);
    - ``--internal``: no default route in the container and no masquerade; the bridge keeps its
      address, so the DNS server still answers there.

    host-local's ``dataDir`` is not written here: the caller sets it per store at run time."""
    ipam: dict[str, Any] = {"type": "host-local", "ranges": [[{"subnet": subnet, "gateway": gateway}]]}
    if not internal:
        ipam["routes"] = [{"dst": "0.0.0.0/0"}]
    return {
        "cniVersion": CNI_VERSION,
        "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": not internal, "hairpinMode": True,
             "capabilities": {"ips": True}, "ipam": ipam},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall", "backend": "iptables", "ingressPolicy": "same-bridge"},
            {"type": "tuning", "capabilities": {"mac": True}},
        ],
        META: {"id": net_id, "created": created, "internal": internal, "dns": dns_enabled,
               "labels": dict(labels)},
    }


def network_from_conflist(data: Any, path: str = "") -> Network:
    """The ``Network`` a conflist describes; ``NetworkError`` naming the file when it is not one ocibox
    can use (no plugins, no bridge plugin, no host-local IPv4 range)."""
    def bad(why: str) -> NetworkError:
        return NetworkError(f"network config {path or '(conflist)'} cannot be used: {why}; fix or remove the file")

    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        raise bad("it is not a JSON object with a 'name'")
    plugins = data.get("plugins")
    if not isinstance(plugins, list) or not plugins or not all(isinstance(p, dict) and isinstance(p.get("type"), str)
                                                               for p in plugins):
        raise bad("'plugins' is not a list of plugin objects with a 'type'")
    bridge = next((p for p in plugins if p["type"] == "bridge"), None)
    if bridge is None:
        raise bad("it has no bridge plugin")
    ipam: dict[str, Any] = bridge["ipam"] if isinstance(bridge.get("ipam"), dict) else {}
    subnet = gateway = ""
    ranges = ipam.get("ranges")
    if isinstance(ranges, list) and ranges and isinstance(ranges[0], list) and ranges[0] \
            and isinstance(ranges[0][0], dict):
        subnet = str(ranges[0][0].get("subnet", ""))
        gateway = str(ranges[0][0].get("gateway", ""))
    elif isinstance(ipam.get("subnet"), str):
        subnet, gateway = ipam["subnet"], str(ipam.get("gateway", ""))
    if parse_cidr(subnet) is None:
        raise bad(f"its IPAM has no IPv4 subnet (found {subnet!r})")
    if not gateway:
        gateway = default_gateway(subnet)
    meta: dict[str, Any] = data[META] if isinstance(data.get(META), dict) else {}
    net_id = str(meta.get("id") or "")
    if not net_id:
        import hashlib

        net_id = hashlib.sha256(data["name"].encode()).hexdigest()
    internal = bool(meta["internal"]) if "internal" in meta else not ipam.get("routes")
    labels: dict[str, Any] = meta["labels"] if isinstance(meta.get("labels"), dict) else {}
    return Network(name=data["name"], id=net_id, bridge=str(bridge.get("bridge") or "cni0"), subnet=subnet,
                   gateway=gateway, internal=internal, dns_enabled=bool(meta.get("dns", False)),
                   created=str(meta.get("created", "")), labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
                   path=path, conflist=data)


def plugin_types(conflist: dict[str, Any]) -> list[str]:
    """Every executable a conflist needs: each plugin's ``type`` and each ``ipam.type``, in order."""
    out: list[str] = []
    for p in conflist.get("plugins", []):
        for t in (p.get("type"), (p.get("ipam") or {}).get("type") if isinstance(p.get("ipam"), dict) else None):
            if isinstance(t, str) and t and t not in out:
                out.append(t)
    return out


def with_data_dir(conflist: dict[str, Any], data_dir: str) -> dict[str, Any]:
    """A copy of ``conflist`` whose host-local IPAM keeps its leases in ``data_dir`` (unless the
    conflist names its own dataDir)."""
    import copy

    out = copy.deepcopy(conflist)
    for p in out.get("plugins", []):
        ipam = p.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type") == "host-local" and not ipam.get("dataDir"):
            ipam["dataDir"] = data_dir
    return out


def without_default_route(conflist: dict[str, Any]) -> dict[str, Any]:
    """``conflist`` (a copy of one) without IPAM default routes: for the second and later networks of a
    container, whose default route is the first network's (docker's rule)."""
    for p in conflist.get("plugins", []):
        ipam = p.get("ipam")
        if isinstance(ipam, dict) and isinstance(ipam.get("routes"), list):
            ipam["routes"] = [r for r in ipam["routes"] if not (isinstance(r, dict) and r.get("dst") in
                                                                ("0.0.0.0/0", "::/0"))]
            if not ipam["routes"]:
                del ipam["routes"]
    return conflist


# ------------------------------------------------------------------------------------ subnets
def default_gateway(subnet: str) -> str:
    parsed = parse_cidr(subnet)
    if parsed is None:
        return ""
    return format_ipv4(network_address(parsed) + 1)


def network_address(s: Subnet) -> int:
    addr, plen = s
    return addr & _mask(plen)


def _mask(plen: int) -> int:
    return (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF


def overlaps(a: Subnet, b: Subnet) -> bool:
    m = _mask(min(a[1], b[1]))
    return (a[0] & m) == (b[0] & m)


def contains(s: Subnet, ip: int) -> bool:
    return (ip & _mask(s[1])) == network_address(s)


def format_subnet(s: Subnet) -> str:
    return f"{format_ipv4(network_address(s))}/{s[1]}"


def validate_subnet(subnet: str, gateway: str = "") -> tuple[str, str]:
    """--subnet and --gateway checked: an IPv4 network (no host bits) of /8 to /30, a gateway inside
    it that is neither its network nor its broadcast address (default: the first address)."""
    parsed = parse_cidr(subnet)
    if parsed is None:
        if ":" in subnet:
            raise NetworkError(f"invalid --subnet {subnet!r}: IPv6 networks are not supported; give an IPv4 CIDR")
        raise NetworkError(f"invalid --subnet {subnet!r}: expected an IPv4 CIDR like 10.91.0.0/24")
    addr, plen = parsed
    if not 8 <= plen <= 30:
        raise NetworkError(f"invalid --subnet {subnet!r}: the prefix must be /8 to /30")
    if addr != network_address(parsed):
        raise NetworkError(f"invalid --subnet {subnet!r}: host bits are set; did you mean {format_subnet(parsed)}?")
    if not gateway:
        return subnet, format_ipv4(addr + 1)
    gw = parse_ipv4(gateway)
    if gw is None:
        raise NetworkError(f"invalid --gateway {gateway!r}: not an IPv4 address")
    broadcast = addr | (~_mask(plen) & 0xFFFFFFFF)
    if not contains(parsed, gw) or gw in (addr, broadcast):
        raise NetworkError(f"invalid --gateway {gateway}: it must be a host address inside {subnet}")
    return subnet, gateway


def check_address(subnet: str, gateway: str, ip: str, network: str) -> None:
    """--ip: inside the network's subnet, not its gateway, network or broadcast address."""
    parsed = parse_cidr(subnet)
    value = parse_ipv4(ip)
    if parsed is None or value is None:
        raise NetworkError(f"invalid --ip {ip!r}: not an IPv4 address")
    broadcast = network_address(parsed) | (~_mask(parsed[1]) & 0xFFFFFFFF)
    if not contains(parsed, value):
        raise NetworkError(f"--ip {ip} is outside network {network!r} ({subnet}): choose an address in it")
    if value in (network_address(parsed), broadcast) or ip == gateway:
        raise NetworkError(f"--ip {ip} is the network, broadcast or gateway address of {network!r}; choose another")


def parse_routes(text: str) -> list[tuple[Subnet, str]]:
    """``/proc/net/route`` -> [((destination, prefix length), interface)], the default route left out."""
    out: list[tuple[Subnet, str]] = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 8:
            continue
        try:
            dest = int.from_bytes(bytes.fromhex(f[1]), "little")
            mask = int.from_bytes(bytes.fromhex(f[7]), "little")
        except ValueError:
            continue
        plen = bin(mask).count("1")
        if plen == 0:
            continue
        out.append(((dest, plen), f[0]))
    return out


def default_candidates() -> Iterator[Subnet]:
    """Subnets for the default network: /16s of 10.90-10.99, then 172.18-172.31 (docker's 172.17
    and podman's 10.88/10.89 come last or not at all)."""
    for b in range(90, 100):
        yield (10 << 24 | b << 16, 16)
    for b in range(18, 32):
        yield (172 << 24 | b << 16, 16)


def user_candidates() -> Iterator[Subnet]:
    """Subnets for user networks: /24s of 10.100.0.0-10.127.255.0."""
    for b in range(100, 128):
        for c in range(256):
            yield (10 << 24 | b << 16 | c << 8, 24)


def pick_subnet(candidates: Iterable[Subnet], taken: Iterable[Subnet]) -> Subnet | None:
    used = list(taken)
    for c in candidates:
        if not any(overlaps(c, u) for u in used):
            return c
    return None
