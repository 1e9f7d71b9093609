"""Registry credentials: docker's config.json, ``$REGISTRY_AUTH_FILE``, podman's auth.json,
credential helpers (``docker-credential-NAME get``), and writing logins back.

Lookup order (first file with an entry for the host wins):
``$REGISTRY_AUTH_FILE``, ``${XDG_RUNTIME_DIR}/containers/auth.json``,
``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``).
Within a file: ``credHelpers[host]``, then ``auths[host]`` (``auth`` base64 ``user:pass``,
``identitytoken``), then ``credsStore``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ocibox._record import record
from ocibox.errors import AuthError, ConfigError

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = {"docker.io", "index.docker.io", "registry-1.docker.io"}


@record
class Credentials:
    """``username``/``password`` for basic auth and token requests, or an ``identity_token``
    (an OAuth2 refresh token) for the token service."""

    username: str = ""
    password: str = ""
    identity_token: str = ""

    def __repr__(self) -> str:  # never print secrets in a traceback
        return f"Credentials(username={self.username!r}, password=***, identity_token={'***' if self.identity_token else ''!r})"


def _docker_config_path() -> Path:
    d = os.environ.get("DOCKER_CONFIG")
    return Path(d) / "config.json" if d else Path.home() / ".docker" / "config.json"


def auth_files() -> list[Path]:
    """The files credentials are read from, in order."""
    out: list[Path] = []
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        out.append(Path(env))
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        out.append(Path(xdg) / "containers" / "auth.json")
    out.append(_docker_config_path())
    return out


def write_file() -> Path:
    """Where login writes: ``$REGISTRY_AUTH_FILE`` if set, else docker's config.json."""
    env = os.environ.get("REGISTRY_AUTH_FILE")
    return Path(env) if env else _docker_config_path()


def _keys_for(host: str) -> list[str]:
    """The keys an ``auths`` entry for ``host`` may have (docker writes URLs for Docker Hub)."""
    if host in _HUB_HOSTS:
        return [DOCKER_HUB_KEY, "docker.io", "index.docker.io", "registry-1.docker.io",
                "https://index.docker.io/v1", "https://registry-1.docker.io"]
    return [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/",
            f"http://{host}/v1/", f"http://{host}/v2/"]


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"credentials file {path}: {e.strerror}; fix its permissions or unset REGISTRY_AUTH_FILE") from None
    if not data.strip():
        return {}
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise ConfigError(f"credentials file {path} is not valid JSON ({e}); fix or remove it") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"credentials file {path} is not a JSON object; fix or remove it")
    return obj


def _decode_auth(value: str, path: Path, key: str) -> Credentials:
    try:
        text = base64.b64decode(value, validate=False).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ConfigError(f"credentials file {path}: auths[{key!r}].auth is not base64 of user:password") from None
    user, sep, pw = text.partition(":")
    if not sep:
        raise ConfigError(f"credentials file {path}: auths[{key!r}].auth is not base64 of user:password")
    return Credentials(user, pw)


def helper_get(helper: str, server: str) -> Credentials | None:
    """Ask ``docker-credential-HELPER get`` for ``server``; None when it has nothing."""
    exe = f"docker-credential-{helper}"
    try:
        p = subprocess.run([exe, "get"], input=server.encode(), capture_output=True, timeout=60, check=False)
    except FileNotFoundError:
        raise ConfigError(f"credential helper {exe} is not installed; install it or remove it from the docker config") from None
    except subprocess.TimeoutExpired:
        raise AuthError(f"credential helper {exe} did not answer within 60 s") from None
    if p.returncode != 0:
        msg = (p.stdout or p.stderr).decode(errors="replace").strip()
        if "credentials not found" in msg.lower() or not msg:
            return None
        raise AuthError(f"credential helper {exe} failed for {server}: {msg.splitlines()[0] if msg else p.returncode}")
    try:
        obj = json.loads(p.stdout)
        user, secret = str(obj.get("Username", "")), str(obj.get("Secret", ""))
    except (ValueError, AttributeError):
        raise AuthError(f"credential helper {exe} returned something that is not its JSON answer") from None
    if user == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(user, secret)


