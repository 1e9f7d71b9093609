"""The container's /etc/hostname, /etc/hosts and /etc/resolv.conf (docker keeps them per container)."""

from __future__ import annotations


def etc_files(hostname: str, network: str) -> dict[str, str]:
    """name -> contents of the three files."""
    if network == "host":
        hosts = _read_host_file("/etc/hosts")
    else:
        hosts = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
                 "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
                 f"127.0.1.1\t{hostname}\n")
    return {"hostname": hostname + "\n", "hosts": hosts, "resolv.conf": _read_host_file("/etc/resolv.conf")}


def _read_host_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return ""
