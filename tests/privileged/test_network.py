"""The network room for real: the CNI reference plugins, real bridges, veths, namespaces, iptables
and aardvark-dns, as root.

A "container" here is what the runner will make of the API: ``check`` -> ``new_netns`` -> ``attach``,
then programs run in its namespace with ``ip netns exec`` under a private mount namespace in which the
container's generated /etc/resolv.conf and /etc/hosts are bind-mounted over the host's. "The outside"
is a namespace the test makes behind a veth pair (203.0.113.1 on the host side, 203.0.113.2 inside):
no test traffic leaves for the host's real network, it goes to loopback or to namespaces made here.

Every namespace, link, rule, process and file made is removed by the fixtures, also on failure; the
module ends by comparing the host's links, namespaces and iptables rules with what it found.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from outside import OUT_HOST, OUT_PEER, HostNet, dns_processes, links, outside_namespace, rules

from ocibox import network as net
from ocibox.errors import NetworkError
from ocibox.network import _dns, _state
from ocibox.settings import Settings

pytestmark = [pytest.mark.privileged, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

CNI = Path("/usr/lib/cni")
needs_plugins = pytest.mark.skipif(not (CNI / "bridge").exists(), reason="containernetworking-plugins not installed")
needs_aardvark = pytest.mark.skipif(_dns.binary() is None, reason="aardvark-dns not installed")

SERVER = textwrap.dedent("""\
    import socket, sys
    proto, addr, port, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if proto == "tcp":
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(64)
        print("ready", flush=True)
        while True:
            c, peer = s.accept()
            with c:
                data = c.recv(65536)
                c.sendall(f"{tag} {peer[0]} ".encode() + data)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, port))
        print("ready", flush=True)
        while True:
            data, peer = s.recvfrom(65536)
            s.sendto(f"{tag} {peer[0]} ".encode() + data, peer)
""")
CLIENT = textwrap.dedent("""\
    import socket, sys
    proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    try:
        addr = socket.gethostbyname(host)
        with socket.socket(socket.AF_INET, kind) as s:
            s.settimeout(3)
            s.connect((addr, port))
            s.send(b"ping")
            print(s.recv(65536).decode())
    except OSError as e:
        print(f"ERROR {type(e).__name__} {e}")
        sys.exit(1)
""")


# ------------------------------------------------------------------------------------ helpers
def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout)


def call(proto: str, host: str, port: int, timeout: float = 3) -> str:
    """From the host: send "ping", return the server's answer ("" when nothing answers)."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    try:
        with socket.socket(socket.AF_INET, kind) as s:
            s.settimeout(timeout)
            s.connect((host, port))
            s.send(b"ping")
            return s.recv(65536).decode()
    except OSError:
        return ""


