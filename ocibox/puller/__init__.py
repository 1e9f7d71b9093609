"""Registry client and ``ocibox pull``: fetch any OCI/Docker image, verified, into the store.

Public surface::

    pull(settings, ref, *, platform=None) -> PullResult
    login(settings, server, *, username, password, password_stdin) -> None
    logout(settings, server) -> None

Importing this package is cheap: httpx and tqdm are imported only when a pull or a
login actually happens (``ocibox run`` imports it only to pull a missing image).

Modules, bottom up::

    _transport  TLS contexts (certs.d), RetryTransport, httpx failures as TransportError / TLSError
    _auth       RegistryAuth, the httpx.Auth flow: 401 challenge -> token (cached per scope) or basic
    _blob       BlobStream: a blob as a stream that resumes with Range and tees to a partial file
    _client     RegistryClient (send, redirects, errors, manifests, small blobs); Repository, a Source
    _resolve    Source, StoreSource, resolve(): index -> platform manifest -> config, the one walk
    _upstream   Upstream: the first mirror that has the reference's manifest, else the origin
    _pull       pull(): the walk against the store then the registry, the config fetched once
                under its blob lock, the layers, the image record
    _challenge _creds _hosts _retry _progress _login _httpx: parsing, credentials, policy, output
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ocibox.image import Platform
    from ocibox.puller._pull import PullResult
    from ocibox.reference import Reference
    from ocibox.settings import Settings

__all__ = ["PullResult", "login", "logout", "pull"]


def pull(settings: Settings, ref: Reference, *, platform: Platform | None = None) -> PullResult:
    """Pull ``ref`` (for ``platform``, default this host's) into the store at ``settings.root``.

    A pull by tag pins the digest computed from the manifest bytes; a pull by digest checks
    it. Layers already in the store are neither downloaded nor unpacked; an image already
    complete in the store costs one manifest request (none when pulled by digest).
    """
    from ocibox.puller._pull import pull as _pull

    return _pull(settings, ref, platform=platform)


def login(settings: Settings, server: str, *, username: str | None, password: str | None,
          password_stdin: bool) -> None:
    """Verify credentials against ``server``'s ``/v2/`` and save them (docker config format, 0600)."""
    from ocibox.puller._login import login as _login

    _login(settings, server, username=username, password=password, password_stdin=password_stdin)


def logout(settings: Settings, server: str) -> None:
    """Remove the saved credentials of ``server``."""
    from ocibox.puller._login import logout as _logout

    _logout(settings, server)


def __getattr__(name: str) -> object:
    if name == "PullResult":
        from ocibox.puller._pull import PullResult

        return PullResult
    raise AttributeError(name)
