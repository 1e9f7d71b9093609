"""``ocibox login`` / ``logout``: verify credentials against the registry, then save them."""

from __future__ import annotations

import getpass
import sys

from ocibox.errors import AuthError, UsageError
from ocibox.puller._challenge import parse_challenges, pick_challenge
from ocibox.puller._creds import Credentials, remove_login, store_login
from ocibox.settings import Settings


def normalize_server(server: str) -> str:
    """``https://host:5000/v2/`` -> ``host:5000``; Docker Hub names -> ``docker.io``."""
    s = server.strip()
    for prefix in ("https://", "http://"):
        s = s.removeprefix(prefix)
    s = s.split("/", 1)[0]
    if not s:
        raise UsageError(f"invalid registry {server!r}: expected HOST[:PORT]")
    if s in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        return "docker.io"
    return s


def _api_host(host: str) -> str:
    return "registry-1.docker.io" if host == "docker.io" else host


def verify(settings: Settings, host: str, creds: Credentials) -> None:
    """Raise :class:`AuthError` unless ``creds`` are accepted by ``host`` (``GET /v2/``)."""
    from ocibox.puller._client import RegistryClient

    with RegistryClient(settings, _api_host(host), creds=creds, lookup_creds=False) as client:
        resp = client.ping()
        if resp.status_code == 200:
            return
        ch = pick_challenge(parse_challenges(resp.headers.get("www-authenticate", "")))
        if resp.status_code == 401 and ch is not None:
            raise AuthError(f"login to {host} failed: the registry rejected user {creds.username!r} (401);"
                            " check the user name and password", status=401)
        client.check(resp, f"login to {host}")


def login(settings: Settings, server: str, *, username: str | None, password: str | None,
          password_stdin: bool) -> None:
    host = normalize_server(server)
    if password is not None and password_stdin:
        raise UsageError("--password and --password-stdin are mutually exclusive")
    if username is None:
        if not sys.stdin.isatty() or password_stdin:
            raise UsageError("login needs --username (-u) when not on a terminal")
        username = input("Username: ").strip()
    if not username:
        raise UsageError("login needs a non-empty user name")
    if password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
    elif password is None:
        if not sys.stdin.isatty():
            raise UsageError("login needs --password or --password-stdin when not on a terminal")
        password = getpass.getpass("Password: ")
    if not password:
        raise UsageError("login needs a non-empty password")
    creds = Credentials(username, password)
    verify(settings, host, creds)
    store_login(host, creds)


def logout(settings: Settings, server: str) -> None:
    host = normalize_server(server)
    if not remove_login(host):
        raise UsageError(f"not logged in to {host}")
