"""The network room's pure parts: -p/-P, --network, --add-host, --dns*, the request's conflicts."""

from __future__ import annotations

import pytest

from ocibox.errors import UsageError
from ocibox.network import (
    NetworkRequest,
    PortMapping,
    build_request,
    parse_add_host,
    parse_network,
    parse_publish,
)
from ocibox.network._parse import is_ipv6, merge_ports, parse_cidr, parse_ipv4, publish_all


def P(*a: object) -> PortMapping:
    return PortMapping(*a)  # type: ignore[arg-type]


@pytest.mark.parametrize("text, want", [
    ("80", (P(80, "tcp", "", 0),)),
    ("8080:80", (P(80, "tcp", "", 8080),)),
    ("8080:80/udp", (P(80, "udp", "", 8080),)),
    ("8080:80/TCP", (P(80, "tcp", "", 8080),)),
    ("127.0.0.1:8080:80", (P(80, "tcp", "127.0.0.1", 8080),)),
    ("127.0.0.1::80", (P(80, "tcp", "127.0.0.1", 0),)),
    ("0.0.0.0:8080:80", (P(80, "tcp", "", 8080),)),
    (":80", (P(80, "tcp", "", 0),)),
    ("80-82", (P(80, "tcp", "", 0), P(81, "tcp", "", 0), P(82, "tcp", "", 0))),
    ("8000-8002:80-82/udp", (P(80, "udp", "", 8000), P(81, "udp", "", 8001), P(82, "udp", "", 8002))),
    ("8000-8010:80", (P(80, "tcp", "", 8000, 8010),)),
    ("10.0.0.1:8000-8001:80-81", (P(80, "tcp", "10.0.0.1", 8000), P(81, "tcp", "10.0.0.1", 8001))),
    ("65535:1", (P(1, "tcp", "", 65535),)),
])
def test_publish(text: str, want: tuple[PortMapping, ...]) -> None:
    assert parse_publish(text) == want