class Room:
    """A config dir and a store of the test's own, the tools of the tests, and what they made."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.settings = Settings(root=tmp / "store")
        self.server = tmp / "server.py"
        self.server.write_text(SERVER)
        self.client = tmp / "client.py"
        self.client.write_text(CLIENT)
        self.boxes: list[Box] = []
        self.procs: list[subprocess.Popen[str]] = []

    def box(self, name: str, **flags: object) -> Box:
        b = Box(self, name, **flags)
        self.boxes.append(b)
        return b

    def serve(self, prefix: list[str], proto: str, addr: str, port: int, tag: str,
              own: bool = False) -> subprocess.Popen[str]:
        """An echo server; ended by ``close`` unless the caller owns it (``own``)."""
        p = subprocess.Popen([*prefix, sys.executable, str(self.server), proto, addr, str(port), tag],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if not own:
            self.procs.append(p)
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line.strip() == "ready", p.stderr.read() if p.stderr else ""
        return p

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        self.procs.clear()
        for b in list(self.boxes):
            b.close()


class Box:
    """One "container": a netns of ``new_netns``, attached by ``attach`` after ``check``."""

    def __init__(self, room: Room, name: str, **flags: object) -> None:
        self.room, self.name = room, name
        self.id = os.urandom(32).hex()
        s = room.settings
        self.request = net.check(s, net.build_request(**flags), self.id, name)  # type: ignore[arg-type]
        self.netns = ""
        try:
            self.netns = net.new_netns(s, self.id)
            self.att = net.attach(s, self.request, self.id, name, self.netns)
        except BaseException:
            net.detach(s, self.id)
            raise
        etc = room.tmp / "etc" / self.id[:12]
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text(net.resolv_conf(self.request, self.att))
        (etc / "hosts").write_text(net.hosts(self.request, self.att, self.id[:12], name))
        self.etc = etc

    @property
    def ip(self) -> str:
        return self.att.ip

    def prefix(self) -> list[str]:
        """Run in the box: its netns, its /etc/resolv.conf and /etc/hosts (in a private mount namespace)."""
        etc = self.etc
        return ["ip", "netns", "exec", os.path.basename(self.netns), "unshare", "-m", "sh", "-c",
                f'mount --bind {etc}/resolv.conf /etc/resolv.conf && mount --bind {etc}/hosts /etc/hosts && exec "$@"',
                "box"]

    def run(self, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix(), *argv], capture_output=True, text=True, timeout=timeout)

    def call(self, proto: str, host: str, port: int) -> str:
        r = self.run(sys.executable, str(self.room.client), proto, host, str(port))
        return r.stdout.strip() if r.returncode == 0 else ""

    def serve(self, proto: str, port: int) -> None:
        self.room.serve(self.prefix(), proto, "0.0.0.0", port, self.name)

    def close(self) -> None:
        net.detach(self.room.settings, self.id)
        if self in self.room.boxes:
            self.room.boxes.remove(self)


@pytest.fixture(scope="module")
def baseline() -> Iterator[None]:
    """The host as this module found it; compared at the end (the plugins' shared chains aside)."""
    before = HostNet.now()
    yield
    assert HostNet.now().new_since(before) == {}


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory, baseline: None) -> Iterator[Room]:
    tmp = tmp_path_factory.mktemp("net")
    old = os.environ.get("OCIBOX_CONFIG_DIR")
    os.environ["OCIBOX_CONFIG_DIR"] = str(tmp / "config")
    r = Room(tmp)
    try:
        yield r
    finally:
        r.close()
        for rec in _state.load_all(r.settings):
            with contextlib.suppress(NetworkError):
                net.detach(r.settings, rec["id"])
        for n in net.ls(r.settings):
            with contextlib.suppress(NetworkError):
                net.rm(r.settings, [n.name])
        if old is None:
            del os.environ["OCIBOX_CONFIG_DIR"]
        else:
            os.environ["OCIBOX_CONFIG_DIR"] = old


@pytest.fixture
def clean(room: Room) -> Iterator[Room]:
    """A test's boxes and servers end with the test."""
    yield room
    room.close()


@pytest.fixture(scope="module")
def outside(room: Room) -> Iterator[str]:
    """A namespace behind a veth pair, standing for the world outside: a TCP/UDP echo server answers
    at 203.0.113.2:9000 with the address it saw the client come from. Returns the netns name."""
    with outside_namespace() as ns:
        servers: list[subprocess.Popen[str]] = []
        try:
            for proto in ("tcp", "udp"):
                servers.append(room.serve(["ip", "netns", "exec", ns], proto, OUT_PEER, 9000, "outside", own=True))
            yield ns
        finally:
            for p in servers:
                p.kill()
                p.wait()


