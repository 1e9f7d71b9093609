"""The registry client on httpx, in stacked layers (DESIGN.md, style 4)::

    RegistryClient      send (redirects by hand), check (errors), manifests, small blobs, blob streams
      RegistryAuth      _auth.py: the 401 challenge -> token -> retry flow
        RetryTransport  _transport.py: 408/429/5xx and connection errors, backoff; TLS never retried
          httpx.HTTPTransport with the host's TLS context (_transport.py)

Redirects are followed by the client itself, so a redirect to another host (blob storage)
never carries an ``Authorization`` header. :class:`Repository` is one repository of the
registry as a :class:`~ocibox.puller._resolve.Source` (manifests and configs by digest, verified).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ocibox.digest import Digest, verify_bytes
from ocibox.errors import (
    AuthError,
    DigestMismatch,
    ManifestError,
    NotFoundError,
    RegistryError,
    TLSError,
    TransportError,
)
from ocibox.image import ACCEPT, MAX_MANIFEST_BYTES, Descriptor
from ocibox.puller._auth import RegistryAuth
from ocibox.puller._blob import BlobStream
from ocibox.puller._creds import Credentials
from ocibox.puller._hosts import schemes
from ocibox.puller._httpx import httpx
from ocibox.puller._retry import DEFAULT_POLICY, RetryPolicy, is_retryable_status
from ocibox.puller._transport import TIMEOUT, USER_AGENT, RetryTransport, transport_error, verify_for
from ocibox.settings import Settings

_REDIRECTS = (301, 302, 303, 307, 308)
#: whole seconds a manifest or config may take to arrive: a body that trickles forever is cut
MANIFEST_DEADLINE = 120.0
_MAX_REDIRECTS = 10


def _oci_error(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of an OCI error body, read with a small cap."""
    try:
        data = b""
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) > 65536:
                break
        obj = json.loads(data)
        err = obj["errors"][0]
        return str(err.get("code", "")), str(err.get("message", ""))
    except Exception:
        return "", ""


_STATUS_TEXT = {401: "unauthorized", 403: "denied", 404: "not found", 408: "request timeout",
                429: "too many requests", 500: "internal server error", 502: "bad gateway",
                503: "service unavailable", 504: "gateway timeout"}