@pytest.mark.parametrize("text, fragment", [
    ("", "no container port"),
    ("8080:", "no container port"),
    ("0:80", "is not a port"),
    ("8080:65536", "is not a port"),
    ("abc", "is not a port"),
    ("80/sctp", "not tcp or udp"),
    ("80/", "not tcp or udp"),
    ("1.2.3:80:80", "not an IPv4 address"),
    ("localhost:80:80", "not an IPv4 address"),
    ("[::1]:80:80", "IPv6 host addresses are not supported"),
    ("1:2:3:4", "too many ':'"),
    ("8000-8002:80-81", "differ in length"),
    ("8080:80-81", "differ in length"),
    ("90-80", "ends before it starts"),
    ("-80", "is not a port"),
    ("+80", "is not a port"),
    ("٨٠", "is not a port"),
])
def test_publish_refused(text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_publish(text)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_publish_all() -> None:
    assert publish_all(["80/tcp", "53/udp", "8000-8001", "9/sctp"]) == (
        P(53, "udp"), P(80, "tcp"), P(8000, "tcp"), P(8001, "tcp"))
    with pytest.raises(UsageError, match="publish its ports with -p"):
        publish_all(["http/tcp"])


def test_merge_ports() -> None:
    explicit = parse_publish("8080:80") + parse_publish("8080:80")
    assert merge_ports(explicit, publish_all(["80/tcp", "443/tcp"])) == (P(80, "tcp", "", 8080), P(443, "tcp"))
    with pytest.raises(UsageError, match="published twice"):
        merge_ports(parse_publish("8080:80") + parse_publish("8080:81"))
    with pytest.raises(UsageError, match="published twice"):
        merge_ports(parse_publish("127.0.0.1:8080:80") + parse_publish("8080:81"))
    # the same port on two addresses, or once per protocol, is fine
    assert len(merge_ports(parse_publish("127.0.0.1:8080:80") + parse_publish("10.0.0.1:8080:81"))) == 2
    assert len(merge_ports(parse_publish("8080:80") + parse_publish("8080:80/udp"))) == 2


def test_port_mapping_forms() -> None:
    p = P(80, "udp", "127.0.0.1", 8080)
    assert p.to_cni() == {"hostPort": 8080, "containerPort": 80, "protocol": "udp", "hostIP": "127.0.0.1"}
    assert P(80, "tcp", "", 8080).to_cni() == {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
    assert str(p) == "80/udp -> 127.0.0.1:8080"
    assert str(P(80, "tcp", "", 8080)) == "80/tcp -> 0.0.0.0:8080"
    assert PortMapping.from_dict(p.to_dict()) == p
    assert p.chosen and not P(80).chosen and not P(80, "tcp", "", 8000, 8010).chosen


@pytest.mark.parametrize("values, want", [
    ([], ("bridge", ("ocibox",), "")),
    (["bridge"], ("bridge", ("ocibox",), "")),
    (["default"], ("bridge", ("ocibox",), "")),
    (["private"], ("bridge", ("ocibox",), "")),
    (["none"], ("none", (), "")),
    (["host"], ("host", (), "")),
    (["container:web"], ("container", (), "web")),
    (["ns:/run/netns/x"], ("ns", (), "/run/netns/x")),
    (["a", "b"], ("bridge", ("a", "b"), "")),
    (["a,b"], ("bridge", ("a", "b"), "")),
    (["a", "bridge"], ("bridge", ("a", "ocibox"), "")),
])
def test_network_modes(values: list[str], want: tuple[str, tuple[str, ...], str]) -> None:
    assert parse_network(values) == want


@pytest.mark.parametrize("values, fragment", [
    (["none", "a"], "cannot be combined"),
    (["host", "host"], "cannot be combined"),
    (["container:"], "name the container"),
    (["ns:relative/path"], "must be absolute"),
    (["slirp4netns:port_handler=x"], "unknown option 'port_handler=x'"),
    (["pasta:--netns=/x"], "set by ocibox"),
    (["pasta:map-gw"], "not a pasta option"),
    (["-bad"], "invalid network name"),
    (["a", "a"], "given twice"),
])
def test_network_modes_refused(values: list[str], fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        parse_network(values)


def test_add_host() -> None:
    assert parse_add_host("db:10.0.0.5") == ("db", "10.0.0.5")
    assert parse_add_host("db=10.0.0.5") == ("db", "10.0.0.5")
    assert parse_add_host("v6:::1") == ("v6", "::1")
    assert parse_add_host("v6:[fd00::2]") == ("v6", "fd00::2")
    assert parse_add_host("host.docker.internal:host-gateway") == ("host.docker.internal", "host-gateway")
    for bad in ("db", "db:", ":1.2.3.4", "db:300.1.1.1", "bad name:1.2.3.4", "db:nothost"):
        with pytest.raises(UsageError, match="--add-host"):
            parse_add_host(bad)


def test_addresses() -> None:
    assert parse_ipv4("10.1.2.3") == 0x0A010203
    for bad in ("10.1.2", "10.1.2.256", "01.1.1.1", "a.b.c.d", "1.2.3.4.5", ""):
        assert parse_ipv4(bad) is None
    assert parse_cidr("10.1.0.0/16") == (0x0A010000, 16)
    assert parse_cidr("10.1.0.0/33") is None and parse_cidr("10.1.0.0") is None
    assert is_ipv6("::1") and is_ipv6("fd00::2") and is_ipv6("::ffff:10.0.0.1")
    assert not is_ipv6("10.0.0.1") and not is_ipv6("1::2::3") and not is_ipv6("g::1")


def test_build_request() -> None:
    r = build_request(network=["n1"], publish=["8080:80"], publish_all_ports=True, exposed_ports=["80/tcp", "53/udp"],
                      dns=["1.1.1.1"], dns_search=["example.org"], dns_options=["ndots:2"], add_host=["db:10.0.0.5"],
                      ip="10.100.0.9", mac="02:42:AC:11:00:02", hostname="h", aliases=["web"])
    assert r == NetworkRequest(mode="bridge", networks=("n1",), ports=(P(80, "tcp", "", 8080), P(53, "udp")),
                               ip="10.100.0.9", mac="02:42:ac:11:00:02", dns=("1.1.1.1",),
                               dns_search=("example.org",), dns_options=("ndots:2",),
                               extra_hosts=(("db", "10.0.0.5"),), aliases=("web",), hostname="h")
    assert r.uses_cni
    assert build_request().networks == ("ocibox",)
    assert not build_request(network=["none"]).uses_cni


def test_build_request_conflicts() -> None:
    warned: list[str] = []
    assert build_request(network=["host"], publish=["80"], warn=warned.append).ports == ()
    assert warned and "discarded" in warned[0]
    cases = [
        (dict(network=["none"], publish=["80"]), "conflicting options: -p/--publish and --network none"),
        (dict(network=["container:x"], publish=["80"]), "--network container:x"),
        (dict(network=["host"], ip="10.0.0.2"), "conflicting options: --ip"),
        (dict(network=["none"], mac="02:00:00:00:00:01"), "conflicting options: --mac-address"),
        (dict(network=["container:x"], dns=["1.1.1.1"]), "--dns and --network container:x"),
        (dict(network=["container:x"], hostname="h"), "--hostname and --network container:x"),
        (dict(network=["container:x"], add_host=["a:1.2.3.4"]), "--add-host"),
        (dict(aliases=["web"]), "--network-alias needs a user network"),
        (dict(ip="10.0.0"), "invalid --ip"),
        (dict(mac="01:00:00:00:00:01"), "unicast"),
        (dict(mac="02:00:00:00:00"), "invalid --mac-address"),
        (dict(dns=["dns.google"]), "invalid --dns"),
        (dict(dns_search=["bad domain"]), "invalid --dns-search"),
        (dict(dns_options=["a b"]), "invalid --dns-option"),
        (dict(network=["n"], aliases=["bad alias"]), "invalid --network-alias"),
    ]
    for kwargs, fragment in cases:
        with pytest.raises(UsageError) as e:
            build_request(**kwargs)  # type: ignore[arg-type]
        assert fragment in str(e.value), (kwargs, str(e.value))
