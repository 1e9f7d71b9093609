"""Containers on networks through the CLI, for real: ``ocibox run`` on the default bridge, -p/-P, user
networks with names, --internal, none/host/container:/ns:, resolv.conf, the conflicts (125, nothing
made), 100 runs and a SIGKILL then a leak check. The CNI reference plugins, real bridges, iptables,
aardvark-dns; busybox images pushed by skopeo.

No internet here: "outbound" is an HTTP server in a namespace the test makes behind a veth pair
(203.0.113.2; the host's side 203.0.113.1 also stands for "a host address"). The module compares the
host's links, netns files, iptables rules and DNS servers with what it found, at its end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import oci
import pytest
from cli import Ctl
from outside import OUT_HOST, OUT_PEER, HostNet, outside_namespace

pytestmark = [pytest.mark.privileged,
              pytest.mark.skipif(not Path("/usr/lib/cni/bridge").exists(),
                                 reason="containernetworking-plugins not installed (apt-get install "
                                        "containernetworking-plugins)")]

WEB = "mkdir -p /www && echo hello-$(hostname) > /www/index.html && exec busybox httpd -f -p 80 -h /www"


#: an HTTP client in the Debian image: glibc's resolver (NSS, /etc/hosts, /etc/resolv.conf) as real
#: programs use it (Debian's static busybox crashes in getservbyname without NSS libraries)
FETCH = """
import socket, sys
host, _, rest = sys.argv[1].removeprefix("http://").partition("/")
name, _, port = host.partition(":")
with socket.create_connection((name, int(port or 80)), timeout=3) as s:
    s.sendall(f"GET /{rest} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
head, _, body = data.partition(b"\\r\\n\\r\\n")
sys.exit(f"HTTP {head.split()[1].decode()}") if b" 200 " not in head.split(b"\\r\\n")[0] + b" " else None
print(body.decode(), end="")
"""


#: a UDP echo server on port 53, forked off before the command goes on (the Debian image)
UDP_ECHO = """
import os, socket
if os.fork() == 0:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 53))
    while True:
        data, peer = s.recvfrom(65536)
        s.sendto(b"echo " + data, peer)
