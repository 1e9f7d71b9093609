"""The value types of the network room: what a container asked for (``NetworkRequest`` with its
``PortMapping``s), a network (``Network``, read from its conflist) and what an attach made
(``Attachments`` with one ``Endpoint`` per network). All are frozen records; ``Attachments`` goes to
JSON and back, so the runner can keep it with the container."""

from __future__ import annotations

from ocibox._record import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: the network of ``--network bridge`` (and of no --network at all); written on first use
DEFAULT_NETWORK = "ocibox"
#: its bridge
DEFAULT_BRIDGE = "ocibox0"
#: --network values that are modes, never network names
RESERVED_NAMES = ("bridge", "host", "none", "default", "slirp4netns", "pasta")

#: user-mode network stacks (rootless: ocibox.network._usernet): a netns of the container's own connected by
#: the helper of that name; ``target`` holds its options (``--network slirp4netns:allow_host_loopback=true``)
USER_MODES = ("slirp4netns", "pasta")
#: what the runner does with each mode: "bridge" = CNI on ``networks``; "none" = its own netns with
#: loopback only; "host" = no netns; "container" = join ``target``'s netns; "ns" = join the netns file;
#: "slirp4netns" and "pasta" = USER_MODES
MODES = ("bridge", "none", "host", "container", "ns", *USER_MODES)


@record(order=True)
class PortMapping:
    """One published port: ``-p [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[/PROTO]``, one container
    port each. ``host_port`` 0 is a random free port; ``host_port_end`` > 0 asks for one free port
    of ``host_port..host_port_end``. ``check()`` replaces both by the port chosen."""

    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""
    host_port: int = 0
    host_port_end: int = 0

    @property
    def chosen(self) -> bool:
        """Whether the host port is fixed (no random port, no range left to choose from)."""
        return self.host_port != 0 and self.host_port_end == 0

    def to_cni(self) -> dict[str, Any]:
        """The ``portMappings`` entry of the CNI convention (portmap's runtimeConfig)."""
        m: dict[str, Any] = {"hostPort": self.host_port, "containerPort": self.container_port,
                             "protocol": self.protocol}
        if self.host_ip:
            m["hostIP"] = self.host_ip
        return m

    def to_dict(self) -> dict[str, Any]:
        return {"container_port": self.container_port, "protocol": self.protocol, "host_ip": self.host_ip,
                "host_port": self.host_port, "host_port_end": self.host_port_end}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PortMapping:
        return cls(int(d["container_port"]), str(d.get("protocol", "tcp")), str(d.get("host_ip", "")),
                   int(d.get("host_port", 0)), int(d.get("host_port_end", 0)))

    def __str__(self) -> str:
        """docker's ``port`` line: ``80/tcp -> 0.0.0.0:8080``."""
        return f"{self.container_port}/{self.protocol} -> {self.host_ip or '0.0.0.0'}:{self.host_port}"


@record
class NetworkRequest:
    """Everything a container asked of the network, parsed (``build_request``) but not yet checked
    against the host (``check``).

    ``mode`` is one of ``MODES``; ``networks`` the networks joined in bridge mode, in interface order
    (eth0, eth1, ...); ``target`` the container (mode "container") or the netns path (mode "ns").
    ``ip``, ``mac`` and ``ports`` apply to the first network. ``dns*`` and ``extra_hosts`` shape the
    container's /etc/resolv.conf and /etc/hosts; ``aliases`` are extra DNS names on user networks."""

    mode: str = "bridge"
    networks: tuple[str, ...] = (DEFAULT_NETWORK,)
    target: str = ""
    ports: tuple[PortMapping, ...] = ()
    ip: str = ""
    mac: str = ""
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    extra_hosts: tuple[tuple[str, str], ...] = ()
    aliases: tuple[str, ...] = ()
    hostname: str = ""

    @property
    def uses_cni(self) -> bool:
        """Whether this container needs a netns of ours and CNI (only bridge mode does)."""
        return self.mode == "bridge"


@record
class Network:
    """One network: its conflist in the config directory, read back. ``subnet`` and ``gateway`` are
    the first IPAM range's; ``bridge`` the bridge plugin's interface."""

    name: str
    id: str
    bridge: str
    subnet: str
    gateway: str
    internal: bool = False
    dns_enabled: bool = False
    created: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    path: str = ""
    conflist: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def default(self) -> bool:
        return self.name == DEFAULT_NETWORK

    @property
    def short_id(self) -> str:
        return self.id[:12]


@record
class Endpoint:
    """A container's interface on one network, from the CNI result: ``address`` with its prefix
    (``10.90.0.2/16``), the gateway, the MAC of the container's side."""

    network: str
    ifname: str
    address: str = ""
    gateway: str = ""
    mac: str = ""
    bridge: str = ""
    dns: bool = False

    @property
    def ip(self) -> str:
        return self.address.partition("/")[0]

    def to_dict(self) -> dict[str, Any]:
        return {"network": self.network, "ifname": self.ifname, "address": self.address, "gateway": self.gateway,
                "mac": self.mac, "bridge": self.bridge, "dns": self.dns}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Endpoint:
        return cls(str(d["network"]), str(d["ifname"]), str(d.get("address", "")), str(d.get("gateway", "")),
                   str(d.get("mac", "")), str(d.get("bridge", "")), bool(d.get("dns", False)))


@record
class Attachments:
    """What ``attach`` made for one container: one endpoint per network, the published ports with
    their host ports chosen. JSON-serializable (``to_json`` / ``from_json``) for the container's
    record; ``detach`` takes it back when the network room's own state is gone."""

    container_id: str
    netns: str
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    #: the saved configuration for DEL: per network {name, ifname, conflist, runtime_config, result}
    saved: tuple[dict[str, Any], ...] = field(default=(), compare=False, repr=False)

    @property
    def ip(self) -> str:
        """The first network's address (no prefix), "" without networks."""
        return self.endpoints[0].ip if self.endpoints else ""

    @property
    def gateway(self) -> str:
        return self.endpoints[0].gateway if self.endpoints else ""

    @property
    def mac(self) -> str:
        return self.endpoints[0].mac if self.endpoints else ""

    def to_dict(self) -> dict[str, Any]:
        return {"container_id": self.container_id, "netns": self.netns,
                "endpoints": [e.to_dict() for e in self.endpoints], "ports": [p.to_dict() for p in self.ports],
                "saved": list(self.saved)}

    def to_json(self) -> str:
        import json

        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attachments:
        return cls(str(d["container_id"]), str(d.get("netns", "")),
                   tuple(Endpoint.from_dict(e) for e in d.get("endpoints", ())),
                   tuple(PortMapping.from_dict(p) for p in d.get("ports", ())),
                   tuple(d.get("saved", ())))

    @classmethod
    def from_json(cls, text: str | bytes) -> Attachments:
        import json

        return cls.from_dict(json.loads(text))