# ------------------------------------------------------------------------------------ the default network
@needs_plugins
def test_default_network_outbound_is_masqueraded(clean: Room, outside: str) -> None:
    b = clean.box("out1")
    default = net.load("ocibox")
    assert default.bridge.startswith("ocibox") and not default.dns_enabled
    assert b.att.endpoints[0].network == "ocibox" and b.ip and b.att.gateway == default.gateway
    routes = b.run("ip", "route").stdout
    assert f"default via {default.gateway}" in routes
    # the outside sees the host's address, not the container's: masquerade
    assert b.call("tcp", OUT_PEER, 9000) == f"outside {OUT_HOST} ping"
    assert b.call("udp", OUT_PEER, 9000) == f"outside {OUT_HOST} ping"
    # resolv.conf: the host's resolvers without loopback ones; hosts: own address and names
    resolv = (b.etc / "resolv.conf").read_text()
    assert "nameserver" in resolv and "127.0.0." not in resolv
    assert f"{b.ip}\t{b.id[:12]} out1" in (b.etc / "hosts").read_text()


@needs_plugins
def test_published_ports(clean: Room, outside: str) -> None:
    web = clean.box("web", publish=["127.0.0.1::80", "80", "127.0.0.1::53/udp"])
    ports = net.ports(web.att)
    assert [(p.container_port, p.protocol, p.host_ip) for p in ports] == [
        (53, "udp", "127.0.0.1"), (80, "tcp", ""), (80, "tcp", "127.0.0.1")]
    assert all(p.host_port for p in ports)
    assert net.ports(web.att.to_json(), "53/udp") == [ports[0]]
    web.serve("tcp", 80)
    web.serve("udp", 53)
    udp_lo, tcp_all, tcp_lo = (p.host_port for p in ports)
    # at 127.0.0.1 and at a host address, by DNAT in the kernel (nothing listens on the host)
    assert call("tcp", "127.0.0.1", tcp_all).startswith("web ")
    assert call("tcp", OUT_HOST, tcp_all).startswith("web ")
    assert call("udp", "127.0.0.1", udp_lo).startswith("web ")
    assert call("tcp", "127.0.0.1", tcp_lo).startswith("web ")
    # -p 127.0.0.1:... answers at 127.0.0.1 only
    assert call("tcp", OUT_HOST, tcp_lo, timeout=1) == ""
    assert call("udp", OUT_HOST, udp_lo, timeout=1) == ""
    # from the outside namespace through the host's address on its side
    out = subprocess.run(["ip", "netns", "exec", outside, sys.executable, str(clean.client), "tcp", OUT_HOST,
                          str(tcp_all)], capture_output=True, text=True, timeout=20)
    assert out.stdout.startswith("web "), out
    # hairpin: another container, and the container itself, through the host's addresses
    other = clean.box("other")
    assert other.call("tcp", OUT_HOST, tcp_all).startswith("web ")
    assert other.call("tcp", web.att.gateway, tcp_all).startswith("web ")
    assert web.call("tcp", OUT_HOST, tcp_all).startswith("web ")
    ss = sh("ss", "-ltnu").stdout
    assert f":{tcp_all} " not in ss  # no user-space proxy holds the port


@needs_plugins
def test_fixed_host_port_and_range(clean: Room) -> None:
    port = free_port()
    b = clean.box("fixed", publish=[f"{port}:80", f"{port + 1}-{port + 3}:81"])
    assert [(p.host_port, p.container_port) for p in net.ports(b.att)] == [(port, 80), (port + 1, 81)]
    b.serve("tcp", 80)
    assert call("tcp", "127.0.0.1", port).startswith("fixed ")


