"""Explicit settings, passed down from the CLI: no module-level mutable state.

The config file (``$OCIBOX_CONFIG``, else ``/etc/ocibox/config.toml``; without root
``$XDG_CONFIG_HOME/ocibox/config.toml`` where it exists)::

    [download]
    concurrency = 4

    [storage]
    ignore_chown_errors = false     # without root: every file owner outside the user's ids becomes root
                                    # (podman's storage option of that name)

    [[registry]]
    prefix = "docker.io"            # the registry (host[:port]) this entry is about
    insecure = false                # allow plain http / unverified TLS to it
    mirrors = ["127.0.0.1:5000"]    # tried in order before the origin
"""

from __future__ import annotations

import os
from pathlib import Path

from ocibox._record import field, record
from ocibox.errors import ConfigError
from ocibox.rootless import is_rootless

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (5 ms of ocibox run)
if TYPE_CHECKING:
    from typing import Any

DEFAULT_CONFIG = Path("/etc/ocibox/config.toml")
CERTS_D = ("/etc/containers/certs.d", "/etc/docker/certs.d")


@record
class RegistryConfig:
    prefix: str
    insecure: bool = False
    mirrors: tuple[str, ...] = ()


@record
class Config:
    registries: tuple[RegistryConfig, ...] = ()
    concurrency: int = 4
    ignore_chown_errors: bool = False

    @classmethod
    def load(cls, path: Path | None = None) -> Config:
        if path is None:
            env = os.environ.get("OCIBOX_CONFIG")
            path = Path(env) if env else DEFAULT_CONFIG
            if not env and is_rootless():
                from ocibox.rootless import config_file

                user = config_file()
                if user.exists():
                    path = user
            if not env and not path.exists():
                return cls()
        import tomllib

        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist; unset OCIBOX_CONFIG or create it") from None
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"config file {path}: {e}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> Config:
        regs = []
        for i, r in enumerate(data.get("registry", []) or []):
            if not isinstance(r, dict) or not isinstance(r.get("prefix"), str):
                raise ConfigError(f"{where}: [[registry]] entry {i} needs a string 'prefix'")
            mirrors = r.get("mirrors", []) or []
            if not isinstance(mirrors, list) or not all(isinstance(m, str) for m in mirrors):
                raise ConfigError(f"{where}: registry {r['prefix']!r}: 'mirrors' must be a list of host[:port]")
            regs.append(RegistryConfig(r["prefix"], bool(r.get("insecure", False)), tuple(mirrors)))
        dl = data.get("download", {}) or {}
        conc = dl.get("concurrency", 4)
        if not isinstance(conc, int) or conc < 1:
            raise ConfigError(f"{where}: download.concurrency must be a positive integer")
        storage = data.get("storage", {}) or {}
        squash = storage.get("ignore_chown_errors", False)
        if isinstance(squash, str) and squash.lower() in ("true", "false"):
            squash = squash.lower() == "true"  # podman's storage.conf writes it as a string
        if not isinstance(squash, bool):
            raise ConfigError(f"{where}: storage.ignore_chown_errors must be true or false")
        return cls(tuple(regs), conc, squash)

    def registry(self, host: str) -> RegistryConfig | None:
        for r in self.registries:
            if r.prefix == host:
                return r
        return None


@record
class Settings:
    """What every verb gets: the store root and how to talk."""

    root: Path
    quiet: bool = False
    debug: bool = False
    insecure_registries: tuple[str, ...] = ()
    config: Config = field(default_factory=Config)
    #: podman's --cert-dir: the registry's CA certificates (*.crt) and client pairs (*.cert + *.key)
    cert_dir: str = ""
    #: without root: layer files of owners outside the user's ids are unpacked as root (the flag
    #: --ignore-chown-errors, or the config's storage.ignore_chown_errors)
    ignore_chown_errors: bool = False

    def tls_dir(self, host: str) -> str | None:
        """Where the certificates for ``host`` are: --cert-dir, else ``certs.d/HOST[:PORT]`` of
        podman (/etc/containers) or docker (/etc/docker), as those tools look them up."""
        if self.cert_dir:
            return self.cert_dir
        for base in CERTS_D:
            d = os.path.join(base, host)
            if os.path.isdir(d):
                return d
        return None

    def is_insecure(self, host: str) -> bool:
        if host in self.insecure_registries:
            return True
        r = self.config.registry(host)
        return bool(r and r.insecure)
