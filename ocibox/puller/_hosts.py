"""Which scheme a registry host is reached with: HTTPS by default, plain HTTP only for
loopback and for registries the user marked insecure. Pure, no HTTP."""

from __future__ import annotations

import ipaddress

from ocibox.settings import Settings


def split_host(host: str) -> tuple[str, int | None]:
    """``host[:port]`` or ``[v6]:port`` -> (hostname without brackets, port)."""
    if host.startswith("["):
        end = host.find("]")
        name, rest = host[1:end], host[end + 1 :]
        return name, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    return name, int(port) if port.isdigit() else None


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost (with or without a port)."""
    name, _ = split_host(host)
    if name.lower() in ("localhost", "localhost.localdomain") or name.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def may_use_http(settings: Settings, host: str) -> bool:
    """Plain HTTP (and unverified TLS) is allowed to loopback and to insecure registries only."""
    return is_loopback(host) or settings.is_insecure(host)


def schemes(settings: Settings, host: str) -> tuple[str, ...]:
    """Schemes to try in order. Secure hosts: HTTPS only (a TLS failure is an error).
    Loopback and insecure hosts: HTTPS without verification first, then plain HTTP."""
    return ("https", "http") if may_use_http(settings, host) else ("https",)
