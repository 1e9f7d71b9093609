"""The networks themselves: conflists in the config directory, and the verbs of ``ocibox network``
(create, ls, inspect, rm, prune) as functions that return data; the CLI renders it.

The default network ``ocibox`` is written on first use, once, under the config directory's lock: bridge
``ocibox0`` (or the next free ``ociboxN`` if a link of that name exists already), a /16 from
10.90-10.99 or 172.18-172.31 that neither another network nor a route of the host uses, masquerade,
portmap, firewall, tuning. It has no DNS names (docker's default bridge has none either). User
networks get a /24 of 10.100-10.127 unless --subnet says otherwise, a bridge ``ocibox-<id[:8]>`` and
names through aardvark-dns.

``rm`` deletes what the plugins leave once the last container is gone: the bridge itself and the
firewall plugin's two isolation rules of that bridge (its DEL keeps them, not knowing whether another
container still uses the bridge), plus the network's lease directory and DNS file.
"""

from __future__ import annotations

import json
import os
import time

from ocibox.errors import NetworkError, UsageError
from ocibox.network import _conflist as cl
from ocibox.network._model import DEFAULT_BRIDGE, DEFAULT_NETWORK, Network
from ocibox.network._parse import parse_cidr, reserved, validate_name
from ocibox.network._paths import cni_forget, cni_lock, config_dir, flock, ipam_dir, write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path
    from typing import Any

    from ocibox.settings import Settings

SUFFIX = ".conflist"
ISOLATION_COMMENT = "CNI firewall plugin rules (ingressPolicy: same-bridge)"


def _lock_path() -> Path:
    return config_dir() / ".lock"


def _path(name: str) -> Path:
    return config_dir() / f"{name}{SUFFIX}"


def _read(path: Path) -> Network:
    try:
        data = json.loads(path.read_bytes())
    except OSError as e:
        raise NetworkError(f"cannot read network config {path}: {e.strerror}") from None
    except ValueError as e:
        raise NetworkError(f"network config {path} is not JSON ({e}); fix or remove the file") from None
    return cl.network_from_conflist(data, str(path))


def list_networks() -> list[Network]:
    """Every network of the config directory, by name; files that are not usable conflists are left out
    (``load`` of that name reports what is wrong with one)."""
    d = config_dir()
    try:
        names = sorted(n for n in os.listdir(d) if n.endswith(SUFFIX) and not n.startswith("."))
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        try:
            out.append(_read(d / n))
        except (NetworkError, FileNotFoundError):
            continue
    return out


def load(name: str) -> Network:
    """The network ``name`` (the default one is written first if it does not exist yet)."""
    if name == DEFAULT_NETWORK:
        return ensure_default()
    path = _path(name)
    if not path.exists():
        raise NetworkError(f"network {name!r} not found: create it with 'ocibox network create {name}' "
                           f"(see 'ocibox network ls')")
    return _read(path)


def _link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def host_routes() -> list[tuple[cl.Subnet, str]]:
    try:
        with open("/proc/net/route") as f:
            return cl.parse_routes(f.read())
    except OSError:
        return []


def _new_id() -> str:
    import hashlib

    return hashlib.sha256(os.urandom(32)).hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _taken(networks: Iterable[Network]) -> list[cl.Subnet]:
    out = []
    for n in networks:
        s = parse_cidr(n.subnet)
        if s is not None:
            out.append(s)
    return out + [s for s, _ in host_routes()]


def _write(net: dict[str, Any], name: str) -> Network:
    path = _path(name)
    write_atomic(path, json.dumps(net, indent=2) + "\n", mode=0o644)
    return cl.network_from_conflist(net, str(path))