""" + f"WEB = {WEB!r}\n"


class NetCtl(Ctl):
    """The CLI on one store: busybox (``ref``), Debian with python3 (``debian``), and an image that
    exposes ports (``exposed``)."""

    exposed: str = ""
    debian: str = ""

    def fetch(self, url: str, *flags: str) -> subprocess.CompletedProcess[str]:
        """GET ``url`` from a new container (``flags`` for its run)."""
        return self("run", "--rm", *flags, self.debian, "python3", "-c", FETCH, url, timeout=60)

    def ip_of(self, name: str) -> str:
        return str(self.inspect(name)["NetworkSettings"]["IPAddress"])

    def leases(self) -> list[str]:
        d = self.root / "networks" / "ipam"
        return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and
                      re.fullmatch(r"\d+\.\d+\.\d+\.\d+", p.name)) if d.exists() else []

    def settle(self) -> None:
        """Wait for background teardowns (the CNI DEL after a foreground run) to finish."""
        d = self.root / "networks" / "containers"
        live = set(self("ps", "-q", "--no-trunc").stdout.split())
        deadline = time.monotonic() + 30
        while d.exists() and {p.stem for p in d.glob("*.json")} - live:
            assert time.monotonic() < deadline, [p.read_text() for p in d.glob("*.json")]
            time.sleep(0.05)


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The outside namespace, serving http://203.0.113.2:8000/hello."""
    www = tmp_path_factory.mktemp("outside-www")
    (www / "hello").write_text("hello from outside\n")
    with outside_namespace() as ns:
        server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", "--bind",
                                   OUT_PEER, "--directory", str(www), "8000"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                                  f"import socket; socket.create_connection(('{OUT_PEER}', 8000), 1)"],
                                 capture_output=True).returncode:
                assert time.monotonic() < deadline, "the outside's server did not start"
                time.sleep(0.05)
            yield ns
        finally:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def nc(busybox_ref: str, debian_image: str, registry, outside: str,  # type: ignore[no-untyped-def]
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetCtl]:
    before = HostNet.now()
    tmp = tmp_path_factory.mktemp("run-network")
    oci.push_image(tmp, registry.host, "exposer:latest", [oci.Layer(oci.busybox_layer())],
                   config_obj={"ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "Cmd": ["sh", "-c", WEB]})
    c = NetCtl(tmp / "store", busybox_ref)
    c.exposed = f"{registry.host}/exposer:latest"
    c.ok("pull", "-q", busybox_ref, timeout=120)
    c.ok("pull", "-q", c.exposed, timeout=120)
    c.debian = debian_image
    c.ok("pull", "-q", debian_image, timeout=300)
    yield c
    leftovers = c("ps", "-aq", "--no-trunc").stdout.split()
    for cid in leftovers:
        c("rm", "-f", cid)
    c.settle()
    for name in c.ok("network", "ls", "--format", "{{.Name}}").split():
        c("network", "rm", name)  # the default network too: its bridge and rules go with it
    assert leftovers == [], "a test left containers behind"
    assert c.leases() == []
    assert HostNet.now().new_since(before) == {}


def _default_bridge() -> str:
    conf = Path(os.environ["OCIBOX_CONFIG_DIR"], "networks", "ocibox.conflist")
    return str(json.loads(conf.read_text())["plugins"][0]["bridge"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(host: str, port: int, timeout: float = 3) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data.decode(errors="replace").partition("\r\n\r\n")[2]
    except OSError:
        return ""


def _until(what: str, cond, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# ----------------------------------------------------------------------------- the default network
def test_default_network_reaches_out_and_knows_itself(nc: NetCtl) -> None:
    r = nc.fetch(f"http://{OUT_PEER}:8000/hello", "--name", "out1")
    assert (r.returncode, r.stdout) == (0, "hello from outside\n"), r.stderr
    r = nc("run", "--rm", "--name", "out1", nc.ref, "sh", "-c",
           "echo hello from outside; ip -4 -o addr show eth0 && ip route && "
           "cat /etc/hosts /etc/resolv.conf /proc/sys/net/ipv4/ping_group_range")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("hello from outside\n")
    addr = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/(\d+)", out)
    assert addr is not None, out
    assert re.search(r"^default via \d+\.\d+\.\d+\.\d+ dev eth0", out, re.M), out
    assert re.search(rf"^{re.escape(addr.group(1))}\t[0-9a-f]{{12}} out1$", out, re.M), out  # own name, own address
    assert "127.0.0.1\tlocalhost" in out and "nameserver" in out
    assert "0\t2147483647" in out  # docker's ping_group_range: ICMP sockets without CAP_NET_RAW
    nc.settle()


def test_network_none_and_host_pay_nothing_for_cni(nc: NetCtl) -> None:
    before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    r = nc("run", "--rm", "--network", "none", nc.ref, "sh", "-c", "cat /proc/net/dev | tail -n +3 | cut -d: -f1")
    assert r.stdout.split() == ["lo"], r.stderr
    r = nc("run", "--rm", "--network", "host", nc.ref, "sh", "-c", "cat /proc/net/dev | tail -n +3 | cut -d: -f1")
    assert "lo" in r.stdout.split() and len(r.stdout.split()) > 1
    r = nc.fetch(f"http://{OUT_PEER}:8000/hello", "--network", "none")
    assert r.returncode != 0 and "unreachable" in r.stderr  # sealed
    assert not (nc.root / "networks" / "containers").exists() or not list((nc.root / "networks" / "containers")
                                                                         .glob("*.json"))
    assert (set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()) == before


# ----------------------------------------------------------------------------- published ports
def test_published_ports_loopback_host_address_random_udp_and_hairpin(nc: NetCtl) -> None:
    fixed = _free_port()
    udp = _free_port()
    nc.detach("--name", "pubweb", "-p", f"127.0.0.1:{fixed}:80", "-p", "80", "-p", f"{udp}:53/udp",
              "-v", f"{oci.BUSYBOX}:/bin/busybox:ro", nc.debian,
              "python3", "-c", UDP_ECHO + "\nos.execvp('busybox', ['busybox', 'sh', '-c', WEB])")
    try:
        lines = nc.ok("port", "pubweb").splitlines()
        assert f"80/tcp -> 127.0.0.1:{fixed}" in lines and f"53/udp -> 0.0.0.0:{udp}" in lines, lines
        rnd = next(int(x.rsplit(":", 1)[1]) for x in lines if x.startswith("80/tcp -> 0.0.0.0:"))
        assert sorted(nc.ok("port", "pubweb", "80").split()) == [f"0.0.0.0:{rnd}", f"127.0.0.1:{fixed}"]
        assert nc.ok("port", "pubweb", "53/udp").split() == [f"0.0.0.0:{udp}"]
        _until("the server", lambda: _http("127.0.0.1", fixed) != "")
        cid = nc.inspect("pubweb")["Id"]
        assert _http("127.0.0.1", fixed) == f"hello-{cid[:12]}\n"
        assert _http("127.0.0.1", rnd) == f"hello-{cid[:12]}\n"
        assert _http(OUT_HOST, rnd) == f"hello-{cid[:12]}\n"  # at a host address
        assert _http(OUT_HOST, fixed, timeout=1) == ""  # -p 127.0.0.1:P:80 answers at 127.0.0.1 only
        # udp, by DNAT in the kernel: the echo server in the container answers the host
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            s.sendto(b"udp-datagram", ("127.0.0.1", udp))
            data, peer = s.recvfrom(100)
        assert data == b"echo udp-datagram" and peer == ("127.0.0.1", udp)
        # hairpin: another container reaches the published port at the host's address
        r = nc.fetch(f"http://{OUT_HOST}:{rnd}/index.html")
        assert r.stdout == f"hello-{cid[:12]}\n", r.stderr
        ps = nc.ok("ps", "--format", "{{.Names}} {{.Ports}}")
        assert f"127.0.0.1:{fixed}->80/tcp" in ps and f"0.0.0.0:{udp}->53/udp" in ps, ps
        info = nc.inspect("pubweb")
        assert info["NetworkSettings"]["Ports"]["80/tcp"] and info["HostConfig"]["PortBindings"]["53/udp"] == [
            {"HostIp": "", "HostPort": str(udp)}]
        # nothing listens on the host: the kernel forwards (no user-space proxy in the data path)
        listeners = subprocess.run(["ss", "-Htlnu"], capture_output=True, text=True).stdout
        assert f":{fixed} " not in listeners and f":{rnd} " not in listeners
    finally:
        nc.ok("rm", "-f", "pubweb")


def test_publish_all_takes_the_images_exposed_ports(nc: NetCtl) -> None:
    nc.detach("--name", "exposer", "-P", nc.exposed)
    try:
        lines = nc.ok("port", "exposer").splitlines()
        assert sorted(x.split(" -> ")[0] for x in lines) == ["53/udp", "80/tcp"], lines
        port = int(next(x for x in lines if x.startswith("80/tcp")).rsplit(":", 1)[1])
        _until("the server", lambda: _http("127.0.0.1", port) != "")
        assert _http("127.0.0.1", port).startswith("hello-")
    finally:
        nc.ok("rm", "-f", "exposer")


def test_detached_container_gets_its_network_again_at_each_start(nc: NetCtl) -> None:
    port = _free_port()
    nc.detach("--name", "again", "-p", f"127.0.0.1:{port}:80", nc.ref, "sh", "-c", WEB)
    try:
        _until("the server", lambda: _http("127.0.0.1", port) != "")
        nc.ok("stop", "-t", "1", "again")
        assert nc.leases() == [] and _http("127.0.0.1", port, timeout=1) == ""
        assert not [p for p in (nc.root / "networks" / "containers").glob("*.json")]
        nc.ok("start", "again")
        _until("the server after start", lambda: _http("127.0.0.1", port) != "")
        assert len(nc.leases()) == 1
    finally:
        nc.ok("rm", "-f", "again")
    assert nc.leases() == []


# ----------------------------------------------------------------------------- user networks
def test_user_networks_names_and_isolation(nc: NetCtl) -> None:
    nc.ok("network", "create", "--subnet", "10.201.7.0/24", "blue")
    nc.ok("network", "create", "red")
    try:
        assert {"blue", "red", "ocibox"} <= set(nc.ok("network", "ls", "--format", "{{.Name}}").split())
        row = next(json.loads(x) for x in nc.ok("network", "ls", "--format", "json").splitlines()
                   if json.loads(x)["Name"] == "blue")
        assert row["Driver"] == "bridge" and row["Subnet"] == "10.201.7.0/24"
        nc.detach("--name", "srv1", "--network", "blue", "--network-alias", "web", nc.ref, "sh", "-c", WEB)
        ip = nc.ip_of("srv1")
        assert ip.startswith("10.201.7.")
        cid = nc.inspect("srv1")["Id"]
        _until("srv1 by name", lambda: nc.fetch("http://srv1/index.html", "--network", "blue").stdout != "")
        assert nc.fetch("http://srv1/index.html", "--network", "blue").stdout == f"hello-{cid[:12]}\n"
        assert nc.fetch("http://web/index.html", "--network", "blue").stdout == f"hello-{cid[:12]}\n"  # the alias
        # from another network: neither the name nor the address
        assert nc.fetch("http://srv1/index.html", "--network", "red").returncode != 0
        assert nc.fetch(f"http://{ip}/index.html", "--network", "red").returncode != 0
        assert nc.fetch(f"http://{ip}/index.html").returncode != 0  # nor from the default network
        doc = json.loads(nc.ok("network", "inspect", "blue"))[0]
        assert [c["Name"] for c in doc["Containers"].values()] == ["srv1"]
        r = nc("network", "rm", "blue")
        assert r.returncode == 125 and "srv1" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        nc.ok("rm", "-f", "srv1")
    finally:
        nc("rm", "-f", "srv1")
        nc.settle()
        assert nc.ok("network", "rm", "blue", "red").split() == ["blue", "red"]
    assert "blue" not in nc.ok("network", "ls")


def test_internal_network_has_no_route_out(nc: NetCtl) -> None:
    nc.ok("network", "create", "--internal", "sealed")
    try:
        nc.detach("--name", "inner", "--network", "sealed", nc.ref, "sh", "-c", WEB)
        r = nc("run", "--rm", "--network", "sealed", nc.ref, "ip", "route")
        assert r.returncode == 0 and "default" not in r.stdout and r.stdout.strip(), r
        _until("inner by name", lambda: nc.fetch("http://inner/index.html", "--network", "sealed").returncode == 0)
        assert nc.fetch("http://inner/index.html", "--network", "sealed").stdout.startswith("hello-")
        r = nc.fetch(f"http://{OUT_PEER}:8000/hello", "--network", "sealed")
        assert r.returncode != 0 and "unreachable" in r.stderr, r.stderr
    finally:
        nc("rm", "-f", "inner")
        nc.settle()
        nc.ok("network", "rm", "sealed")


def test_twenty_containers_at_once_find_each_other_by_name(nc: NetCtl) -> None:
    from concurrent.futures import ThreadPoolExecutor

    nc.ok("network", "create", "crowd")
    names = [f"crowd{i:02d}" for i in range(20)]
    try:
        with ThreadPoolExecutor(20) as ex:
            list(ex.map(lambda n: nc.detach("--name", n, "--network", "crowd", nc.ref, "sleep", "300"), names))
        script = " && ".join(f"busybox nslookup {n} >/dev/null" for n in names)
        for n in (names[0], names[-1]):
            r = nc("exec", n, "sh", "-c", script)
            assert r.returncode == 0, r.stderr
        assert len({nc.ip_of(n) for n in names}) == 20
    finally:
        nc("rm", "-f", *names, timeout=120)
        nc.settle()
        nc.ok("network", "rm", "crowd")


# ----------------------------------------------------------------------------- other modes, files
def test_network_container_and_ns_modes(nc: NetCtl) -> None:
    nc.detach("--name", "base", nc.ref, "sleep", "300")
    ns = f"oxt-ns-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        ip = nc.ip_of("base")
        r = nc("run", "--rm", "--network", "container:base", nc.ref, "ip", "-4", "-o", "addr", "show", "eth0")
        assert f"inet {ip}/" in r.stdout, r.stderr  # the same namespace
        r = nc("run", "--rm", "--network", "container:base", nc.ref, "cat", "/etc/hosts")
        assert ip in r.stdout  # and base's hosts file
        subprocess.run(["ip", "-n", ns, "link", "add", "oxtv0", "type", "veth", "peer", "name", "oxtv1"], check=True)
        r = nc("run", "--rm", "--network", f"ns:/run/netns/{ns}", nc.ref, "sh", "-c",
               "cat /proc/net/dev | tail -n +3 | cut -d: -f1")
        assert sorted(r.stdout.split()) == ["lo", "oxtv0", "oxtv1"], r.stderr
        nc.ok("stop", "-t", "0", "base")
        r = nc("run", "--rm", "--network", "container:base", nc.ref, "true")
        assert r.returncode == 125 and "not running" in r.stderr, r.stderr
        r = nc("run", "--rm", "--network", "ns:/run/netns/no-such-ns", nc.ref, "true")
        assert r.returncode == 125 and "no-such-ns" in r.stderr, r.stderr
    finally:
        nc("rm", "-f", "base")
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _in_private_mounts(files: dict[str, str], tmp: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``argv`` in a mount namespace of its own where ``files`` (host paths) have other contents."""
    binds = []
    for i, (path, text) in enumerate(files.items()):
        src = tmp / f"file{i}"
        src.write_text(text)
        binds.append(f"mkdir -p {os.path.dirname(path)} && touch {path} && mount --bind {src} {path}")
    script = " && ".join([*binds, 'exec "$@"'])
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *argv],
                          capture_output=True, text=True, timeout=60)


def test_resolv_conf_replaces_loopback_resolvers(nc: NetCtl, tmp_path: Path) -> None:
    cat = nc.argv("run", "--rm", nc.ref, "cat", "/etc/resolv.conf")
    # systemd-resolved's stub on the host: the upstream servers it fronts take its place
    r = _in_private_mounts({"/etc/resolv.conf": "nameserver 127.0.0.53\nsearch corp.test\noptions edns0\n",
                            "/run/systemd/resolve/resolv.conf": "nameserver 192.0.2.53\nsearch corp.test\n"},
                           tmp_path, cat)
    assert r.returncode == 0, r.stderr
    assert "nameserver 192.0.2.53" in r.stdout and "127.0.0.53" not in r.stdout and "search corp.test" in r.stdout
    # a loopback resolver with nothing known behind it: docker's public fallback
    (tmp_path / "b").mkdir()
    r = _in_private_mounts({"/etc/resolv.conf": "nameserver 127.0.0.1\n",
                            "/run/systemd/resolve/resolv.conf": ""}, tmp_path / "b", cat)
    assert r.returncode == 0, r.stderr
    assert "127.0.0.1" not in r.stdout and "nameserver 8.8.8.8" in r.stdout
    # --dns, --dns-search, --dns-option, --add-host win
    r = nc("run", "--rm", "--dns", "192.0.2.1", "--dns-search", "x.test", "--dns-option", "ndots:2",
           "--add-host", "db.test:192.0.2.7", nc.ref, "cat", "/etc/resolv.conf", "/etc/hosts")
    assert r.returncode == 0, r.stderr
    assert "nameserver 192.0.2.1" in r.stdout and "search x.test" in r.stdout and "options ndots:2" in r.stdout
    assert re.search(r"^192\.0\.2\.7\tdb\.test$", r.stdout, re.M), r.stdout
    nc.settle()


# ----------------------------------------------------------------------------- refusals: 125, nothing made
def test_conflicts_are_one_line_125_and_nothing_is_made(nc: NetCtl, tmp_path: Path) -> None:
    before = HostNet.now()
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    port = held.getsockname()[1]
    try:
        cases = [
            (["run", "--rm", "-p", f"127.0.0.1:{port}:80", nc.ref, "true"], f"{port}"),
            (["run", "-d", "-p", f"127.0.0.1:{port}:80", nc.ref, "true"], f"{port}"),
            (["run", "--rm", "-p", "80:99999", nc.ref, "true"], "99999"),
            (["run", "--rm", "-p", "abc", nc.ref, "true"], "abc"),
            (["run", "--rm", "--network", "nosuchnet", nc.ref, "true"], "nosuchnet"),
            (["run", "--rm", "--network", "host", "--ip", "10.1.1.1", nc.ref, "true"], "--ip"),
            (["run", "--rm", "--network", "none", "-p", "80", nc.ref, "true"], "--publish"),
            (["network", "create", "--subnet", "10.201.9.0/24", "dupnet"], None),
            (["network", "create", "--subnet", "10.201.9.128/25", "overlap"], "10.201.9"),
            (["network", "create", "dupnet"], "dupnet"),
            (["network", "rm", "nosuchnet"], "nosuchnet"),
        ]
        for argv, word in cases:
            r = nc(*argv)
            if word is None:
                assert r.returncode == 0, r.stderr
                continue
            assert r.returncode == 125, (argv, r.returncode, r.stderr)
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and word in lines[0], (argv, r.stderr)
        assert nc.ok("ps", "-aq") == ""  # not even a Created container
        # a missing plugin names its Debian package
        r = subprocess.run(nc.argv("run", "--rm", nc.ref, "true"), capture_output=True, text=True, timeout=60,
                           env={**os.environ, "OCIBOX_CNI_PATH": str(tmp_path)})
        assert r.returncode == 125 and "containernetworking-plugins" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        # a broken one: the error is one line and everything it began is undone
        broken = tmp_path / "broken"
        broken.mkdir()
        for p in Path("/usr/lib/cni").iterdir():
            (broken / p.name).symlink_to(p)
        (broken / "portmap").unlink()
        (broken / "portmap").write_text("#!/bin/sh\necho '{\"code\": 11, \"msg\": \"portmap exploded\"}'; exit 1\n")
        (broken / "portmap").chmod(0o755)
        r = subprocess.run(nc.argv("run", "--rm", nc.ref, "true"), capture_output=True, text=True, timeout=60,
                           env={**os.environ, "OCIBOX_CNI_PATH": str(broken)})
        assert r.returncode == 125 and "portmap exploded" in r.stderr, r.stderr
        assert nc.ok("ps", "-aq") == ""
    finally:
        held.close()
        nc("network", "rm", "dupnet")
    nc.settle()
    assert nc.leases() == []
    new = HostNet.now().new_since(before)
    assert new in ({}, {"links": [_default_bridge()]}), new


# ----------------------------------------------------------------------------- leaks
def test_hundred_runs_then_nothing_is_left(nc: NetCtl) -> None:
    nc.ok("run", "--rm", nc.ref, "true")  # the default bridge exists from here on
    nc.settle()
    before = HostNet.now()
    t0 = time.monotonic()
    for i in range(100):
        r = nc("run", "--rm", nc.ref, "true")
        assert r.returncode == 0, (i, r.stderr)
    elapsed = time.monotonic() - t0
    nc.settle()
    assert HostNet.now().new_since(before) == {}
    assert nc.leases() == []
    print(f"100 runs on the default network: {elapsed / 100 * 1000:.0f} ms each")


def test_sigkill_of_ocibox_mid_run_then_repair_leaves_nothing(nc: NetCtl) -> None:
    nc.ok("run", "--rm", nc.ref, "true")
    nc.settle()
    before = HostNet.now()
    records = nc.root / "networks" / "containers"
    for victim in ("ocibox", "container"):
        p = subprocess.Popen(nc.argv("run", "--name", f"killed-{victim}", nc.ref, "sleep", "300"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _until("the container to run", lambda: "killed" in nc.ok("ps", "--format", "{{.Names}}"))
        assert records.exists() and list(records.glob("*.json"))
        pid = nc.inspect(f"killed-{victim}")["State"]["Pid"]
        assert pid > 0
        os.kill(p.pid if victim == "ocibox" else pid, signal.SIGKILL)
        if victim == "ocibox":
            p.wait()
            os.kill(pid, signal.SIGKILL)  # what the reboot or OOM that killed ocibox also took
        else:
            p.wait(timeout=30)
        _until("PID 1 to be gone", lambda pid=pid: not Path(f"/proc/{pid}").exists() or  # type: ignore[misc]
               Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z")
        nc.ok("ps", "-a")  # the next command that lists containers repairs
        nc.settle()
        nc("rm", "-f", f"killed-{victim}")
        assert not list(records.glob("*.json"))
        assert HostNet.now().new_since(before) == {}, victim
        assert nc.leases() == []
