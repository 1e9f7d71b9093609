"""The network room's data: conflists, subnets, the CNI stdin of each plugin, results read back,
resolv.conf and hosts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocibox.errors import NetworkError
from ocibox.network import Attachments, Endpoint, NetworkRequest, PortMapping, build_request
from ocibox.network import _conflist as cl
from ocibox.network._attach import endpoint_of
from ocibox.network._cni import check_plugins, plugin_config
from ocibox.network._text import build_hosts, build_resolv_conf, upstream_servers

GW = "10.90.0.1"


def test_conflist_round_trip() -> None:
    conf = cl.build_conflist("web", "ab" * 32, "ocibox-abababab", "10.100.3.0/24", "10.100.3.1", dns_enabled=True,
                             created="2026-01-01T00:00:00Z", labels=[("team", "a")])
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap", "firewall", "tuning"]
    bridge = conf["plugins"][0]
    assert bridge["ipMasq"] and bridge["isGateway"] and bridge["hairpinMode"]
    assert bridge["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}]
    assert conf["plugins"][2]["ingressPolicy"] == "same-bridge"
    assert conf["cniVersion"] == "1.0.0"
    net = cl.network_from_conflist(json.loads(json.dumps(conf)), "/x/web.conflist")
    assert (net.name, net.id, net.bridge, net.subnet, net.gateway) == (
        "web", "ab" * 32, "ocibox-abababab", "10.100.3.0/24", "10.100.3.1")
    assert net.dns_enabled and not net.internal and net.labels == (("team", "a"),) and net.short_id == "ab" * 6
    assert cl.plugin_types(conf) == ["bridge", "host-local", "portmap", "firewall", "tuning"]


def test_internal_conflist_has_no_way_out() -> None:
    conf = cl.build_conflist("in", "cd" * 32, "br", "10.100.4.0/24", "10.100.4.1", internal=True)
    bridge = conf["plugins"][0]
    assert not bridge["ipMasq"] and "routes" not in bridge["ipam"]
    assert cl.network_from_conflist(conf).internal


def test_with_data_dir_copies() -> None:
    conf = cl.build_conflist("n", "ef" * 32, "br", "10.100.5.0/24", "10.100.5.1")
    out = cl.with_data_dir(conf, "/store/networks/ipam")
    assert out["plugins"][0]["ipam"]["dataDir"] == "/store/networks/ipam"
    assert "dataDir" not in conf["plugins"][0]["ipam"]


def test_second_networks_have_no_default_route() -> None:
    conf = cl.with_data_dir(cl.build_conflist("n", "ef" * 32, "br", "10.100.5.0/24", "10.100.5.1"), "/d")
    out = cl.without_default_route(conf)
    assert "routes" not in out["plugins"][0]["ipam"] and out["plugins"][0]["ipam"]["dataDir"] == "/d"


@pytest.mark.parametrize("data, fragment", [
    ([], "not a JSON object"),
    ({"name": "x"}, "'plugins'"),
    ({"name": "x", "plugins": [{"type": "macvlan"}]}, "no bridge plugin"),
    ({"name": "x", "plugins": [{"type": "bridge", "ipam": {"type": "dhcp"}}]}, "no IPv4 subnet"),
])
def test_unusable_conflists(data: object, fragment: str) -> None:
    with pytest.raises(NetworkError, match=fragment):
        cl.network_from_conflist(data, "/etc/x.conflist")


def test_foreign_conflist() -> None:
    """A plain CNI conflist (podman's) is read with derived metadata."""
    conf = {"cniVersion": "0.4.0", "name": "podman", "plugins": [
        {"type": "bridge", "bridge": "cni-podman0", "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}],
                                                             "ranges": [[{"subnet": "10.88.0.0/16"}]]}}]}
    net = cl.network_from_conflist(conf)
    assert net.gateway == "10.88.0.1" and not net.internal and not net.dns_enabled and len(net.id) == 64