def ensure_default() -> Network:
    """The default network, its conflist written on first use (once: under the config lock)."""
    path = _path(DEFAULT_NETWORK)
    if path.exists():
        return _read(path)
    d = config_dir()
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o755)
    except OSError as e:
        raise NetworkError(f"cannot create the network config directory {d}: {e.strerror}; set "
                           f"OCIBOX_CONFIG_DIR to a writable directory") from None
    with flock(_lock_path()):
        if path.exists():
            return _read(path)
        existing = list_networks()
        subnet = cl.pick_subnet(cl.default_candidates(), _taken(existing))
        if subnet is None:
            raise NetworkError("no free private /16 for the default network (10.90-10.99, 172.18-172.31 are all "
                               "used by routes of this host): create one with 'ocibox network create --subnet'")
        used = {n.bridge for n in existing}
        bridge = DEFAULT_BRIDGE
        i = 0
        while bridge in used or _link_exists(bridge):
            i += 1
            bridge = f"ocibox{i}"
        s = cl.format_subnet(subnet)
        conf = cl.build_conflist(DEFAULT_NETWORK, _new_id(), bridge, s, cl.default_gateway(s), created=_now())
        return _write(conf, DEFAULT_NETWORK)


def create(name: str, *, subnet: str = "", gateway: str = "", internal: bool = False,
           labels: Iterable[tuple[str, str]] = (), dns: bool = True) -> Network:
    """``ocibox network create``: a new bridge network with its own subnet (given, or the first free
    /24 of 10.100-10.127) and, unless ``dns`` is False, names through aardvark-dns. ``NetworkError``
    when the name exists or the subnet overlaps another network or a route of the host."""
    validate_name(name)
    if reserved(name):
        raise UsageError(f"network name {name!r} is reserved for --network {name}; choose another name")
    if gateway and not subnet:
        raise NetworkError("--gateway needs --subnet: give the subnet the gateway belongs to")
    if subnet:
        subnet, gateway = cl.validate_subnet(subnet, gateway)
    d = config_dir()
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o755)
    except OSError as e:
        raise NetworkError(f"cannot create the network config directory {d}: {e.strerror}; set "
                           f"OCIBOX_CONFIG_DIR to a writable directory") from None
    with flock(_lock_path()):
        if _path(name).exists() or name == DEFAULT_NETWORK:
            raise NetworkError(f"network {name!r} already exists: choose another name or remove it first")
        existing = list_networks()
        if subnet:
            mine = parse_cidr(subnet)
            assert mine is not None
            for n in existing:
                other = parse_cidr(n.subnet)
                if other is not None and cl.overlaps(mine, other):
                    raise NetworkError(f"subnet {subnet} overlaps network {n.name!r} ({n.subnet}): choose another "
                                       f"--subnet")
            for route, dev in host_routes():
                if cl.overlaps(mine, route):
                    raise NetworkError(f"subnet {subnet} overlaps the host's route to {cl.format_subnet(route)} on "
                                       f"{dev}: choose another --subnet")
        else:
            picked = cl.pick_subnet(cl.user_candidates(), _taken(existing))
            if picked is None:
                raise NetworkError("no free /24 in 10.100.0.0-10.127.255.0 for a new network: give one with --subnet")
            subnet = cl.format_subnet(picked)
            gateway = cl.default_gateway(subnet)
        net_id = _new_id()
        bridge = f"ocibox-{net_id[:8]}"
        conf = cl.build_conflist(name, net_id, bridge, subnet, gateway, internal=internal, dns_enabled=dns,
                                 created=_now(), labels=labels)
        return _write(conf, name)


def containers_on(settings: Settings, name: str) -> list[dict[str, Any]]:
    """The containers of this store that have (or are getting) an interface on network ``name``:
    [{"id", "name", "endpoint" (the CNI-derived Endpoint dict or {})}]."""
    from ocibox.network import _state
    from ocibox.network._attach import endpoint_of

    out = []
    for rec in _state.load_all(settings):
        for entry in rec.get("networks", []):
            if entry.get("name") == name:
                ep = endpoint_of(entry)
                out.append({"id": rec.get("id", ""), "name": rec.get("name", ""),
                            "endpoint": ep.to_dict() if ep else {}})
    return out