def free_port() -> int:
    """Two consecutive free TCP ports... and a few more: the first of them."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p < 60000 and all(_free(q) for q in range(p, p + 5)):
            return int(p)
    raise AssertionError("no free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


@needs_plugins
def test_ip_and_mac(clean: Room) -> None:
    clean.box("first")
    default = net.load("ocibox")
    ip = default.subnet.rsplit(".", 2)[0] + ".7.9"
    b = clean.box("fixed-ip", ip=ip, mac="02:42:aa:bb:cc:dd")
    assert b.ip == ip and b.att.mac == "02:42:aa:bb:cc:dd"
    show = b.run("ip", "addr", "show", "eth0").stdout
    assert f"inet {ip}/" in show and "02:42:aa:bb:cc:dd" in show
    with pytest.raises(NetworkError, match="already in use"):
        clean.box("same-ip", ip=ip)
    with pytest.raises(NetworkError, match="outside network"):
        clean.box("far-ip", ip="192.0.2.77")


# ------------------------------------------------------------------------------------ user networks
@needs_plugins
@needs_aardvark
def test_names_on_a_user_network_and_isolation(clean: Room, outside: str) -> None:
    red = net.create("red")
    blue = net.create("blue")
    assert red.dns_enabled and red.subnet != blue.subnet
    r1 = clean.box("r1", network=["red"], aliases=["db"])
    r2 = clean.box("r2", network=["red"])
    b1 = clean.box("b1", network=["blue"])
    assert (r2.etc / "resolv.conf").read_text().startswith(f"nameserver {red.gateway}\n")
    r1.serve("tcp", 80)
    b1.serve("tcp", 80)
    # by name, by alias, by short id, through the container's own resolv.conf
    assert r2.call("tcp", "r1", 80) == f"r1 {r2.ip} ping"
    assert r2.call("tcp", "db", 80).startswith("r1 ")
    assert r2.call("tcp", r1.id[:12], 80).startswith("r1 ")
    look = r2.run("busybox", "nslookup", "r1", red.gateway).stdout
    assert r1.ip in look
    # not across networks: neither the name nor the address
    assert b1.call("tcp", "r1", 80) == ""
    assert r1.ip not in b1.run("busybox", "nslookup", "r1", blue.gateway, timeout=30).stdout
    assert b1.ip not in r2.run("busybox", "nslookup", "b1", red.gateway, timeout=30).stdout
    # (aardvark-dns 1.4 answers with the names of the network whose address a query is sent to: a
    # container that asks another network's gateway on purpose learns its addresses, and still cannot
    # reach them, as below)
    assert b1.call("tcp", r1.ip, 80) == ""
    assert r1.call("tcp", b1.ip, 80) == ""
    assert b1.run("ping", "-c", "1", "-W", "1", r1.ip).returncode != 0
    # but out to the world, yes
    assert b1.call("tcp", OUT_PEER, 9000) == f"outside {OUT_HOST} ping"
    inspect = net.inspect(clean.settings, ["red"])[0]
    assert set(inspect["Containers"]) == {r1.id, r2.id}
    assert inspect["IPAM"]["Config"] == [{"Subnet": red.subnet, "Gateway": red.gateway}]
    assert {row["Name"] for row in map(net.ls_row, net.ls(clean.settings))} >= {"ocibox", "red", "blue"}
    for b in (r1, r2, b1):
        b.close()
    assert _dns.running_pid(clean.settings) is None  # the last container of the last named network went
    assert net.rm(clean.settings, ["red", "blue"]) == ["red", "blue"]
    assert not Path(f"/sys/class/net/{red.bridge}").exists()


DNS_LOGGER = textwrap.dedent("""\
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], 53))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(4096)
        with open(sys.argv[2], "ab") as f:
            f.write(data + b"\\n")