class RegistryClient:
    """A client for one registry host (the origin or a mirror)."""

    def __init__(self, settings: Settings, host: str, *, creds: Credentials | None = None,
                 lookup_creds: bool = True, policy: RetryPolicy = DEFAULT_POLICY,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.host = host
        self.policy = policy
        self.sleep = sleep
        if creds is None and lookup_creds:
            from ocibox.puller._creds import lookup

            creds = lookup(host)
        self.creds = creds
        self._schemes = schemes(settings, host)
        self._scheme: str | None = None if len(self._schemes) > 1 else self._schemes[0]
        self._auth: RegistryAuth | None = None
        self._lock = threading.Lock()
        self._debug = settings.debug
        # verified TLS unless loopback/insecure; a certs.d directory adds CAs and client certificates
        verify = verify_for(settings.tls_dir(host), verified=len(self._schemes) == 1)
        log = self._log if self._debug else None
        self._http = httpx.Client(
            transport=RetryTransport(httpx.HTTPTransport(verify=verify, retries=0), policy, sleep, log),
            timeout=TIMEOUT, follow_redirects=False, headers={"User-Agent": USER_AGENT},
            event_hooks={"response": [self._log_response]} if self._debug else {},
        )

    def _log(self, msg: str) -> None:
        sys.stderr.write(f"DEBUG http: {msg}\n")

    def _log_response(self, response: httpx.Response) -> None:
        r = response.request
        self._log(f"{r.method} {r.url} -> {response.status_code}")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sending
    def base_url(self) -> str:
        return f"{self._scheme or self._schemes[0]}://{self.host}"

    def _auth_for(self, scheme: str) -> RegistryAuth:
        with self._lock:
            if self._auth is None or self._auth.scheme != scheme:
                self._auth = RegistryAuth(scheme, self.host, self.creds, len(self._schemes) > 1)
            return self._auth

    def send(self, method: str, path: str, what: str, *, headers: dict[str, str] | None = None,
             url: str | None = None, use_auth: bool = True) -> httpx.Response:
        """Send a request (streamed), following redirects by hand; returns any status.

        ``path`` is relative to the endpoint (``/v2/...``); ``url`` overrides it (foreign
        layers). Connection failures become :class:`TransportError`, TLS failures :class:`TLSError`.
        """
        if url is not None:
            return self._send_url(method, httpx.URL(url), what, headers, None)
        if self._scheme is not None:
            return self._send_url(method, httpx.URL(f"{self._scheme}://{self.host}{path}"), what, headers,
                                  self._auth_for(self._scheme) if use_auth else None)
        # Loopback / insecure: HTTPS (unverified) first, then plain HTTP; remember what worked.
        last: TransportError | None = None
        for scheme in self._schemes:
            try:
                resp = self._send_url(method, httpx.URL(f"{scheme}://{self.host}{path}"), what, headers,
                                      self._auth_for(scheme) if use_auth else None)
            except TransportError as e:
                last = e
                if scheme == "https" and not isinstance(e, TLSError):
                    break  # nothing listens (or it broke): plain HTTP would not fare better
                continue
            self._scheme = scheme
            return resp
        assert last is not None
        raise last

    def _send_url(self, method: str, url: httpx.URL, what: str, headers: dict[str, str] | None,
                  auth: RegistryAuth | None) -> httpx.Response:
        hdrs = dict(headers or {})
        for _ in range(_MAX_REDIRECTS + 1):
            request = self._http.build_request(method, url, headers=hdrs)
            try:
                response = self._http.send(request, stream=True, auth=auth)
            except httpx.TransportError as e:
                raise transport_error(e, what, url) from None
            if response.status_code in _REDIRECTS and "location" in response.headers:
                target = response.url.join(response.headers["location"])
                response.close()
                if target.scheme not in ("http", "https"):
                    raise RegistryError(f"{what}: redirect to unsupported URL {target}")
                url = target
                # Another host (blob storage) or a downgrade: no credentials, ever.
                if auth is not None and not auth.applies(self._http.build_request(method, url)):
                    auth = None
                hdrs.pop("Authorization", None)
                continue
            return response
        raise RegistryError(f"{what}: more than {_MAX_REDIRECTS} redirects")

    def check(self, response: httpx.Response, what: str) -> None:
        """Raise the right :class:`RegistryError` for an unsuccessful response (and close it)."""
        status = response.status_code
        if status < 300:
            return
        code, message = _oci_error(response)
        response.close()
        detail = f"{status} {_STATUS_TEXT.get(status, '')}".strip()
        if code:
            detail += f", {code}" + (f": {message}" if message else "")
        if status == 401:
            raise AuthError(f"{what}: {self.host} requires authentication ({detail}); run 'ocibox login {self.host}'",
                            status=status, code=code)
        if status == 403:
            raise AuthError(f"{what}: access denied by {self.host} ({detail}); check the credentials and the"
                            " repository name", status=status, code=code)
        if status == 404:
            raise NotFoundError(f"{what}: not found on {self.host} ({detail}); check the name, tag or digest",
                                status=status, code=code)
        if is_retryable_status(status):
            raise RegistryError(f"{what}: {self.host} answered {detail} after {self.policy.attempts} attempts;"
                                " try again later", status=status, code=code, temporary=True)
        raise RegistryError(f"{what}: {self.host} answered {detail}", status=status, code=code)

    # ------------------------------------------------------------------ API
    def ping(self) -> httpx.Response:
        """``GET /v2/`` (its body read); the caller looks at status and challenge."""
        resp = self.send("GET", "/v2/", f"registry {self.host}")
        resp.read()
        resp.close()
        return resp

    def get_manifest(self, repository: str, identifier: str, what: str, *,
                     limit: int = MAX_MANIFEST_BYTES) -> tuple[bytes, str, str]:
        """(bytes, Content-Type, Docker-Content-Digest) of a manifest or index, at most ``limit`` bytes."""
        resp = self.send("GET", f"/v2/{repository}/manifests/{identifier}", what, headers={"Accept": ACCEPT})
        self.check(resp, what)
        data = read_capped(resp, limit, what)
        return data, resp.headers.get("content-type", ""), resp.headers.get("docker-content-digest", "")

    def get_blob_bytes(self, repository: str, desc: Descriptor, what: str,
                       limit: int = MAX_MANIFEST_BYTES) -> bytes:
        """A small blob (config), read whole with a cap; the caller verifies it."""
        if desc.size > limit:
            raise ManifestError(f"{what}: {desc.size} bytes is more than the {limit} bytes allowed")
        resp = self.send("GET", f"/v2/{repository}/blobs/{desc.digest}", what)
        self.check(resp, what)
        return read_capped(resp, min(limit, desc.size), what, kind=DigestMismatchFor(desc))

    def open_blob(self, repository: str, desc: Descriptor, what: str, *, partial: Path | None = None,
                  on_bytes: Callable[[int], None] | None = None) -> BlobStream:
        """The blob as a resumable stream (see :class:`BlobStream`)."""
        return BlobStream(self, repository, desc, what, partial=partial, on_bytes=on_bytes)

    def repository(self, name: str) -> Repository:
        return Repository(self, name)


class Repository:
    """One repository of a registry, as a ``Source``: what it returns is verified by digest.
    It never answers None: what the registry lacks is a :class:`NotFoundError`."""

    def __init__(self, client: RegistryClient, name: str) -> None:
        self.client = client
        self.name = name

    def manifest(self, digest: Digest, what: str, *, size: int | None = None) -> tuple[bytes, str]:
        data, ctype, _ = self.client.get_manifest(self.name, str(digest), what,
                                                  limit=MAX_MANIFEST_BYTES if size is None else size)
        verify_bytes(data, digest, size, what)
        return data, ctype

    def blob(self, desc: Descriptor, what: str) -> bytes:
        data = self.client.get_blob_bytes(self.name, desc, what)
        verify_bytes(data, desc.digest, desc.size, what)
        return data

    def open_blob(self, desc: Descriptor, what: str, *, partial: Path | None = None,
                  on_bytes: Callable[[int], None] | None = None) -> BlobStream:
        return self.client.open_blob(self.name, desc, what, partial=partial, on_bytes=on_bytes)


class DigestMismatchFor:
    """Marker: exceeding the cap of a blob with known size is a size mismatch, not a manifest error."""

    def __init__(self, desc: Descriptor) -> None:
        self.desc = desc


def read_capped(resp: httpx.Response, limit: int, what: str, kind: DigestMismatchFor | None = None) -> bytes:
    """Read a body but never more than ``limit`` (+1 to notice) bytes: an endless body is cut."""

    def too_big() -> Exception:
        resp.close()
        if kind is not None:
            return DigestMismatch(f"{what}: more bytes than the descriptor's {kind.desc.size}")
        return ManifestError(f"{what}: larger than {limit} bytes; refusing to read it")

    length = resp.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_big()
    buf = bytearray()
    deadline = time.monotonic() + MANIFEST_DEADLINE
    try:
        for chunk in resp.iter_bytes():
            buf += chunk
            if len(buf) > limit:
                raise too_big()
            if time.monotonic() > deadline:
                raise TransportError(f"{what}: still incomplete after {MANIFEST_DEADLINE:g} s ({len(buf)} bytes);"
                                     " the registry is too slow or broken, try again later", temporary=True)
    except httpx.TransportError as e:
        raise TransportError(f"{what}: connection failed while reading: {e}", temporary=True) from None
    finally:
        resp.close()
    return bytes(buf)