def test_subnets() -> None:
    assert cl.validate_subnet("10.5.0.0/16") == ("10.5.0.0/16", "10.5.0.1")
    assert cl.validate_subnet("10.5.0.0/16", "10.5.9.9") == ("10.5.0.0/16", "10.5.9.9")
    for subnet, gw, fragment in [("10.5.0.1/16", "", "host bits are set; did you mean 10.5.0.0/16"),
                                 ("10.5.0.0/31", "", "/8 to /30"), ("fd00::/64", "", "IPv6"),
                                 ("10.5.0.0", "", "IPv4 CIDR"), ("10.5.0.0/24", "10.6.0.1", "inside 10.5.0.0/24"),
                                 ("10.5.0.0/24", "10.5.0.255", "host address"), ("10.5.0.0/24", "x", "not an IPv4")]:
        with pytest.raises(NetworkError, match=fragment):
            cl.validate_subnet(subnet, gw)
    a, b = cl.parse_cidr("10.90.0.0/16"), cl.parse_cidr("10.90.7.0/24")
    assert a and b and cl.overlaps(a, b) and cl.overlaps(b, a)
    c = cl.parse_cidr("10.91.0.0/16")
    assert c and not cl.overlaps(a, c)
    cl.check_address("10.90.0.0/16", GW, "10.90.3.4", "n")
    for ip in ("10.91.0.2", GW, "10.90.0.0", "10.90.255.255"):
        with pytest.raises(NetworkError, match="--ip"):
            cl.check_address("10.90.0.0/16", GW, ip, "n")


def test_pick_subnet_avoids_networks_and_routes() -> None:
    routes = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
              "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
              "eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
              "br0\t00005A0A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n")
    parsed = cl.parse_routes(routes)
    assert parsed == [((0x0A000200, 24), "eth0"), ((0x0A5A0000, 16), "br0")]  # the default route left out
    picked = cl.pick_subnet(cl.default_candidates(), [s for s, _ in parsed])
    assert picked is not None and cl.format_subnet(picked) == "10.91.0.0/16"
    taken = [(0x0A640000 | i << 8, 24) for i in range(3)]
    user = cl.pick_subnet(cl.user_candidates(), taken)
    assert user is not None and cl.format_subnet(user) == "10.100.3.0/24"
    assert cl.pick_subnet(cl.user_candidates(), [(0x0A000000, 8)]) is None


def test_plugin_stdin() -> None:
    conf = cl.build_conflist("n", "ab" * 32, "br", "10.100.5.0/24", "10.100.5.1")
    rc = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}], "mac": "", "ips": []}
    portmap = plugin_config(conf, conf["plugins"][1], rc, {"cniVersion": "1.0.0", "ips": []})
    assert portmap == {"type": "portmap", "capabilities": {"portMappings": True}, "name": "n", "cniVersion": "1.0.0",
                       "runtimeConfig": {"portMappings": rc["portMappings"]},
                       "prevResult": {"cniVersion": "1.0.0", "ips": []}}
    bridge = plugin_config(conf, conf["plugins"][0], rc, None)
    assert "runtimeConfig" not in bridge and "prevResult" not in bridge  # no --ip given, first plugin
    firewall = plugin_config(conf, conf["plugins"][2], rc, None)
    assert "runtimeConfig" not in firewall  # no capabilities declared: nothing of the runtime's
    assert "ocibox" not in bridge


def test_missing_plugin_names_the_package(tmp_path: Path) -> None:
    conf = cl.build_conflist("n", "ab" * 32, "br", "10.100.5.0/24", "10.100.5.1")
    with pytest.raises(NetworkError) as e:
        check_plugins(conf, (str(tmp_path),))
    assert "'bridge'" in str(e.value) and "containernetworking-plugins" in str(e.value)


RESULT = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "br", "mac": "aa:aa:aa:aa:aa:aa"}, {"name": "veth1", "mac": "bb:bb:bb:bb:bb:bb"},
                   {"name": "eth0", "mac": "02:42:0a:5a:00:02", "sandbox": "/run/netns/x"}],
    "ips": [{"interface": 2, "address": "10.90.0.2/16", "gateway": GW}],
    "routes": [{"dst": "0.0.0.0/0"}],
}