""")


@needs_plugins
@needs_aardvark
def test_dns_servers_of_a_container_on_a_user_network(clean: Room, outside: str, tmp_path: Path) -> None:
    """--dns on a user network: resolv.conf names the network's DNS server, which forwards the names
    it does not know to the container's own servers (docker's embedded DNS does the same)."""
    green = net.create("green", subnet="10.126.206.0/24")
    log = tmp_path / "queries"
    logger = tmp_path / "logger.py"
    logger.write_text(DNS_LOGGER)
    p = subprocess.Popen(["ip", "netns", "exec", outside, sys.executable, str(logger), OUT_PEER, str(log)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        g = clean.box("g1", network=["green"], dns=[OUT_PEER])
        assert (g.etc / "resolv.conf").read_text().startswith(f"nameserver {green.gateway}\n")
        g.run("busybox", "nslookup", "-timeout=1", "forwarded.example.org", timeout=30)
        assert b"forwarded" in log.read_bytes()
        g.close()
    finally:
        p.kill()
        p.wait()
    net.rm(clean.settings, ["green"])


@needs_plugins
@needs_aardvark
def test_two_networks(clean: Room) -> None:
    """eth0 on the first network, eth1 on the second; the default route is the first one's."""
    one = net.create("one", subnet="10.126.207.0/24")
    two = net.create("two", subnet="10.126.208.0/24")
    b = clean.box("both", network=["one", "two"])
    assert [(e.network, e.ifname) for e in b.att.endpoints] == [("one", "eth0"), ("two", "eth1")]
    routes = b.run("ip", "route").stdout
    assert routes.count("default") == 1 and f"default via {one.gateway} dev eth0" in routes
    peer = clean.box("peer2", network=["two"])
    peer.serve("tcp", 80)
    assert b.call("tcp", peer.ip, 80) == f"peer2 {b.att.endpoints[1].ip} ping"
    b.close()
    peer.close()
    assert two.name in net.rm(clean.settings, ["one", "two"])


def test_ns_mode_needs_a_mounted_namespace(clean: Room, tmp_path: Path) -> None:
    with pytest.raises(NetworkError, match="no network namespace is mounted"):
        net.check(clean.settings, net.build_request(network=[f"ns:{tmp_path}/nothing"]), "c" * 64)
    assert net.check(clean.settings, net.build_request(network=["ns:/proc/self/ns/net"]), "c" * 64).mode == "ns"


@needs_plugins
@needs_aardvark
def test_internal_network_has_no_route_out(clean: Room, outside: str) -> None:
    net.create("inside", internal=True, subnet="10.126.200.0/24")
    i1 = clean.box("i1", network=["inside"])
    i2 = clean.box("i2", network=["inside"])
    assert "default" not in i1.run("ip", "route").stdout
    assert i1.call("tcp", OUT_PEER, 9000) == ""
    i2.serve("tcp", 80)
    assert i1.call("tcp", "i2", 80) == f"i2 {i1.ip} ping"
    i1.close()
    i2.close()
    net.rm(clean.settings, ["inside"])


@needs_plugins
@needs_aardvark
def test_twenty_containers_at_once(clean: Room) -> None:
    net.create("crowd")
    with ThreadPoolExecutor(20) as pool:
        boxes = list(pool.map(lambda i: clean.box(f"c{i}", network=["crowd"]), range(20)))
    assert len({b.ip for b in boxes}) == 20
    names = " ".join(f"c{i}" for i in range(20))
    r = boxes[0].run("sh", "-c", f"for n in {names}; do echo $n $(getent hosts $n || echo MISSING); done")
    assert "MISSING" not in r.stdout, r.stdout
    got = {line.split()[0]: line.split()[1] for line in r.stdout.splitlines()}
    assert got == {b.name: b.ip for b in boxes}
    with ThreadPoolExecutor(20) as pool:
        list(pool.map(lambda b: b.close(), boxes))
    net.rm(clean.settings, ["crowd"])


# ------------------------------------------------------------------------------------ refusals
def _nothing_left(room: Room, cid: str) -> None:
    assert _state.load(room.settings, cid) is None
    assert not os.path.exists(f"/run/netns/ocibox-{cid}")


