"""The world outside, for network tests (no internet here): a network namespace behind a veth pair,
203.0.113.1 on the host's side, 203.0.113.2 inside (TEST-NET-3: no real host has it). Traffic the tests
send "out" goes there, never to the host's real network."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

OUT_HOST, OUT_PEER = "203.0.113.1", "203.0.113.2"


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


@contextmanager
def outside_namespace() -> Iterator[str]:
    """The namespace (its name, for ``ip netns exec``); the veth and the namespace are removed after."""
    tag = os.urandom(3).hex()
    ns, host_if, peer_if = f"oxt-out-{tag}", f"oxo{tag}", f"oxp{tag}"
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        _ip("link", "set", peer_if, "netns", ns)
        _ip("addr", "add", f"{OUT_HOST}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "addr", "add", f"{OUT_PEER}/30", "dev", peer_if)
        _ip("-n", ns, "link", "set", peer_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        yield ns
    finally:
        _ip("link", "del", host_if, check=False)
        _ip("netns", "del", ns, check=False)


# ----------------------------------------------------------------------------- the host's network state
#: iptables chains the plugins share between all networks and never remove (podman leaves them too)
SHARED_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK", "CNI-ISOLATION-STAGE-1",
                 "CNI-ISOLATION-STAGE-2", "CNI-FORWARD", "CNI-ADMIN")


def _out(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=True, timeout=30).stdout


def links() -> set[str]:
    return {line.split()[1].split("@")[0].rstrip(":") for line in _out("ip", "-o", "link").splitlines()}


def rules() -> list[str]:
    """iptables -S of filter and nat, with the plugins' shared chains and their generic rules left out."""
    out = []
    for table in ("filter", "nat"):
        for line in _out("iptables", "-w", "-t", table, "-S").splitlines():
            if any(f"-N {c}" == line or (f"-j {c}" in line and line.startswith(
                    ("-A FORWARD", "-A PREROUTING", "-A OUTPUT", "-A POSTROUTING -m comment"))) for c in SHARED_CHAINS):
                continue
            if line.startswith(("-A CNI-ISOLATION-STAGE-1 -m comment", "-A CNI-ISOLATION-STAGE-2 -m comment",
                                "-A CNI-FORWARD -m comment", "-A CNI-HOSTPORT-MASQ -m mark",
                                "-A CNI-HOSTPORT-SETMARK -m comment")):
                continue
            out.append(f"{table}: {line}")
    return out


def dns_processes() -> list[str]:
    """Live aardvark-dns and dnsmasq processes (zombies are dead: this VM's init reaps them late)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if stat.rpartition(b")")[2].split()[0] != b"Z" and ("aardvark-dns" in cmd or "dnsmasq" in cmd):
            out.append(f"{pid} {cmd}")
    return out


def netns_files() -> set[str]:
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()


class HostNet:
    """A snapshot of what networking leaves on a host: links, /run/netns, iptables rules, DNS servers."""

    def __init__(self, links: set[str], netns: set[str], rules: list[str], dns: list[str]) -> None:
        self.links, self.netns, self.rules, self.dns = links, netns, rules, dns

    @classmethod
    def now(cls) -> HostNet:
        return cls(links(), netns_files(), rules(), dns_processes())

    def new_since(self, before: HostNet) -> dict[str, object]:
        """What exists now and did not then (empty: nothing leaked)."""
        diff: dict[str, object] = {}
        for key, now, then in (("links", self.links, before.links), ("netns", self.netns, before.netns)):
            if now - then:
                diff[key] = sorted(now - then)
        if extra := [r for r in self.rules if r not in before.rules]:
            diff["rules"] = extra
        if extra := [p for p in self.dns if p not in before.dns]:
            diff["dns"] = extra
        return diff
