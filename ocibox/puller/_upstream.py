"""The registry a pull talks to, reached on first need: the first mirror that has the reference's
manifest (``[[registry]] mirrors``, in order), else the origin; that manifest verified against the
reference's digest and the ``Docker-Content-Digest`` header."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocibox.digest import Digest
from ocibox.errors import DigestMismatch, ManifestError, OciboxError, RegistryError
from ocibox.reference import Reference
from ocibox.settings import Settings

if TYPE_CHECKING:
    from ocibox.puller._client import RegistryClient, Repository


def _endpoints(settings: Settings, ref: Reference) -> list[str]:
    """Mirrors of the registry, in order, then the origin."""
    rc = settings.config.registry(ref.registry) or settings.config.registry(ref.api_host)
    mirrors = list(rc.mirrors) if rc else []
    return [*mirrors, ref.api_host]


def _wrap(e: RegistryError, prefix: str) -> RegistryError:
    """The same kind of error, with what was being pulled in front."""
    cls = type(e)
    return cls(f"{prefix}: {e.message}", status=e.status, code=e.code, temporary=e.temporary)


def verify_manifest(data: bytes, ref: Reference, identifier: str, header_digest: str, host: str) -> Digest:
    """The digest of the manifest bytes; checked against the reference's digest and the header."""
    want = ref.digest if identifier == (str(ref.digest) if ref.digest else None) else None
    algo = want.algorithm if want else "sha256"
    got = Digest.of_bytes(data, algo)
    if want is not None and got != want:
        raise DigestMismatch(f"{ref}: {host} served a manifest whose digest is {got}, not the {want} asked for")
    if header_digest:
        try:
            hd = Digest.parse(header_digest.strip())
        except OciboxError:
            raise DigestMismatch(f"{ref}: {host} sent an invalid Docker-Content-Digest {header_digest!r}") from None
        if Digest.of_bytes(data, hd.algorithm) != hd:
            raise DigestMismatch(f"{ref}: {host} says the manifest is {hd} (Docker-Content-Digest) but its bytes"
                                 f" hash to {Digest.of_bytes(data, hd.algorithm)}; refusing it")
    return got


class Upstream:
    """The registry, reached on first need: the first mirror that has the reference's manifest,
    else the origin. A pull whose image is all in the store never connects (nor imports httpx)."""

    def __init__(self, settings: Settings, ref: Reference) -> None:
        self.settings = settings
        self.ref = ref
        self.client: RegistryClient | None = None
        self.top: tuple[Digest, bytes, str] | None = None

    def fetch_top(self) -> tuple[Digest, bytes, str]:
        """(digest, bytes, Content-Type) of what the reference names, verified: one request."""
        if self.top is not None:
            return self.top
        from ocibox.puller._client import RegistryClient

        ref = self.ref
        failures: list[str] = []
        hosts = _endpoints(self.settings, ref)
        for i, host in enumerate(hosts):
            c = RegistryClient(self.settings, host)
            try:
                data, ctype, hdr = c.get_manifest(ref.repository, ref.identifier, f"{ref}")
                pinned = verify_manifest(data, ref, ref.identifier, hdr, host)
            except (RegistryError, DigestMismatch, ManifestError) as e:
                c.close()
                if i == len(hosts) - 1:
                    if failures and isinstance(e, RegistryError):
                        raise _wrap(e, f"mirrors failed ({'; '.join(failures)}); origin") from None
                    raise
                failures.append(f"{host}: {e}")
                continue
            self.client = c
            self.top = (pinned, data, ctype)
            return self.top
        raise AssertionError("unreachable")

    def repository(self) -> Repository:
        if self.client is None:
            self.fetch_top()
        assert self.client is not None
        return self.client.repository(self.ref.repository)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