@needs_plugins
def test_conflicts_are_refused_before_anything_is_made(clean: Room, outside: str) -> None:
    s = clean.settings
    cid = os.urandom(32).hex()
    # a host port a program listens on
    with socket.socket() as lsn:
        lsn.bind(("127.0.0.1", 0))
        lsn.listen(1)
        port = lsn.getsockname()[1]
        for spec in (f"127.0.0.1:{port}:80", f"{port}:80"):
            with pytest.raises(NetworkError, match=f"host port .*{port}/tcp is already in use"):
                net.check(s, net.build_request(publish=[spec]), cid, "x")
    _nothing_left(clean, cid)
    # a host port another container publishes
    port = free_port()
    first = clean.box("holder", publish=[f"{port}:80"])
    with pytest.raises(NetworkError, match="already published by container holder"):
        net.check(s, net.build_request(publish=[f"127.0.0.1:{port}:80"]), cid, "x")
    _nothing_left(clean, cid)
    first.close()
    # unknown network, overlapping subnet, reserved name
    with pytest.raises(NetworkError, match="network 'nosuch' not found"):
        net.check(s, net.build_request(network=["nosuch"]), cid, "x")
    default = net.load("ocibox")
    inside = default.subnet.rsplit(".", 2)[0] + ".5.0/24"
    with pytest.raises(NetworkError, match="overlaps network 'ocibox'"):
        net.create("overlap", subnet=inside)
    with pytest.raises(NetworkError, match="overlaps the host's route"):
        net.create("overlap", subnet="203.0.113.0/24")  # the outside's veth, when that fixture ran
    net.create("twice", subnet="10.126.201.0/24")
    with pytest.raises(NetworkError, match="already exists"):
        net.create("twice")
    with pytest.raises(NetworkError, match="overlaps network 'twice'"):
        net.create("other", subnet="10.126.201.128/25")
    # rm of a network in use
    user = clean.box("user", network=["twice"])
    with pytest.raises(NetworkError, match="in use by container"):
        net.rm(s, ["twice"])
    assert "twice" not in net.prune(s)
    user.close()
    assert "twice" in net.prune(s)
    _nothing_left(clean, cid)


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Iterator[Path]:
    """A CNI path of links to the real plugins, for tests to take one away or break it."""
    d = tmp_path / "cni"
    d.mkdir()
    for p in CNI.iterdir():
        (d / p.name).symlink_to(p)
    os.environ["OCIBOX_CNI_PATH"] = str(d)
    yield d
    del os.environ["OCIBOX_CNI_PATH"]


@needs_plugins
def test_missing_plugin(clean: Room, plugin_dir: Path) -> None:
    (plugin_dir / "portmap").unlink()
    cid = os.urandom(32).hex()
    with pytest.raises(NetworkError) as e:
        net.check(clean.settings, net.build_request(publish=["80"]), cid, "x")
    assert "'portmap'" in str(e.value) and "containernetworking-plugins" in str(e.value)
    _nothing_left(clean, cid)


@needs_plugins
def test_missing_dns_server(clean: Room) -> None:
    net.create("nodns", subnet="10.126.202.0/24")
    os.environ["OCIBOX_AARDVARK"] = ""
    cid = os.urandom(32).hex()
    try:
        with pytest.raises(NetworkError, match="install the Debian package aardvark-dns"):
            net.check(clean.settings, net.build_request(network=["nodns"]), cid, "x")
    finally:
        del os.environ["OCIBOX_AARDVARK"]
        net.rm(clean.settings, ["nodns"])
    _nothing_left(clean, cid)


@needs_plugins
def test_broken_plugin_is_rolled_back(clean: Room, plugin_dir: Path) -> None:
    clean.box("warm").close()  # the shared chains exist; what follows must leave them as they are
    before_links, before_rules, before_ns = links(), rules(), set(os.listdir("/run/netns"))
    (plugin_dir / "firewall").unlink()
    (plugin_dir / "firewall").write_text(
        '#!/bin/sh\ncat >/dev/null\nif [ "$CNI_COMMAND" = ADD ]; then\n'
        '  echo \'{"cniVersion":"1.0.0","code":999,"msg":"firewall exploded"}\'; exit 1\nfi\n')
    (plugin_dir / "firewall").chmod(0o755)
    with pytest.raises(NetworkError) as e:
        clean.box("broken", publish=["80"])
    assert "'firewall'" in str(e.value) and "firewall exploded" in str(e.value)
    assert "containernetworking-plugins" in str(e.value)
    assert links() == before_links
    assert rules() == before_rules
    assert _leases(clean) == []
    assert _state.load_all(clean.settings) == []
    assert set(os.listdir("/run/netns")) == before_ns