def test_endpoint_from_result() -> None:
    entry = {"name": "ocibox", "ifname": "eth0", "bridge": "br", "dns": False, "gateway": GW, "result": RESULT}
    ep = endpoint_of(entry)
    assert ep == Endpoint("ocibox", "eth0", "10.90.0.2/16", GW, "02:42:0a:5a:00:02", "br", False)
    assert ep is not None and ep.ip == "10.90.0.2"
    assert endpoint_of(dict(entry, result=None)) is None


def test_attachments_json() -> None:
    att = Attachments("c" * 64, "/run/netns/ocibox-x",
                      (Endpoint("n", "eth0", "10.100.0.2/24", "10.100.0.1", "02:00:00:00:00:01", "br", True),),
                      (PortMapping(80, "tcp", "", 8080),), ({"name": "n", "ifname": "eth0", "result": RESULT},))
    back = Attachments.from_json(att.to_json())
    assert back == att and back.saved == att.saved
    assert (back.ip, back.gateway, back.mac) == ("10.100.0.2", "10.100.0.1", "02:00:00:00:00:01")


HOST = "# generated\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch corp.example\n"
RESOLVED = "nameserver 192.0.2.53\nnameserver 127.0.0.1\nnameserver fd00::53\nsearch corp.example\n"


def test_upstream_servers() -> None:
    assert upstream_servers(HOST, RESOLVED) == ["192.0.2.53"]  # systemd-resolved's upstream, IPv4 only
    assert upstream_servers(HOST, RESOLVED, ipv6=True) == ["192.0.2.53", "fd00::53"]
    assert upstream_servers("nameserver 127.0.0.1\n", "") == ["8.8.8.8", "8.8.4.4"]  # docker's fallback
    assert upstream_servers("nameserver 10.1.1.1\nnameserver 127.0.0.11\n", "") == ["10.1.1.1"]
    assert upstream_servers("", "") == ["8.8.8.8", "8.8.4.4"]


def test_resolv_conf() -> None:
    default = NetworkRequest()
    assert build_resolv_conf(default, [], HOST, RESOLVED) == (
        "nameserver 192.0.2.53\nsearch corp.example\noptions edns0 trust-ad\n")
    flags = build_request(dns=["1.1.1.1"], dns_search=["a.example", "b.example"], dns_options=["ndots:3"])
    assert build_resolv_conf(flags, [], HOST, RESOLVED) == (
        "nameserver 1.1.1.1\nsearch a.example b.example\noptions ndots:3\n")
    assert "search" not in build_resolv_conf(build_request(dns_search=["."]), [], HOST, RESOLVED)
    # a network with names: its DNS server only (it forwards to --dns servers or the host's)
    named = build_request(network=["n"], dns=["1.1.1.1"])
    assert build_resolv_conf(named, ["10.100.0.1"], HOST, RESOLVED).startswith("nameserver 10.100.0.1\nsearch")
    # --network host: the host's file as it is, unless flags change it
    host = build_request(network=["host"])
    assert build_resolv_conf(host, [], HOST, RESOLVED) == HOST
    assert build_resolv_conf(build_request(network=["host"], dns=["9.9.9.9"]), [], HOST, RESOLVED).startswith(
        "nameserver 9.9.9.9\n")


def test_hosts() -> None:
    att = Attachments("c" * 64, "/run/netns/x", (Endpoint("n", "eth0", "10.100.0.2/24", "10.100.0.1"),))
    req = build_request(network=["n"], add_host=["db:10.0.0.5", "gw:host-gateway"])
    text = build_hosts(req, att, "box.example", "web", "")
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert "10.0.0.5\tdb" in lines and "10.100.0.1\tgw" in lines
    assert lines[-1] == "10.100.0.2\tbox.example box web"
    none = build_hosts(build_request(network=["none"]), None, "h", "", "")
    assert none.splitlines()[-1] == "127.0.1.1\th"
    host = build_hosts(build_request(network=["host"], add_host=["x:1.2.3.4"]), None, "h", "", "127.0.0.1 me")
    assert host == "127.0.0.1 me\n1.2.3.4\tx\n"