def inspect(settings: Settings, names: Iterable[str]) -> list[dict[str, Any]]:
    """``ocibox network inspect``: docker's JSON of each network (plus ``DNSEnabled`` and
    ``ConfigFile``), with the containers on it."""
    out = []
    for name in names:
        net = load(DEFAULT_NETWORK if name == "bridge" else name)
        containers = {}
        for c in containers_on(settings, net.name):
            ep = c["endpoint"]
            containers[c["id"]] = {"Name": c["name"], "EndpointID": "", "MacAddress": ep.get("mac", ""),
                                   "IPv4Address": ep.get("address", ""), "IPv6Address": ""}
        out.append({
            "Name": net.name, "Id": net.id, "Created": net.created, "Scope": "local", "Driver": "bridge",
            "EnableIPv6": False,
            "IPAM": {"Driver": "host-local", "Options": {}, "Config": [{"Subnet": net.subnet, "Gateway": net.gateway}]},
            "Internal": net.internal, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": containers,
            "Options": {"com.docker.network.bridge.name": net.bridge}, "Labels": dict(net.labels),
            "DNSEnabled": net.dns_enabled, "ConfigFile": net.path,
        })
    return out


def ls(settings: Settings) -> list[Network]:
    """``ocibox network ls``: every network, the default one included (written on first use)."""
    ensure_default()
    return list_networks()


def ls_row(net: Network) -> dict[str, Any]:
    """One network as docker's ``network ls --format json`` prints it."""
    return {"ID": net.short_id, "Name": net.name, "Driver": "bridge", "Scope": "local", "IPv6": False,
            "Internal": net.internal, "Labels": ",".join(f"{k}={v}" for k, v in net.labels),
            "CreatedAt": net.created, "Subnet": net.subnet, "Gateway": net.gateway, "DNSEnabled": net.dns_enabled}


def rm(settings: Settings, names: Iterable[str], *, ignore_missing: bool = False) -> list[str]:
    """``ocibox network rm``: remove each network no container is on; the names removed. Refused (one
    line, nothing removed of that network) while a container has an interface on it: call the runner's
    repair first so that dead containers do not count. The default network may be removed when unused:
    it is written again on the next use."""
    removed = []
    for name in names:
        name = DEFAULT_NETWORK if name == "bridge" else name
        with flock(_lock_path()):
            path = _path(name)
            if not path.exists():
                if ignore_missing:
                    continue
                raise NetworkError(f"network {name!r} not found (see 'ocibox network ls')")
            try:
                net = _read(path)
            except NetworkError:
                net = None
            users = containers_on(settings, name)
            if users:
                who = ", ".join(u["name"] or u["id"][:12] for u in users[:5])
                raise NetworkError(f"network {name!r} is in use by container(s) {who}: stop or remove them first")
            path.unlink()
            if net is not None:
                _cleanup(settings, net)
        removed.append(name)
    return removed


def prune(settings: Settings) -> list[str]:
    """``ocibox network prune``: remove every user network no container is on; the names removed."""
    unused = [n.name for n in list_networks() if not n.default and not containers_on(settings, n.name)]
    out = []
    for name in unused:
        try:
            out += rm(settings, [name], ignore_missing=True)
        except NetworkError:
            continue  # a container joined it meanwhile
    return out


def _cleanup(settings: Settings, net: Network) -> None:
    """What the plugins leave of a network without containers: its leases, its DNS file, the isolation
    rules of its bridge and the bridge itself (unless another network shares the bridge)."""
    import shutil
    import subprocess

    from ocibox.network import _dns

    shutil.rmtree(ipam_dir(settings) / net.name, ignore_errors=True)
    _dns.drop_network(settings, net.name)
    if any(n.bridge == net.bridge for n in list_networks()):
        return
    br = net.bridge
    iptables = shutil.which("iptables") or "/usr/sbin/iptables"
    rules = (["CNI-ISOLATION-STAGE-1", "-i", br, "!", "-o", br, "-m", "comment", "--comment", ISOLATION_COMMENT,
              "-j", "CNI-ISOLATION-STAGE-2"],
             ["CNI-ISOLATION-STAGE-2", "-o", br, "-m", "comment", "--comment", ISOLATION_COMMENT, "-j", "DROP"])
    for rule in rules:
        for _ in range(16):  # concurrent first ADDs may have inserted a rule twice
            r = subprocess.run([iptables, "-w", "-t", "filter", "-D", *rule], capture_output=True, check=False)
            if r.returncode != 0:
                break
    if _link_exists(br):
        subprocess.run(["ip", "link", "delete", br, "type", "bridge"], capture_output=True, check=False)
    with flock(lock := cni_lock(settings)):
        cni_forget(lock, f"bridge:{br}")