def _helper_store(helper: str, server: str, creds: Credentials) -> None:
    exe = f"docker-credential-{helper}"
    body = json.dumps({"ServerURL": server, "Username": creds.username, "Secret": creds.password}).encode()
    try:
        p = subprocess.run([exe, "store"], input=body, capture_output=True, timeout=60, check=False)
    except FileNotFoundError:
        raise ConfigError(f"credential helper {exe} is not installed; install it or remove it from the docker config") from None
    if p.returncode != 0:
        raise AuthError(f"credential helper {exe} could not store credentials: {(p.stdout or p.stderr).decode(errors='replace').strip()}")


def _helper_erase(helper: str, server: str) -> None:
    exe = f"docker-credential-{helper}"
    with contextlib.suppress(FileNotFoundError, subprocess.TimeoutExpired):
        subprocess.run([exe, "erase"], input=server.encode(), capture_output=True, timeout=60, check=False)


def _from_file(obj: dict[str, Any], path: Path, host: str) -> Credentials | None:
    keys = _keys_for(host)
    helpers = obj.get("credHelpers") or {}
    if isinstance(helpers, dict):
        for k in keys:
            if isinstance(helpers.get(k), str) and helpers[k]:
                return helper_get(helpers[k], k)
    auths = obj.get("auths") or {}
    if isinstance(auths, dict):
        for k in keys:
            entry = auths.get(k)
            if not isinstance(entry, dict):
                continue
            if entry.get("identitytoken"):
                user = ""
                if entry.get("auth"):
                    user = _decode_auth(str(entry["auth"]), path, k).username
                return Credentials(user, "", str(entry["identitytoken"]))
            if entry.get("auth"):
                return _decode_auth(str(entry["auth"]), path, k)
            if entry.get("username") and entry.get("password"):
                return Credentials(str(entry["username"]), str(entry["password"]))
    store = obj.get("credsStore")
    if isinstance(store, str) and store:
        return helper_get(store, keys[0])
    return None


def lookup(host: str) -> Credentials | None:
    """Credentials for registry ``host`` (``host[:port]``), or None for anonymous access."""
    for path in auth_files():
        obj = _load(path)
        if obj is None:
            continue
        creds = _from_file(obj, path, host)
        if creds is not None:
            return creds
    return None


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    """Write atomically with mode 0600 (the file holds secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".ocibox-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ConfigError(f"cannot write credentials to {path}: {e.strerror}") from None


def store_login(host: str, creds: Credentials) -> Path:
    """Save ``creds`` for ``host`` (through the configured helper if there is one)."""
    path = write_file()
    obj = _load(path) or {}
    key = _keys_for(host)[0]
    helpers = obj.get("credHelpers") or {}
    helper = helpers.get(key) if isinstance(helpers, dict) else None
    helper = helper or (obj.get("credsStore") if isinstance(obj.get("credsStore"), str) else None)
    auths = obj.setdefault("auths", {})
    if not isinstance(auths, dict):
        raise ConfigError(f"credentials file {path}: 'auths' is not an object; fix or remove it")
    for k in _keys_for(host):  # one entry per host
        auths.pop(k, None)
    if helper:
        _helper_store(helper, key, creds)
        auths[key] = {}
    else:
        auths[key] = {"auth": base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()}
    _write_json(path, obj)
    return path


def remove_login(host: str) -> bool:
    """Forget ``host``'s credentials; True when there were any."""
    path = write_file()
    obj = _load(path)
    if not obj:
        return False
    found = False
    auths = obj.get("auths")
    if isinstance(auths, dict):
        for k in _keys_for(host):
            if k in auths:
                del auths[k]
                found = True
    helpers = obj.get("credHelpers") or {}
    key = _keys_for(host)[0]
    helper = helpers.get(key) if isinstance(helpers, dict) else None
    helper = helper or (obj.get("credsStore") if isinstance(obj.get("credsStore"), str) else None)
    if helper:
        _helper_erase(helper, key)
        found = True
    if found:
        _write_json(path, obj)
    return found