def _leases(room: Room) -> list[str]:
    d = room.settings.root / "networks" / "ipam"
    if not d.exists():
        return []
    return sorted(str(p.relative_to(d)) for p in d.rglob("*")
                  if p.is_file() and re.fullmatch(r"[0-9.]+", p.name))


# ------------------------------------------------------------------------------------ teardown
@needs_plugins
@needs_aardvark
def test_sigkill_then_repair(clean: Room) -> None:
    """A process attaches a container and dies by SIGKILL; the next command's repair DELs it with the
    saved configuration: no veth, lease, rule, netns, record or DNS server left."""
    killnet = net.create("killnet", subnet="10.126.203.0/24")
    before_links, before_rules = links(), rules()
    script = textwrap.dedent(f"""\
        import os, sys, time
        os.environ["OCIBOX_CONFIG_DIR"] = {os.environ["OCIBOX_CONFIG_DIR"]!r}
        from pathlib import Path
        from ocibox import network as net
        from ocibox.settings import Settings
        s = Settings(root=Path({str(clean.settings.root)!r}))
        cid = sys.argv[1]
        req = net.check(s, net.build_request(network=["killnet"], publish=["80"]), cid, "victim")
        ns = net.new_netns(s, cid)
        net.attach(s, req, cid, "victim", ns)
        print("attached", flush=True)
        time.sleep(600)
    """)
    cid = os.urandom(32).hex()
    p = subprocess.Popen([sys.executable, "-c", script, cid], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "attached"
        assert _dns.running_pid(clean.settings) is not None
        assert net.repair(clean.settings, []) == []  # its owner is alive: not touched
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert len(links()) > len(before_links)
        assert net.repair(clean.settings, [cid]) == []  # a live container (the runner says): kept
        # not live in the snapshot, but its start finished since (the runner's second look says so): kept
        asked = []
        assert net.repair(clean.settings, [], still_live=lambda c: asked.append(c) is None) == []
        assert asked == [cid] and net.attachments(clean.settings, cid) is not None
        assert net.repair(clean.settings, [], still_live=lambda c: False) == [cid]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert links() - before_links == {killnet.bridge}  # the bridge stays until the network goes
    assert _leases(clean) == []
    _nothing_left(clean, cid)
    assert _dns.running_pid(clean.settings) is None
    net.detach(clean.settings, cid)  # a second teardown does nothing
    net.rm(clean.settings, ["killnet"])
    assert links() == before_links
    assert rules() == before_rules


@needs_plugins
def test_detach_is_idempotent_and_tolerant(clean: Room) -> None:
    b = clean.box("twice")
    saved = b.att.to_json()
    with pytest.raises(NetworkError, match="already"):
        net.new_netns(clean.settings, b.id)
    with pytest.raises(NetworkError, match="already attached"):
        net.attach(clean.settings, b.request, b.id, "twice", b.netns)
    net.detach(clean.settings, b.id)
    net.detach(clean.settings, b.id)
    net.detach(clean.settings, b.id, saved)  # the runner's copy: the netns is gone, nothing to do
    _nothing_left(clean, b.id)
    # the record lost (a runner's copy only): DEL from what attach returned
    c = clean.box("lost")
    saved = c.att.to_json()
    (clean.settings.root / "networks" / "containers" / f"{c.id}.json").unlink()
    before = len(links())
    net.detach(clean.settings, c.id, saved)
    assert len(links()) == before - 1  # its veth
    _nothing_left(clean, c.id)
    assert _leases(clean) == []
    clean.boxes.remove(b)
    clean.boxes.remove(c)


@needs_plugins
def test_background_detach(clean: Room) -> None:
    """detach(background=True) returns at once; the same host port can be asked for right away (check
    waits for the teardown that still holds it), and the teardown leaves nothing."""
    port = free_port()
    first = clean.box("bg1", publish=[f"{port}:80"])
    before = len(links())
    t = time.perf_counter()
    net.detach(clean.settings, first.id, background=True)
    took = time.perf_counter() - t
    clean.boxes.remove(first)
    second = clean.box("bg2", publish=[f"{port}:80"])
    assert [p.host_port for p in net.ports(second.att)] == [port]
    second.serve("tcp", 80)
    assert call("tcp", "127.0.0.1", port).startswith("bg2 ")
    second.close()
    deadline = time.time() + 10
    while (_state.load(clean.settings, first.id) is not None or len(links()) >= before) and time.time() < deadline:
        time.sleep(0.05)
    _nothing_left(clean, first.id)
    assert len(links()) == before - 1
    assert took < 0.05, took


@needs_plugins
@needs_aardvark
def test_hundred_cycles_leave_nothing(clean: Room) -> None:
    net.create("cycles", subnet="10.126.204.0/24")
    clean.box("warm", network=["cycles"], publish=["80"]).close()
    before_links, before_rules = links(), rules()
    before_ns = sorted(os.listdir("/run/netns"))
    for i in range(100):
        b = clean.box(f"cycle{i}", network=["cycles"], publish=["80", "127.0.0.1::53/udp"])
        b.close()
    assert links() == before_links
    assert sorted(os.listdir("/run/netns")) == before_ns
    assert rules() == before_rules
    assert _leases(clean) == []
    assert _state.load_all(clean.settings) == []
    assert _dns.running_pid(clean.settings) is None
    assert [p for p in dns_processes() if str(clean.settings.root) in p] == []
    net.rm(clean.settings, ["cycles"])


# ------------------------------------------------------------------------------------ measurements
@needs_plugins
@needs_aardvark
def test_measure(clean: Room, capsys: pytest.CaptureFixture[str]) -> None:
    """CNI ADD+DEL on the default network (median of 20), the DNS server's RSS and PSS."""
    s = clean.settings
    clean.box("warm").close()
    adds, dels = [], []
    for _ in range(20):
        cid = os.urandom(32).hex()
        req = net.check(s, net.build_request(), cid, "m")
        ns = net.new_netns(s, cid)
        t0 = time.perf_counter()
        net.attach(s, req, cid, "m", ns)
        t1 = time.perf_counter()
        net.detach(s, cid)
        t2 = time.perf_counter()
        adds.append(t1 - t0)
        dels.append(t2 - t1)
    net.create("measured", subnet="10.126.205.0/24")
    b = clean.box("dns1", network=["measured"])
    pid = _dns.running_pid(s)
    assert pid is not None
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    rss = int(re.search(r"^Rss:\s+(\d+)", rollup, re.M).group(1))  # type: ignore[union-attr]
    pss = int(re.search(r"^Pss:\s+(\d+)", rollup, re.M).group(1))  # type: ignore[union-attr]
    b.close()
    net.rm(s, ["measured"])
    report = {"add_ms": round(1000 * statistics.median(adds), 1), "del_ms": round(1000 * statistics.median(dels), 1),
              "add_del_ms": round(1000 * statistics.median(a + d for a, d in zip(adds, dels, strict=True)), 1),
              "aardvark_rss_kib": rss, "aardvark_pss_kib": pss}
    with capsys.disabled():
        print(f"\nnetwork measurements: {json.dumps(report)}")
    assert report["add_del_ms"] < 2000
